SELECT count(*) AS before FROM generate_series(1, 10000);
SELECT g, 'line ' || g AS label, g % 3 = 0 AS fizz FROM generate_series(1, 10000) AS g;
SELECT string_agg(g::text, ',') AS one_big_value FROM generate_series(1, 20000) AS g;
SELECT 'after' AS done;
