//! Connections from the proxy to PostgreSQL: transport and TLS, login as the client's user,
//! and CancelRequest.

pub mod cancel;
pub mod connect;
pub mod control;
pub mod login;
pub mod tls;

pub use connect::{ConnectError, Upstream};
pub use login::{LoginError, login};
