SELECT 'NaN'::float8 AS nan, 'Infinity'::float8 AS inf, '-Infinity'::float8 AS ninf, '-0'::float8 AS negzero;
SELECT 1e308::float8 AS big, 1.7976931348623157e308::float8 AS max, 2.2250738585072014e-308::float8 AS minnorm,
       5e-324::float8 AS denorm, 0.1::float8 + 0.2::float8 AS sum;
SELECT 'NaN'::float4 AS nan4, 'Infinity'::float4 AS inf4, '-0'::float4 AS negzero4, 3.4028235e38::float4 AS max4,
       1.17549435e-38::float4 AS minnorm4, 0.1::float4 AS tenth4, 16777217::float4 AS lossy;
SELECT x, x::float4 AS f4, x * 3 AS triple, 1 / x AS inverse
FROM (VALUES (1.0::float8), (3.0), (1e-10), (123456789.123456789), (-2.5e15)) AS v(x);
SELECT pi() AS pi, exp(1::float8) AS e, sqrt(2::float8) AS sqrt2, 'NaN'::float8 = 'NaN'::float8 AS nan_eq,
       'NaN'::float8 > 'Infinity'::float8 AS nan_gt;
