//! Protobuf messages the network sinks send, hand-written with prost for the
//! subset used (field numbers from the public schemas named in each module).
//!
//! - [`datadog`]: the trace intake's `AgentPayload` (PROTOCOLS.md §3) and the
//!   sketch intake's `SketchPayload` (§5).
//! - [`otlp`]: OTLP traces and metrics (opentelemetry-proto); [`otlp_logs`]: OTLP logs.
//! - [`prometheus`]: the remote-write `WriteRequest`.

pub mod datadog;
pub mod otlp;
pub mod otlp_logs;
pub mod prometheus;
