//! The dynoscope sidecar: runs in every dyno, supervises the app, and observes it.
//!
//! # Layout
//!
//! - [`telemetry`]: the data model (points, distributions' sketches, spans,
//!   events, service checks)
//!   every producer builds and every sink consumes.
//! - [`checks`]: the app's Postgres, Redis and Memcached, polled on the one
//!   dyno assigned each check; points and service checks to the pipeline.
//! - [`receivers`]: what the app sends — DogStatsD datagrams and Datadog
//!   trace payloads — parsed and decoded into [`telemetry`] types.
//! - [`cli`] → [`run`]: `dynoscope-sidecar run` wires everything below for
//!   the life of the app; [`collector`]: `dynoscope-sidecar drain`, the
//!   Logplex drain as a process of its own (receivers' `drain`, pipeline, sinks).
//! - [`supervisor`]: the app in its own process group; forwarded signals,
//!   the grace period, zombie reaping, the exit status.
//! - [`config`]: where the DynoConfig comes from (file, or a manifest
//!   rendered for `$DYNO`), what changed, the app's `DD_*` environment, and
//!   the part of it the pipeline and its sinks follow ([`config::PipelineConfig`]).
//! - [`config_watch`]: hot reload; publishes each valid config on a watch
//!   channel every component follows.
//! - [`sampler`]: dyno memory (cgroup), load, the app's process tree, the
//!   sidecar's own RSS; Heroku log-runtime-metrics lines.
//! - [`pipeline`]: one bounded queue from every producer, tagging, sinks;
//!   producers hold a [`pipeline::PipelineHandle`].
//! - [`sinks`]: stdout (Heroku l2met lines), jsonl, and the network sinks
//!   (datadog, prometheus, otlp) with their shared buffered delivery;
//!   [`proto`]: the protobuf messages they send.
//! - [`status`]: what `/status` reports (the typed model of
//!   `dynoscope_crds::sidecar_status`), the loopback endpoint serving it, and
//!   `dynoscope-sidecar status`; [`http_server`]: serving a router with
//!   timeouts and a connection limit.
//! - [`output`]: the sidecar's own stdout and stderr, each written by a
//!   thread of its own from a byte-bounded queue; full, it drops and counts.
//! - [`stats`]: every internal counter, in one place.
//! - [`clock`]: unix time, once.
//! - [`memory`]: the idle RSS's two process-wide settings (malloc arenas
//!   capped, start-up pages unmapped once the app runs); the only `unsafe`.
//!
//! Rooms depend one way: receivers, sampler and checks → pipeline → sinks;
//! status reads counters (`stats`) and is written to by the others; none of
//! these imports a room that imports it back.
//!
//! Telemetry flows receivers / sampler → [`pipeline::PipelineHandle::send`]
//! → pipeline task (tag) → sinks; config flows file → [`config_watch`] →
//! watch channel → pipeline, sampler, admin, supervisor (grace period).

pub mod checks;
pub mod cli;
pub mod clock;
pub mod collector;
pub mod config;
pub mod config_watch;
pub mod http_server;
pub mod memory;
pub mod output;
pub mod pipeline;
pub mod proto;
pub mod receivers;
pub mod run;
pub mod sampler;
pub mod sinks;
pub mod stats;
pub mod status;
pub mod supervisor;
pub mod telemetry;
