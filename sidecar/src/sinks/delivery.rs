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
    /// Spans.
    Spans,
    /// Events and service checks.
    Events,
    /// Tracer telemetry requests, passed on as they came.
    Telemetry,
}

impl ItemKind {
    const ALL: [ItemKind; 4] = [
        ItemKind::Points,
        ItemKind::Spans,
        ItemKind::Events,
        ItemKind::Telemetry,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn counter(self, counts: &ItemCounts) -> &crate::stats::Counter {
        match self {
            ItemKind::Points => &counts.points,
            ItemKind::Spans => &counts.spans,
            ItemKind::Events => &counts.events,
            ItemKind::Telemetry => &counts.telemetry,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            ItemKind::Points => "points",
            ItemKind::Spans => "spans",
            ItemKind::Events => "events/checks",
            ItemKind::Telemetry => "tracer telemetry requests",
        }
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
    pending: [u64; 4],
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
        let mut dropped = [0u64; 4];
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
    /// for it to be delivered; returns the items still undelivered, by kind
    /// (points, spans, events, tracer telemetry), which are also logged and counted.
    pub fn flush(&self) -> [u64; 4] {
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
                "sink {}: {} points, {} spans, {} events/checks and {} tracer telemetry requests not delivered within the {:?} flush (last error: {last}); they stay queued while the sidecar runs",
                shared.name,
                pending[0],
                pending[1],
                pending[2],
                pending[3],
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

/// The runtime every delivery task runs on: one thread of its own. The
/// pipeline task encodes on an async worker and, under a flood, keeps it
/// for long polls; a delivery task it wakes would wait in that worker's
/// next-task slot, which other workers cannot steal, and deliver nothing
/// while the flood lasts (observed: 0 batches in 10 s). On its own thread
/// delivery keeps its pace, and its work never delays the receivers.
fn delivery_runtime() -> Result<tokio::runtime::Handle, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Handle, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("dynoscope-delivery")
                .build()
                .map_err(|err| format!("cannot start the delivery thread: {err}"))?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("dynoscope-delivery".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .map_err(|err| format!("cannot start the delivery thread: {err}"))?;
            Ok(handle)
        })
        .clone()
}

/// The one HTTP client of every network sink: one connection pool,
/// HTTP/1.1 keep-alive, http and https (rustls, ring, the system's roots).
/// Redirects are not followed (a 3xx is refused like a 4xx: following one
/// would carry the API key header to another host), and no proxy is taken
/// from the environment.
fn http_client() -> Result<reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                // A malformed system certificate is skipped, as browsers do.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                tracing::warn!("no trusted root certificates found (install ca-certificates or set SSL_CERT_FILE): https sinks will fail");
            }
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("TLS setup: {err}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .http1_only()
                .pool_idle_timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .map_err(|err| describe(&err))
        })
        .clone()
}

fn compress(compression: Compression, raw: &[u8]) -> std::io::Result<Bytes> {
    match compression {
        Compression::None => Ok(Bytes::copy_from_slice(raw)),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(raw.len() / 4),
                flate2::Compression::fast(),
            );
            encoder.write_all(raw)?;
            encoder.finish().map(Bytes::from)
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(raw)
            .map(Bytes::from)
            .map_err(std::io::Error::other),
    }
}

/// A batch's body compressed as its endpoint wants, on a blocking thread:
/// a 1 MiB batch costs milliseconds of CPU, which the async workers owe
/// the receivers (a flood of traces must not stall delivery, nor delivery
/// the receivers).
async fn compressed(shared: &Shared, endpoint: usize, raw: Bytes) -> Bytes {
    let compression = shared.endpoints[endpoint].compression;
    if compression == Compression::None {
        return raw;
    }
    let input = raw.clone();
    let done = tokio::task::spawn_blocking(move || compress(compression, &input)).await;
    match done {
        Ok(Ok(body)) => body,
        Ok(Err(err)) => {
            tracing::error!("sink {}: cannot compress a batch: {err}", shared.name);
            raw
        }
        Err(err) => {
            tracing::error!("sink {}: compressing a batch failed: {err}", shared.name);
            raw
        }
    }
}

/// The delivery task.
async fn run(shared: Arc<Shared>, client: reqwest::Client) {
    let mut refused_logged = BTreeSet::new();
    let mut closed_at: Option<Instant> = None;
    loop {
        tokio::select! {
            () = shared.wake.notified() => {}
            () = tokio::time::sleep(shared.config.batch_interval) => {}
        }
        while let Some(mut batch) = shared.take_batch() {
            batch.body = compressed(&shared, batch.endpoint, batch.body).await;
            let give_up_at = closed_at.map(|at| at + DRAIN_AFTER_DROP);
            send(&shared, &client, &batch, give_up_at, &mut refused_logged).await;
            shared.finish(&batch);
        }
        if shared.closed.load(Ordering::Relaxed) {
            let since = *closed_at.get_or_insert_with(Instant::now);
            if shared.lock().is_empty() || since.elapsed() >= DRAIN_AFTER_DROP {
                let left = shared.lock().pending;
                if left.iter().any(|&n| n > 0) {
                    tracing::warn!(
                        "sink {} (removed): gave up on {} points, {} spans, {} events/checks, {} tracer telemetry requests",
                        shared.name,
                        left[0],
                        left[1],
                        left[2],
                        left[3]
                    );
                }
                return;
            }
        }
    }
}

/// What one attempt came to.
enum Outcome {
    Delivered,
    /// Retry, after `Retry-After` if given.
    Retry(Option<Duration>),
    /// Drop the batch.
    Refused,
}

/// Posts `batch` until it is delivered, refused, or `give_up_at` passes.
async fn send(
    shared: &Shared,
    client: &reqwest::Client,
    batch: &Batch,
    give_up_at: Option<Instant>,
    refused_logged: &mut BTreeSet<u16>,
) {
    let endpoint = &shared.endpoints[batch.endpoint];
    let stats = &shared.stats;
    let mut attempt: u32 = 0;
    loop {
        let outcome = attempt_once(shared, client, endpoint, batch, refused_logged).await;
        match outcome {
            Outcome::Delivered => {
                endpoint.kind.counter(&stats.sent).add(batch.items);
                stats.bytes.add(batch.body.len() as u64);
                stats.batches.inc();
                stats
                    .last_success
                    .store(crate::clock::unix_now(), Ordering::Relaxed);
                if attempt > 0 {
                    tracing::info!(
                        "sink {}: {} delivers again after {attempt} retries",
                        shared.name,
                        endpoint.name
                    );
                }
                shared.drop_logged.store(false, Ordering::Relaxed);
                return;
            }
            Outcome::Refused => {
                endpoint.kind.counter(&stats.rejected).add(batch.items);
                return;
            }
            Outcome::Retry(after) => {
                if attempt == 0 {
                    let last = stats
                        .last_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    tracing::warn!(
                        "sink {}: {} failed ({}); retrying with back-off",
                        shared.name,
                        endpoint.name,
                        last.unwrap_or_default()
                    );
                }
                let mut delay = after
                    .map(|d| d.min(shared.config.backoff_max))
                    .unwrap_or_else(|| backoff(&shared.config, attempt));
                if let Some(flush) = shared.flush_deadline() {
                    // One more try before the flush's deadline.
                    let left = flush.saturating_duration_since(Instant::now());
                    delay = delay.min(left.saturating_sub(Duration::from_millis(100)));
                }
                let wake_at = Instant::now() + delay;
                if give_up_at.is_some_and(|at| wake_at >= at) {
                    endpoint.kind.counter(&stats.unflushed).add(batch.items);
                    return;
                }
                // A flush starting now cuts the wait short: it wants a try before its deadline.
                tokio::select! {
                    () = tokio::time::sleep_until(wake_at.into()) => {}
                    () = shared.flush_started.notified() => {}
                }
                stats.retries.inc();
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

async fn attempt_once(
    shared: &Shared,
    client: &reqwest::Client,
    endpoint: &Endpoint,
    batch: &Batch,
    refused_logged: &mut BTreeSet<u16>,
) -> Outcome {
    let stats = &shared.stats;
    let uri = batch.target.as_ref().map_or(&endpoint.uri, |t| &t.uri);
    let url = match reqwest::Url::parse(&uri.to_string()) {
        Ok(url) => url,
        Err(err) => {
            stats.set_last_error(format!("{}: invalid URL: {err}", endpoint.name));
            return Outcome::Refused;
        }
    };
    let mut request = reqwest::Request::new(http::Method::POST, url);
    let headers = request.headers_mut();
    if let Some(target) = &batch.target {
        headers.extend(target.headers.clone());
    }
    // Extending replaces same-named headers: the endpoint's credentials win.
    headers.extend(endpoint.headers.clone());
    headers
        .entry(USER_AGENT)
        .or_insert(HeaderValue::from_static(concat!(
            "dynoscope/",
            env!("CARGO_PKG_VERSION")
        )));
    let encoding = match endpoint.compression {
        Compression::Gzip => Some("gzip"),
        Compression::Snappy => Some("snappy"),
        Compression::None => None,
    };
    if let Some(encoding) = encoding {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    *request.body_mut() = Some(reqwest::Body::from(batch.body.clone()));
    let mut timeout = shared.config.request_timeout;
    if let Some(flush) = shared.flush_deadline() {
        timeout = timeout.min(
            flush
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(50)),
        );
    }
    let response = match tokio::time::timeout(timeout, client.execute(request)).await {
        Err(_) => {
            stats.errors.timeout.inc();
            stats.set_last_error(format!("{}: no response within {timeout:?}", endpoint.name));
            return Outcome::Retry(None);
        }
        Ok(Err(err)) => {
            stats.errors.connection.inc();
            // Without the URL: a URL may carry credentials (user:password@).
            stats.set_last_error(format!(
                "{}: {}",
                endpoint.name,
                describe(&err.without_url())
            ));
            return Outcome::Retry(None);
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if status.is_success() {
        return Outcome::Delivered;
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    stats.set_last_error(format!("{}: HTTP {status}", endpoint.name));
    match status {
        StatusCode::REQUEST_TIMEOUT => {
            stats.errors.status_408.inc();
            Outcome::Retry(retry_after)
        }
        StatusCode::TOO_MANY_REQUESTS => {
            stats.errors.status_429.inc();
            Outcome::Retry(retry_after)
        }
        s if s.is_server_error() => {
            stats.errors.status_5xx.inc();
            Outcome::Retry(retry_after)
        }
        s => {
            stats.errors.status_4xx.inc();
            if refused_logged.insert(s.as_u16()) {
                tracing::error!(
                    "sink {}: {} refused a batch with HTTP {s}; such batches are dropped (counted in /status; logged once per status)",
                    shared.name,
                    endpoint.name
                );
            }
            Outcome::Refused
        }
    }
}

/// An error and its causes, one line.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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

#[cfg(test)]
#[path = "delivery/tests.rs"]
mod tests;
