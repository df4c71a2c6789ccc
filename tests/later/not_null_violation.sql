CREATE TABLE later_nn (id int PRIMARY KEY, note text NOT NULL);
INSERT INTO later_nn VALUES (1, 'ok');
INSERT INTO later_nn VALUES (2, NULL);
