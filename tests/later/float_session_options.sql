SHOW extra_float_digits;
SELECT 0.1::float8 AS tenth, 1/3::float8 AS third, 0.1::float4 AS tenth4, pi() AS pi, 1e308::float8 AS big,
       'NaN'::float8 AS nan, '-0'::float8 AS negzero;
