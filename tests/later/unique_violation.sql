CREATE TABLE accounts (id int PRIMARY KEY, email text UNIQUE);
INSERT INTO accounts VALUES (1, 'a@example.com'), (2, 'b@example.com');
SELECT * FROM accounts ORDER BY id;
UPDATE accounts SET email = upper(email) WHERE id = 2;
INSERT INTO accounts VALUES (3, 'a@example.com');
SELECT 'never printed' AS unreachable;
