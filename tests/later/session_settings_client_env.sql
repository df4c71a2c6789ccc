SELECT name, setting FROM pg_settings
WHERE name IN ('TimeZone', 'DateStyle', 'IntervalStyle', 'client_encoding', 'search_path', 'application_name',
               'bytea_output', 'standard_conforming_strings', 'extra_float_digits', 'lc_monetary',
               'default_transaction_read_only', 'transaction_read_only', 'is_superuser', 'session_authorization')
ORDER BY name;
SELECT current_user, session_user, current_setting('role') AS role;
SET search_path = pg_catalog, public;
SHOW search_path;
SET LOCAL work_mem = '1MB';
SHOW work_mem;
SET application_name = 'changed by the script';
SHOW application_name;
