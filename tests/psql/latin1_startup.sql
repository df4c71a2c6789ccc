-- parity-env: PGCLIENTENCODING=LATIN1
-- This file is encoded in LATIN1. The client encoding comes from the startup packet
-- (PGCLIENTENCODING=LATIN1), so it is the session default that RESET returns to.
SHOW client_encoding;
SELECT 'Grüße, café, Straße' AS greeting, length('Grüße') AS chars, octet_length('Grüße') AS server_bytes,
       encode(convert_to('Grüße', 'LATIN1'), 'hex') AS latin1_hex;
CREATE TABLE städte (name text PRIMARY KEY, land text);
INSERT INTO städte VALUES ('München', 'Deutschland'), ('Zürich', 'Schweiz'), ('Besançon', 'France'), ('Malmö', 'Sverige');
SELECT name, land FROM städte ORDER BY name COLLATE "C";
SELECT name FROM städte WHERE name = 'Zürich';
SET client_encoding = 'UTF8';
SHOW client_encoding;
SELECT 'bytes after this point are UTF-8' AS note;
SELECT name FROM U&"st\00e4dte" ORDER BY name COLLATE "C";
RESET client_encoding;
SHOW client_encoding;
SELECT name FROM städte ORDER BY name COLLATE "C";
SET client_encoding = 'SQL_ASCII';
SELECT name FROM U&"st\00e4dte" WHERE land = 'Schweiz';
RESET ALL;
SHOW client_encoding;
SELECT count(*) FROM städte WHERE name LIKE '%ü%';
