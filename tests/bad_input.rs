//! Malformed and hostile input on raw sockets. Each case sends the same bytes
//! to PostgreSQL directly and through pglater and compares what comes back
//! (messages without file/line/routine, and whether the connection closes).
//! After every case the proxy must still serve a fresh client, and no
//! upstream backend may be left behind.

mod common;

use common::*;
use std::net::Shutdown;
use std::time::{Duration, Instant};

/// Generous bound for "the peer closes the connection".
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

fn login_params(app: &str) -> Vec<(&str, &str)> {
    vec![
        ("user", "postgres"),
        ("database", "postgres"),
        ("application_name", app),
    ]
}

/// Send `bytes` on a fresh connection (logged in first when `login`), then
/// optionally half-close, and read until the peer closes.
fn send_case(port: u16, login: bool, app: &str, bytes: &[u8], half_close: bool) -> ReadEnd {
    let mut c = if login {
        RawConn::login(port, &login_params(app)).0
    } else {
        RawConn::connect(port)
    };
    // The peer may close while we are still writing; that is a valid reaction.
    let _ = c.send(bytes);
    if half_close {
        let _ = c.stream.shutdown(Shutdown::Write);
    }
    c.read_to_close(CLOSE_LIMIT)
}

/// A fresh client through the proxy gets an answer.
fn assert_still_served(proxy: &mut Proxy) {
    assert!(proxy.is_running(), "proxy died:\n{}", proxy.stderr());
    let (mut c, _) = RawConn::login(proxy.port, &login_params("pglater-still-served"));
    let msgs = c.simple_query("SELECT 40 + 2");
    assert_eq!(first_value(&msgs).as_deref(), Some("42"), "{msgs:?}");
}

/// No backend with this application_name remains (waits up to 10 s).
fn assert_no_backend_left(app: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = pg().admin_sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'"
        ));
        if n.trim() == "0" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "upstream backend(s) for {app} still alive: {n}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Run one case against PG and the proxy and compare the reactions.
fn compare_case(name: &str, login: bool, bytes: &[u8], half_close: bool) {
    let pg = pg();
    let mut proxy = Proxy::trust(pg);
    let direct = send_case(pg.port, login, &format!("{name}-direct"), bytes, half_close);
    let app = format!("{name}-proxied");
    let via = send_case(proxy.port, login, &app, bytes, half_close);

    assert!(
        direct.closed,
        "{name}: PostgreSQL itself kept the connection open"
    );
    assert!(
        via.closed,
        "{name}: proxy did not close the connection within {CLOSE_LIMIT:?}; got {:?}",
        String::from_utf8_lossy(&via.bytes)
    );
    assert_eq!(
        via.errors(),
        direct.errors(),
        "{name}: errors differ (proxy vs PostgreSQL); proxy bytes {:?}",
        String::from_utf8_lossy(&via.bytes)
    );
    let kinds = |r: &ReadEnd| r.messages().iter().map(|m| m.0 as char).collect::<String>();
    assert_eq!(kinds(&via), kinds(&direct), "{name}: message types differ");
    if login {
        assert_no_backend_left(&app);
    }
    assert_still_served(&mut proxy);
}

#[test]
fn garbage_instead_of_startup_packet() {
    // PostgreSQL reads this as a startup length of ~1.2e9 and closes silently.
    compare_case(
        "garbage",
        false,
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        false,
    );
}

#[test]
fn startup_length_near_2_pow_31() {
    compare_case(
        "startup-2g",
        false,
        &[0x7f, 0xff, 0xff, 0xf0, 0, 3, 0, 0],
        false,
    );
}

#[test]
fn startup_length_too_small() {
    compare_case("startup-tiny", false, &[0, 0, 0, 4], false);
}

#[test]
fn startup_packet_without_terminator_is_08p01() {
    let mut p = startup_packet(&[("user", "postgres"), ("database", "postgres")]);
    p.pop(); // drop the final terminator and fix the length word
    let len = (p.len() as u32).to_be_bytes();
    p[..4].copy_from_slice(&len);
    compare_case("noterm", false, &p, false);

    // And the reply is FATAL 08P01 (what PG itself says).
    let proxy = Proxy::trust(pg());
    let r = send_case(proxy.port, false, "", &p, false);
    let errs = r.errors();
    assert_eq!(errs.len(), 1, "{r:?}");
    assert_eq!(errs[0].get(&'C').map(String::as_str), Some("08P01"));
    assert_eq!(errs[0].get(&'S').map(String::as_str), Some("FATAL"));
}

#[test]
fn protocol_2_is_refused_like_postgres() {
    // PostgreSQL 15 answers a 2.0 startup packet in the old (v2) error format:
    // 'E', then "FATAL:  unsupported frontend protocol 2.0: ...\n\0", then
    // closes (SQLSTATE 0A000 in its log). A v2 client can only parse that
    // shape, so the proxy must send exactly those bytes.
    let pkt = startup_packet_version(2, 0, &[("user", "postgres"), ("database", "postgres")]);
    let pg = pg();
    let mut proxy = Proxy::trust(pg);
    let direct = send_case(pg.port, false, "", &pkt, false);
    let via = send_case(proxy.port, false, "", &pkt, false);
    assert!(direct.closed && via.closed, "direct {direct:?} via {via:?}");
    assert!(
        String::from_utf8_lossy(&direct.bytes).contains("unsupported frontend protocol 2.0"),
        "{direct:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&via.bytes),
        String::from_utf8_lossy(&direct.bytes),
        "protocol 2.0 reply differs from PostgreSQL's"
    );
    assert_still_served(&mut proxy);
}

#[test]
fn newer_minor_protocol_is_negotiated_like_postgres() {
    // 3.1 with an unknown _pq_ option: PG answers NegotiateProtocolVersion
    // (3.0, listing the option) and carries on with the login.
    let params = [
        ("user", "postgres"),
        ("database", "postgres"),
        ("_pq_.pglater_test", "1"),
    ];
    let pkt = startup_packet_version(3, 1, &params);
    let pg = pg();
    let proxy = Proxy::trust(pg);
    let run = |port| {
        let mut c = RawConn::connect(port);
        c.send(&pkt).unwrap();
        let msgs = c.read_until_ready();
        let v = msgs.iter().find(|m| m.0 == b'v').cloned();
        let q = c.simple_query("SELECT 7");
        (v, first_value(&q))
    };
    let (direct_v, direct_q) = run(pg.port);
    let (via_v, via_q) = run(proxy.port);
    assert!(direct_v.is_some(), "PG sent no NegotiateProtocolVersion");
    assert_eq!(via_v, direct_v, "NegotiateProtocolVersion differs");
    assert_eq!(direct_q.as_deref(), Some("7"));
    assert_eq!(via_q.as_deref(), Some("7"));
}

#[test]
fn gssenc_and_ssl_requests_answered_n_without_tls() {
    // The proxy offers neither GSS encryption nor (unconfigured) TLS: it
    // answers 'N' to both and the client goes on in plaintext, as libpq
    // does. (PostgreSQL built with GSSAPI would answer 'G' to GSSENCRequest,
    // so only SSLRequest is compared with it.)
    let gss = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
    let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let pg = pg();
    let proxy = Proxy::trust(pg);
    for (port, requests) in [(pg.port, vec![ssl]), (proxy.port, vec![gss, ssl])] {
        let mut c = RawConn::connect(port);
        for req in requests {
            c.send(&req).unwrap();
            let mut b = [0u8; 1];
            std::io::Read::read_exact(&mut c.stream, &mut b).unwrap();
            assert_eq!(b[0], b'N', "port {port}: request {req:?}");
        }
        c.send(&startup_packet(&login_params("pglater-gss-ssl")))
            .unwrap();
        c.read_until_ready();
        let q = c.simple_query("SELECT 1");
        assert_eq!(first_value(&q).as_deref(), Some("1"), "port {port}");
    }
}

#[test]
fn message_length_near_2_pow_31_after_login() {
    compare_case(
        "msg-2g",
        true,
        &[b'Q', 0x7f, 0xff, 0xff, 0xf0, b'S', b'E', b'L'],
        false,
    );
}

#[test]
fn message_length_below_4_after_login() {
    compare_case("msg-len2", true, &[b'Q', 0, 0, 0, 2], false);
}

#[test]
fn truncated_message_then_close() {
    compare_case("truncated", true, &[b'Q', 0, 0, 0, 40, b'S', b'E'], true);
}

#[test]
fn unknown_message_type_is_08p01() {
    compare_case("unknown-type", true, &frame(b'z', b"abc\0"), false);
    let proxy = Proxy::trust(pg());
    let r = send_case(
        proxy.port,
        true,
        "unknown-type-2",
        &frame(b'z', b"abc\0"),
        false,
    );
    let errs = r.errors();
    assert_eq!(errs.len(), 1, "{r:?}");
    assert_eq!(errs[0].get(&'C').map(String::as_str), Some("08P01"));
    assert_eq!(
        errs[0].get(&'M').map(String::as_str),
        Some("invalid frontend message type 122")
    );
}

#[test]
fn cancel_request_with_unknown_key_is_closed_silently() {
    let pg = pg();
    let proxy = Proxy::trust(pg);
    for port in [pg.port, proxy.port] {
        let mut c = RawConn::connect(port);
        c.send(&cancel_packet(12345, 67890)).unwrap();
        let r = c.read_to_close(CLOSE_LIMIT);
        assert!(r.closed && r.bytes.is_empty(), "port {port}: {r:?}");
    }
}

#[test]
fn cancel_needs_the_right_secret() {
    let pg = pg();
    let proxy = Proxy::trust(pg);
    let (mut a, msgs) = RawConn::login(proxy.port, &login_params("pglater-cancel-key"));
    let (pid, secret) = backend_key(&msgs).expect("BackendKeyData");
    let real_pid = first_value(&a.simple_query("SELECT pg_backend_pid()")).unwrap();
    assert_eq!(
        pid.to_string(),
        real_pid,
        "BackendKeyData pid is not the backend's"
    );

    // A wrong secret (right pid) must not cancel anything.
    a.send(&query_msg("SELECT pg_sleep(1.5)")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut bad = RawConn::connect(proxy.port);
    bad.send(&cancel_packet(pid, secret ^ 0x5a5a)).unwrap();
    let r = bad.read_to_close(CLOSE_LIMIT);
    assert!(r.closed && r.bytes.is_empty(), "{r:?}");
    let reply = a.read_until_ready();
    assert!(
        !reply.iter().any(|m| m.0 == b'E'),
        "query was cancelled by a wrong key: {:?}",
        reply
            .iter()
            .filter(|m| m.0 == b'E')
            .map(|m| error_fields(&m.1))
            .collect::<Vec<_>>()
    );

    // The right key cancels.
    a.send(&query_msg("SELECT pg_sleep(60)")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let mut good = RawConn::connect(proxy.port);
    good.send(&cancel_packet(pid, secret)).unwrap();
    let reply = a.read_until_ready();
    let err = reply
        .iter()
        .find(|m| m.0 == b'E')
        .map(|m| error_fields(&m.1))
        .expect("no error after cancel");
    assert_eq!(err.get(&'C').map(String::as_str), Some("57014"), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(
        first_value(&a.simple_query("SELECT 5")).as_deref(),
        Some("5")
    );
}

fn timeout_proxy() -> Proxy {
    Proxy::builder(pg())
        .auth("trust")
        .user("postgres", None)
        .args(&["--startup-timeout", "2"])
        .start()
}

/// The connection is closed by the proxy after about the startup timeout.
fn assert_closed_by_startup_timeout(r: &ReadEnd, what: &str) {
    assert!(r.closed, "{what}: not closed within {CLOSE_LIMIT:?}");
    assert!(
        r.elapsed >= Duration::from_millis(1500),
        "{what}: closed after {:?}, before the 2 s startup timeout",
        r.elapsed
    );
}

#[test]
fn silent_client_is_closed_after_startup_timeout() {
    let mut proxy = timeout_proxy();
    let mut silent = RawConn::connect(proxy.port);
    // Meanwhile, others are served at once.
    assert_still_served(&mut proxy);
    let r = silent.read_to_close(CLOSE_LIMIT);
    assert_closed_by_startup_timeout(&r, "silent client");
    assert_still_served(&mut proxy);
}

#[test]
fn partial_startup_packet_is_closed_after_startup_timeout() {
    let mut proxy = timeout_proxy();
    let mut c = RawConn::connect(proxy.port);
    let pkt = startup_packet(&login_params("pglater-partial"));
    c.send(&pkt[..6]).unwrap();
    let r = c.read_to_close(CLOSE_LIMIT);
    assert_closed_by_startup_timeout(&r, "partial startup packet");
    assert_still_served(&mut proxy);
}

#[test]
fn ssl_request_then_silence_is_closed_after_startup_timeout() {
    let mut proxy = timeout_proxy();
    let mut c = RawConn::connect(proxy.port);
    c.send(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).unwrap();
    let r = c.read_to_close(CLOSE_LIMIT);
    assert_eq!(r.bytes, b"N", "SSLRequest without TLS configured");
    assert_closed_by_startup_timeout(&r, "SSLRequest then silence");
    assert_still_served(&mut proxy);
}

#[test]
fn logged_in_idle_client_outlives_startup_timeout() {
    let proxy = timeout_proxy();
    let (mut c, _) = RawConn::login(proxy.port, &login_params("pglater-idle"));
    std::thread::sleep(Duration::from_secs(3));
    let q = c.simple_query("SELECT 'still here'");
    assert_eq!(first_value(&q).as_deref(), Some("still here"));
}

/// A Query the proxy must not take for one of its own commands: PostgreSQL's own error, the
/// session usable after, no job queued. `name` tags the application for the log.
fn malformed_query_like_postgres(name: &str, body: &[u8]) {
    malformed_like_postgres(&Proxy::trust(pg()), name, &frame(b'Q', body));
}

/// Messages (up to a ReadyForQuery) the proxy must leave to the server: through `proxy`, the
/// same reply as from PostgreSQL (message types, SQLSTATEs and messages), and the session
/// usable after. The proxy's reply.
fn malformed_like_postgres(proxy: &Proxy, name: &str, messages: &[u8]) -> Vec<Msg> {
    let pg = pg();
    let run = |port: u16, app: &str| {
        let (mut conn, _) = RawConn::login(port, &login_params(app));
        conn.send(messages).unwrap();
        let reply = conn.read_until_ready();
        let after = first_value(&conn.simple_query("SELECT 'after'"));
        (reply, after)
    };
    let (direct, direct_after) = run(pg.port, &format!("{name}-direct"));
    let (via, via_after) = run(proxy.port, &format!("{name}-proxied"));
    let errors = |msgs: &[Msg]| {
        msgs.iter()
            .filter(|m| m.0 == b'E')
            .map(|m| {
                let f = error_fields(&m.1);
                (f.get(&'C').cloned(), f.get(&'M').cloned())
            })
            .collect::<Vec<_>>()
    };
    let kinds = |msgs: &[Msg]| msgs.iter().map(|m| m.0 as char).collect::<String>();
    assert_eq!(errors(&via), errors(&direct), "{name}");
    assert_eq!(kinds(&via), kinds(&direct), "{name}");
    assert_eq!(via_after, direct_after, "{name}");
    assert_eq!(via_after.as_deref(), Some("after"));
    via
}

#[test]
fn query_message_without_a_body_is_answered_like_postgres() {
    malformed_query_like_postgres("empty-query-body", b"");
}

#[test]
fn later_without_its_terminating_nul_is_left_to_postgres() {
    malformed_query_like_postgres("later-no-nul", b"LATER SELECT 1");
}

/// Finding 12 of the security issue: a Query whose body has a NUL before its last byte was
/// queued as a job, when PostgreSQL refuses the message (ERROR 08P01 "invalid message
/// format", the session goes on). pglater leaves such messages to the server, and a Parse
/// with bytes after its parameter types (what a NUL inside its query text makes) too: the
/// server answers, and no job is queued.
#[test]
fn a_nul_inside_a_command_is_left_to_postgres_and_queues_nothing() {
    let pg = pg();
    let proxy = ProxyBuilder::trust(pg).own_store(pg, "nul_inside").start();
    let queries: [(&str, &[u8]); 4] = [
        ("later-nul", b"LATER SELECT 1\0junk\0"),
        ("fetch-later-nul", b"FETCH LATER 1\0x\0"),
        ("later-in-nul", b"LATER IN '1 s' SELECT 1\0\0"),
        ("show-later-nul", b"SHOW LATER\0\0"),
    ];
    for (name, body) in queries {
        let reply = malformed_like_postgres(&proxy, name, &frame(b'Q', body));
        let f = error_fields(&reply[0].1);
        assert_eq!(
            (f.get(&'S'), f.get(&'C'), f.get(&'M')),
            (
                Some(&"ERROR".to_string()),
                Some(&"08P01".to_string()),
                Some(&"invalid message format".to_string())
            ),
            "{name}: {reply:?}"
        );
    }
    // Parse (unnamed), Bind, Execute, Sync.
    let extended = |parse: &[u8]| {
        [
            frame(b'P', parse),
            frame(b'B', &[0; 8]),
            frame(b'E', &[0; 5]),
            frame(b'S', b""),
        ]
        .concat()
    };
    let parses: [(&str, &[u8]); 2] = [
        ("parse-trailing", b"\0LATER SELECT 1\0\0\0junk\0"),
        ("parse-nul", b"\0LATER SELECT 1\0junk\0\0\0"),
    ];
    for (name, parse) in parses {
        let reply = malformed_like_postgres(&proxy, name, &extended(parse));
        let f = error_fields(&reply[0].1);
        assert_eq!(f.get(&'C').map(String::as_str), Some("08P01"), "{name}");
    }
    let jobs = pg.admin_sql_in("store_nul_inside", "SELECT count(*) FROM pglater.jobs");
    assert_eq!(jobs.trim(), "0", "a job was queued");
}
