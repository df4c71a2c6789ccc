SELECT 'it''s' AS single, '"double"' AS dq, 'semi;colon; ;' AS semis, $$dollar 'quoted'; text$$ AS dollar,
       $tag$nested $$ inside; $tag$ AS tagged;
SELECT E'tab\there' AS tab, E'back\\slash' AS backslash, 'no\escape' AS standard, E'new\nline' AS newline,
       E'carriage\rreturn' AS cr;
SELECT '' AS empty, ' ' AS space, '   padded   ' AS padded, 'x' || NULL AS concat_null, concat('a', NULL, 'b') AS concat;
SELECT "weird ""column"" name", "semi;col" FROM (VALUES ('a;b', 'c''d')) AS v("weird ""column"" name", "semi;col");
SELECT quote_literal(E'O''Reilly\\'), quote_ident('Mixed Case'), format('%L; %I; %s', 'x;y', 'a b', 'z');
SELECT length(repeat('ab;', 1000)) AS len, md5(repeat('ab;', 1000)) AS digest, left(repeat('xy', 500), 30) AS head;
SELECT 'SELECT 1; SELECT 2;' AS sql_text, '-- not a comment' AS dashes, '/* nor this */' AS slashes;
