CREATE TEMP SEQUENCE later_seq START 10 INCREMENT 5;
SELECT nextval('later_seq') AS a, nextval('later_seq') AS b, currval('later_seq') AS c;
SELECT setval('later_seq', 1000) AS set, nextval('later_seq') AS after_set;
CREATE TEMP TABLE later_ids (id bigserial PRIMARY KEY, v text);
INSERT INTO later_ids (v) VALUES ('a'), ('b'), ('c') RETURNING id, v;
SELECT last_value, is_called FROM later_ids_id_seq;
