//! pglater: a PostgreSQL wire-protocol proxy that adds asynchronous SQL.
// No input may panic a task (DESIGN decision 6): outside tests, every `unwrap`, `expect`,
// `panic!`, `unreachable!` and unchecked index or slice is refused; the few exceptions say
// why where they are allowed.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::indexing_slicing
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::indexing_slicing
    )
)]

pub mod admin;
pub mod auth;
pub mod config;
pub mod frontend;
pub mod later;
pub mod live;
pub mod stream;
pub mod upstream;
pub mod wire;
