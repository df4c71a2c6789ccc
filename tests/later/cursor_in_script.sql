BEGIN;
DECLARE later CURSOR FOR SELECT g, 'row ' || g AS label FROM generate_series(1, 10) AS g;
FETCH 3 FROM later;
FETCH later;
MOVE FORWARD 2 IN later;
FETCH ALL later;
CLOSE later;
COMMIT;
