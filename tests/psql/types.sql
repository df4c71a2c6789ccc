-- Result types and output formats: \gdesc, every psql output format, \x, \crosstabview,
-- wide and large values, NULL display, many data types in text form.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, MDY';
SET IntervalStyle = 'postgres';
SET extra_float_digits = 1;
CREATE TYPE pair AS (a int, b text);
CREATE TABLE samples (
    id int PRIMARY KEY, b bool, i2 smallint, i8 bigint, n numeric(20,5), f4 real, f8 double precision,
    money_v money, ch char(5), vc varchar(10), tx text, by bytea, d date, t time, tz timetz,
    ts timestamp, tstz timestamptz, iv interval, u uuid, js json, jb jsonb, ia int[], ta text[][],
    ip inet, cidr_v cidr, mac macaddr, pt point, bx box, bits bit varying(8), r int4range,
    tsv tsvector, x xml, p pair, o oid
);
INSERT INTO samples VALUES
 (1, true, -32768, 9223372036854775807, 12345678901234.56789, 1.5, 3.141592653589793,
  12.34, 'ab', 'varchar', E'tab\there\nnewline', '\x00ff10', '2024-02-29', '23:59:59.999999',
  '12:00+05:30', '2000-01-01 00:00:00', '1999-12-31 23:59:59.5+00', '1 year 2 mons 3 days 04:05:06.7',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": 1, "a": [1, 2]}', '{"b": 1, "a": [1, 2]}',
  '{1,NULL,3}', '{{a,b},{"c d","e\"f"}}', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
  '(1.5,-2)', '((0,0),(1,1))', B'1011', '[1,10)', 'the quick brown fox', '<a>x &amp; y</a>',
  ROW(7, 'seven'), 12345),
 (2, NULL, NULL, NULL, 'NaN', '-Infinity', 'Infinity', NULL, NULL, NULL, '', '', 'infinity',
  NULL, NULL, '-infinity', NULL, '-1 day +01:00', NULL, 'null', '[]', '{}', '{}', '::1', '::/0',
  NULL, NULL, NULL, B'', 'empty', '', NULL, ROW(NULL, NULL), 0);
SELECT * FROM samples ORDER BY id \gdesc
SELECT id, b, i2, i8, n, f4, f8, money_v, ch, vc FROM samples ORDER BY id;
SELECT id, tx, by, d, t, tz, ts, tstz, iv FROM samples ORDER BY id;
SELECT id, u, js, jb, ia, ta, ip, cidr_v, mac FROM samples ORDER BY id;
SELECT id, pt, bx, bits, r, tsv, x, p, o FROM samples ORDER BY id;
SELECT 1 AS one, 'two'::text AS two, NULL::numeric(5,2) AS three, '{}'::int[] AS four \gdesc
SELECT $1::int \gdesc
SELECT nope \gdesc
CREATE TABLE made_by_gdesc (x int) \gdesc
\x on
SELECT * FROM samples WHERE id = 1;
\x off
\pset null '(null)'
SELECT id, b, i2, tx FROM samples ORDER BY id;
\pset null ''
\pset format unaligned
SELECT id, vc, tx FROM samples ORDER BY id;
\pset fieldsep ','
\pset tuples_only on
SELECT id, d, iv FROM samples ORDER BY id;
\pset tuples_only off
\pset fieldsep '|'
\pset format csv
SELECT id, tx, js, ta FROM samples ORDER BY id;
\pset format html
SELECT id, vc, x FROM samples ORDER BY id;
\pset format latex
SELECT id, vc FROM samples ORDER BY id;
\pset format asciidoc
SELECT id, vc FROM samples ORDER BY id;
\pset format wrapped
\pset columns 40
SELECT repeat('wrap me ', 12) AS long_text, 'short' AS s;
\pset format aligned
\pset border 2
\pset linestyle unicode
SELECT id, vc, tx FROM samples ORDER BY id;
\pset border 1
\pset linestyle ascii
\pset columns 0
SELECT v.r, v.c, v.n FROM (VALUES ('r1','c1',1), ('r1','c2',2), ('r2','c1',3), ('r2','c3',4)) v(r, c, n) \crosstabview
-- large values and many rows
SELECT length(repeat('abcdefghij', 100000)) AS len, md5(repeat('abcdefghij', 100000)) AS md5;
SELECT g AS n, repeat('x', g % 7) AS xs FROM generate_series(1, 3000) g WHERE g % 500 = 0 OR g < 4;
SELECT repeat('0123456789', 30000) AS three_hundred_kb;
SELECT string_agg(g::text, ',') AS many FROM generate_series(1, 20000) g;
SELECT count(*), sum(length(s)) FROM (SELECT repeat('y', g % 1000) AS s FROM generate_series(1, 50000) g) q;
\pset tuples_only on
SELECT g, md5(g::text) FROM generate_series(1, 10000) g;
\pset tuples_only off
-- FETCH_COUNT makes psql use a cursor: DECLARE / FETCH FORWARD n
\set FETCH_COUNT 7
SELECT g, g * g AS sq FROM generate_series(1, 20) g;
SELECT g, 10 / (g - 15) AS fails_midway FROM generate_series(1, 20) g;
\unset FETCH_COUNT
-- cursors written by hand, including FETCH of a cursor named "later"
BEGIN;
DECLARE later CURSOR FOR SELECT g FROM generate_series(1, 5) g;
FETCH later;
FETCH 2 FROM later;
FETCH later;
FETCH ALL FROM later;
CLOSE later;
COMMIT;
