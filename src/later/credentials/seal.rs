//! AES-256-GCM sealing of credentials for the job store. The owner's name is the associated
//! data, so a sealed credential moved to another owner's row does not open.

use super::keyfile::KEY_LEN;
use crate::auth::Credential;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

/// Format version, in the associated data.
const CONTEXT: &[u8] = b"pglater credential v1\0";

pub struct Sealer {
    key: LessSafeKey,
}

fn aad(owner: &str) -> Vec<u8> {
    let mut a = CONTEXT.to_vec();
    a.extend_from_slice(owner.as_bytes());
    a
}

impl Sealer {
    pub fn new(key: &Zeroizing<[u8; KEY_LEN]>) -> Option<Self> {
        let unbound = UnboundKey::new(&AES_256_GCM, &key[..]).ok()?;
        Some(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    /// nonce || ciphertext || tag.
    pub fn seal(&self, owner: &str, credential: &Credential) -> Option<Vec<u8>> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut data = credential.to_bytes();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(aad(owner)),
                &mut *data,
            )
            .ok()?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&data);
        Some(out)
    }

    pub fn open(&self, owner: &str, sealed: &[u8]) -> Option<Credential> {
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = Zeroizing::new(body.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(owner)), &mut data)
            .ok()?;
        Credential::from_bytes(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_for_its_owner_only_and_hides_the_secret() {
        let sealer = Sealer::new(&Zeroizing::new([5; KEY_LEN])).unwrap();
        let c = Credential::password("pencil-sealed");
        let sealed = sealer.seal("alice", &c).unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"pencil"));
        let back = sealer.open("alice", &sealed).unwrap();
        assert_eq!(back.to_bytes(), c.to_bytes());
        assert!(sealer.open("bob", &sealed).is_none());
        let other = Sealer::new(&Zeroizing::new([6; KEY_LEN])).unwrap();
        assert!(other.open("alice", &sealed).is_none());
        let mut tampered = sealed.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert!(sealer.open("alice", &tampered).is_none());
        assert!(sealer.open("alice", &sealed[..5]).is_none());
        // A fresh nonce each time.
        assert_ne!(sealer.seal("alice", &c).unwrap(), sealed);
    }
}
