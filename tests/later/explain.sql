CREATE TEMP TABLE later_orders (id int PRIMARY KEY, customer int, amount numeric);
CREATE INDEX ON later_orders (customer);
EXPLAIN (COSTS OFF) SELECT * FROM later_orders WHERE id = 1;
EXPLAIN (COSTS OFF) SELECT customer, sum(amount) FROM later_orders GROUP BY customer ORDER BY 2 DESC;
EXPLAIN (COSTS OFF, VERBOSE) SELECT g, g * 2 FROM generate_series(1, 10) AS g WHERE g > 5;
EXPLAIN (COSTS OFF) SELECT * FROM later_orders o JOIN (VALUES (1), (2)) AS v(c) ON v.c = o.customer;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM generate_series(1, 100) AS g;
EXPLAIN (COSTS OFF, FORMAT JSON) SELECT 1;
