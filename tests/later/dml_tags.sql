CREATE TEMP TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t VALUES (1, 'one');
INSERT INTO t SELECT g, 'v' || g FROM generate_series(2, 10) AS g;
UPDATE t SET v = upper(v) WHERE id % 2 = 0;
UPDATE t SET v = v WHERE false;
DELETE FROM t WHERE id > 8;
INSERT INTO t VALUES (20, 'twenty'), (21, 'twenty-one') RETURNING id, v;
UPDATE t SET v = v || '!' WHERE id >= 20 RETURNING *;
DELETE FROM t WHERE id = 21 RETURNING id;
INSERT INTO t VALUES (1, 'dup') ON CONFLICT (id) DO NOTHING;
INSERT INTO t VALUES (1, 'upsert') ON CONFLICT (id) DO UPDATE SET v = excluded.v;
MERGE INTO t USING (VALUES (2, 'merged'), (30, 'new')) AS s(id, v) ON t.id = s.id
WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v);
CREATE TEMP TABLE t2 AS SELECT * FROM t WHERE id < 5;
SELECT * INTO TEMP t3 FROM t WHERE id > 5;
TRUNCATE t2;
SELECT * FROM t ORDER BY id;
SELECT (SELECT count(*) FROM t2) AS t2_rows, (SELECT count(*) FROM t3) AS t3_rows;
