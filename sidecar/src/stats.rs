//! The one home of the sidecar's internal counters.
//!
//! Every counter is a field of a typed struct here, grouped by the component
//! that increments it; `/status` serialises [`Stats`] as its `counters`
//! section, so a new counter shows up there by being added here. Components
//! receive an `Arc<Stats>` and increment their own group, never a loose atomic.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use serde::{Serialize, Serializer};

/// A monotonically increasing count, serialised as a plain number.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Serialize for Counter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.get())
    }
}

/// A value that goes up and down (a buffer's fill), serialised as a plain number.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Adds `n` unless the value would pass `limit`; returns whether it did.
    /// One atomic step, so concurrent producers cannot overshoot together.
    pub fn add_within(&self, n: u64, limit: u64) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                v.checked_add(n).filter(|&sum| sum <= limit)
            })
            .is_ok()
    }

    /// Takes `n` away (never below zero).
    pub fn sub(&self, n: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }
}

impl Serialize for Gauge {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.get())
    }
}

/// Every counter of the sidecar.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    /// The pipeline between producers and sinks.
    pub pipeline: PipelineStats,
    /// Config reloads.
    pub reloads: ReloadStats,
    /// The app's supervision.
    pub supervisor: SupervisorStats,
    /// The memory sampler.
    pub sampler: SamplerStats,
    /// Background tasks of the sidecar.
    pub tasks: TaskStats,
    /// DogStatsD: datagrams, lines, errors, aggregation.
    pub dogstatsd: DogStatsdStats,
    /// The trace receiver: requests, spans, errors, APM stats.
    pub traces: TraceStats,
    /// The OTLP receiver: requests, spans, data points, log records, errors.
    pub otlp: OtlpStats,
    /// The sidecar's own stdout and stderr.
    pub output: OutputStats,
    /// The app's stdout and stderr: pass-through and log records.
    pub logs: LogsStats,
    /// The Logplex drain (`dynoscope-sidecar drain`): requests, frames, lines, metrics.
    pub drain: DrainStats,
    /// The live sinks' own stats: `/status` lists them under `sinks`, not `counters`.
    #[serde(skip)]
    pub sinks: SinkRegistry,
}

/// Counters of [`crate::pipeline`].
#[derive(Debug, Default, Serialize)]
pub struct PipelineStats {
    /// Telemetry items accepted by `PipelineHandle::send`.
    pub accepted: Counter,
    /// Items refused because the pipeline's queue was full.
    pub dropped_full: Counter,
    /// Items refused because the queue held its byte budget
    /// (`pipeline::QUEUE_BYTES`), by kind (`points`, `traces`, `event`,
    /// `service_check`, `tracer_telemetry`).
    pub dropped_over_budget: KindCounts,
    /// Approximate bytes of the items queued now.
    pub queued_bytes: Gauge,
    /// Items refused because the pipeline was shutting down.
    pub dropped_closed: Counter,
    /// Items handed to the sinks (each item counted once, whatever the number of sinks).
    pub processed: Counter,
    /// Writes or flushes a sink failed.
    pub sink_errors: Counter,
    /// Items a sink never saw because its own queue was full (the sink fell
    /// behind the pipeline); counted once per sink that missed them.
    pub sink_queue_full: Counter,
    /// Times the pipeline's task panicked and was restarted, or a sink's task
    /// panicked in a write (the batch is lost to that sink, which carries on).
    pub panics: Counter,
    /// Times the pipeline applied a new tag set or sink list.
    pub reconfigured: Counter,
    /// Sinks built by a reload because their own config changed or they are new.
    pub sinks_built: Counter,
    /// Sinks kept as they were by a reload because their own config did not change.
    pub sinks_kept: Counter,
    /// Sinks retired by a reload (removed, or replaced by a rebuilt one).
    pub sinks_retired: Counter,
    /// Buffered entries a replaced sink handed to its successor.
    pub handed_over: Counter,
}

/// Counters of [`crate::config_watch`].
#[derive(Debug, Default, Serialize)]
pub struct ReloadStats {
    /// New configs applied.
    pub ok: Counter,
    /// New config contents refused (the last good config stayed).
    pub failed: Counter,
}

/// Counters of [`crate::supervisor`].
#[derive(Debug, Default, Serialize)]
pub struct SupervisorStats {
    /// Signals forwarded to the app's process group.
    pub signals_forwarded: Counter,
    /// Orphaned processes (not the app) reaped.
    pub reaped: Counter,
}

/// Counters of [`crate::sampler`].
#[derive(Debug, Default, Serialize)]
pub struct SamplerStats {
    /// Samples taken.
    pub samples: Counter,
    /// Samples that could not read the cgroup or `/proc`.
    pub errors: Counter,
    /// Samples where the dyno used more memory than its quota (Heroku's R14, or R15).
    pub over_quota: Counter,
    /// Times the app was killed for R15 under `up` (past its size's limit).
    pub killed: Counter,
}

/// Counters of the sidecar's own tasks.
#[derive(Debug, Default, Serialize)]
pub struct TaskStats {
    /// Background tasks (sampler, admin, watcher) that panicked and were restarted.
    pub panics: Counter,
}

/// Counters of [`crate::output`]: what the sidecar's own output streams carried.
#[derive(Debug, Default, Serialize)]
pub struct OutputStats {
    /// Stdout: the stdout sink's l2met lines and the sampler's runtime-metrics lines.
    pub stdout: StreamStats,
    /// Stderr: the sidecar's logs.
    pub stderr: StreamStats,
}

/// What one output stream wrote and what it dropped because its reader fell behind.
#[derive(Debug, Default, Serialize)]
pub struct StreamStats {
    /// Lines written (the notices of dropped lines included).
    pub written_lines: Counter,
    /// Bytes of those lines, newlines included.
    pub written_bytes: Counter,
    /// Lines dropped: the queue was full, or the stream refused the write.
    pub dropped_lines: Counter,
    /// Bytes of those lines.
    pub dropped_bytes: Counter,
}

/// Counters of `crate::receivers::logs`: the app's output passed through, and the
/// log records made of it.
#[derive(Debug, Default, Serialize)]
pub struct LogsStats {
    /// Lines of the app's output read from its pipes (every line, logs on or off).
    pub lines_read: Counter,
    /// Bytes of those lines.
    pub bytes_read: Counter,
    /// Bytes the pass-through could not write to the sidecar's own stdout or
    /// stderr (the reader closed it).
    pub passthrough_errors: Counter,
    /// Log records handed to the pipeline.
    pub records: Counter,
    /// Records made of more than one line (stack traces, `multiLine` groups).
    pub multiline_groups: Counter,
    /// Lines longer than `maxLineBytes`, cut and marked `...TRUNCATED...`.
    pub truncated: Counter,
    /// Lines or records dropped, by reason: `rule` (an exclude or include
    /// rule), `budget` (the log queue or the pipeline was full).
    pub dropped: KindCounts,
    /// Lines that looked structured but did not parse, by format (`json`).
    pub parse_failures: KindCounts,
}

/// Counts by a stable kind name (`bad_value`, `truncated`…), for errors that
/// are rare enough that a lock per increment costs nothing.
#[derive(Debug, Default)]
pub struct KindCounts(Mutex<BTreeMap<&'static str, u64>>);

impl KindCounts {
    /// Adds one to `kind`; returns whether it is the first of its kind (to log it once).
    pub fn inc(&self, kind: &'static str) -> bool {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = map.entry(kind).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// Adds `n` to `kind`; returns whether these are the first of their kind.
    pub fn add(&self, kind: &'static str, n: u64) -> bool {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = map.entry(kind).or_insert(0);
        let first = *count == 0;
        *count += n;
        first && n > 0
    }

    /// The count of `kind`.
    pub fn get(&self, kind: &str) -> u64 {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(kind).copied().unwrap_or(0)
    }
}

impl Serialize for KindCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        serializer.collect_map(map.iter())
    }
}

/// Counters of the DogStatsD receiver (`crate::receivers::dogstatsd::server`).
#[derive(Debug, Default, Serialize)]
pub struct DogStatsdStats {
    /// Datagrams read (UDP and unix socket).
    pub datagrams: Counter,
    /// Bytes of those datagrams.
    pub bytes: Counter,
    /// Metric lines accepted.
    pub metrics: Counter,
    /// Events accepted.
    pub events: Counter,
    /// Service checks accepted.
    pub service_checks: Counter,
    /// Lines rejected, by kind of error (`bad_value`, `bad_type`…).
    pub parse_errors: KindCounts,
    /// Metric lines dropped because the aggregator's byte budget was spent
    /// (a new context, or a sample that would grow one).
    pub context_overflow: Gauge,
    /// Bytes the aggregator holds now, against its budget.
    pub context_bytes: Gauge,
    /// `|T` points dropped because the aggregator's byte budget was spent.
    pub timestamped_overflow: Gauge,
    /// Metric lines renamed by a mapping.
    pub mapped: Gauge,
    /// Points the aggregator flushed to the pipeline.
    pub points_flushed: Counter,
    /// Contexts (name + tags + type) in the open buckets now.
    pub contexts: Gauge,
    /// The UDP socket's receive buffer as the kernel granted it, in bytes.
    pub receive_buffer_bytes: Gauge,
    /// Datagrams the kernel dropped because a UDP receive buffer was full
    /// (`RcvbufErrors` of `/proc/net/snmp` since the sidecar started; the
    /// count covers the dyno's network namespace, so in a container it is the dyno's).
    pub kernel_drops: Gauge,
    /// Panics while handling a datagram or a flush, contained.
    pub panics: Counter,
}

/// Counters of the trace receiver (`crate::receivers::trace::server`).
#[derive(Debug, Default, Serialize)]
pub struct TraceStats {
    /// Trace payloads received (any version).
    pub requests: Counter,
    /// Bytes of those payloads.
    pub bytes: Counter,
    /// Trace chunks decoded.
    pub chunks: Counter,
    /// Spans decoded.
    pub spans: Counter,
    /// Chunks with sampling priority ≤ 0: counted in APM stats, not forwarded.
    pub rejected_chunks: Counter,
    /// Payloads refused, by reason (`too_large`, `unsupported_media_type`,
    /// `queue_full`, `in_flight_budget`, `pipeline_budget`, `sink_backlog`, `body_timeout`,
    /// or the decode error: `truncated`, `not_traces`…).
    pub refused: KindCounts,
    /// Connections closed at once because [`MAX_CONNECTIONS`] were open.
    ///
    /// [`MAX_CONNECTIONS`]: crate::receivers::trace::server::MAX_CONNECTIONS
    pub connections_refused: Counter,
    /// Tracer telemetry requests answered (`/telemetry/proxy/…`).
    pub telemetry_requests: Counter,
    /// Tracer telemetry requests handed to a Datadog sink (counted by the
    /// pipeline; the sink's `sent.telemetry` counts what its intake accepted).
    pub telemetry_forwarded: Counter,
    /// Tracer telemetry requests not forwarded, by reason (`no_datadog_sink`,
    /// `queue_full`, `too_large`, `incomplete_body`, `in_flight_budget`, `body_timeout`).
    pub telemetry_dropped: KindCounts,
    /// Spans counted in APM stats.
    pub stats_spans: Gauge,
    /// Spans left out of APM stats because its byte budget was spent.
    pub stats_overflow: Gauge,
    /// Bytes APM stats hold now, against their budget.
    pub stats_bytes: Gauge,
    /// APM stats points flushed to the pipeline.
    pub stats_points: Counter,
}

/// Counters of the OTLP receiver (`crate::receivers::otlp`).
#[derive(Debug, Default, Serialize)]
pub struct OtlpStats {
    /// Requests received (`/v1/traces`, `/v1/metrics`, `/v1/logs`).
    pub requests: Counter,
    /// Bytes of their bodies, as sent (compressed).
    pub bytes: Counter,
    /// Spans decoded and forwarded (rejected ones not included).
    pub spans: Counter,
    /// Trace chunks (one per trace id and request) made of them.
    pub chunks: Counter,
    /// Spans rejected: a trace or span id of the wrong length.
    pub rejected_spans: Counter,
    /// Metric data points decoded.
    pub data_points: Counter,
    /// Data points rejected: no value, or no temporality.
    pub rejected_data_points: Counter,
    /// Points (gauges, counts) sent to the pipeline.
    pub points: Counter,
    /// Sketches (histograms) sent to the pipeline.
    pub sketches: Counter,
    /// Points of new cumulative series dropped because the delta state held its bytes.
    pub delta_state_full: Counter,
    /// Cumulative series followed now.
    pub delta_series: Gauge,
    /// Bytes the cumulative → delta state holds now.
    pub delta_state_bytes: Gauge,
    /// Log records decoded.
    pub log_records: Counter,
    /// Requests refused, by reason (`too_large`, `unsupported_media_type`,
    /// `unsupported_encoding`, `bad_gzip`, `bad_protobuf`, `bad_json`,
    /// `queue_full`, `in_flight_budget`, `pipeline_budget`, `sink_backlog`,
    /// `body_timeout`, `incomplete_body`).
    pub refused: KindCounts,
    /// Connections closed at once because every slot was taken.
    pub connections_refused: Counter,
    /// Spans counted in the OTLP receiver's APM stats.
    pub stats_spans: Gauge,
    /// APM stats points flushed to the pipeline.
    pub stats_points: Counter,
}

/// Counters of the Logplex drain ([`crate::receivers::drain`]).
#[derive(Debug, Default, Serialize)]
pub struct DrainStats {
    /// Requests received.
    pub requests: Counter,
    /// Bytes of their bodies.
    pub bytes: Counter,
    /// Requests refused, by reason (`unauthorized`, `too_large`,
    /// `queue_full`, `body_timeout`, `incomplete_body`, `in_flight_budget`).
    pub refused: KindCounts,
    /// Frames (`Logplex-Frame-Id`) answered 200 without being read again: retries.
    pub duplicate_frames: Counter,
    /// Requests whose `Logplex-Msg-Count` differs from the messages found.
    pub msg_count_mismatch: Counter,
    /// Messages read from frames.
    pub messages: Counter,
    /// Bytes that were not a frame, by reason (`no_length`, `truncated`).
    pub malformed_frames: KindCounts,
    /// Messages that were not RFC 5424 lines, by reason (`utf8`, `pri`, `header`, `timestamp`).
    pub bad_lines: KindCounts,
    /// Lines read, by what they are (`router`, `runtime`, `dyno_error`,
    /// `crashed`, `api`, `addon`, `logplex`, `app`, `platform`).
    pub lines: KindCounts,
    /// Metric samples folded into the aggregator.
    pub samples: Counter,
    /// Samples dropped because the aggregator held its byte budget.
    pub samples_overflow: Counter,
    /// Events sent.
    pub events: Counter,
    /// Events not sent because one with the same key was sent less than 10 s before.
    pub events_suppressed: Counter,
    /// Log records sent.
    pub log_records: Counter,
    /// App lines that began with `{` but were not JSON.
    pub json_failures: Counter,
    /// Points and sketches flushed to the pipeline.
    pub points_flushed: Counter,
}

/// Counts of the things a sink carries, by kind.
#[derive(Debug, Default, Serialize)]
pub struct ItemCounts {
    /// Metric points (one per series and timestamp).
    pub points: Counter,
    /// Distribution sketches (one per series and interval).
    pub sketches: Counter,
    /// Spans (and APM stats buckets).
    pub spans: Counter,
    /// Events and service checks.
    pub events: Counter,
    /// Log records.
    pub logs: Counter,
    /// Tracer telemetry requests (`/telemetry/proxy/…`), passed on as they came.
    pub telemetry: Counter,
}

/// The kinds of data a sink carries, as `/status` names them.
pub const KIND_NAMES: [&str; 6] = ["points", "sketches", "spans", "events", "logs", "telemetry"];

/// One kind's part of a network sink's buffer.
#[derive(Debug, Default, Serialize)]
pub struct KindBuffer {
    /// Its share of the memory budget, in bytes (it may borrow free room beyond).
    pub share_bytes: Gauge,
    /// Memory it holds now: queued, in flight, and on its way to disk.
    pub memory_bytes: Gauge,
    /// Bytes it holds in the disk buffer.
    pub disk_bytes: Gauge,
    /// Unix seconds when the oldest item it still holds was queued; 0: none.
    pub oldest: AtomicI64,
    /// Entries written to the disk buffer because memory was full (or at shutdown).
    pub spilled: Counter,
    /// Entries read back from the disk buffer and sent.
    pub replayed: Counter,
}

/// A sink's buffer by kind, in [`KIND_NAMES`] order; serialised as a map by
/// kind name, leaving out kinds the sink does not carry.
#[derive(Debug, Default)]
pub struct KindBuffers(pub [KindBuffer; 6]);

impl Serialize for KindBuffers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(KIND_NAMES.iter().zip(&self.0).filter(|(_, k)| {
            k.share_bytes.get() > 0 || k.memory_bytes.get() > 0 || k.disk_bytes.get() > 0
        }))
    }
}

/// A sink's disk buffer.
#[derive(Debug, Default)]
pub struct DiskStats {
    /// Its directory; `None`: the sink has no disk buffer.
    pub path: Mutex<Option<String>>,
    /// Bytes it may take.
    pub capacity: Gauge,
    /// Bytes it takes now.
    pub bytes: Gauge,
    /// Records found torn or corrupt (a `kill -9` or a power loss mid-write) and skipped.
    pub corrupt_records: Counter,
}

impl Serialize for DiskStats {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let path = self
            .path
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(path) = path else {
            return serializer.serialize_none();
        };
        let mut out = serializer.serialize_struct("DiskStats", 4)?;
        out.serialize_field("path", &path)?;
        out.serialize_field("capacity", &self.capacity)?;
        out.serialize_field("bytes", &self.bytes)?;
        out.serialize_field("corrupt_records", &self.corrupt_records)?;
        out.end()
    }
}

/// Failed send attempts of a network sink, by kind.
#[derive(Debug, Default, Serialize)]
pub struct SendErrors {
    /// No answer within the request timeout (retried).
    pub timeout: Counter,
    /// Could not connect, or the connection broke (retried).
    pub connection: Counter,
    /// 408 Request Timeout (retried).
    pub status_408: Counter,
    /// 429 Too Many Requests (retried, after `Retry-After` when given).
    pub status_429: Counter,
    /// 5xx (retried).
    pub status_5xx: Counter,
    /// Any other 4xx: the batch is dropped and counted in `rejected`.
    pub status_4xx: Counter,
}

/// What one sink did: counters, the buffer's fill, the last success and error.
///
/// Network sinks share the machinery of `sinks::delivery`, which keeps these;
/// the jsonl sink's writer keeps the ones that apply to a file. `/status`
/// lists every live sink under `sinks`.
#[derive(Debug, Default, Serialize)]
pub struct SinkStats {
    /// The sink as `/status` names it, e.g. `datadog datadoghq.com`.
    pub name: String,
    /// Unix seconds when the running instance of this sink was built: a
    /// reload that leaves the sink's own config alone leaves this alone too.
    pub started: AtomicI64,
    /// Times a sink of this name was built since these counters began (1 for
    /// a sink no reload has rebuilt).
    pub builds: Counter,
    /// Items the backend accepted.
    pub sent: ItemCounts,
    /// Request bodies sent and accepted, as on the wire (compressed).
    pub bytes: Counter,
    /// Requests the backend accepted.
    pub batches: Counter,
    /// Attempts repeated after a retryable failure.
    pub retries: Counter,
    /// Failed attempts, by kind.
    pub errors: SendErrors,
    /// Failed file operations of the jsonl sink, by kind of I/O error
    /// (`storage_full`, `permission_denied`…); each is retried.
    pub io_errors: KindCounts,
    /// Items dropped, oldest first, because the buffer was full.
    pub dropped: ItemCounts,
    /// Items in batches the backend refused with a non-retryable 4xx.
    pub rejected: ItemCounts,
    /// Items still undelivered when a flush (at shutdown) ran out of time.
    pub unflushed: ItemCounts,
    /// Memory the buffer holds now: queued and in-flight entries before compression, with their overhead.
    pub buffer_bytes: Gauge,
    /// The buffer's limit in bytes.
    pub buffer_capacity: Gauge,
    /// The buffer by kind of data (network sinks): share, memory, disk, oldest item.
    pub buffer_kinds: KindBuffers,
    /// The disk buffer, for a sink that has one.
    pub disk: DiskStats,
    /// Unix seconds of the last accepted request; 0 before the first.
    pub last_success: AtomicI64,
    /// The last failure, without secrets (no header values are ever quoted).
    pub last_error: Mutex<Option<String>>,
}

impl SinkStats {
    /// Records the last failure.
    pub fn set_last_error(&self, error: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
    }
}

/// The live sinks' stats, owned by the sidecar's [`Stats`] (so by whoever
/// built the pipeline, never the process). Entries are weak: a sink that is
/// gone (and has delivered what it held) leaves the list.
#[derive(Debug, Default)]
pub struct SinkRegistry(Mutex<Vec<Weak<SinkStats>>>);

impl SinkRegistry {
    /// The stats of a sink called `name` being built now: those of the live
    /// sink of that name (a rebuilt sink keeps counting where its predecessor
    /// was, and the predecessor's last deliveries count there too), or new
    /// ones. Counts the build and stamps `started`.
    pub fn register(&self, name: &str) -> Arc<SinkStats> {
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|w| w.strong_count() > 0);
        let stats = match list
            .iter()
            .filter_map(Weak::upgrade)
            .find(|s| s.name == name)
        {
            Some(found) => found,
            None => {
                let stats = Arc::new(SinkStats {
                    name: name.to_owned(),
                    ..SinkStats::default()
                });
                list.push(Arc::downgrade(&stats));
                stats
            }
        };
        stats.builds.inc();
        stats
            .started
            .store(crate::clock::unix_now(), Ordering::Relaxed);
        stats
    }

    /// The live sinks' stats, in the order they were first built.
    pub fn live(&self) -> Vec<Arc<SinkStats>> {
        let list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        list.iter().filter_map(Weak::upgrade).collect()
    }

    /// The stats of the live sink called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<SinkStats>> {
        self.live().into_iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_serialise_as_numbers() {
        let stats = Stats::default();
        stats.pipeline.accepted.add(3);
        stats.reloads.failed.inc();
        let json = serde_json::to_value(&stats).unwrap_or_default();
        assert_eq!(json["pipeline"]["accepted"], 3);
        assert_eq!(json["reloads"]["failed"], 1);
        assert_eq!(json["reloads"]["ok"], 0);
    }

    #[test]
    fn a_rebuilt_sink_keeps_its_counters_and_a_dropped_one_leaves() {
        let registry = SinkRegistry::default();
        let first = registry.register("datadog a");
        first.sent.points.add(2);
        let again = registry.register("datadog a");
        assert_eq!(again.sent.points.get(), 2);
        assert_eq!(again.builds.get(), 2);
        assert!(again.started.load(Ordering::Relaxed) > 0);
        drop((first, again));
        assert!(registry.get("datadog a").is_none());
        assert_eq!(registry.register("datadog a").sent.points.get(), 0);
    }
}
