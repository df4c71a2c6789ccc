SELECT ARRAY[1, 2, 3] AS ints, ARRAY['a', 'b c', 'd,e', 'f"g', 'h\i', '', 'NULL'] AS texts,
       ARRAY[NULL, 1, NULL]::int[] AS with_nulls, '{}'::int[] AS empty;
SELECT ARRAY[[1, 2], [3, 4]] AS matrix, ARRAY[[[1], [2]], [[3], [4]]] AS cube,
       ARRAY[[NULL, 'x'], ['y', NULL]] AS text_matrix;
SELECT '[0:2]={7,8,9}'::int[] AS bounded, '[-1:0][1:2]={{1,2},{3,4}}'::int[] AS bounded2,
       array_lower('[0:2]={7,8,9}'::int[], 1) AS lo, array_dims(ARRAY[[1, 2], [3, 4]]) AS dims;
SELECT ARRAY[1.5, NULL, 'NaN']::numeric[] AS nums, ARRAY['NaN', '-0', 'Infinity']::float8[] AS floats,
       ARRAY[true, false, NULL] AS bools, ARRAY['\x00ff'::bytea, NULL] AS byteas;
SELECT ARRAY['2024-02-29'::date, 'infinity'] AS dates, ARRAY['{"a": [1, 2]}'::jsonb, 'null'] AS jsons,
       ARRAY[ROW(1, 'x y'), ROW(NULL, NULL)] AS records;
SELECT array_agg(g ORDER BY g DESC) AS agg, unnest(ARRAY[10, 20]) AS u FROM generate_series(1, 3) AS g;
SELECT ARRAY(SELECT ARRAY[g, g * 10] FROM generate_series(1, 3) AS g) AS nested_from_query,
       cardinality(ARRAY[[1, 2], [3, 4]]) AS card;
