//! The Logplex drain: what Heroku's Logplex posts (`dynoscope-sidecar
//! drain`, never inside a dyno's sidecar), into `heroku.*` metrics, events
//! and log records for the same pipeline and sinks as a dyno's.
//!
//! A body flows [`frames`] (octet-counted frames) → [`syslog`] (the RFC 5424
//! header) → [`heroku`] (what the line is: router, runtime, add-on, app…)
//! → [`metrics`] (samples, events, records) → [`server`] (the aggregator
//! and the pipeline). Everything but `server` is pure and table-tested;
//! `frames`, `syslog` and `heroku` have fuzz targets.

pub mod frames;
pub mod heroku;
pub mod metrics;
pub mod server;
pub mod syslog;
