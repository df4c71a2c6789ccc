DO $$ BEGIN RAISE NOTICE 'simple notice'; END $$;
SELECT 1 AS between_notices;
DO $$
BEGIN
  RAISE NOTICE 'notice with % and %', 'args', 42 USING DETAIL = 'notice detail', HINT = 'notice hint';
  RAISE WARNING 'a warning';
  RAISE INFO 'an info';
  RAISE LOG 'a log line (not sent at default client_min_messages)';
  RAISE DEBUG 'a debug line (not sent)';
END
$$;
CREATE TEMP TABLE IF NOT EXISTS n (id int);
CREATE TEMP TABLE IF NOT EXISTS n (id int);
DROP TABLE IF EXISTS does_not_exist;
SET client_min_messages = warning;
DO $$ BEGIN RAISE NOTICE 'suppressed'; RAISE WARNING 'still shown'; END $$;
RESET client_min_messages;
SELECT 'end' AS done;
