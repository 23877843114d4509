//! The trace receiver: Datadog trace API bodies → [`TraceChunk`](crate::telemetry::TraceChunk)s.
//!
//! - [`decode`]: v0.4 and v0.5 msgpack and v0.3/v0.4 JSON bodies.

pub mod decode;
pub mod server;
