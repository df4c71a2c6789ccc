//! What pglater knows of users' secrets and does with them, on both sides: the keys of a
//! SCRAM exchange, and the credentials pglater logs in to the server with.

pub mod credential;
pub mod md5;
pub mod scram_client;
pub mod scram_keys;

pub use credential::Credential;
