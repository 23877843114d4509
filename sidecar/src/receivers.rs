//! What the app sends the sidecar: DogStatsD datagrams and Datadog traces.
//!
//! Each receiver is split as Vector splits its sources: pure decoding
//! (`dogstatsd::parser`, `trace::decode`) with table tests beside it, and
//! the socket wiring at the edge.

pub mod dogstatsd;
pub mod trace;
