//! Fuzz targets for every decoder of client bytes (and of a job's stored result), as
//! property tests on stable Rust. `cargo test --test fuzz` runs a short pass;
//! `benches/fuzz.sh` a long one (see `fuzz/harness.rs` for the budget variables). No
//! PostgreSQL is needed: these are the pure functions behind the relay.

mod fuzz {
    pub mod harness;
    pub mod input;
    pub mod sql;
}

#[path = "fuzz/binary.rs"]
mod binary;
#[path = "fuzz/command.rs"]
mod command;
#[path = "fuzz/extended.rs"]
mod extended;
#[path = "fuzz/framing.rs"]
mod framing;
#[path = "fuzz/startup.rs"]
mod startup;

use fuzz::{harness, input, sql};
