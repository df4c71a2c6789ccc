CREATE TABLE later_dparent (id int PRIMARY KEY);
CREATE TABLE later_dchild (id int PRIMARY KEY, parent int REFERENCES later_dparent DEFERRABLE INITIALLY DEFERRED);
INSERT INTO later_dchild VALUES (1, 99);
SELECT count(*) AS rows_before_commit FROM later_dchild;
