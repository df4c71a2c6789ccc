//! Start-up packets (`wire::startup`): SSLRequest, GSSENCRequest, CancelRequest, and
//! StartupMessage of any version, with duplicated parameters and `_pq_.` options.

use super::harness::fuzz;
use super::input::{self, near_or_random, now};
use pglater::wire::startup::{
    MAX_STARTUP_PACKET_LEN, PROTOCOL_3_0, StartupError, StartupPacket, read_startup_packet,
};
use proptest::collection::vec;
use proptest::prelude::*;

const SSL: u32 = 80_877_103;
const GSSENC: u32 = 80_877_104;
const CANCEL: u32 = 80_877_102;

fn code() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => (0u32..4).prop_map(|minor| PROTOCOL_3_0 + minor),
        1 => Just(SSL),
        1 => Just(GSSENC),
        1 => Just(CANCEL),
        1 => (0u32..6, 0u32..3).prop_map(|(major, minor)| major << 16 | minor),
        1 => Just(PROTOCOL_3_0 | 0xffff),
        1 => any::<u32>(),
    ]
}

fn param_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::sample::select(vec![
            "user", "database", "options", "application_name", "replication", "_pq_.x",
            "_pq_.", "_pq_.protocol_managed_params", "User", "search_path", "client_encoding",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => input::cstr(12).prop_filter("a name", |n| !n.is_empty()),
    ]
}

type Params = Vec<(Vec<u8>, Vec<u8>)>;

/// The body of a StartupMessage (after the version): parameters, then a terminator.
fn params_body(params: &Params) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in params {
        b.extend_from_slice(k);
        b.push(0);
        b.extend_from_slice(v);
        b.push(0);
    }
    b.push(0);
    b
}

fn packet(code: u32, body: &[u8]) -> Vec<u8> {
    let mut p = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(body);
    p
}

fn valid() -> impl Strategy<Value = (u32, Params, Vec<u8>)> {
    (
        code(),
        vec((param_name(), input::cstr(16)), 0..6),
        input::bytes(12),
    )
        .prop_map(|(code, params, extra)| {
            let body = match code {
                CANCEL => extra.clone(),
                SSL | GSSENC => Vec::new(),
                _ => params_body(&params),
            };
            (code, params, packet(code, &body))
        })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut r = bytes;
    let result = now(read_startup_packet(&mut r));
    let len = bytes
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]));
    let sane = len.is_some_and(|l| (8..=MAX_STARTUP_PACKET_LEN).contains(&l));
    match &result {
        Ok(_) => prop_assert!(sane && len.is_some_and(|l| l as usize <= bytes.len())),
        Err(StartupError::Silent(_)) => {}
        Err(StartupError::Fatal(code, _)) => prop_assert_eq!(*code, "08P01"),
        Err(StartupError::Io(e)) => prop_assert!(false, "io error from memory: {e}"),
    }
    if let Ok(StartupPacket::Startup(m)) = &result {
        prop_assert_eq!(m.version.major(), 3);
        // The raw packet is exactly what was read.
        prop_assert_eq!(&m.raw[..], &bytes[..m.raw.len()]);
        // Identity parameters appear at most once.
        for name in ["user", "database"] {
            prop_assert!(m.params.iter().filter(|(k, _)| k == name).count() <= 1);
        }
        // The packet sent upstream is a plain 3.0 one, with the same parameters less the
        // protocol options, and needs no negotiation itself.
        let up = m.upstream_packet();
        let mut r = &up[..];
        match now(read_startup_packet(&mut r)) {
            Ok(StartupPacket::Startup(again)) => {
                prop_assert_eq!(again.version.0, PROTOCOL_3_0);
                prop_assert!(!again.needs_negotiation());
                let want: Vec<_> = m
                    .params
                    .iter()
                    .filter(|(k, _)| !k.as_bytes().starts_with(b"_pq_."))
                    .cloned()
                    .collect();
                prop_assert_eq!(&again.params, &want);
            }
            other => prop_assert!(false, "upstream packet does not read back: {other:?}"),
        }
        let _ = (m.user(), m.database(), m.settings(), m.protocol_options());
    }
    Ok(())
}

#[test]
fn startup_packet_random_bytes() {
    let input = || {
        prop_oneof![
            input::bytes(64),
            // A plausible length word in front of random bytes.
            ((0u32..10_100), input::bytes(300)).prop_map(|(len, rest)| {
                let mut v = len.to_be_bytes().to_vec();
                v.extend(rest);
                v
            }),
        ]
    };
    fuzz("startup_packet_random_bytes", 3000, input, |b| check(&b));
}

#[test]
fn startup_packet_near_valid() {
    let input = || near_or_random(valid().prop_map(|(_, _, p)| p), 64);
    fuzz("startup_packet_near_valid", 3000, input, |b| check(&b));
}

/// Unmutated packets: each kind is recognised, parameters read back, and a duplicated
/// `user` or `database` is refused (08P01).
#[test]
fn startup_packet_valid_reads_back() {
    fuzz(
        "startup_packet_valid_reads_back",
        2000,
        valid,
        |(code, params, bytes)| {
            check(&bytes)?;
            let mut r = &bytes[..];
            let result = now(read_startup_packet(&mut r));
            let dup = ["user", "database"]
                .iter()
                .any(|n| params.iter().filter(|(k, _)| k == n.as_bytes()).count() > 1);
            match (code, result) {
                (SSL, Ok(StartupPacket::SslRequest)) => {}
                (GSSENC, Ok(StartupPacket::GssEncRequest)) => {}
                (CANCEL, Ok(StartupPacket::Cancel { pid, secret })) => {
                    prop_assert!(bytes.len() >= 16);
                    prop_assert_eq!(
                        pid.to_be_bytes(),
                        [bytes[8], bytes[9], bytes[10], bytes[11]]
                    );
                    prop_assert_eq!(&secret[..], &bytes[12..]);
                }
                (CANCEL, Err(StartupError::Silent(_))) => prop_assert!(bytes.len() < 16),
                (c, Ok(StartupPacket::OtherVersion(v))) => {
                    prop_assert_ne!(c >> 16, 3);
                    prop_assert_eq!(v.0, c);
                }
                (c, Err(StartupError::Fatal("08P01", m))) => {
                    prop_assert_eq!(c >> 16, 3);
                    prop_assert!(dup, "refused: {}", m);
                }
                (c, Ok(StartupPacket::Startup(m))) => {
                    prop_assert_eq!(c >> 16, 3);
                    prop_assert!(!dup);
                    let want: Vec<(String, String)> =
                        params.iter().map(|(k, v)| (lossy(k), lossy(v))).collect();
                    prop_assert_eq!(&m.params, &want);
                    let options = params.iter().any(|(k, _)| k.starts_with(b"_pq_."));
                    prop_assert_eq!(m.needs_negotiation(), c & 0xffff > 0 || options);
                    let names: Vec<&[u8]> = params
                        .iter()
                        .map(|(k, _)| &k[..])
                        .filter(|k| k.starts_with(b"_pq_."))
                        .collect();
                    prop_assert_eq!(m.protocol_options(), names);
                }
                (c, other) => prop_assert!(false, "code {c}: {other:?}"),
            }
            Ok(())
        },
    );
}
