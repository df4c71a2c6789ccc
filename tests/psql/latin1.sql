-- This file is encoded in LATIN1 (ISO-8859-1), not UTF-8: psql sends its bytes as they are,
-- and the server converts between LATIN1 (client) and the database encoding (UTF8).
\encoding LATIN1
\encoding
SHOW client_encoding;
CREATE TABLE "größe" (id int PRIMARY KEY, wort text, "maß" numeric);
COMMENT ON TABLE "größe" IS 'Tabelle mit Umlauten: äöü ÄÖÜ ß é è ê';
INSERT INTO "größe" VALUES (1, 'café', 1.5), (2, 'Müller', 2), (3, 'Straße', 3), (4, 'ÀÉÎÕÜ ñ ç ø ¿¡ «»', 4);
SELECT id, wort, "maß", length(wort) AS chars, octet_length(wort) AS bytes,
       upper(wort), encode(convert_to(wort, 'UTF8'), 'hex') AS utf8_hex
FROM "größe" ORDER BY id;
SELECT wort FROM "größe" WHERE wort LIKE '%ü%' OR wort = 'café';
SELECT 'é' || 'ü' || 'ß' AS concatenated, chr(233) AS e_acute, ascii('ü') AS u_code;
\d "größe"
\dt+ "größe"
COPY "größe" FROM STDIN;
5	Fußgänger	5
6	naïve façade	6
\.
COPY (SELECT * FROM "größe" ORDER BY id) TO STDOUT;
\copy (SELECT id, wort FROM "größe" ORDER BY id) TO 'latin1_out.txt'
CREATE TABLE "größe_copy" (LIKE "größe");
\copy "größe_copy" (id, wort) FROM 'latin1_out.txt'
SELECT count(*) FROM "größe_copy" c JOIN "größe" g USING (id) WHERE c.wort = g.wort;
-- error messages come back in the client encoding too
SELECT * FROM "tabelle_ähnlich";
SELECT "spalte_ö" FROM "größe";
INSERT INTO "größe" VALUES (1, 'doppelt', 0);
DO $$ BEGIN RAISE NOTICE 'Grüße aus plpgsql: %', 'Übermut'; END $$;
-- a character LATIN1 cannot represent is an error, never wrong bytes
INSERT INTO "größe" VALUES (7, 'check ' || chr(10003), 7);
SELECT upper('ÿ') AS no_capital_y_diaeresis_in_latin1;
SELECT wort FROM "größe" WHERE id = 7;
SELECT id FROM "größe" WHERE id = 7;
-- switch to UTF8 mid-session: the same rows now arrive as UTF-8 bytes
CREATE VIEW words AS SELECT id, wort FROM "größe";
\encoding UTF8
SELECT id, wort FROM words WHERE id IN (1, 2, 3) ORDER BY id;
-- LATIN1 bytes are not valid UTF-8: the server rejects them
SELECT 'Müller' AS invalid_in_utf8;
\encoding LATIN1
SELECT id, wort FROM words WHERE id IN (1, 2, 3) ORDER BY id;
SET client_encoding = 'UTF8';
SHOW client_encoding;
RESET client_encoding;
SHOW client_encoding;
