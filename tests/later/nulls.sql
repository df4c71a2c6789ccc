SELECT NULL AS unknown_null, NULL::int AS int_null, NULL::text AS text_null, NULL::bytea AS bytea_null;
SELECT a, b, c FROM (VALUES (1, NULL, 'x'), (NULL, NULL, NULL), (3, 4::int, NULL)) AS v(a, b, c);
SELECT NULL IS NULL AS is_null, NULL = NULL AS eq, coalesce(NULL, NULL, 'third') AS coalesced, nullif(1, 1) AS nulled;
SELECT count(*) AS all_rows, count(x) AS non_null, sum(x) AS total, max(x) AS biggest
FROM (VALUES (NULL::int), (NULL), (2)) AS v(x);
SELECT string_agg(x, ',') AS agg FROM (VALUES (NULL::text)) AS v(x);
SELECT ''::text AS empty_string, NULL::text AS null_string, ''::text IS NULL AS empty_is_null;
