CREATE FUNCTION later_inner(x int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  RETURN 100 / x;
END
$$;
CREATE FUNCTION later_outer(x int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE r int;
BEGIN
  r := later_inner(x - 1);
  RETURN r;
END
$$;
SELECT later_outer(3) AS fine;
SELECT later_outer(1) AS fails;
