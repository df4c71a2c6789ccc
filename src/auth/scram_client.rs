//! The client side of SCRAM-SHA-256 with keys instead of a password: pglater logging in to
//! the server as a user whose ClientKey it recovered from the user's own login (and whose
//! ServerKey, from the verifier it looked up, checks the server in turn). Without channel
//! binding ("n,,"), as postgres-protocol's password client does.

use super::scram_keys::{self, Key};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

pub struct KeysClient {
    client_key: Zeroizing<Key>,
    server_key: Zeroizing<Key>,
    nonce: String,
    auth_message: Option<Vec<u8>>,
}

/// The GS2 header "n,," (no channel binding), base64.
const GS2_BASE64: &str = "biws";

impl KeysClient {
    pub fn new(client_key: Zeroizing<Key>, server_key: Zeroizing<Key>) -> Self {
        let nonce_bytes: [u8; 18] = rand::random();
        Self {
            client_key,
            server_key,
            nonce: STANDARD.encode(nonce_bytes),
            auth_message: None,
        }
    }

    fn first_bare(&self) -> String {
        // The user name is the startup packet's; PostgreSQL ignores this one.
        format!("n=,r={}", self.nonce)
    }

    /// client-first-message.
    pub fn first_message(&self) -> Vec<u8> {
        format!("n,,{}", self.first_bare()).into_bytes()
    }

    /// client-final-message for the server-first-message.
    pub fn final_message(&mut self, server_first: &[u8]) -> Result<Vec<u8>, &'static str> {
        let text = std::str::from_utf8(server_first).map_err(|_| "server-first is not text")?;
        let nonce = text
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .ok_or("server-first has no nonce")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("server-first nonce does not extend ours");
        }
        let without_proof = format!("c={GS2_BASE64},r={nonce}");
        let mut auth_message = self.first_bare().into_bytes();
        auth_message.push(b',');
        auth_message.extend_from_slice(server_first);
        auth_message.push(b',');
        auth_message.extend_from_slice(without_proof.as_bytes());
        let proof = scram_keys::client_proof(&self.client_key, &auth_message);
        self.auth_message = Some(auth_message);
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Checks the server-final-message: the server knew the ServerKey.
    pub fn verify_final(&self, server_final: &[u8]) -> Result<(), &'static str> {
        let auth_message = self.auth_message.as_ref().ok_or("no exchange yet")?;
        let text = std::str::from_utf8(server_final).map_err(|_| "server-final is not text")?;
        if text.starts_with("e=") {
            return Err("the server refused the proof");
        }
        let given = text
            .split(',')
            .find_map(|a| a.strip_prefix("v="))
            .and_then(|v| STANDARD.decode(v).ok())
            .ok_or("server-final has no verifier")?;
        let expected = scram_keys::server_signature(&self.server_key, auth_message);
        match given.as_slice() == expected.as_slice() {
            true => Ok(()),
            false => Err("the server's signature does not match"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    /// Both clients against the same server arithmetic: the keys client proves what the
    /// password client proves.
    #[test]
    fn proves_what_a_password_client_proves() {
        // A server's first message for each client, with a salt and 4096 iterations.
        let salt = b"0123456789abcdef";
        let mut salted = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(4096).unwrap(),
            salt,
            b"pencil",
            &mut salted,
        );
        let hmac = |k: &[u8], d: &[u8]| {
            let t = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k), d);
            let mut out = [0u8; 32];
            out.copy_from_slice(t.as_ref());
            out
        };
        let client_key = hmac(&salted, b"Client Key");
        let server_key = hmac(&salted, b"Server Key");
        let stored = scram_keys::stored_key(&client_key);

        let mut keys = KeysClient::new(Zeroizing::new(client_key), Zeroizing::new(server_key));
        let first = keys.first_message();
        let client_nonce = String::from_utf8(first[first.len() - 24..].to_vec()).unwrap();
        let server_first = format!("r={client_nonce}SERVER,s={},i=4096", STANDARD.encode(salt));
        let fin = keys.final_message(server_first.as_bytes()).unwrap();
        // The server's side: recover the key from the proof, as pglater's own server does.
        let am = scram_keys::auth_message(&first, server_first.as_bytes(), &fin).unwrap();
        let (_, proof) = scram_keys::proof_stripped(&fin).unwrap();
        assert!(scram_keys::recover_client_key(&stored, &am, &proof).is_some());
        let v = STANDARD.encode(scram_keys::server_signature(&server_key, &am));
        assert!(keys.verify_final(format!("v={v}").as_bytes()).is_ok());
        assert!(keys.verify_final(b"v=AAAA").is_err());
        assert!(keys.verify_final(b"e=invalid-proof").is_err());

        // Its first message is a password client's, as the server expects one.
        let pw = ScramSha256::new(b"pencil", ChannelBinding::unsupported());
        assert!(pw.message().starts_with(b"n,,n=,r="));
        assert!(first.starts_with(b"n,,n=,r="));
    }

    #[test]
    fn refuses_a_server_nonce_that_is_not_ours() {
        let mut keys = KeysClient::new(Zeroizing::new([1; 32]), Zeroizing::new([2; 32]));
        assert!(keys.final_message(b"r=someoneelse,s=AAAA,i=4096").is_err());
        assert!(keys.final_message(b"s=AAAA,i=4096").is_err());
        let first = keys.first_message();
        let nonce = String::from_utf8(first[8..].to_vec()).unwrap();
        // The server must add to the nonce.
        assert!(
            keys.final_message(format!("r={nonce},s=AAAA,i=1").as_bytes())
                .is_err()
        );
    }
}
