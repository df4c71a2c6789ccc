SELECT 0.1 + 0.2 AS sum, 1.000 AS trailing, 100::numeric(10,3) AS scaled, 123.4567::numeric(6,2) AS rounded;
SELECT 'NaN'::numeric AS nan, 'Infinity'::numeric AS inf, '-Infinity'::numeric AS ninf, -0.0::numeric AS negzero;
SELECT 12345678901234567890123456789012345678901234567890::numeric AS big,
       0.000000000000000000000000000001::numeric AS tiny,
       1e100::numeric AS e100, (2::numeric ^ 200) AS pow;
SELECT round(2.5) AS r1, round(-2.5) AS r2, trunc(-1.999, 2) AS t, 1::numeric / 3 AS third,
       sqrt(2::numeric) AS sqrt2, ln(10::numeric) AS ln10;
SELECT n, n::numeric(5,1) AS cast FROM (VALUES (1.25), (1.35), (-1.45), (99.99)) AS v(n);
SELECT sum(x), avg(x), min(x), max(x), stddev_samp(x) FROM (VALUES (1.5), (2.25), (NULL), (3.125)) AS v(x);
