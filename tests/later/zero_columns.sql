SELECT;
SELECT FROM generate_series(1, 3);
SELECT WHERE false;
SELECT 1 AS after_zero_columns;
CREATE TEMP TABLE no_cols ();
INSERT INTO no_cols DEFAULT VALUES;
INSERT INTO no_cols SELECT FROM generate_series(1, 2);
SELECT * FROM no_cols;
TABLE no_cols;
