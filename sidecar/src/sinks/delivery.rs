//! What every network sink shares: a bounded buffer, batching, retries, the final flush.
//!
//! A sink encodes each item into an [`Entry`] (one series, one trace chunk,
//! one resource's spans…) and [`Delivery::push`]es it: the pipeline's
//! synchronous `Sink::write` only encodes and enqueues, and returns at once.
//! One tokio task per sink, on a thread of its own shared by every sink
//! ([`delivery_runtime`]), takes the queued entries of an [`Endpoint`] as a
//! batch (at most [`DeliveryConfig::batch_bytes`], or every
//! [`DeliveryConfig::batch_interval`]), frames them (prefix, separator,
//! suffix — a JSON array, or concatenated protobuf repeated fields), compresses
//! them on a blocking thread and posts them. One batch is in flight at a time, so a sink delivers in
//! order and its memory is bounded by the buffer.
//!
//! Failures: timeouts, connection errors, 408, 429 and 5xx are retried with
//! exponential back-off and full jitter (a `Retry-After` in seconds wins);
//! other 4xx drop the batch, counted in `rejected` and logged once per
//! status. While a batch is retried new entries queue; when queued plus in
//! flight would exceed [`DeliveryConfig::buffer_bytes`] the oldest queued
//! entries are dropped and their items counted in `dropped`. A dead backend
//! therefore costs one sink its oldest data, never the pipeline its time:
//! nothing here waits on the network except [`Delivery::flush`].
//!
//! A proxied request (the tracers' own telemetry) is pushed with a
//! [`Target`] of its own: its URL and headers travel with the entry, and it
//! goes alone in its batch, uncompressed unless it came compressed.
//!
//! A reload that replaces a sink by one with the same destination moves the
//! queued entries across: [`Delivery::take_backlog`] empties the old buffer's
//! queues (the batch in flight stays with the old task, which keeps trying it
//! as a dropped sink does) and [`Delivery::accept_backlog`] queues them in the
//! new one ahead of anything newer, within its own buffer limit.
//!
//! [`Delivery::flush`] (at shutdown) sends
//! everything now and waits up to [`DeliveryConfig::flush_wait`]; what is
//! still undelivered then is logged and counted in `unflushed`, and stays
//! queued while the sidecar runs. When the sink is dropped its task keeps
//! delivering what it holds for up to [`DRAIN_AFTER_DROP`], then stops.

use std::collections::{BTreeSet, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, RETRY_AFTER, USER_AGENT};
use http::{StatusCode, Uri};
use tokio::sync::Notify;

use super::BuildError;
use crate::stats::{ItemCounts, SinkStats};

/// Default buffer per sink: 8 MiB.
pub const DEFAULT_BUFFER_BYTES: u64 = 8 * 1024 * 1024;
/// How long a dropped sink's task keeps delivering what it holds.
pub const DRAIN_AFTER_DROP: Duration = Duration::from_secs(300);

/// How a sink buffers, batches and retries.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryConfig {
    /// Queued plus in-flight bytes (before compression) before the oldest are dropped. Default: 8 MiB.
    pub buffer_bytes: u64,
    /// Largest batch before compression. Default: 1 MiB (Datadog takes 5 MB raw, 500 kB compressed).
    pub batch_bytes: usize,
    /// How long an entry may wait for a batch to fill. Default: 2 s.
    pub batch_interval: Duration,
    /// One request's time limit. Default: 10 s.
    pub request_timeout: Duration,
    /// First retry delay; doubles per attempt, with full jitter. Default: 250 ms.
    pub backoff_base: Duration,
    /// Longest retry delay (and cap of `Retry-After`). Default: 30 s.
    pub backoff_max: Duration,
    /// How long [`Delivery::flush`] waits for the buffer to empty. Default: 1.5 s
    /// (the sidecar gives its pipeline 2 s to flush once the app is gone).
    pub flush_wait: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            batch_bytes: 1024 * 1024,
            batch_interval: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            flush_wait: Duration::from_millis(1500),
        }
    }
}

/// What an entry's items are, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemKind {
    /// Metric points.
    Points,
    /// Distribution sketches.
    Sketches,
    /// Spans (and APM stats buckets).
    Spans,
    /// Events and service checks.
    Events,
    /// Log records.
    Logs,
    /// Tracer telemetry requests, passed on as they came.
    Telemetry,
}

/// How many [`ItemKind`]s there are.
pub const KINDS: usize = 6;

impl ItemKind {
    const ALL: [ItemKind; KINDS] = [
        ItemKind::Points,
        ItemKind::Sketches,
        ItemKind::Spans,
        ItemKind::Events,
        ItemKind::Logs,
        ItemKind::Telemetry,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn counter(self, counts: &ItemCounts) -> &crate::stats::Counter {
        match self {
            ItemKind::Points => &counts.points,
            ItemKind::Sketches => &counts.sketches,
            ItemKind::Spans => &counts.spans,
            ItemKind::Events => &counts.events,
            ItemKind::Logs => &counts.logs,
            ItemKind::Telemetry => &counts.telemetry,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            ItemKind::Points => "points",
            ItemKind::Sketches => "sketches",
            ItemKind::Spans => "spans",
            ItemKind::Events => "events/checks",
            ItemKind::Logs => "log records",
            ItemKind::Telemetry => "tracer telemetry requests",
        }
    }
}

/// Counts by kind as words, e.g. `12 points, 3 spans`; kinds with none are left out.
fn in_words(counts: &[u64; KINDS]) -> String {
    let listed: Vec<String> = ItemKind::ALL
        .iter()
        .filter(|kind| counts[kind.index()] > 0)
        .map(|kind| format!("{} {}", counts[kind.index()], kind.noun()))
        .collect();
    if listed.is_empty() {
        "nothing".to_owned()
    } else {
        listed.join(", ")
    }
}

/// How a batch's body is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `Content-Encoding: gzip`.
    Gzip,
    /// Snappy block format, `Content-Encoding: snappy` (Prometheus remote write).
    Snappy,
    /// As it is, no `Content-Encoding` added: a proxied body keeps the tracer's.
    None,
}

/// One URL a sink posts to, and how its entries become a body.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Short name for logs, e.g. `series`.
    pub name: &'static str,
    /// Where to post.
    pub uri: Uri,
    /// Headers of every request (content type, credentials marked sensitive).
    pub headers: HeaderMap,
    /// Compression of the body.
    pub compression: Compression,
    /// What the entries hold.
    pub kind: ItemKind,
    /// Bytes before the first entry (`{"series":[`, or protobuf header fields).
    pub prefix: Vec<u8>,
    /// Bytes between entries (`,` for JSON arrays, nothing for protobuf).
    pub separator: &'static [u8],
    /// Bytes after the last entry.
    pub suffix: &'static [u8],
    /// Most entries in one request (1 for APIs that take one object).
    pub max_entries: usize,
}

/// One encoded item (or group of items) waiting in the buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The encoded bytes, framed by the endpoint.
    pub bytes: Vec<u8>,
    /// How many items (points, spans, events) it holds.
    pub items: u64,
}

/// Where one entry goes instead of its endpoint's URL, and the headers it
/// adds: a proxied request keeps the path and headers it came with. The
/// endpoint's own headers (credentials) win over these.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The full URL.
    pub uri: Uri,
    /// Headers of this request only.
    pub headers: HeaderMap,
}

/// An entry in an endpoint's queue.
#[derive(Debug)]
struct Queued {
    /// Push order across endpoints: the oldest is evicted first.
    seq: u64,
    entry: Entry,
    /// Set for a proxied request, which goes alone in its batch.
    target: Option<Target>,
}

/// The producer's side of a sink's delivery task.
#[derive(Debug)]
pub struct Delivery {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The sink's name, e.g. `datadog datadoghq.com`.
    name: String,
    endpoints: Vec<Endpoint>,
    config: DeliveryConfig,
    stats: Arc<SinkStats>,
    buffer: Mutex<Buffer>,
    /// Signalled whenever a batch completes, so a flush can wait for an empty buffer.
    progress: Condvar,
    /// Wakes the task: a batch is full, a flush began, or the sink was dropped.
    wake: Notify,
    /// Cuts a retry's back-off short when a flush begins.
    flush_started: Notify,
    /// The deadline of a running flush, as nanoseconds since `origin`; 0: none.
    flush_until: AtomicU64,
    origin: Instant,
    /// The sink was dropped: deliver what is held, then stop.
    closed: AtomicBool,
    /// Whether a drop was logged since the last successful delivery.
    drop_logged: AtomicBool,
}

/// What an entry costs beyond its bytes (the queue slot, the allocation's header and rounding).
const ENTRY_OVERHEAD: u64 = 64;

/// The bytes an entry is charged against the buffer: what it really holds in memory.
fn cost(entry: &Entry, target: Option<&Target>) -> u64 {
    let headers = target.map_or(0, |t| {
        t.headers
            .iter()
            .map(|(name, value)| (name.as_str().len() + value.len()) as u64 + ENTRY_OVERHEAD)
            .sum()
    });
    entry.bytes.capacity() as u64 + ENTRY_OVERHEAD + headers
}

impl Queued {
    fn cost(&self) -> u64 {
        cost(&self.entry, self.target.as_ref())
    }
}

#[derive(Debug, Default)]
struct Buffer {
    /// Per endpoint: its entries, oldest first.
    queues: Vec<VecDeque<Queued>>,
    /// Per endpoint: the cost of its queued entries.
    queue_bytes: Vec<u64>,
    queued_bytes: u64,
    in_flight_bytes: u64,
    next_seq: u64,
    /// Items queued or in flight, by [`ItemKind`].
    pending: [u64; KINDS],
}

impl Buffer {
    fn is_empty(&self) -> bool {
        self.queued_bytes == 0
            && self.in_flight_bytes == 0
            && self.queues.iter().all(|q| q.is_empty())
    }
}

/// A batch taken from the buffer.
struct Batch {
    endpoint: usize,
    /// A proxied request's own URL and headers.
    target: Option<Target>,
    /// Framed, not yet compressed: [`compressed`] does that off the async workers.
    body: Bytes,
    items: u64,
    raw_bytes: u64,
}

impl Delivery {
    /// Starts the delivery task of sink `name` on the current tokio runtime.
    pub fn start(
        name: String,
        endpoints: Vec<Endpoint>,
        config: DeliveryConfig,
        stats: Arc<SinkStats>,
    ) -> Result<Delivery, BuildError> {
        let runtime = match delivery_runtime() {
            Ok(runtime) => runtime,
            Err(reason) => return Err(BuildError::Runtime { sink: name, reason }),
        };
        let client = match http_client() {
            Ok(client) => client,
            Err(reason) => return Err(BuildError::Tls { sink: name, reason }),
        };
        stats.buffer_capacity.set(config.buffer_bytes);
        let shared = Arc::new(Shared {
            name,
            buffer: Mutex::new(Buffer {
                queues: endpoints.iter().map(|_| VecDeque::new()).collect(),
                queue_bytes: vec![0; endpoints.len()],
                ..Buffer::default()
            }),
            endpoints,
            config,
            stats,
            progress: Condvar::new(),
            wake: Notify::new(),
            flush_started: Notify::new(),
            flush_until: AtomicU64::new(0),
            origin: Instant::now(),
            closed: AtomicBool::new(false),
            drop_logged: AtomicBool::new(false),
        });
        runtime.spawn(run(shared.clone(), client));
        Ok(Delivery { shared })
    }

    /// The sink's counters.
    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.shared.stats
    }

    /// Queues `entry` for `endpoint` (an index into the endpoints given to
    /// [`Delivery::start`]); drops the oldest entries when the buffer is full.
    pub fn push(&self, endpoint: usize, entry: Entry) {
        self.enqueue(endpoint, entry, None);
    }

    /// Queues a proxied request for `endpoint`: `entry` is its body, sent
    /// alone to `target`'s URL with its headers added to the endpoint's.
    pub fn push_to(&self, endpoint: usize, entry: Entry, target: Target) {
        self.enqueue(endpoint, entry, Some(target));
    }

    fn enqueue(&self, endpoint: usize, entry: Entry, request: Option<Target>) {
        let shared = &self.shared;
        let Some(target) = shared.endpoints.get(endpoint) else {
            return;
        };
        let size = cost(&entry, request.as_ref());
        let capacity = shared.config.buffer_bytes;
        let mut buffer = shared.lock();
        let mut dropped = [0u64; KINDS];
        // An entry that cannot fit beside the batch in flight evicts nothing.
        let fits = buffer.in_flight_bytes + size <= capacity;
        while fits && buffer.queued_bytes + buffer.in_flight_bytes + size > capacity {
            // The oldest queued entry of any endpoint goes first.
            let oldest = buffer
                .queues
                .iter()
                .enumerate()
                .filter_map(|(i, q)| q.front().map(|old| (old.seq, i)))
                .min();
            let Some((_, index)) = oldest else { break };
            if let Some(old) = buffer.queues[index].pop_front() {
                let kind = shared.endpoints[index].kind;
                buffer.queued_bytes -= old.cost();
                buffer.queue_bytes[index] -= old.cost();
                buffer.pending[kind.index()] -= old.entry.items;
                dropped[kind.index()] += old.entry.items;
            }
        }
        if buffer.queued_bytes + buffer.in_flight_bytes + size > capacity {
            // Larger than what the buffer can hold beside the batch in flight.
            dropped[target.kind.index()] += entry.items;
        } else {
            let seq = buffer.next_seq;
            buffer.next_seq += 1;
            buffer.queued_bytes += size;
            buffer.pending[target.kind.index()] += entry.items;
            buffer.queues[endpoint].push_back(Queued {
                seq,
                entry,
                target: request,
            });
            buffer.queue_bytes[endpoint] += size;
            if buffer.queue_bytes[endpoint] >= shared.config.batch_bytes as u64 {
                shared.wake.notify_one();
            }
        }
        shared
            .stats
            .buffer_bytes
            .set(buffer.queued_bytes + buffer.in_flight_bytes);
        drop(buffer);
        for kind in ItemKind::ALL {
            let n = dropped[kind.index()];
            if n > 0 {
                kind.counter(&shared.stats.dropped).add(n);
                if !shared.drop_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "sink {}: buffer full ({} bytes): dropping the oldest {} (counted in /status)",
                        shared.name,
                        capacity,
                        kind.noun()
                    );
                }
            }
        }
    }

    /// Sends everything buffered now and waits up to [`DeliveryConfig::flush_wait`]
    /// for it to be delivered; returns the items still undelivered, by
    /// [`ItemKind`], which are also logged and counted.
    pub fn flush(&self) -> [u64; KINDS] {
        let shared = &self.shared;
        let deadline = Instant::now() + shared.config.flush_wait;
        shared
            .flush_until
            .store(shared.nanos(deadline), Ordering::Relaxed);
        shared.wake.notify_one();
        shared.flush_started.notify_waiters();
        let wait = || {
            let mut buffer = shared.lock();
            while !buffer.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                buffer = shared
                    .progress
                    .wait_timeout(buffer, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            buffer.pending
        };
        // Blocking needs a thread the delivery task does not need; a
        // current-thread runtime has none, so there the flush only starts.
        let pending = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            Ok(_) => shared.lock().pending,
            Err(_) => wait(),
        };
        shared.flush_until.store(0, Ordering::Relaxed);
        if pending.iter().any(|&n| n > 0) {
            for kind in ItemKind::ALL {
                kind.counter(&shared.stats.unflushed)
                    .add(pending[kind.index()]);
            }
            let last = shared
                .stats
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_else(|| "none".to_owned());
            tracing::warn!(
                "sink {}: {} not delivered within the {:?} flush (last error: {last}); they stay queued while the sidecar runs",
                shared.name,
                in_words(&pending),
                shared.config.flush_wait,
            );
        }
        pending
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// The deadline of a running flush.
    fn flush_deadline(&self) -> Option<Instant> {
        match self.flush_until.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.origin + Duration::from_nanos(n)),
        }
    }

    /// Takes the next batch: the oldest entries of the first endpoint with any.
    fn take_batch(&self) -> Option<Batch> {
        let mut buffer = self.lock();
        let (index, endpoint) = self
            .endpoints
            .iter()
            .enumerate()
            .filter(|(i, _)| !buffer.queues[*i].is_empty())
            .min_by_key(|(i, _)| buffer.queues[*i].front().map(|q| q.seq))?;
        let mut raw = endpoint.prefix.clone();
        let (mut items, mut taken, mut raw_bytes) = (0u64, 0usize, 0u64);
        let mut target = None;
        while let Some(next) = buffer.queues[index].front() {
            let fits = raw.len() + next.entry.bytes.len() <= self.config.batch_bytes;
            let alone = next.target.is_some();
            if taken > 0 && (!fits || taken >= endpoint.max_entries || alone) {
                break;
            }
            let Some(queued) = buffer.queues[index].pop_front() else {
                break;
            };
            if taken > 0 {
                raw.extend_from_slice(endpoint.separator);
            }
            raw.extend_from_slice(&queued.entry.bytes);
            items += queued.entry.items;
            raw_bytes += queued.cost();
            taken += 1;
            if alone {
                target = queued.target;
                break;
            }
        }
        raw.extend_from_slice(endpoint.suffix);
        buffer.queued_bytes -= raw_bytes;
        buffer.queue_bytes[index] -= raw_bytes;
        buffer.in_flight_bytes += raw_bytes;
        drop(buffer);
        Some(Batch {
            endpoint: index,
            target,
            body: Bytes::from(raw),
            items,
            raw_bytes,
        })
    }

    /// A batch is done (delivered, refused, or given up).
    fn finish(&self, batch: &Batch) {
        let kind = self.endpoints[batch.endpoint].kind;
        let mut buffer = self.lock();
        buffer.in_flight_bytes -= batch.raw_bytes;
        buffer.pending[kind.index()] -= batch.items;
        self.stats
            .buffer_bytes
            .set(buffer.queued_bytes + buffer.in_flight_bytes);
        drop(buffer);
        self.progress.notify_all();
    }
}

/// The wait before retry `attempt`: doubling from `backoff_base` up to `backoff_max`, a random point in [d/2, d].
pub fn backoff(config: &DeliveryConfig, attempt: u32) -> Duration {
    dynoscope_backoff::Backoff::new(config.backoff_base, config.backoff_max)
        .with_jitter()
        .delay(attempt)
}

#[path = "delivery/backlog.rs"]
mod backlog;
pub use backlog::Backlog;

#[path = "delivery/send.rs"]
mod send;
#[cfg(test)]
use send::compress;
use send::{delivery_runtime, http_client, run};

#[cfg(test)]
#[path = "delivery/tests.rs"]
mod tests;
