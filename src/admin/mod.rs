//! What operators look at: the Prometheus metrics endpoint.
//!
//! The metrics are plain atomics in statics, written to by small hooks in the relay, the
//! sessions, the workers and the store's callers, and rendered in Prometheus' text format
//! when scraped. A hand-written registry and responder, not the `metrics` crate with
//! `metrics-exporter-prometheus`: that exporter brings about thirty crates (metrics-util,
//! quanta, crossbeam, sketches-ddsketch, thiserror with syn 3 ...) even without its
//! `http-listener` feature, which adds hyper, hyper-util and http-body-util, while a dozen
//! fixed metrics need only counters, gauges, two histograms and a GET of one path. Holding
//! statics also keeps the relay free of registry lookups.

pub mod exposition;
pub mod http;
pub mod metrics;

use crate::config::Config;
use crate::later::Later;
use std::sync::Arc;

/// Starts the metrics endpoint if `metrics.listen` is set; fails if it cannot listen.
pub async fn start(config: &Config, later: Option<Arc<Later>>) -> anyhow::Result<()> {
    match &config.metrics.listen {
        Some(addr) => http::start(addr, later).await,
        None => Ok(()),
    }
}
