SELECT true AS t, false AS f, NULL::bool AS n, 'yes'::bool AS yes, 'off'::bool AS off;
SELECT 12.345::money AS m, '-$1,234.56'::money AS neg;
SELECT '192.168.1.10/24'::inet AS inet, '10.0.0.0/8'::cidr AS cidr, '::1'::inet AS v6, '08:00:2b:01:02:03'::macaddr AS mac,
       '08:00:2b:01:02:03:04:05'::macaddr8 AS mac8;
SELECT B'1010' AS bits, '1111'::bit(6) AS padded, B'101'::varbit(10) AS varbit, B'1010' & B'0110' AS anded;
SELECT point(1.5, -2) AS pt, box(point(0, 0), point(1, 1)) AS bx, circle(point(0, 0), 2) AS circ,
       '[(0,0),(1,1),(2,0)]'::path AS pth, lseg(point(0, 0), point(3, 4)) AS seg, '{1,-1,0}'::line AS ln,
       '((0,0),(1,0),(0,1))'::polygon AS poly;
SELECT to_tsvector('english', 'The quick brown foxes jumped') AS tsv, to_tsquery('english', 'fox & jump') AS tsq;
SELECT 'ab'::char(5) AS bpchar, 'ab'::varchar(5) AS vc, 'x'::"char" AS onechar, 'name'::name AS nm,
       'pg_class'::regclass AS rc, 'int4'::regtype AS rt, 'now'::text AS now_text;
SELECT '<a b="1">text &amp; more</a>'::xml AS x, xmlelement(name item, xmlattributes(1 AS id), 'v') AS built;
SELECT '1 2 3'::int2vector AS i2v, 'abc'::bytea::text AS bytea_as_text, pg_typeof(1::int8) AS typ;
