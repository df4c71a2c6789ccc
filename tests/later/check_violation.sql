CREATE TABLE later_checked (id int PRIMARY KEY, qty int CONSTRAINT qty_positive CHECK (qty > 0), note text NOT NULL);
INSERT INTO later_checked VALUES (1, 5, 'fine');
SELECT * FROM later_checked;
INSERT INTO later_checked VALUES (2, -1, 'negative; bad');
