SELECT 1 AS first_statement_ran;
SELECT 'second' AS label;
SELECT x, nosuchcolumn
FROM (VALUES (1)) AS v(x);
SELECT 'never printed' AS unreachable;
