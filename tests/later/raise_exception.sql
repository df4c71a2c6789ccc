SELECT 'before' AS step;
DO $$ BEGIN RAISE NOTICE 'about to fail'; END $$;
SELECT 2 AS second_step;
DO $$
BEGIN
  RAISE EXCEPTION 'job failed: % items', 42
    USING DETAIL = 'The detail; with a semicolon.', HINT = 'Try "harder".', ERRCODE = 'P0001';
END
$$;
SELECT 'never printed' AS unreachable;
