//! pglater: a PostgreSQL wire-protocol proxy that adds asynchronous SQL.

pub mod admin;
pub mod config;
pub mod frontend;
pub mod later;
pub mod live;
pub mod stream;
pub mod upstream;
pub mod wire;
