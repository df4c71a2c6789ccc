//! The login credentials of job owners pglater holds no password for (users looked up with
//! auth_query): what their latest login proved (see `auth::Credential`), kept so that their
//! jobs log in as them. In memory always; with a key file (`later.credentials_key_file`)
//! also in the job store, sealed with AES-256-GCM, so jobs run after a restart and on any
//! instance that shares the store and the key file. Never stored or logged in the clear.

pub mod keyfile;
pub mod seal;

use crate::auth::Credential;
use crate::later::store::Store;
use dashmap::DashMap;
use seal::Sealer;
use tracing::warn;

pub struct Credentials {
    memory: DashMap<String, Credential>,
    sealer: Option<Sealer>,
}

impl Credentials {
    pub fn new(sealer: Option<Sealer>) -> Self {
        Self {
            memory: DashMap::new(),
            sealer,
        }
    }

    /// Whether credentials outlive this process (a key file is configured).
    pub fn persistent(&self) -> bool {
        self.sealer.is_some()
    }

    /// The owner's latest login proved `credential`: kept, and sealed into the store when a
    /// key file is configured (a failure there is logged; memory still has it).
    pub async fn remember(&self, store: &Store, owner: &str, credential: Credential) {
        let sealed = self
            .sealer
            .as_ref()
            .and_then(|s| s.seal(owner, &credential));
        self.memory.insert(owner.to_owned(), credential);
        if let Some(sealed) = sealed
            && let Err(e) = store.put_credential(owner, &sealed).await
        {
            crate::admin::metrics::store_error();
            warn!(%owner, error = %crate::later::store::failure::describe(&e), "job store: cannot keep a login key");
        }
    }

    /// The owner's credential: in memory, else unsealed from the store.
    pub async fn of(&self, store: &Store, owner: &str) -> Option<Credential> {
        if let Some(c) = self.memory.get(owner) {
            return Some(c.value().clone());
        }
        let sealer = self.sealer.as_ref()?;
        let sealed = match store.credential(owner).await {
            Ok(sealed) => sealed?,
            Err(e) => {
                crate::admin::metrics::store_error();
                warn!(%owner, error = %crate::later::store::failure::describe(&e), "job store: cannot read a login key");
                return None;
            }
        };
        let credential = sealer.open(owner, &sealed)?;
        self.memory.insert(owner.to_owned(), credential.clone());
        Some(credential)
    }
}
