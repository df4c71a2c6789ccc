CREATE SCHEMA later_ddl;
CREATE TABLE later_ddl.items (id serial PRIMARY KEY, name text NOT NULL, price numeric(10, 2) DEFAULT 0);
ALTER TABLE later_ddl.items ADD COLUMN tags text[];
CREATE INDEX items_name_idx ON later_ddl.items (name);
CREATE VIEW later_ddl.cheap AS SELECT id, name FROM later_ddl.items WHERE price < 10;
COMMENT ON TABLE later_ddl.items IS 'items; with a semicolon';
CREATE TYPE later_ddl.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN later_ddl.posint AS int CHECK (VALUE > 0);
CREATE FUNCTION later_ddl.twice(x int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT x * 2 $$;
CREATE SEQUENCE later_ddl.seq START 100;
SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns
WHERE table_schema = 'later_ddl' AND table_name = 'items' ORDER BY ordinal_position;
SELECT obj_description('later_ddl.items'::regclass, 'pg_class') AS comment, later_ddl.twice(21) AS twice,
       enum_range(NULL::later_ddl.mood) AS moods;
ALTER TABLE later_ddl.items RENAME COLUMN tags TO labels;
DROP VIEW later_ddl.cheap;
DROP INDEX later_ddl.items_name_idx;
DROP SCHEMA later_ddl CASCADE;
