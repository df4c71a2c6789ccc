SET bytea_output = 'escape';
SHOW bytea_output;
SELECT '\xdeadbeef'::bytea AS hex, ''::bytea AS empty, 'abc'::bytea AS text_input, E'\\000\\001'::bytea AS zeros,
       E'back\\\\slash'::bytea AS backslash, '\x27'::bytea AS quote;
SELECT string_agg(set_byte('\x00'::bytea, 0, b), ''::bytea ORDER BY b) AS all_bytes
FROM generate_series(0, 255) AS b;
SELECT convert_to('Grüße', 'UTF8') AS utf8_bytes, decode('0a0d09', 'hex') AS controls;
RESET bytea_output;
SELECT '\x00ff'::bytea AS after_reset;
