SELECT E'line one\nline two\nline three' AS multi, 'single' AS plain;
SELECT E'tab\tseparated\tvalues' AS tabs, E'trailing newline\n' AS trailing, E'\n' AS only_newline;
SELECT g, repeat(E'ab\n', g) AS grows FROM generate_series(1, 3) AS g;
SELECT E'header\nwith newline' AS "multi
line header", 2 AS "plain";
