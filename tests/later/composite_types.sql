SELECT ROW(1, 'a b', NULL, 'q"uote', '', 'back\slash') AS rec, ROW() AS empty_row, ROW(ROW(1, 2), 'x') AS nested;
CREATE TYPE later_pair AS (k text, v int[]);
SELECT ROW('key, with comma', ARRAY[1, NULL])::later_pair AS pair, (ROW('k', '{1}')::later_pair).v AS field;
SELECT int4range(1, 10) AS r, numrange(1.5, NULL, '(]') AS unbounded, 'empty'::int4range AS empty,
       tstzrange('2024-01-01 00:00+00', '2024-02-01 00:00+00') AS tsr, '{[1,3), [5,7)}'::int4multirange AS multi;
CREATE TYPE later_color AS ENUM ('red', 'green', 'blue');
SELECT c, c::text AS label FROM unnest(enum_range(NULL::later_color)) AS c ORDER BY c DESC;
DROP TYPE later_color;
DROP TYPE later_pair;
