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
//! Failures (the retry policy): 408, 429 and 5xx are retried with
//! exponential back-off and full jitter, from [`DeliveryConfig::backoff_base`]
//! up to [`DeliveryConfig::backoff_max`] (30 s) — an endpoint that answers
//! but fails is not hammered — and a `Retry-After` in seconds wins.
//! Connection errors and timeouts back off the same way but only up to
//! [`DeliveryConfig::reconnect_max`] (1 s): nothing answered, a refused
//! connection costs the endpoint nothing, and the sink finds it back within
//! about a second of its return. Other 4xx drop the batch, counted in
//! `rejected` and logged once per status. A flush (reload, shutdown) cuts a
//! running wait short once, then the policy applies as before: no burst of
//! retries before its deadline.
//!
//! The buffer ([`DeliveryConfig::buffer_bytes`]) has a share per kind of
//! data; when it is full the oldest entries of the kind that is full (or
//! that borrowed room beyond its share) are dropped and counted in
//! `dropped` — a span flood never pushes out metric points (see
//! `delivery/buffer.rs`). With a disk buffer ([`DeliveryConfig::disk`])
//! they are written to disk instead and replayed first, in order, when the
//! endpoint takes data again, also by the next start (`delivery/disk.rs`).
//! A dead backend therefore costs one sink its oldest data, never the
//! pipeline its time: nothing here waits on the network or the disk except
//! [`Delivery::flush`].
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
//! still undelivered then goes to the disk buffer if there is one, else it
//! is logged and counted in `unflushed`, and stays queued while the sidecar runs. When the sink is dropped its task keeps
//! delivering what it holds for up to [`DRAIN_AFTER_DROP`], then stops.

use std::collections::BTreeSet;
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

/// How long a dropped sink's task keeps delivering what it holds.
pub const DRAIN_AFTER_DROP: Duration = Duration::from_secs(300);

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

    /// Its position in per-kind arrays.
    pub fn index(self) -> usize {
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
    /// Unix seconds when it was queued.
    at: i64,
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
    /// The disk buffer, when the sink has one.
    disk: Option<Arc<Disk>>,
    /// A spill job is writing the spill queue to disk.
    spill_running: AtomicBool,
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
    /// Per kind: whether a drop was logged since the last successful delivery.
    drop_logged: [AtomicBool; KINDS],
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

/// A batch taken from the buffer or the disk.
struct Batch {
    endpoint: usize,
    /// A proxied request's own URL and headers.
    target: Option<Target>,
    /// Framed, not yet compressed: [`compressed`] does that off the async workers.
    body: Bytes,
    items: u64,
    /// What it holds of the memory budget (0 for a batch read from disk).
    raw_bytes: u64,
    /// Set for a batch read from the disk buffer: committed once done.
    disk: Option<disk::Mark>,
}

/// What the delivery task sends next.
enum Next {
    /// A batch from memory.
    Batch(Box<Batch>),
    /// The next batch of this endpoint is on disk: read it off the async thread.
    Disk(usize),
}

impl Delivery {
    /// Starts the delivery task of sink `name` on the current tokio runtime.
    pub fn start(
        name: String,
        endpoints: Vec<Endpoint>,
        config: DeliveryConfig,
        stats: Arc<SinkStats>,
    ) -> Result<Delivery, BuildError> {
        let setup = delivery_runtime().and_then(|runtime| Ok((runtime, http_client()?)));
        let (runtime, client) = match setup {
            Ok(setup) => setup,
            Err(source) => return Err(BuildError::Delivery { sink: name, source }),
        };
        stats.buffer_capacity.set(config.buffer_bytes);
        let buffer = Buffer::new(&endpoints, &config);
        for kind in ItemKind::ALL {
            stats.buffer_kinds.0[kind.index()]
                .share_bytes
                .set(buffer.shares[kind.index()]);
        }
        if config.disk.is_none() {
            // A reload may have taken the disk buffer away.
            stats.disk.capacity.set(0);
            *stats
                .disk
                .path
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
        let disk = config
            .disk
            .as_ref()
            .map(|d| Disk::open(&d.path, d.max_bytes, stats.clone()));
        let shared = Arc::new(Shared {
            name,
            buffer: Mutex::new(buffer),
            disk,
            spill_running: AtomicBool::new(false),
            endpoints,
            config,
            stats,
            progress: Condvar::new(),
            wake: Notify::new(),
            flush_started: Notify::new(),
            flush_until: AtomicU64::new(0),
            origin: Instant::now(),
            closed: AtomicBool::new(false),
            drop_logged: Default::default(),
        });
        runtime.spawn(run(shared.clone(), client));
        Ok(Delivery { shared })
    }

    /// The sink's counters.
    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.shared.stats
    }

    /// Queues `entry` for `endpoint` (an index into the endpoints given to
    /// [`Delivery::start`]); makes room as the module says when the buffer is full.
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
        let mut buffer = shared.lock();
        let admission = buffer.admit(target.kind, size);
        let mut dropped = [0u64; KINDS];
        let mut spilled = false;
        for (index, old) in admission.evicted {
            let kind = buffer.kind(index);
            if shared.disk.is_some() {
                match buffer.try_spill(index, old) {
                    None => spilled = true,
                    Some(old) => dropped[kind.index()] += old.entry.items,
                }
            } else {
                dropped[kind.index()] += old.entry.items;
            }
        }
        if admission.fits {
            buffer.enqueue(endpoint, entry, request, crate::clock::unix_now());
            if buffer.queue_bytes[endpoint] >= shared.config.batch_bytes as u64 {
                shared.wake.notify_one();
            }
        } else {
            // Larger than what the buffer can hold beside the batch in flight.
            dropped[target.kind.index()] += entry.items;
        }
        shared.publish(&buffer);
        drop(buffer);
        shared.count_dropped(&dropped);
        if spilled {
            Shared::start_spill(shared);
        }
    }

    /// Sends everything buffered now and waits up to [`DeliveryConfig::flush_wait`]
    /// for it to be delivered; returns the items still undelivered, by
    /// [`ItemKind`], which are also logged and counted. With a disk buffer,
    /// what is still undelivered then is written to disk instead (the next
    /// start delivers it) and only what could not be written is returned.
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
            drop(buffer);
            let saved = shared.spill_everything();
            let pending = shared.lock().pending;
            std::array::from_fn(|k| pending[k].saturating_sub(saved[k]))
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

    /// Counts dropped items and logs the first drop of each kind since the last delivery.
    fn count_dropped(&self, dropped: &[u64; KINDS]) {
        for kind in ItemKind::ALL {
            let n = dropped[kind.index()];
            if n > 0 {
                kind.counter(&self.stats.dropped).add(n);
                if !self.drop_logged[kind.index()].swap(true, Ordering::Relaxed) {
                    let share = self.lock().shares[kind.index()];
                    tracing::warn!(
                        "sink {}: buffer full for {} (share {share} of {} bytes): dropping the oldest {} (counted in /status)",
                        self.name,
                        kind.noun(),
                        self.config.buffer_bytes,
                        kind.noun()
                    );
                }
            }
        }
    }

    /// Sets the buffer's gauges in the stats.
    fn publish(&self, buffer: &Buffer) {
        self.stats
            .buffer_bytes
            .set(buffer.queued_bytes + buffer.in_flight_bytes + buffer.spill_bytes);
        for kind in ItemKind::ALL {
            let k = kind.index();
            let gauges = &self.stats.buffer_kinds.0[k];
            gauges
                .memory_bytes
                .set(buffer.kind_bytes[k] + buffer.spill_kind_bytes[k]);
            let on_disk = self.disk.as_ref().map_or(0, |d| d.oldest_at(kind));
            let in_memory = buffer.oldest_at(kind);
            let oldest = [on_disk, in_memory].into_iter().filter(|&t| t > 0).min();
            gauges.oldest.store(oldest.unwrap_or(0), Ordering::Relaxed);
        }
    }
}

/// The wait before retry `attempt`: doubling from `backoff_base` up to `backoff_max`, a random point in [d/2, d].
pub fn backoff(config: &DeliveryConfig, attempt: u32) -> Duration {
    dynoscope_backoff::Backoff::new(config.backoff_base, config.backoff_max)
        .with_jitter()
        .delay(attempt)
}

/// The wait before retry `attempt` after a connection error or a timeout:
/// as [`backoff`], capped at [`DeliveryConfig::reconnect_max`], so a
/// returning endpoint is found within about that long.
pub fn reconnect_backoff(config: &DeliveryConfig, attempt: u32) -> Duration {
    dynoscope_backoff::Backoff::new(
        config.backoff_base,
        config.reconnect_max.min(config.backoff_max),
    )
    .with_jitter()
    .delay(attempt)
}

#[path = "delivery/config.rs"]
mod config;
pub use config::{DeliveryConfig, DiskConfig, DEFAULT_BUFFER_BYTES, DEFAULT_DISK_BYTES};

#[path = "delivery/take.rs"]
mod take;

#[path = "delivery/backlog.rs"]
mod backlog;
pub use backlog::Backlog;

#[path = "delivery/buffer.rs"]
mod buffer;
use buffer::Buffer;

#[path = "delivery/disk.rs"]
mod disk;
use disk::Disk;

#[path = "delivery/spill.rs"]
mod spill;

#[path = "delivery/send.rs"]
mod send;
#[cfg(test)]
use send::compress;
pub use send::SetupError;
use send::{delivery_runtime, http_client, run};

#[cfg(test)]
#[path = "delivery/tests.rs"]
mod tests;
