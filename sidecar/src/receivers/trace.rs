//! The trace receiver: Datadog trace API bodies → [`TraceChunk`](crate::telemetry::TraceChunk)s.
//!
//! - [`decode`]: v0.4 and v0.5 msgpack and v0.3/v0.4 JSON bodies.
//! - [`apm_stats`]: APM stats (hits, errors, latency sketches) computed from every decoded chunk, as the trace-agent does.
//! - [`edge`]: connection limit, header/idle and body timeouts, the byte budget of bodies in flight.
//! - [`server`]: the trace API over HTTP; decodes, counts APM stats, hands chunks to the pipeline.

pub mod apm_stats;
pub mod decode;
pub mod edge;
pub mod server;
