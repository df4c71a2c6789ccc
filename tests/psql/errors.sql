-- Errors with positions (caret lines), notices, DO blocks, multi-statement lines and
-- transactions that fail and roll back.
CREATE TABLE acct (id int PRIMARY KEY, owner text NOT NULL, balance int CHECK (balance >= 0));
INSERT INTO acct VALUES (1, 'ann', 100), (2, 'bob', 50);
-- syntax errors: the caret points into the statement
SELEC 1;
SELECT 1 +* 2;
SELECT id, owner
  FROM acct
 WHERE balance >> ;
-- undefined column and table, with a hint
SELECT id, ownr FROM acct;
SELECT acct.nope FROM acct;
SELECT * FROM acctt;
SELECT owner FROM acct a WHERE acct.id = 1;
-- type errors with positions deep into a long line (psql trims the LINE display)
SELECT 'padding padding padding padding padding padding padding padding padding padding', 1 + 'x'::int;
-- a run-time error has no position
SELECT 1 / 0;
-- constraint violations: DETAIL lines
INSERT INTO acct VALUES (1, 'dup', 1);
INSERT INTO acct VALUES (3, NULL, 1);
UPDATE acct SET balance = balance - 500 WHERE id = 2;
-- the same with every field the server sends
\set VERBOSITY verbose
INSERT INTO acct VALUES (1, 'dup', 1);
SELECT nope FROM acct;
\set VERBOSITY default
\set SHOW_CONTEXT always
-- DO blocks with RAISE at several levels
DO $$
BEGIN
  RAISE NOTICE 'plain notice %', 42;
  RAISE WARNING 'a warning with detail' USING DETAIL = 'the detail', HINT = 'the hint';
  RAISE INFO 'info level';
  RAISE DEBUG 'not shown at the default client_min_messages';
END $$;
DO $$
DECLARE n int;
BEGIN
  SELECT count(*) INTO n FROM acct;
  RAISE NOTICE 'acct has % rows', n;
  RAISE EXCEPTION 'custom failure' USING ERRCODE = 'P0042', DETAIL = 'n=' || n, HINT = 'retry';
END $$;
\set SHOW_CONTEXT errors
SET client_min_messages = debug1;
DO $$ BEGIN RAISE DEBUG 'debug now visible'; END $$;
RESET client_min_messages;
-- several statements on one line: psql sends them one by one
SELECT 1 AS a; SELECT 2 AS b; SELECT 'x' || 'y' AS c;
SELECT 1 AS ok; SELECT nope; SELECT 3 AS after_error;
-- one Query message holding several statements (\; keeps them together)
SELECT 10 AS first \; SELECT 20 AS second \; SELECT 30 AS third;
SELECT 1 AS one \; SELECT 1/0 \; SELECT 'never' AS never;
INSERT INTO acct VALUES (5, 'multi', 5) \; INSERT INTO acct VALUES (5, 'again', 5);
SELECT count(*) FROM acct WHERE id = 5;
-- transactions: error inside, everything after fails until ROLLBACK
BEGIN;
UPDATE acct SET balance = balance + 10 WHERE id = 1;
SELECT balance FROM acct WHERE id = 1;
SELECT * FROM nope;
SELECT 1;
COMMIT;
SELECT balance FROM acct WHERE id = 1;
-- savepoints
BEGIN;
UPDATE acct SET balance = balance + 1 WHERE id = 1;
SAVEPOINT s1;
UPDATE acct SET balance = -1 WHERE id = 1;
ROLLBACK TO SAVEPOINT s1;
UPDATE acct SET balance = balance + 1 WHERE id = 1;
RELEASE SAVEPOINT s1;
COMMIT;
SELECT balance FROM acct WHERE id = 1;
-- ON_ERROR_ROLLBACK makes psql wrap each statement in a savepoint
\set ON_ERROR_ROLLBACK on
BEGIN;
INSERT INTO acct VALUES (6, 'six', 6);
INSERT INTO acct VALUES (6, 'six again', 6);
INSERT INTO acct VALUES (7, 'seven', 7);
COMMIT;
\set ON_ERROR_ROLLBACK off
SELECT id, owner, balance FROM acct ORDER BY id;
-- transaction-state errors and warnings
COMMIT;
ROLLBACK;
BEGIN;
BEGIN;
SAVEPOINT a;
ROLLBACK TO SAVEPOINT nosuch;
ROLLBACK;
-- deferred constraint failing at COMMIT
CREATE TABLE child (id int, parent int REFERENCES acct(id) DEFERRABLE INITIALLY DEFERRED);
BEGIN;
INSERT INTO child VALUES (1, 999);
SELECT 'still fine' AS status;
COMMIT;
SELECT count(*) FROM child;
-- errors raised from inside functions have CONTEXT lines
CREATE FUNCTION boom(int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  IF $1 > 1 THEN RETURN boom($1 - 1); END IF;
  RAISE EXCEPTION 'boom at the bottom';
END $$;
SELECT boom(3);
-- error in a prepared statement
PREPARE p(int) AS SELECT owner FROM acct WHERE id = $1;
EXECUTE p(1);
EXECUTE p('x');
EXECUTE nope(1);
DEALLOCATE p;
-- \if / \gset / \gexec
SELECT count(*) AS n_acct, count(*) > 0 AS has_rows FROM acct \gset
\if :has_rows
  \echo acct has :n_acct rows
\else
  \echo acct is empty
\endif
SELECT format('SELECT %L AS gexec_%s', owner, id) FROM acct ORDER BY id \gexec
SELECT 'bad' AS x, 'also bad' AS x \gset
SELECT 1 WHERE false \gset
\echo :ERROR :SQLSTATE :LAST_ERROR_SQLSTATE
\echo :LAST_ERROR_MESSAGE
