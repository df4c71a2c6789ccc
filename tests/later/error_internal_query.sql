SELECT 'start' AS step;
DO $$
BEGIN
  PERFORM nosuchcolumn FROM (VALUES (1)) AS v(x);
END
$$;
