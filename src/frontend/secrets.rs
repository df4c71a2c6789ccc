//! Per-user secrets for client authentication, derived once at start so a login costs no
//! key stretching.

use super::hba::Hba;
use crate::auth::scram_keys::Key;
use crate::config::{AuthMode, AuthQuery, Config, UserConfig};
use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pgwire::api::auth::sasl::scram::{ScramSecret, gen_salted_password};
use ring::hmac;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use zeroize::Zeroizing;

const ITERATIONS: usize = 4096;
/// Salt length of the verifiers pglater derives (PostgreSQL's default too).
const SALT_LEN: usize = 16;

/// Who may log in, and how: replaced as a whole on SIGHUP.
pub struct Access {
    pub auth: AuthMode,
    pub users: HashMap<String, UserSecrets>,
    /// The hba_file's rules: when set, they decide instead of `auth`.
    pub hba: Option<Arc<Hba>>,
    /// Users not in [[users]] are looked up on the server with it.
    pub auth_query: Option<AuthQuery>,
}

impl Access {
    pub fn from_config(config: &Config) -> Result<Self> {
        let users = config
            .users
            .iter()
            .map(|u| Ok((u.name.clone(), UserSecrets::from_config(u)?)))
            .collect::<Result<_>>()?;
        Ok(Access {
            auth: config.auth,
            users,
            hba: config.hba.clone(),
            auth_query: config.auth_query.clone(),
        })
    }

    /// The plaintext password pglater logs in upstream with, if configured.
    pub fn password_of(&self, user: &str) -> Option<String> {
        self.users.get(user)?.password.clone()
    }
}

/// What the proxy knows of a user.
pub struct UserSecrets {
    pub name: String,
    /// Plaintext password: checks md5 clients and logs in upstream.
    pub password: Option<String>,
    scram: Option<ScramVerifier>,
    /// The md5 hash the server keeps (`md5` + 32 hex digits), for a user looked up with
    /// auth_query whose password is stored so.
    md5: Option<Zeroizing<String>>,
}

#[derive(Clone)]
struct ScramVerifier {
    salt: Vec<u8>,
    iterations: usize,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl UserSecrets {
    pub fn from_config(u: &UserConfig) -> Result<Self> {
        let scram = match (&u.scram_verifier, &u.password) {
            (Some(v), _) => Some(parse_verifier(v).with_context(|| {
                format!("users.{}: scram_verifier is not SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>", u.name)
            })?),
            (None, Some(pw)) => {
                let salt: [u8; SALT_LEN] = rand::random();
                let salted = gen_salted_password(pw, &salt, ITERATIONS);
                let ScramSecret::Verifier { salt, iterations, stored_key, server_key } =
                    ScramSecret::verifier_from_salted_password(salt.to_vec(), salted, ITERATIONS)
                else {
                    bail!("users.{}: could not derive a SCRAM verifier", u.name);
                };
                Some(ScramVerifier { salt, iterations, stored_key, server_key })
            }
            (None, None) => None,
        };
        Ok(Self {
            name: u.name.clone(),
            password: u.password.clone(),
            scram,
            md5: None,
        })
    }

    /// A user's secret as the server keeps it (pg_authid.rolpassword, as auth_query gives
    /// it): a SCRAM verifier or an md5 hash; None for anything else (no password, or one
    /// stored in a form pglater cannot check against).
    pub fn from_stored(name: &str, stored: &str) -> Option<Self> {
        let (scram, md5) = if stored.starts_with("SCRAM-SHA-256$") {
            (Some(parse_verifier(stored).ok()?), None)
        } else if crate::auth::md5::answer(stored, [0; 4]).is_some() {
            (None, Some(Zeroizing::new(stored.to_owned())))
        } else {
            return None;
        };
        Some(Self {
            name: name.to_owned(),
            password: None,
            scram,
            md5,
        })
    }

    /// The md5 hash the server keeps, if that is what pglater holds.
    pub fn md5_hash(&self) -> Option<&str> {
        self.md5.as_deref().map(String::as_str)
    }

    /// The verifier's StoredKey and ServerKey.
    pub fn scram_keys(&self) -> Option<(Key, Key)> {
        let v = self.scram.as_ref()?;
        Some((
            v.stored_key.as_slice().try_into().ok()?,
            v.server_key.as_slice().try_into().ok()?,
        ))
    }

    /// Whether `given` is the user's password (a cleartext login). Checked against the SCRAM
    /// verifier, as PostgreSQL checks a cleartext password against a stored one: its
    /// ServerKey is HMAC(SaltedPassword, "Server Key"), compared in constant time. The key
    /// stretching runs off the session's thread.
    pub async fn accepts_password(&self, given: &str) -> bool {
        if let Some(hash) = &self.md5 {
            let given = crate::auth::md5::stored(&self.name, given);
            return given.len() == hash.len()
                && given
                    .bytes()
                    .zip(hash.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
        }
        let Some(v) = self.scram.clone() else {
            return false;
        };
        let given = given.to_owned();
        tokio::task::spawn_blocking(move || {
            let salted = gen_salted_password(&given, &v.salt, v.iterations);
            let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
            hmac::verify(&key, b"Server Key", &v.server_key).is_ok()
        })
        .await
        .unwrap_or(false)
    }

    pub fn scram_secret(&self) -> Option<ScramSecret> {
        self.scram.clone().map(|v| ScramSecret::Verifier {
            salt: v.salt,
            iterations: v.iterations,
            stored_key: v.stored_key,
            server_key: v.server_key,
        })
    }
}

/// The verifier a user pglater cannot check gets, as PostgreSQL's mock authentication does
/// for a role that does not exist: the exchange runs as for a real user, and no proof can
/// match (the keys are random). The salt comes from the name and a per-process secret, so
/// one name always gets the same salt, as a configured user does, and salts say nothing.
pub fn mock_scram_secret(user: &str) -> ScramSecret {
    static MOCK_NONCE: OnceLock<hmac::Key> = OnceLock::new();
    let key =
        MOCK_NONCE.get_or_init(|| hmac::Key::new(hmac::HMAC_SHA256, &rand::random::<[u8; 32]>()));
    let tag = hmac::sign(key, user.as_bytes());
    let salt: Vec<u8> = tag.as_ref().iter().take(SALT_LEN).copied().collect();
    ScramSecret::Verifier {
        salt,
        iterations: ITERATIONS,
        stored_key: rand::random::<[u8; 32]>().to_vec(),
        server_key: rand::random::<[u8; 32]>().to_vec(),
    }
}

/// PostgreSQL's pg_authid format: `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
fn parse_verifier(v: &str) -> Result<ScramVerifier> {
    let rest = v.strip_prefix("SCRAM-SHA-256$").context("prefix")?;
    let (iter_salt, keys) = rest.split_once('$').context("keys")?;
    let (iter, salt) = iter_salt.split_once(':').context("salt")?;
    let (stored, server) = keys.split_once(':').context("server key")?;
    let verifier = ScramVerifier {
        iterations: iter.parse()?,
        salt: STANDARD.decode(salt)?,
        stored_key: STANDARD.decode(stored)?,
        server_key: STANDARD.decode(server)?,
    };
    if verifier.stored_key.len() != 32 || verifier.server_key.len() != 32 {
        bail!("keys must be 32 bytes");
    }
    Ok(verifier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_postgres_verifier() {
        // From `SET password_encryption = 'scram-sha-256'; CREATE ROLE ... PASSWORD 'x'`.
        let v = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$vHSg9ZSwQ/Uz5Ew+tYQ0vQ2cZ0VI4Hp9oDxHUKXgDDE=:+rCP0eQGqpXIl4RWJzwmUM+SzQj6jDWxC/P5PCDvNbQ=";
        let p = parse_verifier(v).unwrap();
        assert_eq!(p.iterations, 4096);
        assert_eq!(p.salt, b"saltsaltsaltsalt");
        assert!(parse_verifier("md5abc").is_err());
    }

    /// A cleartext password is checked against the verifier, as PostgreSQL does.
    #[tokio::test]
    async fn cleartext_passwords_are_checked_against_the_verifier() {
        let plain = UserSecrets::from_config(&UserConfig {
            name: "a".into(),
            password: Some("pa55 wörd".into()),
            scram_verifier: None,
        })
        .unwrap();
        assert!(plain.accepts_password("pa55 wörd").await);
        assert!(!plain.accepts_password("pa55 word").await);
        assert!(!plain.accepts_password("").await);
        let none = UserSecrets::from_config(&UserConfig {
            name: "b".into(),
            password: None,
            scram_verifier: None,
        })
        .unwrap();
        assert!(!none.accepts_password("").await);
    }

    fn salt_of(secret: &ScramSecret) -> Vec<u8> {
        match secret {
            ScramSecret::Verifier {
                salt, iterations, ..
            } => {
                assert_eq!(*iterations, ITERATIONS);
                salt.clone()
            }
            other => panic!("not a verifier: {other:?}"),
        }
    }

    /// Finding 8 of the security issue: an unknown user gets a verifier like a real one's,
    /// with the same salt every time (a fresh salt per attempt would give it away).
    #[test]
    fn mock_verifiers_are_stable_per_name() {
        let a = salt_of(&mock_scram_secret("mallory"));
        assert_eq!(a.len(), SALT_LEN);
        assert_eq!(a, salt_of(&mock_scram_secret("mallory")));
        assert_ne!(a, salt_of(&mock_scram_secret("mallory2")));
    }
}
