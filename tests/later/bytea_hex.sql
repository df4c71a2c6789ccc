SHOW bytea_output;
SELECT '\xdeadbeef'::bytea AS hex, ''::bytea AS empty, 'abc'::bytea AS text_input, E'\\000\\001'::bytea AS zeros;
SELECT string_agg(set_byte('\x00'::bytea, 0, b), ''::bytea ORDER BY b) AS all_bytes
FROM generate_series(0, 255) AS b;
SELECT decode('SGVsbG8sIFdvcmxkIQ==', 'base64') AS b64, encode('\x000102ff'::bytea, 'escape') AS esc,
       convert_to('Grüße', 'UTF8') AS utf8_bytes, length(decode(repeat('ff', 5000), 'hex')) AS len;
SELECT sha256('pglater'::bytea) AS sha, substring('\x0102030405'::bytea FROM 2 FOR 3) AS sub;
