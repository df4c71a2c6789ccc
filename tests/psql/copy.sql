-- \copy to and from files (run with the working directory set to a scratch directory that
-- holds copies of tests/psql/data/*), COPY ... FROM STDIN / TO STDOUT inline in the script.
SET TimeZone = 'UTC';
CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(8,2), note text);
\copy items FROM 'items.csv' WITH (FORMAT csv, HEADER true)
SELECT id, name, price, note, note IS NULL AS note_null FROM items ORDER BY id;
CREATE TABLE rows (n int, word text, extra text);
\copy rows FROM 'rows.tsv'
SELECT n, word, extra, extra IS NULL AS extra_null FROM rows ORDER BY n;
-- inline data through psql's \copy ... from stdin (read from this script)
\copy rows (n, word) FROM stdin
20	twenty
21	twenty-one
\.
-- inline data through the server's COPY FROM STDIN
COPY rows FROM STDIN;
30	thirty	\N
31	thirty-one	x\ty
\.
COPY rows (n, word) FROM STDIN WITH (FORMAT csv);
40,"forty, with comma"
41,"forty ""one"""
\.
-- a bad row: the error names the line and column, the rest of the data is skipped
COPY rows FROM STDIN;
50	fifty	ok
not-a-number	oops	x
52	fifty-two	skipped
\.
-- too many columns
COPY rows (n) FROM STDIN;
60	extra
\.
SELECT count(*) AS rows_total FROM rows;
-- COPY TO STDOUT in every format psql can print
COPY (SELECT * FROM rows ORDER BY n) TO STDOUT;
COPY (SELECT * FROM rows ORDER BY n) TO STDOUT WITH (FORMAT csv, HEADER, FORCE_QUOTE *);
COPY items TO STDOUT WITH (FORMAT csv, DELIMITER ';', NULL 'NULL');
-- \copy to files: text, csv, binary, and a query
\copy items TO 'items_out.txt'
\copy items TO 'items_out.csv' WITH (FORMAT csv, HEADER true)
\copy items TO 'items_out.bin' WITH (FORMAT binary)
\copy (SELECT n, word, md5(word) FROM rows ORDER BY n) TO 'query_out.csv' CSV HEADER
-- a larger file: 20000 rows round trip
\copy (SELECT g, repeat(chr(65 + g % 26), g % 50), g * 1.5 FROM generate_series(1, 20000) g) TO 'big.txt'
CREATE TABLE big (g int, s text, f numeric);
\copy big FROM 'big.txt'
SELECT count(*), sum(g), sum(length(s)), sum(f) FROM big;
-- read back the binary file
CREATE TABLE items2 (LIKE items);
\copy items2 FROM 'items_out.bin' WITH (FORMAT binary)
SELECT (SELECT count(*) FROM (SELECT * FROM items EXCEPT SELECT * FROM items2) d) AS differing_rows;
-- copy from a file that does not exist (psql-side error)
\copy items FROM 'no_such_file.csv'
-- server-side COPY to a file is refused for non-superusers or names a server path: avoid it.
-- COPY with a column list that does not exist
\copy items (id, nope) FROM 'items.csv' CSV HEADER
-- \copy from stdin inside a transaction that then rolls back
BEGIN;
\copy rows (n, word) FROM stdin
70	seventy
\.
SELECT count(*) FROM rows WHERE n = 70;
ROLLBACK;
SELECT count(*) FROM rows WHERE n = 70;
