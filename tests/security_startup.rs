//! Start-up and client authentication, findings 2, 3 and 8 of the security issue: identity is
//! decided on exactly what the server will use, nothing reaches the server for a client that
//! has not authenticated, and an unknown user cannot be told from a wrong password.

mod common;

use bytes::BytesMut;
use common::*;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;
use std::time::Duration;

const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// The Authentication request code of an 'R' message.
fn auth_code(m: &Msg) -> Option<i32> {
    (m.0 == b'R' && m.1.len() >= 4).then(|| i32::from_be_bytes(m.1[..4].try_into().unwrap()))
}

/// A message as its type, with the request code for Authentication ("R10", "E", ...).
fn kind(m: &Msg) -> String {
    match auth_code(m) {
        Some(code) => format!("R{code}"),
        None => (m.0 as char).to_string(),
    }
}

fn kinds(msgs: &[Msg]) -> Vec<String> {
    msgs.iter().map(kind).collect()
}

/// A frontend message built by postgres-protocol.
fn built(f: impl FnOnce(&mut BytesMut) -> std::io::Result<()>) -> Vec<u8> {
    let mut b = BytesMut::new();
    f(&mut b).unwrap();
    b.to_vec()
}

/// Answers whatever authentication the peer asks for (SCRAM-SHA-256 or md5) as `user` with
/// `password`, after the startup packet was sent; every message received, up to
/// ReadyForQuery, an ErrorResponse or the end of the connection.
fn password_exchange(c: &mut RawConn, user: &str, password: &str) -> Vec<Msg> {
    let mut got = Vec::new();
    let mut scram: Option<ScramSha256> = None;
    while let Some(m) = c.read_msg() {
        match auth_code(&m) {
            Some(10) => {
                let s = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                c.send(&built(|b| {
                    frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), b)
                }))
                .unwrap();
                scram = Some(s);
            }
            Some(11) => {
                let s = scram.as_mut().expect("SASLContinue before SASL");
                s.update(&m.1[4..]).expect("server-first-message");
                c.send(&built(|b| frontend::sasl_response(s.message(), b)))
                    .unwrap();
            }
            Some(5) => {
                let salt: [u8; 4] = m.1[4..8].try_into().unwrap();
                let hash = md5_hash(user.as_bytes(), password.as_bytes(), salt);
                c.send(&built(|b| frontend::password_message(hash.as_bytes(), b)))
                    .unwrap();
            }
            _ => {}
        }
        let end = matches!(m.0, b'Z' | b'E');
        got.push(m);
        if end {
            break;
        }
    }
    got
}

/// A raw login attempt: the startup packet, then `password_exchange`.
fn raw_attempt(port: u16, packet: &[u8], user: &str, password: &str) -> (RawConn, Vec<Msg>) {
    let mut c = RawConn::connect(port);
    c.send(packet).unwrap();
    let msgs = password_exchange(&mut c, user, password);
    (c, msgs)
}

/// Error fields without file/line/routine (where a message was built).
fn fields(m: &Msg) -> std::collections::BTreeMap<char, String> {
    let mut f = error_fields(&m.1);
    f.retain(|k, _| !matches!(k, 'F' | 'L' | 'R'));
    f
}

// ---------------------------------------------------------------------------
// Finding 2: duplicated startup parameters
// ---------------------------------------------------------------------------

/// Finding 2 of the security issue: with `user` (or `database`) twice, pglater identified the
/// client by the first and PostgreSQL by the last, so a client got in as someone else. Such a
/// packet is refused with FATAL 08P01 before anything else, and no session is opened.
#[test]
fn a_duplicated_user_or_database_is_refused() {
    let pg = pg();
    let refused = |port: u16, params: &[(&str, &str)]| {
        let mut c = RawConn::connect(port);
        c.send(&startup_packet(params)).unwrap();
        let r = c.read_to_close(CLOSE_LIMIT);
        assert!(r.closed, "{params:?}: connection left open");
        let msgs = r.messages();
        assert_eq!(kinds(&msgs), ["E"], "{params:?}: {msgs:?}");
        let f = fields(&msgs[0]);
        assert_eq!(f.get(&'S').map(String::as_str), Some("FATAL"), "{f:?}");
        assert_eq!(f.get(&'C').map(String::as_str), Some("08P01"), "{f:?}");
    };
    // trust: alice by pglater's reading, postgres (trusted by the server) by PostgreSQL's.
    let trust = Proxy::trust(pg);
    refused(
        trust.port,
        &[
            ("user", "alice"),
            ("database", "app"),
            ("user", "postgres"),
            ("application_name", "pglater-dup-user"),
        ],
    );
    refused(
        trust.port,
        &[
            ("user", "postgres"),
            ("database", "app"),
            ("database", "postgres"),
            ("application_name", "pglater-dup-database"),
        ],
    );
    // scram: refused before any authentication request (alice's password must not make her
    // postgres).
    let scram = Proxy::scram(pg);
    refused(
        scram.port,
        &[
            ("user", "alice"),
            ("user", "postgres"),
            ("application_name", "pglater-dup-user"),
        ],
    );
    let left = pg.admin_sql(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pglater-dup-%'",
    );
    assert_eq!(left.trim(), "0", "a session was opened");
    // One user, once: fine.
    let (mut c, _) = RawConn::login(trust.port, &[("user", "postgres"), ("database", "app")]);
    assert_eq!(
        first_value(&c.simple_query("SELECT current_user")).as_deref(),
        Some("postgres")
    );
}

// ---------------------------------------------------------------------------
// Finding 3: upstream connections before authentication
// ---------------------------------------------------------------------------

/// pglater in front of a port nothing listens on, without the LATER service (which would
/// need a store there).
fn proxy_without_server() -> Proxy {
    let mut b = ProxyBuilder::scram(pg()).arg("--no-later");
    b.upstream_port = free_port();
    b.start()
}

/// Finding 3 of the security issue: a 3.1 startup, `_pq_.` options and other protocol
/// versions made pglater connect upstream before the client authenticated. With no server
/// at all, pglater now answers them exactly as before authentication PostgreSQL would
/// (before the fix: FATAL 08006 "could not connect", or a silent close).
#[test]
fn nothing_before_authentication_needs_the_server() {
    let proxy = proxy_without_server();
    let params = [
        ("user", "alice"),
        ("database", "app"),
        ("_pq_.pglater_test", "1"),
    ];
    for (minor, params) in [(1, &params[..2]), (0, &params[..]), (2, &params[..])] {
        let mut c = RawConn::connect(proxy.port);
        c.send(&startup_packet_version(3, minor, params)).unwrap();
        let v = c.read_msg().expect("no reply");
        assert_eq!(v.0, b'v', "3.{minor}: {v:?}");
        let auth = c.read_msg().expect("no authentication request");
        assert_eq!(kind(&auth), "R10", "3.{minor}: {auth:?}");
    }

    // Another major version: PostgreSQL's refusal, byte for byte (but file/line/routine),
    // with the server down.
    let pg = pg();
    for major in [2u16, 4] {
        let pkt = startup_packet_version(major, 0, &params[..2]);
        let reply = |port: u16| {
            let mut c = RawConn::connect(port);
            c.send(&pkt).unwrap();
            c.read_to_close(CLOSE_LIMIT)
        };
        let (direct, via) = (reply(pg.port), reply(proxy.port));
        assert!(direct.closed && via.closed, "{major}.0: {direct:?} {via:?}");
        if major < 3 {
            assert_eq!(via.bytes, direct.bytes, "{major}.0");
        } else {
            assert_eq!(via.errors(), direct.errors(), "{major}.0");
            assert_eq!(kinds(&via.messages()), ["E"], "{major}.0");
            let e = &via.errors()[0];
            assert_eq!(e.get(&'C').map(String::as_str), Some("0A000"));
            assert_eq!(
                e.get(&'M').map(String::as_str),
                Some("unsupported frontend protocol 4.0: server supports 3.0 to 3.0")
            );
        }
    }
}

/// The pids of the server's processes whose title names `database` (a backend shows
/// `postgres: <user> <database> <host>(<port>) <state>` from the moment it has read the
/// startup packet, authentication included, which pg_stat_activity does not show in 15).
fn backends_for_database(database: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let title = String::from_utf8_lossy(&cmdline);
        if title.starts_with("postgres: ") && title.contains(&format!(" {database} ")) {
            pids.push(pid);
        }
    }
    pids
}

/// Finding 3 of the security issue: 150 clients that ask for protocol 3.1 and then say
/// nothing made 150 server connections (max_connections is 100): a real login got 53300.
/// Now they are answered by pglater alone: the server has no backend for them and a real
/// login works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_asking_3_1_hold_no_server_connection() {
    let pg = pg();
    let proxy = ProxyBuilder::scram(pg).arg("--no-later").start();
    let database = "pglater_flood_db";
    let app = "pglater-flood";
    let mut silent = Vec::new();
    for i in 0..150 {
        let mut c = RawConn::connect(proxy.port);
        let params = [
            ("user", "alice"),
            ("database", database),
            ("application_name", app),
            ("_pq_.x", "1"),
        ];
        c.send(&startup_packet_version(3, 1, &params)).unwrap();
        // Answered (so the proxy is done with the packet): NegotiateProtocolVersion, then
        // the SASL request; then the client says nothing.
        let got = [c.read_msg(), c.read_msg()];
        let got: Vec<String> = got.iter().flatten().map(kind).collect();
        assert_eq!(got, ["v", "R10"], "client {i}");
        silent.push(c);
    }
    assert_eq!(
        backends_for_database(database),
        Vec::<u32>::new(),
        "server processes for clients that did not authenticate"
    );
    let n = pg.admin_sql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}' OR datname = '{database}'"
    ));
    assert_eq!(n.trim(), "0");

    // While they wait, a real login through pglater works.
    let c = proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;
    let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    drop(silent);
}

/// Finding 3 of the security issue: a client asking 3.1 with `_pq_.x` gets pglater's own
/// NegotiateProtocolVersion (minor 0, `_pq_.x` listed, as PostgreSQL's), authenticates, and
/// works; the server got a 3.0 packet without `_pq_.x` (it would have sent a second 'v')
/// and every other parameter.
#[test]
fn a_client_asking_3_1_is_negotiated_by_pglater_and_logs_in() {
    let pg = pg();
    let proxy = Proxy::scram(pg);
    let params = [
        ("user", "alice"),
        ("_pq_.x", "1"),
        ("database", "app"),
        ("application_name", "pglater-3-1"),
        ("options", "-c search_path=pglater_3_1"),
    ];
    let pkt = startup_packet_version(3, 1, &params);
    let (mut c, msgs) = raw_attempt(proxy.port, &pkt, "alice", ALICE_PASSWORD);
    let k = kinds(&msgs);
    assert_eq!(k[..4], ["v", "R10", "R11", "R12"], "{msgs:?}");
    assert_eq!(k.iter().filter(|k| *k == "v").count(), 1, "{k:?}");
    assert!(
        k.contains(&"R0".to_string()) && k.last().unwrap() == "Z",
        "{k:?}"
    );
    let mut want = Vec::new();
    want.extend_from_slice(&196_608u32.to_be_bytes());
    want.extend_from_slice(&1u32.to_be_bytes());
    want.extend_from_slice(b"_pq_.x\0");
    assert_eq!(msgs[0].1, want, "NegotiateProtocolVersion body");

    // PostgreSQL sends the same.
    let mut direct = RawConn::connect(pg.port);
    direct.send(&pkt).unwrap();
    assert_eq!(direct.read_msg(), Some(msgs[0].clone()));

    let q = c.simple_query(
        "SELECT current_user || ' ' || current_database() || ' ' \
         || current_setting('application_name') || ' ' || current_setting('search_path')",
    );
    assert_eq!(
        first_value(&q).as_deref(),
        Some("alice app pglater-3-1 pglater_3_1")
    );
}

// ---------------------------------------------------------------------------
// Finding 8: user enumeration
// ---------------------------------------------------------------------------

const WRONG: &str = "wrong-secret-xyzzy";

/// The `s=` (salt) and `i=` (iterations) of a SASLContinue body.
fn salt_and_iterations(m: &Msg) -> (String, String) {
    let text = String::from_utf8_lossy(&m.1[4..]).into_owned();
    let attr = |name: &str| {
        text.split(',')
            .find_map(|a| a.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_owned()
    };
    (attr("s="), attr("i="))
}

/// Message kinds and error fields of a failed login, with the user name taken out.
fn shape(msgs: &[Msg], user: &str) -> (Vec<String>, Vec<std::collections::BTreeMap<char, String>>) {
    let errors = msgs
        .iter()
        .filter(|m| m.0 == b'E')
        .map(|m| {
            let mut f = fields(m);
            for v in f.values_mut() {
                *v = v.replace(&format!("\"{user}\""), "\"<user>\"");
            }
            f
        })
        .collect();
    (kinds(msgs), errors)
}

/// The server error of a failed tokio-postgres login.
async fn login_error(port: u16, user: &str, password: &str) -> (String, String, String) {
    match try_connect(port, user, Some(password), "app").await {
        Ok(_) => panic!("{user} logged in on port {port}"),
        Err(e) => {
            let e = e
                .as_db_error()
                .unwrap_or_else(|| panic!("{user}: no ErrorResponse: {e:?}"));
            (
                e.severity().to_string(),
                e.code().code().to_string(),
                e.message().to_string(),
            )
        }
    }
}

fn assert_no_password_logged(proxy: &Proxy) {
    let log = proxy.stderr();
    for secret in [ALICE_PASSWORD, BOB_PASSWORD, WRONG] {
        assert!(!log.contains(secret), "password in the log:\n{log}");
    }
}

/// Finding 8 of the security issue: an unknown user got an immediate 28000 while a known one
/// got a SCRAM challenge. Both now get the same exchange (a mock verifier for the unknown
/// one, its salt stable per name) and the same FATAL 28P01, as PostgreSQL does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_is_answered_like_a_wrong_password_scram() {
    let pg = pg();
    let proxy = Proxy::scram(pg);
    let attempt = |port: u16, user: &str| {
        let pkt = startup_packet(&[("user", user), ("database", "app")]);
        raw_attempt(port, &pkt, user, WRONG).1
    };
    let known = attempt(proxy.port, "alice");
    let unknown = attempt(proxy.port, "mallory");
    assert_eq!(kinds(&known), ["R10", "R11", "E"], "{known:?}");
    assert_eq!(shape(&unknown, "mallory"), shape(&known, "alice"));
    assert_eq!(known[0], unknown[0], "AuthenticationSASL differs");
    // What PostgreSQL itself does for both.
    let direct_known = attempt(pg.port, "alice");
    let direct_unknown = attempt(pg.port, "mallory");
    assert_eq!(shape(&known, "alice"), shape(&direct_known, "alice"));
    assert_eq!(
        shape(&unknown, "mallory"),
        shape(&direct_unknown, "mallory")
    );

    // The challenge looks the same: iterations, salt size, and a salt that stays the same
    // from one attempt to the next for both.
    let (known_salt, known_iter) = salt_and_iterations(&known[1]);
    let (unknown_salt, unknown_iter) = salt_and_iterations(&unknown[1]);
    assert_eq!(known_iter, unknown_iter);
    assert_eq!(known_salt.len(), unknown_salt.len());
    assert_eq!(
        salt_and_iterations(&attempt(proxy.port, "mallory")[1]).0,
        unknown_salt
    );
    assert_eq!(
        salt_and_iterations(&attempt(proxy.port, "alice")[1]).0,
        known_salt
    );

    // Through a driver: the same error, word for word but the name (and PostgreSQL's own).
    let wrong = login_error(proxy.port, "alice", WRONG).await;
    let unknown = login_error(proxy.port, "mallory", WRONG).await;
    assert_eq!(
        unknown,
        (
            "FATAL".into(),
            "28P01".into(),
            "password authentication failed for user \"mallory\"".into()
        )
    );
    assert_eq!(wrong.2.replace("alice", "mallory"), unknown.2);
    assert_eq!((&wrong.0, &wrong.1), (&unknown.0, &unknown.1));
    assert_eq!(login_error(pg.port, "mallory", WRONG).await, unknown);
    assert_no_password_logged(&proxy);
}

/// Finding 8 of the security issue, md5: an unknown user gets the md5 challenge too, then
/// the FATAL 28P01 a wrong password gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_is_answered_like_a_wrong_password_md5() {
    let proxy = Proxy::builder(pg()).auth("md5").app_users().start();
    let attempt = |user: &str| {
        let pkt = startup_packet(&[("user", user), ("database", "app")]);
        raw_attempt(proxy.port, &pkt, user, WRONG).1
    };
    let known = attempt("alice");
    let unknown = attempt("mallory");
    assert_eq!(kinds(&known), ["R5", "E"], "{known:?}");
    assert_eq!(shape(&unknown, "mallory"), shape(&known, "alice"));
    assert_eq!(known[0].1.len(), unknown[0].1.len(), "md5 salt size");
    assert_eq!(
        shape(&known, "alice").1[0].get(&'C').map(String::as_str),
        Some("28P01")
    );

    let wrong = login_error(proxy.port, "alice", WRONG).await;
    let unknown = login_error(proxy.port, "mallory", WRONG).await;
    assert_eq!(
        unknown,
        (
            "FATAL".into(),
            "28P01".into(),
            "password authentication failed for user \"mallory\"".into()
        )
    );
    assert_eq!(wrong.2.replace("alice", "mallory"), unknown.2);
    // A right password still works.
    proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;
    assert_no_password_logged(&proxy);
}
