SELECT 'vacuum needs its own statement' AS note;
CREATE TEMP TABLE v (id int);
VACUUM v;
