-- Catalog (backslash describe) commands through the proxy.
-- Run in a freshly created database, so all state is identical between runs.
-- Tables stay far below the autovacuum thresholds so \dt+ / \di+ sizes are stable.
SET client_min_messages = warning;
CREATE SCHEMA shop;
COMMENT ON SCHEMA shop IS 'parity test schema';
CREATE TYPE shop.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN shop.posint AS integer CHECK (VALUE > 0);
CREATE TABLE shop.customer (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email       text NOT NULL UNIQUE,
    name        varchar(80) COLLATE "C" DEFAULT 'anonymous',
    mood        shop.mood,
    born        date CHECK (born > '1900-01-01'),
    balance     numeric(12,2) NOT NULL DEFAULT 0,
    tags        text[],
    profile     jsonb
);
COMMENT ON TABLE shop.customer IS 'people who buy things';
COMMENT ON COLUMN shop.customer.email IS 'login e-mail';
CREATE TABLE shop.orders (
    id          bigserial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES shop.customer(id) ON DELETE CASCADE,
    qty         shop.posint NOT NULL,
    placed      timestamptz NOT NULL DEFAULT '2024-01-02 03:04:05+00',
    note        text
) WITH (fillfactor = 90);
CREATE INDEX orders_customer_idx ON shop.orders (customer_id);
CREATE INDEX orders_note_partial ON shop.orders (lower(note)) WHERE note IS NOT NULL;
CREATE UNLOGGED TABLE shop.scratch (k int, v text);
CREATE TABLE shop.measure (city text, logdate date, peak int) PARTITION BY RANGE (logdate);
CREATE TABLE shop.measure_2024 PARTITION OF shop.measure
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE VIEW shop.big_spenders AS
    SELECT c.id, c.email, sum(o.qty) AS total
    FROM shop.customer c JOIN shop.orders o ON o.customer_id = c.id
    GROUP BY c.id, c.email HAVING sum(o.qty) > 10;
CREATE MATERIALIZED VIEW shop.order_counts AS
    SELECT customer_id, count(*) AS n FROM shop.orders GROUP BY customer_id WITH NO DATA;
CREATE SEQUENCE shop.ticket_seq START 100 INCREMENT 5;
CREATE FUNCTION shop.add(a integer, b integer DEFAULT 1) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT AS 'SELECT a + b';
CREATE FUNCTION shop.greet(who text) RETURNS text
    LANGUAGE plpgsql AS $$ BEGIN RETURN 'hello, ' || who; END $$;
CREATE FUNCTION shop.orders_of(cid integer)
    RETURNS TABLE (id bigint, qty integer) LANGUAGE sql STABLE
    AS 'SELECT id, qty FROM shop.orders WHERE customer_id = cid';
CREATE PROCEDURE shop.bump(INOUT n integer) LANGUAGE plpgsql AS $$ BEGIN n := n + 1; END $$;
CREATE FUNCTION shop.touch() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN NEW.note := coalesce(NEW.note, 'touched'); RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE INSERT ON shop.orders
    FOR EACH ROW EXECUTE FUNCTION shop.touch();
INSERT INTO shop.customer (email, name, mood, born, balance, tags, profile) VALUES
    ('ann@example.org', 'Ann', 'happy', '1980-05-17', 12.50, '{a,b}', '{"vip": true}'),
    ('bob@example.org', 'Bob', 'ok', '1975-11-02', 0, NULL, NULL),
    ('cy@example.org', DEFAULT, 'sad', NULL, 99.99, '{}', '[1, 2, 3]');
INSERT INTO shop.orders (customer_id, qty, note) VALUES (1, 5, NULL), (1, 7, 'gift'), (2, 1, 'Rush');
RESET client_min_messages;
SET search_path = shop, public;
\d
\d customer
\d+ customer
\d+ orders
\d measure
\d+ big_spenders
\d order_counts
\d ticket_seq
\d orders_customer_idx
\dt
\dt+
\dt+ shop.*
\di
\di+ shop.*
\dv
\dm
\ds
\df
\df+ shop.add
\df shop.*
\dn
\dT shop.*
\dD shop.*
\dd shop.*
\d nosuchtable
\dt nosuch*
-- the same introspection as ordinary queries
SELECT table_name, column_name, data_type, is_nullable, column_default
FROM information_schema.columns WHERE table_schema = 'shop'
ORDER BY table_name, ordinal_position;
SELECT * FROM orders_of(1) ORDER BY id;
CALL bump(41);
SELECT id, customer_id, qty, placed, note FROM orders ORDER BY id;
