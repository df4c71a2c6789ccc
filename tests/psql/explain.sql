-- EXPLAIN (COSTS OFF) plans. Statistics are gathered with an explicit ANALYZE of small tables
-- (every row sampled) and autovacuum is off for them, so the plans are the same in every run.
SET max_parallel_workers_per_gather = 0;
SET jit = off;
CREATE TABLE t (id int PRIMARY KEY, grp int NOT NULL, payload text) WITH (autovacuum_enabled = off);
INSERT INTO t SELECT g, g % 10, md5(g::text) FROM generate_series(1, 5000) g;
CREATE INDEX t_grp ON t (grp);
CREATE TABLE g (grp int PRIMARY KEY, label text) WITH (autovacuum_enabled = off);
INSERT INTO g SELECT x, 'group ' || x FROM generate_series(0, 9) x;
ANALYZE t;
ANALYZE g;
EXPLAIN (COSTS OFF) SELECT * FROM t WHERE id = 42;
EXPLAIN (COSTS OFF) SELECT * FROM t WHERE id < 10 ORDER BY id;
EXPLAIN (COSTS OFF) SELECT grp, count(*) FROM t GROUP BY grp ORDER BY grp;
EXPLAIN (COSTS OFF) SELECT g.label, count(*) FROM t JOIN g USING (grp) WHERE t.id > 4990 GROUP BY g.label;
EXPLAIN (COSTS OFF, VERBOSE) SELECT id, upper(payload) FROM t WHERE grp = 3 LIMIT 5;
EXPLAIN (COSTS OFF, FORMAT json) SELECT * FROM t WHERE id = 1;
EXPLAIN (COSTS OFF, FORMAT yaml) SELECT count(*) FROM g;
EXPLAIN (COSTS OFF, FORMAT xml) SELECT 1;
EXPLAIN (COSTS OFF) WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r;
EXPLAIN (COSTS OFF) SELECT * FROM t WHERE payload IN (SELECT label FROM g);
EXPLAIN (COSTS OFF) UPDATE t SET payload = 'x' WHERE id = 7;
EXPLAIN (COSTS OFF) DELETE FROM g WHERE grp = 9;
-- EXPLAIN ANALYZE with everything that varies turned off
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM t WHERE grp = 5;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM g ORDER BY label DESC LIMIT 3;
-- EXPLAIN of a prepared statement with a parameter
PREPARE q(int) AS SELECT * FROM t WHERE grp = $1 AND id < 100;
EXPLAIN (COSTS OFF) EXECUTE q(2);
-- errors inside EXPLAIN keep their position
EXPLAIN (COSTS OFF) SELECT nope FROM t;
EXPLAIN (COSTS OFF, BOGUS) SELECT 1;
EXPLAIN (COSTS OFF) SELEC 1;
