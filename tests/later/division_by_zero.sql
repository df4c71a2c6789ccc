SELECT 1 AS ok;
SELECT g, 10 / (3 - g) AS q FROM generate_series(1, 5) AS g;
SELECT 'never printed' AS unreachable;
