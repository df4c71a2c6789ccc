SELECT 'start' AS step;
DO $$
BEGIN
  RAISE SQLSTATE 'XX123' USING MESSAGE = 'custom code', DETAIL = 'multi
line
detail', HINT = 'hint', COLUMN = 'col', CONSTRAINT = 'con', DATATYPE = 'typ', TABLE = 'tab', SCHEMA = 'sch';
END
$$;
