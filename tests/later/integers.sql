SELECT 32767::int2 AS i2max, (-32768)::int2 AS i2min, 2147483647 AS i4max, (-2147483648)::int4 AS i4min;
SELECT 9223372036854775807 AS i8max, (-9223372036854775808)::int8 AS i8min, 0 AS zero, -0 AS negzero;
SELECT g, g * g AS sq, -g AS neg, g::int2 AS small, (g::int8 << 40) AS shifted, g % 3 AS m
FROM generate_series(-5, 5) AS g;
SELECT 7 / 2 AS intdiv, 7 % 2 AS rem, (-7) / 2 AS negdiv, abs(-2147483647) AS a, 2 ^ 62 AS pow;
SELECT '  42  '::int AS padded, '+17'::int8 AS plus, 42::oid AS an_oid, 4294967295::oid AS max_oid;
