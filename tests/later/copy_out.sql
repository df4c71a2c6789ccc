COPY (SELECT g, 'row ' || g, CASE WHEN g % 2 = 0 THEN NULL ELSE g * 1.5 END FROM generate_series(1, 5) AS g) TO STDOUT;
COPY (SELECT 'tab	inside' AS a, E'new\nline' AS b, 'back\slash' AS c) TO STDOUT;
COPY (SELECT g AS n, 'quote "q", comma' AS s FROM generate_series(1, 3) AS g) TO STDOUT WITH (FORMAT csv, HEADER);
SELECT 'after copy' AS done;
