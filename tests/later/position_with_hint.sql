CREATE TEMP TABLE later_hint (quantity int);
INSERT INTO later_hint VALUES (1);
SELECT later_hint.quantitty FROM later_hint;
