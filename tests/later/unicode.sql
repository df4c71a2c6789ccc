SELECT 'Grüße aus Zürich' AS german, 'Ελληνικά' AS greek, '日本語のテキスト' AS japanese, 'emoji 😀🎉' AS emoji;
SELECT length('日本語') AS chars, octet_length('日本語') AS bytes, upper('straße') AS upper_c_locale,
       'e' || U&'\0301' AS combining, U&'\+01F600' AS escape_input;
SELECT label, length(label) AS len FROM (VALUES ('ä'), ('中文'), ('👍🏽'), ('ascii'), (E'\u00a0nbsp')) AS v(label) ORDER BY label;
SELECT "naïve col", "列" FROM (VALUES ('x', 'y')) AS v("naïve col", "列");
