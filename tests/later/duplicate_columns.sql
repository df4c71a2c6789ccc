SELECT 1 AS a, 2 AS a, 'three' AS a;
SELECT 1, 2, 'x', NULL, 1 + 1;
SELECT t.*, t.* FROM (VALUES (1, 'one')) AS t(n, name);
SELECT count(*), count(*), sum(g), sum(g) FROM generate_series(1, 4) AS g;
SELECT x.n, y.n FROM (VALUES (1), (2)) AS x(n) JOIN (VALUES (2), (3)) AS y(n) ON true ORDER BY 1, 2;
