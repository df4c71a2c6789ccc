//! Asynchronous SQL: command recognition, the job store, group-committed enqueue, workers,
//! capture of results and their replay.

pub mod advice;
pub mod batch;
pub mod binary;
pub mod capture;
pub mod command;
pub mod conn;
pub mod credentials;
pub mod custom_settings;
pub mod fence;
pub mod id;
pub mod intercept;
pub mod job;
pub mod limits;
pub mod listen;
pub mod notify;
pub mod placement;
pub mod portal;
pub mod rescue;
pub mod rows;
pub mod service;
pub mod session;
pub mod show;
pub mod store;
pub mod worker;

pub use service::Later;
