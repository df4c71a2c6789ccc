SELECT g AS n, md5(g::text) AS digest, repeat(chr(97 + g % 26), g % 40) AS pad,
       CASE WHEN g % 7 = 0 THEN NULL ELSE g * 1.25 END AS maybe
FROM generate_series(1, 10000) AS g;
