SELECT 'ok' AS fine;
SELECT 'a;b' AS semi,
       'not a number'::int AS bad;
