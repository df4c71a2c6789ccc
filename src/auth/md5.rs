//! md5 authentication from the hash PostgreSQL keeps (`md5` + md5(password || user)): the
//! answer to a challenge is md5(hash || salt), so the hash is all a login needs. pglater uses
//! it to check md5 clients against a looked-up hash, and to answer the server's challenge.

use md5::{Digest, Md5};
use std::fmt::Write;

/// `md5` and the 32 hex digits of md5(`parts`...).
fn md5_hex(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    let mut out = String::with_capacity(35);
    out.push_str("md5");
    for b in h.finalize() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The hash pg_authid keeps for a password.
pub fn stored(user: &str, password: &str) -> String {
    md5_hex(&[password.as_bytes(), user.as_bytes()])
}

/// The PasswordMessage answering a challenge with `salt`, from a stored hash; None if it is
/// not one.
pub fn answer(stored: &str, salt: [u8; 4]) -> Option<String> {
    let hex = stored
        .strip_prefix("md5")
        .filter(|h| h.len() == 32 && h.bytes().all(|c| c.is_ascii_hexdigit()))?;
    Some(md5_hex(&[hex.as_bytes(), &salt]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_a_client_with_the_password_would() {
        let salt = [1, 2, 3, 4];
        let hash = stored("alice", "pencil");
        assert_eq!(
            answer(&hash, salt).as_deref(),
            Some(postgres_protocol::authentication::md5_hash(b"alice", b"pencil", salt).as_str())
        );
        assert_eq!(answer("SCRAM-SHA-256$4096:x$y:z", salt), None);
        assert_eq!(answer("md5short", salt), None);
    }
}
