//! SCRAM-SHA-256 (RFC 5802, RFC 7677) arithmetic on keys, not passwords. A server that holds
//! a user's verifier (StoredKey, ServerKey) recovers the user's ClientKey from the proof of
//! a successful exchange; with the ClientKey and ServerKey, pglater can itself log in to a
//! server that holds the same verifier, without ever knowing the password (what PgBouncer
//! calls SCRAM pass-through).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::{digest, hmac};
use zeroize::Zeroizing;

/// A SHA-256 output: ClientKey, StoredKey, ServerKey, proofs and signatures.
pub type Key = [u8; 32];

fn hmac_sha256(key: &[u8], data: &[u8]) -> Key {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn sha256(data: &[u8]) -> Key {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn xor(a: &Key, b: &Key) -> Key {
    let mut out = [0u8; 32];
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x ^ y;
    }
    out
}

/// Compares keys without an early exit (the time taken says nothing of where they differ).
fn equal_in_constant_time(a: &Key, b: &Key) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// StoredKey = H(ClientKey).
pub fn stored_key(client_key: &Key) -> Key {
    sha256(client_key)
}

/// ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage).
pub fn client_proof(client_key: &Key, auth_message: &[u8]) -> Key {
    xor(
        client_key,
        &hmac_sha256(&stored_key(client_key), auth_message),
    )
}

/// ServerSignature = HMAC(ServerKey, AuthMessage).
pub fn server_signature(server_key: &Key, auth_message: &[u8]) -> Key {
    hmac_sha256(server_key, auth_message)
}

/// The ClientKey a client proved it knows, or None if the proof does not match StoredKey.
pub fn recover_client_key(
    stored: &Key,
    auth_message: &[u8],
    proof: &[u8],
) -> Option<Zeroizing<Key>> {
    let proof: Key = proof.try_into().ok()?;
    let key = Zeroizing::new(xor(&proof, &hmac_sha256(stored, auth_message)));
    equal_in_constant_time(&stored_key(&key), stored).then_some(key)
}

/// The AuthMessage of an exchange from its three messages as sent: client-first (with its
/// GS2 header, which the AuthMessage leaves out), server-first, and client-final (whose
/// proof it leaves out). None if they are not SCRAM messages.
pub fn auth_message(
    client_first: &[u8],
    server_first: &[u8],
    client_final: &[u8],
) -> Option<Vec<u8>> {
    let bare = gs2_stripped(client_first)?;
    let without_proof = proof_stripped(client_final)?.0;
    let mut m = Vec::with_capacity(bare.len() + server_first.len() + without_proof.len() + 2);
    m.extend_from_slice(bare);
    m.push(b',');
    m.extend_from_slice(server_first);
    m.push(b',');
    m.extend_from_slice(without_proof);
    Some(m)
}

/// client-first-message-bare: what follows `gs2-cbind-flag "," [authzid] ","`.
fn gs2_stripped(client_first: &[u8]) -> Option<&[u8]> {
    let mut commas = client_first.iter().enumerate().filter(|(_, c)| **c == b',');
    let (second, _) = commas.nth(1)?;
    client_first.get(second + 1..)
}

/// client-final-message-without-proof and the decoded proof (the last attribute, `p=`).
pub fn proof_stripped(client_final: &[u8]) -> Option<(&[u8], Vec<u8>)> {
    let at = client_final.windows(3).rposition(|w| w == b",p=")?;
    let (without, proof) = client_final.split_at(at);
    let proof = STANDARD.decode(proof.get(3..)?).ok()?;
    Some((without, proof))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example: user "user", password "pencil".
    const CLIENT_FIRST: &[u8] = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &[u8] =
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &[u8] = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_SIGNATURE: &str = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn keys() -> (Key, Key) {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let mut salted = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(4096).unwrap(),
            &salt,
            b"pencil",
            &mut salted,
        );
        (
            hmac_sha256(&salted, b"Client Key"),
            hmac_sha256(&salted, b"Server Key"),
        )
    }

    #[test]
    fn recovers_the_client_key_of_the_rfc_example() {
        let (client_key, server_key) = keys();
        let am = auth_message(CLIENT_FIRST, SERVER_FIRST, CLIENT_FINAL).unwrap();
        let (_, proof) = proof_stripped(CLIENT_FINAL).unwrap();
        let stored = stored_key(&client_key);
        let recovered = recover_client_key(&stored, &am, &proof).unwrap();
        assert_eq!(*recovered, client_key);
        // ... and, with it, proves as the client did and checks the server as it would.
        assert_eq!(client_proof(&recovered, &am).to_vec(), proof);
        assert_eq!(
            STANDARD.encode(server_signature(&server_key, &am)),
            SERVER_SIGNATURE
        );
    }

    #[test]
    fn a_wrong_proof_recovers_nothing() {
        let (client_key, _) = keys();
        let am = auth_message(CLIENT_FIRST, SERVER_FIRST, CLIENT_FINAL).unwrap();
        let (_, mut proof) = proof_stripped(CLIENT_FINAL).unwrap();
        proof[0] ^= 1;
        assert!(recover_client_key(&stored_key(&client_key), &am, &proof).is_none());
        assert!(recover_client_key(&stored_key(&client_key), &am, &proof[..31]).is_none());
    }

    #[test]
    fn malformed_messages_give_no_auth_message() {
        assert!(auth_message(b"n,n=user", SERVER_FIRST, CLIENT_FINAL).is_none());
        assert!(auth_message(CLIENT_FIRST, SERVER_FIRST, b"c=biws,r=x").is_none());
        assert!(proof_stripped(b"c=biws,r=x,p=!!!").is_none());
    }
}
