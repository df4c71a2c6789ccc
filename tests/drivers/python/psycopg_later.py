"""LATER / FETCH LATER through psycopg 3, run by tests/drivers.rs against a pglater proxy.

Usage: python psycopg_later.py CASE
Connection: the libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE).
Exit status 0 when every check of CASE holds; otherwise 1 with the first mismatch on stderr.
Progress lines go to stdout, so a failure shows how far the case got.

Cases, and what each puts on the wire:
  client_binding  psycopg.ClientCursor: values inlined by the client. psycopg sends a statement
                  without server parameters as a simple Query, so this is the simple protocol
                  as psycopg users meet it (the baseline for the other cases).
  server_binding  the default cursor with parameters: Parse (unnamed, $n) / Bind / Describe
                  portal / Execute / Sync, in a transaction (psycopg's default, autocommit off).
  prepare         prepare=True: Parse of a named statement (_pg3_n) once, then Bind / Describe /
                  Execute of it each time; plus psycopg's own automatic preparation after 5 runs.
  binary          binary=True: parameters and results in binary format.
  pipeline        conn.pipeline(): LATER, FETCH LATER and ordinary statements queued together
                  and synced once; executemany(returning=True) of LATER; an error in a pipeline.
"""

import datetime
import pathlib
import sys
import time

import psycopg
from psycopg.types.numeric import Int8

# One statement, every common type, three rows; no parameters (a literal job script).
RICH_SQL = (pathlib.Path(__file__).resolve().parent.parent / "rich_select.sql").read_text(encoding="utf-8").strip()

# The same with bound parameters ($1 int4, $2 text, $3 numeric, $4 date): values of the job.
RICH_PARAM_SQL = (
    "SELECT %s::int4 AS p_int, %s::text AS p_text, %s::numeric AS p_num, %s::date AS p_date, "
    "s.* FROM (" + RICH_SQL + ") AS s"
)
RICH_PARAMS = (7, "it's \"bound\" ☃", "12.340", datetime.date(2023, 12, 31))

# Rows inserted by parameterised LATER INSERTs, checked in the table afterwards.
INSERT_ROWS = [
    (1, "plain"),
    (2, "it's \"quoted\""),
    (3, None),
    (4, "ünïcödé ☃"),
    (5, ""),
]


def log(msg):
    print(msg, flush=True)


class Mismatch(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Mismatch(msg)


def describe(cur):
    """Every RowDescription field psycopg exposes: name, type OID, size, precision, scale."""
    if cur.description is None:
        return None
    return [
        (c.name, c.type_code, c.internal_size, c.precision, c.scale, c.display_size)
        for c in cur.description
    ]


def typed_rows(rows):
    """Rows as (type name, repr) per value: equal values of different types differ here."""
    return [[(type(v).__name__, repr(v)) for v in row] for row in rows]


def result(cur):
    """(description, typed rows, status) of the statement cur just ran."""
    desc = describe(cur)
    rows = typed_rows(cur.fetchall()) if desc is not None else None
    return desc, rows, cur.statusmessage


def same(label, direct, fetched):
    if direct == fetched:
        log(f"ok: {label}: same description, rows and status as the direct run")
        return
    lines = [f"{label}: FETCH LATER differs from the direct run"]
    names = ["description", "rows", "status"]
    for name, a, b in zip(names, direct, fetched):
        if a == b:
            continue
        lines.append(f"  {name} differs:")
        if isinstance(a, list) and isinstance(b, list):
            for i in range(max(len(a), len(b))):
                x = a[i] if i < len(a) else "<missing>"
                y = b[i] if i < len(b) else "<missing>"
                if x != y:
                    lines.append(f"    [{i}] direct:  {x!r}")
                    lines.append(f"    [{i}] fetched: {y!r}")
        else:
            lines.append(f"    direct:  {a!r}")
            lines.append(f"    fetched: {b!r}")
    raise Mismatch("\n".join(lines))


def job_id_of(cur, label):
    """The job id in the reply of a LATER cur just ran: one row, one int8 column job_id."""
    desc = describe(cur)
    check(desc is not None, f"{label}: LATER returned no rows (status {cur.statusmessage!r})")
    check(len(desc) == 1, f"{label}: LATER returned {len(desc)} columns: {desc!r}")
    check(desc[0][0] == "job_id", f"{label}: LATER column is {desc[0][0]!r}, not job_id")
    check(desc[0][1] == 20, f"{label}: job_id has type OID {desc[0][1]}, not 20 (int8)")
    rows = cur.fetchall()
    check(len(rows) == 1, f"{label}: LATER returned {len(rows)} rows: {rows!r}")
    jid = rows[0][0]
    check(type(jid) is int and jid > 0, f"{label}: job_id {jid!r} is not a positive int")
    check(cur.statusmessage == "SELECT 1", f"{label}: LATER status {cur.statusmessage!r}")
    return jid


def expect_error(conn, cur, sql, params, sqlstate, label):
    try:
        cur.execute(sql, params)
    except psycopg.Error as e:
        if not conn.autocommit:
            conn.rollback()
        check(
            e.sqlstate == sqlstate,
            f"{label}: expected SQLSTATE {sqlstate}, got {e.sqlstate}: {e}",
        )
        log(f"ok: {label}: SQLSTATE {sqlstate} ({str(e).splitlines()[0]})")
        return e
    raise Mismatch(f"{label}: expected SQLSTATE {sqlstate}, but it succeeded")


def connect(autocommit):
    conn = psycopg.connect("", autocommit=autocommit, connect_timeout=10)
    log(f"connected: server {conn.info.server_version}, autocommit={autocommit}")
    return conn


def fresh_table(conn, name):
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
        cur.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, name text)")
    if not conn.autocommit:
        conn.commit()


def table_rows(conn, name):
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, name FROM {name} ORDER BY id")
        rows = cur.fetchall()
    if not conn.autocommit:
        conn.commit()
    return rows


def check_inserted(conn, table, label, expected=INSERT_ROWS):
    got = table_rows(conn, table)
    check(got == expected, f"{label}: table {table} holds {got!r}, expected {expected!r}")
    log(f"ok: {label}: the jobs inserted {len(expected)} rows with the bound values")


def wait_all(cur, ids, label, fetch_sql="FETCH LATER %s WAIT"):
    """FETCH LATER <id> WAIT for every id: each must report INSERT 0 1 with no rows."""
    for jid in ids:
        cur.execute(fetch_sql, (Int8(jid),))
        check(cur.description is None, f"{label}: job {jid} returned rows: {describe(cur)!r}")
        check(
            cur.statusmessage == "INSERT 0 1",
            f"{label}: job {jid} status {cur.statusmessage!r}, expected 'INSERT 0 1'",
        )
        check(cur.rowcount == 1, f"{label}: job {jid} rowcount {cur.rowcount}")


# ---------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------


def case_client_binding():
    with connect(autocommit=True) as conn:
        fresh_table(conn, "t_client")
        cur = psycopg.ClientCursor(conn)
        cur.execute(RICH_SQL)
        direct = result(cur)
        log(f"direct run: {len(direct[0])} columns, {len(direct[1])} rows")

        cur.execute("LATER " + RICH_SQL)
        jid = job_id_of(cur, "LATER rich select")
        cur.execute("FETCH LATER %s WAIT", (jid,))
        same("FETCH LATER <id> WAIT", direct, result(cur))
        cur.execute("FETCH LATER %s", (jid,))
        same("FETCH LATER <id> (finished job, again)", direct, result(cur))

        cur.execute(RICH_PARAM_SQL, RICH_PARAMS)
        direct_p = result(cur)
        cur.execute("LATER " + RICH_PARAM_SQL, RICH_PARAMS)
        jid_p = job_id_of(cur, "LATER rich select with client-bound values")
        cur.execute("FETCH LATER %s WAIT", (jid_p,))
        same("FETCH LATER of the select with client-bound values", direct_p, result(cur))

        ids = []
        for row in INSERT_ROWS:
            cur.execute("LATER INSERT INTO t_client VALUES (%s, %s)", row)
            ids.append(job_id_of(cur, f"LATER INSERT {row!r}"))
        check(len(set(ids)) == len(ids), f"job ids repeat: {ids!r}")
        wait_all(cur, ids, "LATER INSERT (client-bound)")
        check_inserted(conn, "t_client", "LATER INSERT (client-bound)")

        common_errors(conn, cur)


def common_errors(conn, cur):
    """55000 for an unfinished job without WAIT, 42704 for an unknown one; session usable."""
    cur.execute("LATER SELECT pg_sleep(3) AS slept")
    slow = job_id_of(cur, "LATER pg_sleep(3)")
    e = expect_error(conn, cur, "FETCH LATER %s", (Int8(slow),), "55000", "unfinished job")
    hint = e.diag.message_hint or ""
    check("WAIT" in hint, f"unfinished job: HINT {hint!r} does not mention WAIT")
    expect_error(conn, cur, "FETCH LATER %s WAIT", (Int8(42),), "42704", "unknown job id 42")
    cur.execute("SELECT 'still usable' AS s")
    check(cur.fetchall() == [("still usable",)], "session not usable after the errors")
    cur.execute("FETCH LATER %s WAIT", (Int8(slow),))
    check(
        [c.name for c in cur.description] == ["slept"] and cur.fetchall() == [("",)],
        "FETCH LATER WAIT of the pg_sleep job did not return its row",
    )
    if not conn.autocommit:
        conn.commit()
    log("ok: the session is usable after the errors, and WAIT returns the slow job's row")


def case_server_binding():
    # psycopg's default: not autocommit, so every statement runs inside BEGIN ... COMMIT.
    with connect(autocommit=False) as conn:
        fresh_table(conn, "t_server")
        cur = conn.cursor()

        # Parameters make psycopg use the extended protocol (a parameterless execute() is a
        # simple Query).
        cur.execute(RICH_PARAM_SQL, RICH_PARAMS)
        direct_p = result(cur)
        log(f"direct run (extended): {len(direct_p[0])} columns, {len(direct_p[1])} rows")
        conn.commit()

        cur.execute("LATER " + RICH_PARAM_SQL, RICH_PARAMS)
        jid = job_id_of(cur, "LATER rich select with bound parameters")
        conn.commit()
        cur.execute("FETCH LATER %s WAIT", (Int8(jid),))
        same("FETCH LATER $1 WAIT (int8 parameter)", direct_p, result(cur))
        cur.execute("FETCH LATER %s", (Int8(jid),))
        same("FETCH LATER $1 (finished job, again)", direct_p, result(cur))
        conn.commit()

        # A plain Python int is sent with the smallest type that holds it (int8 for job ids).
        cur.execute("FETCH LATER %s WAIT", (jid,))
        same("FETCH LATER $1 WAIT (plain int parameter)", direct_p, result(cur))
        conn.commit()

        # The LATER is queued at once, even in a transaction that is rolled back.
        cur.execute("LATER INSERT INTO t_server VALUES (%s, %s)", INSERT_ROWS[0])
        first = job_id_of(cur, "LATER INSERT in a rolled-back transaction")
        conn.rollback()
        ids = [first]
        for row in INSERT_ROWS[1:]:
            cur.execute("LATER INSERT INTO t_server VALUES (%s, %s)", row)
            ids.append(job_id_of(cur, f"LATER INSERT {row!r}"))
        conn.commit()
        check(len(set(ids)) == len(ids), f"job ids repeat: {ids!r}")
        wait_all(cur, ids, "LATER INSERT ($1, $2)")
        conn.commit()
        check_inserted(conn, "t_server", "LATER INSERT ($1, $2)")

        # The ordinary statement still works after all that, in the same session.
        cur.execute("SELECT %s::int + 1 AS x", (41,))
        check(cur.fetchall() == [(42,)], "ordinary parameterised select broken")
        conn.commit()

        common_errors(conn, cur)


def case_prepare():
    with connect(autocommit=True) as conn:
        fresh_table(conn, "t_prepare")
        cur = conn.cursor()

        cur.execute(RICH_SQL, prepare=True)
        direct = result(cur)
        cur.execute(RICH_PARAM_SQL, RICH_PARAMS, prepare=True)
        direct_p = result(cur)
        log(f"direct runs (prepared): {len(direct[0])} and {len(direct_p[0])} columns")

        # A named LATER statement executed several times: a new job each time.
        jobs = []
        for _ in range(3):
            cur.execute("LATER " + RICH_SQL, prepare=True)
            jobs.append(job_id_of(cur, "prepared LATER rich select"))
            cur.execute("LATER " + RICH_PARAM_SQL, RICH_PARAMS, prepare=True)
            jobs.append(job_id_of(cur, "prepared LATER rich select with parameters"))
        check(len(set(jobs)) == len(jobs), f"a prepared LATER repeated a job id: {jobs!r}")

        for k, jid in enumerate(jobs):
            want = direct if k % 2 == 0 else direct_p
            # Literal id, prepared: Parse of "FETCH LATER <id> WAIT" as a named statement.
            cur.execute(f"FETCH LATER {jid} WAIT", prepare=True)
            same(f"prepared FETCH LATER {jid} WAIT (literal)", want, result(cur))
            # One named statement, a different job id bound each time.
            cur.execute("FETCH LATER %s WAIT", (Int8(jid),), prepare=True)
            same("prepared FETCH LATER $1 WAIT", want, result(cur))

        # psycopg prepares a statement by itself on its 6th run (prepare_threshold=5).
        ids = []
        for i in range(10, 18):
            cur.execute("LATER INSERT INTO t_prepare VALUES (%s, %s)", (i, f"auto {i}"))
            ids.append(job_id_of(cur, f"LATER INSERT run {i - 9}"))
        for row in INSERT_ROWS:
            cur.execute("LATER INSERT INTO t_prepare VALUES (%s, %s)", row, prepare=True)
            ids.append(job_id_of(cur, f"prepared LATER INSERT {row!r}"))
        check(len(set(ids)) == len(ids), f"job ids repeat: {ids!r}")
        wait_all(cur, ids, "prepared LATER INSERT")
        expected = sorted(INSERT_ROWS + [(i, f"auto {i}") for i in range(10, 18)])
        check_inserted(conn, "t_prepare", "prepared and auto-prepared LATER INSERT", expected)

        common_errors(conn, cur)


def case_binary():
    with connect(autocommit=True) as conn:
        fresh_table(conn, "t_binary")
        cur = conn.cursor(binary=True)
        cur.execute(RICH_SQL)
        direct = result(cur)
        cur.execute(RICH_PARAM_SQL, RICH_PARAMS)
        direct_p = result(cur)
        log(f"direct runs (binary): {len(direct[0])} and {len(direct_p[0])} columns")

        cur.execute("LATER " + RICH_SQL)
        jid = job_id_of(cur, "LATER rich select (binary results)")
        cur.execute("LATER " + RICH_PARAM_SQL, RICH_PARAMS)
        jid_p = job_id_of(cur, "LATER rich select (binary parameters)")
        cur.execute("FETCH LATER %s WAIT", (Int8(jid),))
        same("FETCH LATER $1 WAIT, binary results", direct, result(cur))
        cur.execute(f"FETCH LATER {jid_p} WAIT")
        same("FETCH LATER <id> WAIT, binary parameters and results", direct_p, result(cur))

        ids = []
        for row in INSERT_ROWS:
            cur.execute("LATER INSERT INTO t_binary VALUES (%s, %s)", row)
            ids.append(job_id_of(cur, f"LATER INSERT {row!r} (binary parameters)"))
        wait_all(cur, ids, "LATER INSERT (binary parameters)")
        check_inserted(conn, "t_binary", "LATER INSERT (binary parameters)")

        # The same job read in text by a text cursor: the text direct run.
        text = conn.cursor()
        text.execute(RICH_SQL, prepare=True)
        direct_text = result(text)
        text.execute(f"FETCH LATER {jid}", prepare=True)
        same("the same job fetched again in text format", direct_text, result(text))


def case_pipeline():
    with connect(autocommit=True) as conn:
        fresh_table(conn, "t_pipe")
        fresh_table(conn, "t_pipe_direct")
        cur = conn.cursor()
        cur.execute(RICH_PARAM_SQL, RICH_PARAMS)
        direct_p = result(cur)
        cur.execute(RICH_SQL, prepare=True)
        direct = result(cur)

        # One job queued (and finished) before the pipelines, to fetch inside them.
        cur.execute("LATER " + RICH_SQL, prepare=True)
        ready = job_id_of(cur, "LATER rich select before the pipeline")
        cur.execute(f"FETCH LATER {ready} WAIT", prepare=True)
        same("FETCH LATER <id> WAIT before the pipeline", direct, result(cur))

        with conn.pipeline() as p:
            c = [conn.cursor() for _ in range(9)]
            c[0].execute("SELECT %s::int AS one", (1,))
            c[1].execute("LATER INSERT INTO t_pipe VALUES (%s, %s)", INSERT_ROWS[0])
            c[2].execute("INSERT INTO t_pipe_direct VALUES (%s, %s)", (100, "direct"))
            c[3].execute(f"FETCH LATER {ready} WAIT")
            c[4].execute("FETCH LATER %s WAIT", (Int8(ready),))
            c[5].execute("LATER " + RICH_PARAM_SQL, RICH_PARAMS)
            c[6].execute("SELECT %s::text AS two", ("two",))
            c[7].execute("LATER INSERT INTO t_pipe VALUES (%s, %s)", INSERT_ROWS[1])
            c[8].execute("SELECT count(*) FROM t_pipe_direct")
            p.sync()
            check(c[0].fetchall() == [(1,)], "pipeline: first ordinary select")
            ins1 = job_id_of(c[1], "pipeline: LATER INSERT #1")
            check(c[2].statusmessage == "INSERT 0 1", "pipeline: ordinary INSERT")
            same("pipeline: FETCH LATER <id> WAIT", direct, result(c[3]))
            same("pipeline: FETCH LATER $1 WAIT", direct, result(c[4]))
            rich = job_id_of(c[5], "pipeline: LATER rich select with parameters")
            check(c[6].fetchall() == [("two",)], "pipeline: second ordinary select")
            ins2 = job_id_of(c[7], "pipeline: LATER INSERT #2")
            check(c[8].fetchall() == [(1,)], "pipeline: count after the ordinary INSERT")
        log("ok: pipeline of LATER, FETCH LATER and ordinary statements, one Sync")

        # The jobs queued in the pipeline, waited on in another pipeline.
        with conn.pipeline():
            w = [conn.cursor() for _ in range(3)]
            w[0].execute("FETCH LATER %s WAIT", (Int8(ins1),))
            w[1].execute("FETCH LATER %s WAIT", (Int8(rich),))
            w[2].execute("FETCH LATER %s WAIT", (Int8(ins2),))
        check(w[0].statusmessage == "INSERT 0 1", f"pipeline: job {ins1}: {w[0].statusmessage}")
        same("pipeline: FETCH LATER of a job queued in a pipeline", direct_p, result(w[1]))
        check(w[2].statusmessage == "INSERT 0 1", f"pipeline: job {ins2}: {w[2].statusmessage}")

        # executemany runs in a pipeline; returning=True keeps every job_id.
        rows = INSERT_ROWS[2:]
        cur.executemany("LATER INSERT INTO t_pipe VALUES (%s, %s)", rows, returning=True)
        ids = []
        while True:
            ids.append(job_id_of(cur, "executemany LATER INSERT"))
            if not cur.nextset():
                break
        check(len(ids) == len(rows), f"executemany: {len(ids)} job ids for {len(rows)} rows")
        wait_all(cur, ids, "executemany LATER INSERT")
        check_inserted(conn, "t_pipe", "pipelined LATER INSERTs")

        # An error in a pipeline aborts the rest up to the Sync, as PostgreSQL's own does.
        for bad, state in [
            ("SELECT * FROM no_such_table WHERE %s::int > 0", "42P01"),
            ("FETCH LATER %s WAIT", "42704"),
        ]:
            after = conn.cursor()
            try:
                with conn.pipeline():
                    conn.cursor().execute("SELECT %s::int", (1,))
                    conn.cursor().execute(bad, (Int8(42),))
                    after.execute("SELECT %s::int", (2,))
                raise Mismatch(f"pipeline with {bad!r}: no error raised")
            except psycopg.Error as e:
                check(e.sqlstate == state, f"pipeline with {bad!r}: SQLSTATE {e.sqlstate}: {e}")
            try:
                after.fetchall()
                raise Mismatch(f"pipeline with {bad!r}: the statement after the error ran")
            except psycopg.Error:
                pass
            cur.execute("SELECT %s::text AS after", ("usable",))
            check(cur.fetchall() == [("usable",)], f"session unusable after {bad!r}")
            log(f"ok: pipeline error {state} aborts to the Sync; the session goes on")

        # Literal unfinished job without WAIT, inside a pipeline.
        cur.execute("LATER SELECT pg_sleep(3)", prepare=True)
        slow = job_id_of(cur, "LATER pg_sleep(3)")
        try:
            with conn.pipeline():
                conn.cursor().execute(f"FETCH LATER {slow}")
            raise Mismatch("pipeline: FETCH LATER of an unfinished job did not fail")
        except psycopg.Error as e:
            check(e.sqlstate == "55000", f"pipeline: unfinished job gave {e.sqlstate}: {e}")
        log("ok: pipeline: FETCH LATER of an unfinished job gives 55000")


def case_listen():
    """LISTEN later through psycopg's notifies(): the session is told '<id> <state>' on
    channel later when its jobs end (psycopg sends LISTEN through the extended protocol);
    after UNLISTEN later, nothing more."""
    conn = connect(autocommit=True)
    cur = conn.cursor()
    cur.execute("LISTEN later")
    # The jobs sleep a little, so that they end while notifies() is waiting.
    for script, state in [
        ("SELECT pg_sleep(0.5), 'ok'", "succeeded"),
        ("SELECT pg_sleep(0.5), 1/0", "failed"),
    ]:
        cur.execute("LATER " + script)
        jid = job_id_of(cur, f"listen: {state}")
        got = [(n.channel, n.payload, n.pid) for n in conn.notifies(timeout=20, stop_after=1)]
        check(len(got) == 1, f"listen: {state}: got {got!r}")
        channel, payload, pid = got[0]
        check(channel == "later", f"listen: channel {channel!r}")
        check(payload == f"{jid} {state}", f"listen: payload {payload!r}, not '{jid} {state}'")
        check(pid > 0, f"listen: pid {pid!r}")
        log(f"ok: listen: {payload!r} from pid {pid}")
    cur.execute("UNLISTEN later")
    cur.execute("LATER SELECT pg_sleep(0.5)")
    jid = job_id_of(cur, "listen: after UNLISTEN")
    extra = [n.payload for n in conn.notifies(timeout=2)]
    check(extra == [], f"listen: after UNLISTEN later, got {extra!r}")
    log("ok: listen: nothing after UNLISTEN later")


CASES = {
    "client_binding": case_client_binding,
    "server_binding": case_server_binding,
    "prepare": case_prepare,
    "binary": case_binary,
    "pipeline": case_pipeline,
    "listen": case_listen,
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print(f"usage: {sys.argv[0]} {{{'|'.join(CASES)}}}", file=sys.stderr)
        return 2
    log(f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), libpq {psycopg.pq.version()}")
    started = time.monotonic()
    try:
        CASES[sys.argv[1]]()
    except Mismatch as e:
        print(f"MISMATCH: {e}", file=sys.stderr)
        return 1
    except psycopg.Error as e:
        diag = e.diag
        print(
            f"UNEXPECTED ERROR {type(e).__name__} SQLSTATE {e.sqlstate}: {e}\n"
            f"  detail: {diag.message_detail}\n  hint: {diag.message_hint}",
            file=sys.stderr,
        )
        raise
    log(f"all checks of {sys.argv[1]} passed in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
