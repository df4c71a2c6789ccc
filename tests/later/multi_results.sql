SELECT 1 AS first;
SELECT 'second' AS label, 2 AS n UNION ALL SELECT 'more', 3;
VALUES (1, 'a'), (2, 'b'), (3, NULL);
SELECT g AS wide_1, g * 2 AS wide_2, g * 3 AS wide_3, repeat('w', g) AS wide_4 FROM generate_series(1, 5) AS g;
SELECT 'last' AS fifth_result;
