// LATER / FETCH LATER through pgjdbc, run by tests/drivers.rs against a pglater proxy.
//
// Usage: java -cp <dir>:postgresql.jar LaterJdbc CASE
// Connection: PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE (read here; pgjdbc itself does not).
// Exit status 0 when every check of CASE holds; otherwise 1 with the first mismatch on stderr.
//
// Cases, and what pgjdbc (42.x, default preferQueryMode=extended) puts on the wire:
//   statement  Statement: Parse (unnamed, no parameters) / Bind / Describe portal / Execute /
//              Sync for every statement, LATER and FETCH LATER <id> included.
//   prepared   PreparedStatement run 8 times each: the first 4 runs use the unnamed statement;
//              from the 5th (prepareThreshold=5) pgjdbc parses a named statement S_n once, binds
//              it with binary parameters (int4/int8/date) and, once it knows the row
//              description, asks for binary results (int8, numeric, float, bool, bytea, date,
//              timestamptz, uuid, arrays ...) without describing the portal again.
//   fetchsize  autocommit off, setFetchSize(10): Bind to a named portal C_n, Execute with max
//              rows 10, PortalSuspended, then Execute C_n 10 + Sync per page, over a
//              1000-row job result.
//   batch      addBatch/executeBatch of LATER INSERT: one Parse (a named statement when the
//              batch has more than one entry, after a Parse + Describe statement + Sync round
//              trip), then Bind / Describe portal / Execute(max rows 1) per entry and one Sync;
//              pgjdbc ignores rows returned by a batch entry (the entry's count is 0).

import java.math.BigDecimal;
import java.sql.Array;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;

public class LaterJdbc {
    static final String RICH_SQL = String.join("\n",
        "SELECT g AS g,",
        "       42::int4 * g AS i,",
        "       9007199254740993::int8 AS big,",
        "       123.4500::numeric(10,4) AS n,",
        "       0.1::float8 AS f,",
        "       1.5::float4 AS r,",
        "       'it''s \"quoted\", \\ back' || g AS t,",
        "       NULL::text AS nothing,",
        "       mod(g, 2) = 0 AS b,",
        "       '\\xdeadbeef00'::bytea AS raw,",
        "       DATE '2024-02-29' + g AS d,",
        "       TIMESTAMPTZ '2024-01-02 03:04:05.678+02' AS ts,",
        "       TIMESTAMP '2024-01-02 03:04:05' AS tsl,",
        "       INTERVAL '1 day 02:03:04.5' * g AS iv,",
        "       'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u,",
        "       '{\"a\": [1, 2.5, {\"b\": null}], \"c\": \"d''e\"}'::jsonb AS j,",
        "       ARRAY[1, 2, NULL, g] AS ia,",
        "       ARRAY['x', 'y z', NULL, 'q\"uote', ''] AS ta,",
        "       'héllo ☃'::varchar(20) AS uni",
        "FROM generate_series(1, 3) AS g",
        "ORDER BY g");

    /** The same with parameters: int4, text, numeric, date. */
    static final String RICH_PARAM_SQL =
        "SELECT ?::int4 AS p_int, ?::text AS p_text, ?::numeric AS p_num, ?::date AS p_date, "
            + "s.* FROM (" + RICH_SQL + ") AS s";

    static final String BIG_SQL =
        "SELECT g, md5(g::text) AS h, repeat('x', mod(g, 37)) AS pad FROM generate_series(1, 1000) AS g ORDER BY g";

    /** How many times a PreparedStatement is run: past prepareThreshold (5). */
    static final int RUNS = 8;

    static final long JOB_DEADLINE_MS = 30_000;

    static class Mismatch extends RuntimeException {
        private static final long serialVersionUID = 1L;

        Mismatch(String msg) {
            super(msg);
        }
    }

    static void check(boolean cond, String msg) {
        if (!cond) {
            throw new Mismatch(msg);
        }
    }

    static void log(String msg) {
        System.out.println(msg);
        System.out.flush();
    }

    static Connection connect() throws SQLException {
        String url = "jdbc:postgresql://" + env("PGHOST") + ":" + env("PGPORT") + "/" + env("PGDATABASE")
            + "?sslmode=disable&ApplicationName=pglater-driver-tests&connectTimeout=10";
        Connection c = DriverManager.getConnection(url, env("PGUSER"), env("PGPASSWORD"));
        log("connected: " + c.getMetaData().getDriverName() + " " + c.getMetaData().getDriverVersion()
            + ", server " + c.getMetaData().getDatabaseProductVersion());
        return c;
    }

    static String env(String name) {
        String v = System.getenv(name);
        if (v == null) {
            throw new IllegalStateException("environment variable " + name + " is not set");
        }
        return v;
    }

    // -----------------------------------------------------------------------
    // results as comparable text
    // -----------------------------------------------------------------------

    /** Everything ResultSetMetaData and the values say, as lines of text. */
    record Result(List<String> meta, List<List<String>> rows) {}

    static Result read(ResultSet rs) throws SQLException {
        ResultSetMetaData md = rs.getMetaData();
        int n = md.getColumnCount();
        List<String> meta = new ArrayList<>();
        meta.add("column count " + n);
        for (int i = 1; i <= n; i++) {
            meta.add(i + ": name=" + md.getColumnName(i) + " label=" + md.getColumnLabel(i)
                + " type=" + md.getColumnType(i) + " typeName=" + md.getColumnTypeName(i)
                + " precision=" + md.getPrecision(i) + " scale=" + md.getScale(i)
                + " displaySize=" + md.getColumnDisplaySize(i) + " class=" + md.getColumnClassName(i));
        }
        List<List<String>> rows = new ArrayList<>();
        while (rs.next()) {
            List<String> row = new ArrayList<>();
            for (int i = 1; i <= n; i++) {
                Object o = rs.getObject(i);
                String s = rs.getString(i);
                if (s != null && s.startsWith("[B@")) {
                    // pgjdbc's getString of a bytea read in binary is byte[].toString(): an
                    // identity hash, different on every read (getObject above has the bytes).
                    s = "[B@<identity hash>";
                }
                row.add(md.getColumnLabel(i) + " getObject=" + describe(o) + " getString=" + s
                    + " wasNull=" + rs.wasNull());
            }
            rows.add(row);
        }
        rs.close();
        return new Result(meta, rows);
    }

    static String describe(Object o) throws SQLException {
        if (o == null) {
            return "null";
        }
        if (o instanceof byte[] b) {
            StringBuilder sb = new StringBuilder("byte[]:");
            for (byte x : b) {
                sb.append(String.format("%02x", x));
            }
            return sb.toString();
        }
        if (o instanceof Array a) {
            return "Array<" + a.getBaseTypeName() + ">:" + Arrays.deepToString((Object[]) a.getArray());
        }
        return o.getClass().getName() + ":" + o;
    }

    static void same(String label, Result direct, Result fetched) {
        if (direct.equals(fetched)) {
            log("ok: " + label + ": same metadata and values as the direct run ("
                + fetched.rows().size() + " rows)");
            return;
        }
        StringBuilder sb = new StringBuilder(label + ": FETCH LATER differs from the direct run\n");
        diff(sb, "metadata", direct.meta(), fetched.meta());
        int rows = Math.max(direct.rows().size(), fetched.rows().size());
        if (direct.rows().size() != fetched.rows().size()) {
            sb.append("  row count: direct ").append(direct.rows().size())
                .append(", fetched ").append(fetched.rows().size()).append('\n');
        }
        for (int r = 0, shown = 0; r < rows && shown < 5; r++) {
            List<String> a = r < direct.rows().size() ? direct.rows().get(r) : List.of();
            List<String> b = r < fetched.rows().size() ? fetched.rows().get(r) : List.of();
            if (!a.equals(b)) {
                diff(sb, "row " + (r + 1), a, b);
                shown++;
            }
        }
        throw new Mismatch(sb.toString());
    }

    static void diff(StringBuilder sb, String what, List<String> a, List<String> b) {
        for (int i = 0; i < Math.max(a.size(), b.size()); i++) {
            String x = i < a.size() ? a.get(i) : "<missing>";
            String y = i < b.size() ? b.get(i) : "<missing>";
            if (!x.equals(y)) {
                sb.append("  ").append(what).append(" [").append(i).append("]\n    direct:  ").append(x)
                    .append("\n    fetched: ").append(y).append('\n');
            }
        }
    }

    /** The job id of a LATER's result set: one row, one column job_id of type int8. */
    static long jobId(ResultSet rs, String label) throws SQLException {
        ResultSetMetaData md = rs.getMetaData();
        check(md.getColumnCount() == 1, label + ": LATER returned " + md.getColumnCount() + " columns");
        check(md.getColumnName(1).equals("job_id"), label + ": column is " + md.getColumnName(1));
        check(md.getColumnType(1) == Types.BIGINT,
            label + ": job_id getColumnType " + md.getColumnType(1) + ", not BIGINT (" + Types.BIGINT + ")");
        check(md.getColumnTypeName(1).equals("int8"), label + ": job_id type name " + md.getColumnTypeName(1));
        check(rs.next(), label + ": LATER returned no row");
        long id = rs.getLong(1);
        Object o = rs.getObject(1);
        check(o instanceof Long, label + ": job_id getObject is " + describe(o) + ", not a Long");
        check(id > 0, label + ": job_id " + id + " is not positive");
        check(!rs.next(), label + ": LATER returned more than one row");
        rs.close();
        return id;
    }

    static void expectState(String label, String state, SqlRunnable r) throws SQLException {
        try {
            r.run();
        } catch (SQLException e) {
            check(state.equals(e.getSQLState()),
                label + ": expected SQLSTATE " + state + ", got " + e.getSQLState() + ": " + e.getMessage());
            log("ok: " + label + ": SQLSTATE " + state + " (" + e.getMessage().lines().findFirst().orElse("") + ")");
            return;
        }
        throw new Mismatch(label + ": expected SQLSTATE " + state + ", but it succeeded");
    }

    interface SqlRunnable {
        void run() throws SQLException;
    }

    static void freshTable(Connection c, String name) throws SQLException {
        try (Statement st = c.createStatement()) {
            st.execute("DROP TABLE IF EXISTS " + name);
            st.execute("CREATE TABLE " + name + " (id int PRIMARY KEY, name text)");
        }
        if (!c.getAutoCommit()) {
            c.commit();
        }
    }

    static List<String> tableRows(Connection c, String name) throws SQLException {
        List<String> out = new ArrayList<>();
        try (Statement st = c.createStatement();
             ResultSet rs = st.executeQuery("SELECT id, name FROM " + name + " ORDER BY id")) {
            while (rs.next()) {
                out.add(rs.getInt(1) + "=" + rs.getString(2));
            }
        }
        if (!c.getAutoCommit()) {
            c.commit();
        }
        return out;
    }

    /** Poll the table until it holds `want` (the jobs have run), at most JOB_DEADLINE_MS. */
    static void awaitRows(Connection c, String table, List<String> want, String label)
            throws SQLException, InterruptedException {
        long deadline = System.currentTimeMillis() + JOB_DEADLINE_MS;
        List<String> got = tableRows(c, table);
        while (!got.equals(want) && System.currentTimeMillis() < deadline) {
            Thread.sleep(100);
            got = tableRows(c, table);
        }
        check(got.equals(want), label + ": table " + table + " holds " + got + ", expected " + want);
        log("ok: " + label + ": the jobs inserted all " + want.size() + " rows");
    }

    static String name(int i) {
        return switch (i % 4) {
            case 0 -> "it's \"quoted\" " + i;
            case 1 -> null;
            case 2 -> "ünïcödé ☃ " + i;
            default -> "";
        };
    }

    static List<String> expectedRows(int from, int to) {
        List<String> out = new ArrayList<>();
        for (int i = from; i <= to; i++) {
            out.add(i + "=" + name(i));
        }
        return out;
    }

    static void bindRich(PreparedStatement ps) throws SQLException {
        ps.setInt(1, 7);
        ps.setString(2, "it's \"bound\" ☃");
        ps.setBigDecimal(3, new BigDecimal("12.340"));
        ps.setDate(4, java.sql.Date.valueOf("2023-12-31"));
    }

    static void bindRow(PreparedStatement ps, int i) throws SQLException {
        ps.setInt(1, i);
        String n = name(i);
        if (n == null) {
            ps.setNull(2, Types.VARCHAR);
        } else {
            ps.setString(2, n);
        }
    }

    /** 55000 for an unfinished job without WAIT, 42704 for an unknown id; session usable. */
    static void commonErrors(Connection c) throws SQLException {
        long slow;
        try (Statement st = c.createStatement()) {
            slow = jobId(st.executeQuery("LATER SELECT pg_sleep(3) AS slept"), "LATER pg_sleep(3)");
            expectState("unfinished job, literal id", "55000", () -> st.executeQuery("FETCH LATER " + slow));
            expectState("unknown job, literal id", "42704", () -> st.executeQuery("FETCH LATER 42 WAIT"));
        }
        try (PreparedStatement ps = c.prepareStatement("FETCH LATER ?")) {
            ps.setLong(1, slow);
            expectState("unfinished job, ? parameter", "55000", ps::executeQuery);
            ps.setLong(1, 42);
            expectState("unknown job, ? parameter", "42704", ps::executeQuery);
        }
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT 'usable' AS s")) {
            check(rs.next() && rs.getString(1).equals("usable"), "session unusable after the errors");
        }
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("FETCH LATER " + slow + " WAIT")) {
            check(rs.next() && "".equals(rs.getString("slept")), "WAIT did not return the slow job's row");
        }
        log("ok: the session is usable after the errors, and WAIT returns the slow job's row");
    }

    // -----------------------------------------------------------------------
    // cases
    // -----------------------------------------------------------------------

    static void caseStatement(Connection c) throws Exception {
        freshTable(c, "t_stmt");
        try (Statement st = c.createStatement()) {
            Result direct = read(st.executeQuery(RICH_SQL));
            log("direct run: " + (direct.meta().size() - 1) + " columns, " + direct.rows().size() + " rows");

            long id = jobId(st.executeQuery("LATER " + RICH_SQL), "LATER rich select");
            same("executeQuery(FETCH LATER <id> WAIT)", direct, read(st.executeQuery("FETCH LATER " + id + " WAIT")));
            check(st.execute("FETCH LATER " + id), "execute(FETCH LATER <id>) says no result set");
            same("execute(FETCH LATER <id>), finished job", direct, read(st.getResultSet()));

            check(st.execute("LATER " + RICH_SQL), "execute(LATER ...) says no result set");
            long id2 = jobId(st.getResultSet(), "execute(LATER ...)");
            check(id2 != id, "two LATERs gave the same job id " + id);

            List<Long> ids = new ArrayList<>();
            for (int i = 1; i <= 5; i++) {
                String n = name(i);
                String lit = n == null ? "NULL" : "'" + n.replace("'", "''") + "'";
                ids.add(jobId(st.executeQuery("LATER INSERT INTO t_stmt VALUES (" + i + ", " + lit + ")"),
                    "LATER INSERT " + i));
            }
            for (long j : ids) {
                check(!st.execute("FETCH LATER " + j + " WAIT"), "job " + j + " (an INSERT) returned a result set");
                check(st.getUpdateCount() == 1, "job " + j + ": update count " + st.getUpdateCount());
            }
            check(tableRows(c, "t_stmt").equals(expectedRows(1, 5)),
                "t_stmt holds " + tableRows(c, "t_stmt") + ", expected " + expectedRows(1, 5));
            log("ok: LATER INSERT through Statement: rows inserted, FETCH LATER gives update count 1");
        }
        commonErrors(c);
    }

    static void casePrepared(Connection c) throws Exception {
        freshTable(c, "t_prep");
        List<Result> direct = new ArrayList<>();
        try (PreparedStatement ps = c.prepareStatement(RICH_PARAM_SQL)) {
            for (int k = 0; k < RUNS; k++) {
                bindRich(ps);
                direct.add(read(ps.executeQuery()));
            }
        }
        log("direct runs: " + RUNS + " of a PreparedStatement, " + direct.get(0).rows().size() + " rows each");
        for (int k = 1; k < RUNS; k++) {
            // Text (runs 1-4) and binary (later runs) transfer must read the same here, or the
            // comparisons below, run k against run k, would not mean much.
            if (!direct.get(k).equals(direct.get(0))) {
                StringBuilder sb = new StringBuilder();
                diff(sb, "meta", direct.get(0).meta(), direct.get(k).meta());
                diff(sb, "row 1", direct.get(0).rows().get(0), direct.get(k).rows().get(0));
                log("note: direct run " + (k + 1) + " (binary transfer) reads differently from run 1:\n"
                    + sb.toString().replace("direct: ", "run 1:  ").replace("fetched:", "run " + (k + 1) + ":"));
            }
        }

        List<Long> jobs = new ArrayList<>();
        try (PreparedStatement ps = c.prepareStatement("LATER " + RICH_PARAM_SQL)) {
            for (int k = 0; k < RUNS; k++) {
                bindRich(ps);
                jobs.add(jobId(ps.executeQuery(), "prepared LATER run " + (k + 1)));
            }
        }
        check(new HashSet<>(jobs).size() == jobs.size(), "a prepared LATER repeated a job id: " + jobs);

        try (PreparedStatement ps = c.prepareStatement("FETCH LATER ? WAIT")) {
            for (int k = 0; k < RUNS; k++) {
                ps.setLong(1, jobs.get(k));
                same("prepared FETCH LATER ? WAIT run " + (k + 1), direct.get(k), read(ps.executeQuery()));
            }
        }
        try (PreparedStatement ps = c.prepareStatement("FETCH LATER " + jobs.get(0) + " WAIT")) {
            for (int k = 0; k < RUNS; k++) {
                same("prepared FETCH LATER <id> WAIT run " + (k + 1), direct.get(k), read(ps.executeQuery()));
            }
        }
        // setObject with a Long, and setString (the id as text, type varchar): both name the job.
        // pgjdbc reuses its server-prepared statement for the same text, past the threshold:
        // binary transfer, so compared with a direct run past the threshold too.
        try (PreparedStatement ps = c.prepareStatement("FETCH LATER ? WAIT")) {
            ps.setObject(1, jobs.get(1));
            same("FETCH LATER ? WAIT, setObject(Long)", direct.get(RUNS - 1), read(ps.executeQuery()));
        }

        // LATER INSERT past the threshold; pgjdbc caches a server-prepared statement's row
        // description per SQL text, so the INSERT jobs (no rows) are waited on through a
        // statement text of their own.
        List<Long> ids = new ArrayList<>();
        try (PreparedStatement ps = c.prepareStatement("LATER INSERT INTO t_prep VALUES (?, ?)")) {
            for (int i = 1; i <= 2 * RUNS; i++) {
                bindRow(ps, i);
                ids.add(jobId(ps.executeQuery(), "prepared LATER INSERT run " + i));
            }
        }
        try (PreparedStatement ps = c.prepareStatement("FETCH LATER ? WAIT /* an INSERT job */")) {
            for (long j : ids) {
                ps.setLong(1, j);
                check(!ps.execute(), "job " + j + " (an INSERT) returned a result set");
                check(ps.getUpdateCount() == 1, "job " + j + ": update count " + ps.getUpdateCount());
            }
        }
        List<String> want = expectedRows(1, 2 * RUNS);
        check(tableRows(c, "t_prep").equals(want), "t_prep holds " + tableRows(c, "t_prep") + ", expected " + want);
        log("ok: prepared LATER INSERT, " + 2 * RUNS + " runs: every row inserted with its bound values");
        commonErrors(c);
    }

    static void caseFetchSize(Connection c) throws Exception {
        long id;
        try (Statement st = c.createStatement()) {
            id = jobId(st.executeQuery("LATER " + BIG_SQL), "LATER 1000-row select");
        }
        c.setAutoCommit(false);
        Result direct;
        try (Statement st = c.createStatement()) {
            st.setFetchSize(10);
            direct = read(st.executeQuery(BIG_SQL));
        }
        c.commit();
        check(direct.rows().size() == 1000, "direct run returned " + direct.rows().size() + " rows");
        for (int g = 1; g <= 1000; g++) {
            check(direct.rows().get(g - 1).get(0).contains("getString=" + g + " "), "direct row " + g + " out of order");
        }
        List<String> hashes = new ArrayList<>();
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(BIG_SQL)) {
            while (rs.next()) {
                hashes.add(rs.getString("h"));
            }
        }
        c.commit();
        log("direct run with fetch size 10: 1000 rows in order");

        try (PreparedStatement ps = c.prepareStatement("FETCH LATER ? WAIT")) {
            ps.setFetchSize(10);
            for (int k = 0; k < 2; k++) {
                ps.setLong(1, id);
                ResultSet rs = ps.executeQuery();
                check(rs.getFetchSize() == 10, "result set fetch size " + rs.getFetchSize());
                same("FETCH LATER ? WAIT with fetch size 10, in a transaction (run " + (k + 1) + ")", direct, read(rs));
            }
        }
        try (Statement st = c.createStatement()) {
            st.setFetchSize(10);
            // Read half of the rows, run another statement on a second Statement in between, then
            // the rest: the portal stays open across other statements in the transaction.
            ResultSet rs = st.executeQuery("FETCH LATER " + id);
            for (int g = 1; g <= 500; g++) {
                check(rs.next(), "literal FETCH LATER ended at row " + g);
                check(rs.getInt(1) == g, "literal FETCH LATER row " + g + " has g=" + rs.getInt(1));
            }
            try (Statement other = c.createStatement(); ResultSet o = other.executeQuery("SELECT 41 + 1")) {
                check(o.next() && o.getInt(1) == 42, "statement between pages");
            }
            for (int g = 501; g <= 1000; g++) {
                check(rs.next(), "literal FETCH LATER ended at row " + g);
                check(rs.getInt(1) == g && rs.getString(2).equals(hashes.get(g - 1)),
                    "literal FETCH LATER row " + g + " differs");
            }
            check(!rs.next(), "literal FETCH LATER returned more than 1000 rows");
            log("ok: FETCH LATER <id> with fetch size 10: 1000 rows, a statement in between pages");
        }
        c.commit();
        c.setAutoCommit(true);
    }

    static void caseBatch(Connection c) throws Exception {
        freshTable(c, "t_batch");
        freshTable(c, "t_batch_stmt");
        freshTable(c, "t_batch_tx");

        // PreparedStatement batch, autocommit on.
        int n = 20;
        try (PreparedStatement ps = c.prepareStatement("LATER INSERT INTO t_batch VALUES (?, ?)")) {
            for (int i = 1; i <= n; i++) {
                bindRow(ps, i);
                ps.addBatch();
            }
            int[] counts = executeBatch(ps, "PreparedStatement batch of " + n + " LATER INSERT");
            check(counts.length == n, "executeBatch returned " + counts.length + " counts for " + n + " entries");
            log("executeBatch counts: " + Arrays.toString(counts));
        }
        awaitRows(c, "t_batch", expectedRows(1, n), "PreparedStatement batch");

        // A batch of one entry (unnamed statement, no pre-describe).
        try (PreparedStatement ps = c.prepareStatement("LATER INSERT INTO t_batch VALUES (?, ?)")) {
            bindRow(ps, n + 1);
            ps.addBatch();
            executeBatch(ps, "batch of one LATER INSERT");
        }
        awaitRows(c, "t_batch", expectedRows(1, n + 1), "batch of one");

        // Statement batch mixing LATER INSERT and ordinary INSERT.
        try (Statement st = c.createStatement()) {
            st.addBatch("LATER INSERT INTO t_batch_stmt VALUES (1, " + lit(name(1)) + ")");
            st.addBatch("INSERT INTO t_batch_stmt VALUES (2, " + lit(name(2)) + ")");
            st.addBatch("LATER INSERT INTO t_batch_stmt VALUES (3, " + lit(name(3)) + ")");
            st.addBatch("UPDATE t_batch_stmt SET name = name WHERE id = 2");
            int[] counts = executeBatch(st, "Statement batch mixing LATER and ordinary statements");
            check(counts.length == 4, "executeBatch returned " + counts.length + " counts for 4 entries");
            check(counts[1] == 1 && counts[3] == 1,
                "ordinary INSERT/UPDATE in the batch counted " + counts[1] + "/" + counts[3] + ", not 1/1");
            log("executeBatch counts: " + Arrays.toString(counts));
        }
        awaitRows(c, "t_batch_stmt", expectedRows(1, 3), "Statement batch");

        // In a transaction that is rolled back: LATER is queued at once, outside the transaction.
        c.setAutoCommit(false);
        try (PreparedStatement ps = c.prepareStatement("LATER INSERT INTO t_batch_tx VALUES (?, ?)")) {
            for (int i = 1; i <= 7; i++) {
                bindRow(ps, i);
                ps.addBatch();
            }
            executeBatch(ps, "batch of 7 LATER INSERT in a transaction");
        }
        c.rollback();
        c.setAutoCommit(true);
        awaitRows(c, "t_batch_tx", expectedRows(1, 7), "batch in a rolled-back transaction");

        // The prepared LATER INSERT more than prepareThreshold times through batches.
        try (PreparedStatement ps = c.prepareStatement("LATER INSERT INTO t_batch VALUES (?, ?)")) {
            for (int b = 0; b < 3; b++) {
                for (int i = 0; i < 3; i++) {
                    bindRow(ps, 100 + b * 3 + i);
                    ps.addBatch();
                }
                executeBatch(ps, "repeated batch " + (b + 1));
            }
        }
        List<String> want = expectedRows(1, n + 1);
        want.addAll(expectedRows(100, 108));
        awaitRows(c, "t_batch", want, "repeated batches");
    }

    static String lit(String s) {
        return s == null ? "NULL" : "'" + s.replace("'", "''") + "'";
    }

    static int[] executeBatch(Statement st, String label) throws SQLException {
        int[] counts;
        try {
            counts = st.executeBatch();
        } catch (BatchUpdateException e) {
            SQLException next = e.getNextException();
            throw new Mismatch(label + ": executeBatch failed: " + e.getMessage()
                + (next != null ? "\n  next exception: SQLSTATE " + next.getSQLState() + " " + next.getMessage() : ""));
        }
        for (int i = 0; i < counts.length; i++) {
            check(counts[i] != Statement.EXECUTE_FAILED, label + ": entry " + i + " EXECUTE_FAILED");
        }
        log("ok: " + label + ": executeBatch succeeded, " + counts.length + " entries");
        return counts;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: LaterJdbc {statement|prepared|fetchsize|batch}");
            System.exit(2);
        }
        long started = System.nanoTime();
        try (Connection c = connect()) {
            switch (args[0]) {
                case "statement" -> caseStatement(c);
                case "prepared" -> casePrepared(c);
                case "fetchsize" -> caseFetchSize(c);
                case "batch" -> caseBatch(c);
                default -> {
                    System.err.println("unknown case " + args[0]);
                    System.exit(2);
                }
            }
        } catch (Mismatch e) {
            System.err.println("MISMATCH: " + e.getMessage());
            System.exit(1);
        } catch (SQLException e) {
            System.err.println("UNEXPECTED ERROR: SQLSTATE " + e.getSQLState() + ": " + e.getMessage());
            e.printStackTrace();
            System.exit(1);
        }
        log("all checks of " + args[0] + " passed in " + (System.nanoTime() - started) / 1_000_000 + " ms");
    }
}
