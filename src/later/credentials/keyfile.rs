//! `later.credentials_key_file`: 32 random bytes, readable by pglater's user only. Created
//! (mode 0600) when missing; refused when anyone else may read it, or when it is not 32
//! bytes. Every instance sharing a store must have the same file.

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use zeroize::Zeroizing;

pub const KEY_LEN: usize = 32;

pub fn load_or_create(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "later.credentials_key_file: {shown} is readable or writable by others (mode {mode:o}); chmod 600 it"
                );
            }
            let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
            std::fs::File::open(path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .with_context(|| format!("later.credentials_key_file: cannot read {shown}"))?;
            let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!(
                    "later.credentials_key_file: {shown} must hold exactly {KEY_LEN} bytes"
                )
            })?;
            Ok(Zeroizing::new(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Zeroizing::new(rand::random::<[u8; KEY_LEN]>());
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .and_then(|mut f| f.write_all(&key[..]).and_then(|()| f.sync_all()))
                .with_context(|| format!("later.credentials_key_file: cannot create {shown}"))?;
            tracing::info!(path = %shown, "created the credentials key file");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("later.credentials_key_file: {shown}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_then_read_back_and_refused_when_open_to_others() {
        let dir = std::env::temp_dir().join(format!("pglater-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        let _ = std::fs::remove_file(&path);
        let made = load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(*load_or_create(&path).unwrap(), *made);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("readable"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, b"short").unwrap();
        assert!(load_or_create(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
