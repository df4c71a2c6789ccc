CREATE TABLE later_parent (id int PRIMARY KEY);
CREATE TABLE later_child (id int PRIMARY KEY, parent int REFERENCES later_parent);
INSERT INTO later_parent VALUES (1);
INSERT INTO later_child VALUES (10, 1);
SELECT c.id, p.id AS parent FROM later_child c JOIN later_parent p ON p.id = c.parent;
INSERT INTO later_child VALUES (11, 99);
