SHOW TimeZone;
SHOW DateStyle;
SHOW IntervalStyle;
SELECT '2024-02-29'::date AS leap, '0044-03-15 BC'::date AS ides, 'infinity'::date AS inf, '-infinity'::date AS ninf,
       '2024-02-29'::date + 1 AS next_day;
SELECT '2024-07-01 12:34:56.789012'::timestamp AS ts, '2024-07-01 12:34:56.789012+02'::timestamptz AS tstz,
       '2024-01-15 08:00:00 America/New_York'::timestamptz AS named_zone, 'epoch'::timestamptz AS epoch;
SELECT '1 year 2 mons 3 days 04:05:06.789'::interval AS iv, '-1 day +02:00'::interval AS mixed,
       '1000000 hours'::interval AS hours, 'P1Y2M3DT4H5M6S'::interval AS iso_input, '0'::interval AS zero;
SELECT '12:34:56.5'::time AS t, '12:34:56.5+05:30'::timetz AS ttz, '24:00:00'::time AS midnight_end;
SELECT to_char('2024-07-01 12:34:56+00'::timestamptz, 'YYYY-MM-DD HH24:MI:SS TZ OF') AS formatted,
       extract(epoch FROM '2024-07-01 12:34:56+00'::timestamptz) AS epoch_secs,
       date_trunc('day', '2024-07-01 23:30:00+00'::timestamptz) AS day_start;
SELECT '01.02.2024'::date AS german_input, '2024-03-31 02:30:00'::timestamptz AS dst_gap,
       justify_interval('-1 mon 35 days 30 hours'::interval) AS justified, age('2024-03-01', '2023-01-31') AS age;
SET IntervalStyle = 'iso_8601';
SELECT '1 year 2 mons 3 days 04:05:06.789'::interval AS iso_interval, '-1 day +02:00'::interval AS iso_mixed;
