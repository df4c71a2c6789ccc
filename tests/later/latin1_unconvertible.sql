SELECT 'ok' AS fine, chr(252) AS u_umlaut;
SELECT chr(8364) AS euro_has_no_latin1_byte;
