-- parity-env: PGOPTIONS=-c work_mem=1234kB -c DateStyle=SQL,DMY -c search_path=app,public
-- parity-env: PGAPPNAME=psql-parity
-- Session state: startup options and application_name (RESET returns to them), SET/SHOW,
-- prepared statements, notifications, \g and \o to files, timeouts, and \c reconnects.
SHOW work_mem;
SHOW DateStyle;
SHOW search_path;
SHOW application_name;
SELECT current_user = session_user AS same_user, current_database() = :'DBNAME' AS same_db;
SELECT '2024-03-04'::date AS d, '2024-03-04 05:06:07+00'::timestamptz AT TIME ZONE 'UTC' AS ts;
SET work_mem = '4MB';
SET DateStyle = 'ISO, MDY';
SET application_name = 'changed';
SHOW work_mem;
SELECT '2024-03-04'::date AS d;
RESET work_mem;
RESET DateStyle;
RESET application_name;
SHOW work_mem;
SHOW DateStyle;
SHOW application_name;
SET search_path = public;
RESET ALL;
SHOW search_path;
SHOW work_mem;
-- session-local SET inside a rolled-back transaction is undone
BEGIN;
SET LOCAL work_mem = '8MB';
SHOW work_mem;
ROLLBACK;
SHOW work_mem;
BEGIN;
SET work_mem = '9MB';
ROLLBACK;
SHOW work_mem;
-- errors from settings
SET work_mem = 'lots';
SET no_such_setting = 1;
SHOW no_such_setting;
SET myapp.flavour = 'vanilla';
SHOW myapp.flavour;
SELECT current_setting('myapp.flavour'), current_setting('myapp.missing', true) IS NULL AS missing_ok;
-- SQL-level prepared statements
CREATE SCHEMA app;
CREATE TABLE app.kv (k text PRIMARY KEY, v int);
PREPARE ins(text, int) AS INSERT INTO kv VALUES ($1, $2) RETURNING k, v;
EXECUTE ins('a', 1);
EXECUTE ins('b', 2);
EXECUTE ins('a', 3);
PREPARE sel AS SELECT k, v FROM kv ORDER BY k;
EXECUTE sel;
SELECT name, statement, parameter_types FROM pg_prepared_statements ORDER BY name;
DEALLOCATE ALL;
SELECT count(*) FROM pg_prepared_statements;
-- notifications: psql prints the sender's PID, which differs between runs: the test masks
-- exactly the digits after "server process with PID".
LISTEN parity_channel;
NOTIFY parity_channel, 'hello from psql';
SELECT pg_notify('parity_channel', 'via pg_notify');
BEGIN;
NOTIFY parity_channel, 'delivered at commit';
SELECT 'before commit' AS status;
COMMIT;
BEGIN;
NOTIFY parity_channel, 'never delivered';
ROLLBACK;
UNLISTEN *;
NOTIFY parity_channel, 'not listening any more';
-- \g and \o to files in the working directory (compared between runs)
SELECT k, v FROM kv ORDER BY k \g kv_out.txt
\o o_out.txt
SELECT 'written by \o' AS what;
\echo an echo to stdout
\qecho a qecho that goes to the file
SELECT 1 / 0;
\o
SELECT 'back on stdout' AS what;
-- statement timeout: the server cancels, psql prints the error
SET statement_timeout = '200ms';
SELECT pg_sleep(5);
SELECT 'still connected' AS status;
RESET statement_timeout;
-- lock timeout on a lock held by this very session is impossible; use a NOWAIT instead
BEGIN;
LOCK TABLE kv IN ACCESS EXCLUSIVE MODE NOWAIT;
SELECT count(*) FROM kv;
COMMIT;
-- idle_in_transaction_session_timeout is not used: it would end the session.
-- reconnect (a second connection through the same path); QUIET hides the
-- "You are now connected ..." line, which names the port.
\set QUIET on
\c
\set QUIET off
SHOW work_mem;
SHOW application_name;
SELECT k, v FROM kv ORDER BY k;
SELECT count(*) AS prepared_after_reconnect FROM pg_prepared_statements;
-- the backend is a fresh one, as without a proxy
SELECT pid = pg_backend_pid() AS my_pid_is_listed FROM pg_stat_activity WHERE pid = pg_backend_pid();
