//! OTLP/HTTP on `127.0.0.1:<otlp.port>` (4318): what OpenTelemetry SDKs
//! export to, answered as the OpenTelemetry Collector answers.
//!
//! | path | what | becomes |
//! | --- | --- | --- |
//! | `POST /v1/traces` | `ExportTraceServiceRequest` | trace chunks ([`spans`]), counted in APM stats first |
//! | `POST /v1/metrics` | `ExportMetricsServiceRequest` | points and sketches ([`metrics`], cumulative → delta in [`delta`]) |
//! | `POST /v1/logs` | `ExportLogsServiceRequest` | counted; log records once issue 16 lands ([`logs::to_telemetry`]) |
//!
//! Bodies are protobuf (`application/x-protobuf`) or JSON
//! (`application/json`), optionally gzip (`Content-Encoding: gzip`), decoded
//! with the `opentelemetry-proto` crate's types ([`decode`]). No OTLP/gRPC:
//! it would bring tonic and HTTP/2 (h2) into a sidecar whose other servers
//! and client are HTTP/1 only; SDKs are told `http/protobuf` ([`env`]).
//!
//! The conversions ([`spans::convert`], [`metrics::convert`],
//! [`logs::records`]) are plain functions, request in, telemetry out, for a
//! telemetry drain to reuse.
//!
//! | answer | when | counted as |
//! | --- | --- | --- |
//! | 200 | accepted; the `Export…Response` in the request's encoding, with `partial_success` when spans or points were rejected | |
//! | 400 | undecodable (the reason in a `google.rpc.Status` body), or the body ended early | `bad_protobuf`, `bad_json`, `bad_gzip`, `incomplete_body` |
//! | 408 | the body took longer than [`edge::BODY_TIMEOUT`] | `body_timeout` |
//! | 413 | over [`MAX_REQUEST_BYTES`], or over [`MAX_DECODED_BYTES`] once gunzipped | `too_large` |
//! | 415 | a media type other than protobuf or JSON, an encoding other than gzip | `unsupported_media_type`, `unsupported_encoding` |
//! | 429 | bodies in flight (compressed and gunzipped) hold [`IN_FLIGHT_BYTES`]; the pipeline or a sink is full | `in_flight_budget`, `pipeline_budget`, `queue_full`, `sink_backlog` |
//!
//! SDKs retry 429 with back-off, as OTLP/HTTP asks. Connections, idle and
//! body timeouts are the trace receiver's ([`edge`]), with this receiver's
//! own byte budget; the delta state is bounded by [`delta::MAX_STATE_BYTES`].
//! Together: 12 MiB of bodies + 4 MiB of series at most.

pub mod common;
pub mod decode;
pub mod delta;
pub mod env;
pub mod logs;
pub mod metrics;
mod server;
pub mod spans;

pub use server::{Receiver, Routes};

/// The largest request body accepted, as sent. Default: 4 MiB (SDKs export
/// batches of 512 spans, a few hundred KiB).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// The largest body once gunzipped. Default: 8 MiB.
pub const MAX_DECODED_BYTES: usize = 8 << 20;
/// Bodies held at once, as sent and gunzipped, across all connections. Default: 12 MiB.
pub const IN_FLIGHT_BYTES: usize = 12 << 20;

use super::trace::edge;
