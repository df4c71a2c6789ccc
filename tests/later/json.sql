SELECT '{"b": 1, "a": [1, 2.50, "x"], "b": 2}'::json AS json_kept, '{"b": 1, "a": [1, 2.50, "x"], "b": 2}'::jsonb AS jsonb_normalized;
SELECT '  [1,  2 , {"k" :null}]  '::json AS spaces, '"\u00e9\n\"q\""'::jsonb AS escaped, 'null'::jsonb AS jnull,
       NULL::jsonb AS sqlnull;
SELECT jsonb_pretty('{"name": "pglater", "tags": ["a", "b"], "nested": {"x": 1.0e3, "y": [true, false, null]}}') AS pretty;
SELECT j -> 'a' AS arrow, j ->> 'b' AS text_arrow, j #> '{c,0}' AS path, j @> '{"b": "two"}' AS contains,
       jsonb_typeof(j -> 'a') AS typ
FROM (VALUES ('{"a": {"x": 1}, "b": "two", "c": [10, 20]}'::jsonb)) AS v(j);
SELECT key, value FROM jsonb_each('{"z": 1, "a": "text; with \"quotes\"", "m": [1, {"n": null}]}') ORDER BY key;
SELECT jsonb_path_query_array('{"items": [{"p": 1}, {"p": 5}, {"p": 9}]}', '$.items[*] ? (@.p > 2).p') AS jsonpath,
       json_build_object('k', 1, 'arr', ARRAY[1, 2], 'nul', NULL) AS built, to_jsonb(1.10::numeric) AS num;
SELECT json_agg(t ORDER BY t.g) AS rows_as_json FROM (SELECT g, 'row ' || g AS label FROM generate_series(1, 3) AS g) AS t;
