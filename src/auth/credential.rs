//! What pglater logs in to the server with, as a user. For a user configured in `[[users]]`
//! it is the configured password; for a user looked up with `auth_query` it is what the
//! client's own login proved it holds, recovered without learning the password: the SCRAM
//! ClientKey (with the ServerKey, to check the server in turn) or the md5 hash. Secret bytes
//! are zeroed when dropped and never printed.

use super::scram_keys::Key;
use std::fmt;
use zeroize::Zeroizing;

#[derive(Clone)]
pub enum Credential {
    Password(Zeroizing<String>),
    Scram {
        client_key: Zeroizing<Key>,
        server_key: Zeroizing<Key>,
    },
    /// `md5` followed by 32 hex digits: md5(password || user), as pg_authid keeps it.
    Md5(Zeroizing<String>),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credential::Password(_) => "Credential::Password(..)",
            Credential::Scram { .. } => "Credential::Scram(..)",
            Credential::Md5(_) => "Credential::Md5(..)",
        })
    }
}

/// Serialised form tags (see `to_bytes`).
const PASSWORD: u8 = 1;
const SCRAM: u8 = 2;
const MD5: u8 = 3;

impl Credential {
    pub fn password(p: &str) -> Self {
        Credential::Password(Zeroizing::new(p.to_owned()))
    }

    /// A tag byte, then the secret: for sealing (never stored as it is).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(65));
        match self {
            Credential::Password(p) => {
                out.push(PASSWORD);
                out.extend_from_slice(p.as_bytes());
            }
            Credential::Scram {
                client_key,
                server_key,
            } => {
                out.push(SCRAM);
                out.extend_from_slice(&client_key[..]);
                out.extend_from_slice(&server_key[..]);
            }
            Credential::Md5(h) => {
                out.push(MD5);
                out.extend_from_slice(h.as_bytes());
            }
        }
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let (&tag, rest) = b.split_first()?;
        let text = || Some(Zeroizing::new(std::str::from_utf8(rest).ok()?.to_owned()));
        match tag {
            PASSWORD => Some(Credential::Password(text()?)),
            MD5 => Some(Credential::Md5(text()?)),
            SCRAM => {
                let (client, server) = rest.split_at_checked(32)?;
                Some(Credential::Scram {
                    client_key: Zeroizing::new(client.try_into().ok()?),
                    server_key: Zeroizing::new(server.try_into().ok()?),
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_hides_its_secret() {
        let all = [
            Credential::password("pencil"),
            Credential::Md5(Zeroizing::new("md5".to_owned() + &"a".repeat(32))),
            Credential::Scram {
                client_key: Zeroizing::new([7; 32]),
                server_key: Zeroizing::new([9; 32]),
            },
        ];
        for c in &all {
            let back = Credential::from_bytes(&c.to_bytes()).unwrap();
            assert_eq!(back.to_bytes(), c.to_bytes());
            let shown = format!("{c:?}");
            assert!(!shown.contains("pencil") && !shown.contains("aaaa") && !shown.contains('7'));
        }
        assert!(Credential::from_bytes(&[SCRAM, 1, 2]).is_none());
        assert!(Credential::from_bytes(&[9]).is_none());
        assert!(Credential::from_bytes(&[]).is_none());
    }
}
