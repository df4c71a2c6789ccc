WITH RECURSIVE fib(n, a, b) AS (
  SELECT 1, 0::numeric, 1::numeric
  UNION ALL
  SELECT n + 1, b, a + b FROM fib WHERE n < 90
)
SELECT n, a AS fib FROM fib WHERE n % 15 = 0 OR n = 90;
SELECT g, sum(g) OVER (ORDER BY g) AS running, rank() OVER (PARTITION BY g % 3 ORDER BY g DESC) AS rnk,
       lag(g) OVER w AS prev, lead(g, 2, -1) OVER w AS next2
FROM generate_series(1, 10) AS g WINDOW w AS (ORDER BY g) ORDER BY g;
SELECT grp, count(*), string_agg(x::text, '|' ORDER BY x) FROM (SELECT g % 4 AS grp, g AS x FROM generate_series(1, 20) AS g) s
GROUP BY ROLLUP (grp) ORDER BY grp NULLS LAST;
