CREATE TABLE later_committed (id int PRIMARY KEY);
COMMIT;
INSERT INTO later_committed VALUES (1);
COMMIT;
SELECT count(*) AS committed_rows FROM later_committed;
INSERT INTO later_committed VALUES (1);
