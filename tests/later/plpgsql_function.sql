CREATE FUNCTION later_count_to(n int) RETURNS SETOF int LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..n LOOP
    IF i % 2 = 0 THEN
      RAISE NOTICE 'even: %', i;
    END IF;
    RETURN NEXT i;
  END LOOP;
END
$$;
SELECT * FROM later_count_to(5);
SELECT later_count_to(3) AS as_column;
DROP FUNCTION later_count_to(int);
