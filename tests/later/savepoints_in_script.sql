SET LOCAL statement_timeout = '5s';
CREATE TABLE later_fenced (a int);
SAVEPOINT s;
INSERT INTO later_fenced VALUES (1);
