SELECT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS canonical, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid AS upper,
       '{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}'::uuid AS braces, 'a0eebc999c0b4ef8bb6d6bb9bd380a11'::uuid AS bare;
SELECT '00000000-0000-0000-0000-000000000000'::uuid AS nil, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid AS max,
       md5('pglater')::uuid AS from_md5;
SELECT u FROM (VALUES ('b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid), ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), (NULL))
AS v(u) ORDER BY u NULLS FIRST;
SELECT ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, NULL] AS uuids,
       'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid::text = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11' AS roundtrip;
