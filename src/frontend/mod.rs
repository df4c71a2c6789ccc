//! The client side: listening, TLS, client authentication, the session start-up and the relay.

pub mod auth;
pub mod cancel;
pub mod context;
pub mod extended;
pub mod hba;
pub mod listener;
pub mod lookup;
pub mod relay;
pub mod replies;
pub mod secrets;
pub mod session;
pub mod shards;
pub mod snapshot;
pub mod tls;

pub use context::Proxy;
