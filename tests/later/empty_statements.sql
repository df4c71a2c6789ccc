SELECT 1 AS one;;
;
/* a comment between statements */ SELECT 2 AS two; -- trailing comment
-- a line comment
SELECT 3 /* inline */ AS three
;
