//! The PostgreSQL wire format: framing of the message stream, the startup-phase packets, and
//! the few messages the proxy builds itself. Forwarded traffic is never decoded here beyond
//! its 5-byte headers.

pub mod be;
pub mod fields;
pub mod frame;
pub mod io;
pub mod notification;
pub mod replies;
pub mod reply;
pub mod request;
pub mod startup;
pub mod text;
