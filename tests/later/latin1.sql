SHOW client_encoding;
CREATE TEMP TABLE "größe" (id int PRIMARY KEY, wort text, "maß" numeric);
INSERT INTO "größe" VALUES (1, 'café', 1.5), (2, 'Müller', 2), (3, 'Straße', 3), (4, 'àéîõü ñ ç ß ÿ', 4);
SELECT id, wort, "maß", length(wort) AS chars, octet_length(wort) AS bytes,
       upper(wort), encode(convert_to(wort, 'UTF8'), 'hex') AS utf8_hex
FROM "größe" ORDER BY id;
SELECT wort FROM "größe" WHERE wort LIKE '%ü%' OR wort = 'café';
SELECT 'ä' || 'ö' || 'ü' AS concatenated, chr(233) AS e_acute, ascii('Ü') AS u_code, '½ £ ©' AS symbols;
DO $$ BEGIN RAISE NOTICE 'Größe aus plpgsql: %', 'Übermut'; END $$;
COPY (SELECT id, wort FROM "größe" ORDER BY id) TO STDOUT;
DO $$ BEGIN RAISE EXCEPTION 'Fehler: Übergröße' USING DETAIL = 'Maß überschritten', HINT = 'Kürzer fassen'; END $$;
