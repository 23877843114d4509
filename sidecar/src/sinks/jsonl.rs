//! The jsonl sink: one JSON object a line, for tests and for people reading what flows.
//!
//! Each line has a `kind` (`point`, `sketch`, `span`, `event`,
//! `service_check`), the item's fields as the telemetry types serialise
//! them, and `host`:
//! `{"kind":"point","name":…,"type":…,"value":…,"timestamp":…,"interval":…,"tags":[…],"host":…}`.
//! A distribution's sketch is one line with its exact `count`, `min`, `max`,
//! `sum`, `avg`, the quantiles of
//! [`SUMMARY_QUANTILES`](crate::telemetry::dogsketch::SUMMARY_QUANTILES)
//! (`"quantiles":{"p50":…,"p90":…,"p95":…,"p99":…}`, within 1/128) and the
//! Agent's bins `k` and `n`, so a reader can rebuild the sketch.
//!
//! `Sink::write` only encodes a batch and queues it; one thread per sink
//! appends the queued batches to the file, so a slow or full disk never holds
//! up the pipeline. Like the network sinks ([`super::delivery`]) the queue is
//! bounded by [`JsonlOptions::buffer_bytes`]: when it is full the oldest
//! queued batches are dropped and their items counted in `dropped`.
//!
//! The file is opened with `O_APPEND` and each batch is one `write`, so
//! several dynos may share a file without splitting each other's lines. A
//! batch that would take the file past [`JsonlOptions::max_bytes`] goes to a
//! fresh file: `path` becomes `path.1`, `path.1` becomes `path.2` … and the
//! one past [`JsonlOptions::max_files`] is removed; no line is ever split
//! between two files. When `path` no longer names the open file (another
//! dyno rotated it, or someone removed it) the writer reopens `path`.
//!
//! A failed open, rotation or write is counted in `io_errors` by kind, logged
//! once per kind until writes succeed again, and retried with back-off; the
//! batch stays at the head of the queue meanwhile. [`Sink::flush`] waits up to
//! [`JsonlOptions::flush_wait`] for the queue to be written.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use dynoscope_backoff::Backoff;
use dynoscope_crds::defaults;
use serde::Serialize;

use super::delivery::{DeliveryConfig, DRAIN_AFTER_DROP};
use super::{Sink, SinkError};
use crate::stats::{ItemCounts, SinkRegistry, SinkStats};
use crate::telemetry::{Span, Telemetry};
#[cfg(test)]
use file::rotated;
use file::{error_kind, Output};

mod sketch_line;

/// How a jsonl sink buffers and rotates.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonlOptions {
    /// Size in bytes the file may reach; a batch that would take it past this
    /// goes to a fresh file. Default: 100 MiB ([`defaults::JSONL_MAX_BYTES`]).
    pub max_bytes: u64,
    /// Rotated files kept, `path.1` … `path.N`. Default: 5 ([`defaults::JSONL_MAX_FILES`]).
    pub max_files: u32,
    /// Queued bytes (with their overhead) before the oldest batches are
    /// dropped. Default: 8 MiB ([`defaults::SINK_BUFFER_BYTES`]).
    pub buffer_bytes: u64,
    /// How long [`Sink::flush`] waits for the queue to be written. Default:
    /// 1.5 s, the network sinks' [`DeliveryConfig::flush_wait`].
    pub flush_wait: Duration,
}

impl Default for JsonlOptions {
    fn default() -> Self {
        JsonlOptions {
            max_bytes: defaults::JSONL_MAX_BYTES,
            max_files: defaults::JSONL_MAX_FILES,
            buffer_bytes: defaults::SINK_BUFFER_BYTES,
            flush_wait: DeliveryConfig::default().flush_wait,
        }
    }
}

impl JsonlOptions {
    /// The options of a `jsonl` sink spec; an absent or out-of-range value
    /// (validation refuses those) takes its default.
    pub fn from_spec(
        max_bytes: Option<i64>,
        max_files: Option<i64>,
        buffer_bytes: Option<i64>,
    ) -> Self {
        let base = JsonlOptions::default();
        let positive =
            |value: Option<i64>| value.and_then(|v| u64::try_from(v).ok()).filter(|&v| v > 0);
        JsonlOptions {
            max_bytes: positive(max_bytes).unwrap_or(base.max_bytes),
            max_files: max_files
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| (1..=defaults::JSONL_MAX_FILES_LIMIT).contains(v))
                .unwrap_or(base.max_files),
            buffer_bytes: positive(buffer_bytes).unwrap_or(base.buffer_bytes),
            ..base
        }
    }
}

/// Appends JSON lines to a file, from a thread of its own.
#[derive(Debug)]
pub struct JsonlSink {
    /// `host` of items that carry no host name of their own.
    hostname: String,
    /// The queue the writer thread empties.
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The sink as `/status` and logs name it: `jsonl <path>`.
    name: String,
    /// The file; rotated files are `<path>.1` ….
    path: PathBuf,
    options: JsonlOptions,
    stats: Arc<SinkStats>,
    queue: Mutex<Queue>,
    /// Wakes the writer: a batch was queued, a flush began, or the sink was dropped.
    work: Condvar,
    /// Signalled whenever the writer finishes a batch, so a flush can wait for an empty queue.
    progress: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    /// Encoded batches, oldest first.
    batches: VecDeque<Batch>,
    /// The cost of the queued batches and of the one being written.
    bytes: u64,
    /// Items queued or being written: points, spans, events.
    pending: Items,
    /// The cost of the batch the writer holds and has not finished; 0: none.
    writing: u64,
    /// Bumped by each flush, so a writer backing off after an error retries at once.
    flushes: u64,
    /// The sink was dropped: write what is queued, then stop.
    closed: bool,
    /// Whether a drop was logged since the last successful write.
    drop_logged: bool,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.batches.is_empty() && self.writing == 0
    }
}

/// Items by kind: points, spans, events and service checks, logs.
type Items = [u64; 4];

fn add_items(counts: &ItemCounts, items: &Items) {
    counts.points.add(items[0]);
    counts.spans.add(items[1]);
    counts.events.add(items[2]);
    counts.logs.add(items[3]);
}

/// One `write` call's worth of whole lines.
#[derive(Debug)]
struct Batch {
    bytes: Vec<u8>,
    items: Items,
}

/// What a batch costs beyond its bytes (the queue slot, the allocation's header and rounding).
const BATCH_OVERHEAD: u64 = 64;

impl Batch {
    /// The bytes a batch is charged against the buffer: what it really holds in memory.
    fn cost(&self) -> u64 {
        self.bytes.capacity() as u64 + BATCH_OVERHEAD
    }
}

/// Waits between retries of a failed file operation: 50 ms doubling up to 5 s.
const RETRY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));

#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    kind: &'static str,
    #[serde(flatten)]
    item: &'a T,
    host: &'a str,
}

#[derive(Serialize)]
struct SpanLine<'a> {
    kind: &'static str,
    #[serde(flatten)]
    span: &'a Span,
    priority: Option<i32>,
    host: &'a str,
}

impl JsonlSink {
    /// Opens (creating, appending to) `path` and starts the writer thread.
    /// Its stats are registered in `registry`.
    pub fn open(
        path: &Path,
        hostname: &str,
        options: JsonlOptions,
        registry: &SinkRegistry,
    ) -> Result<Self, SinkError> {
        let (sink, output) = JsonlSink::unstarted(path, hostname, options, registry)?;
        sink.start(output)?;
        Ok(sink)
    }

    /// Opens `path` without starting the writer, whose file is returned.
    fn unstarted(
        path: &Path,
        hostname: &str,
        options: JsonlOptions,
        registry: &SinkRegistry,
    ) -> Result<(Self, Output), SinkError> {
        let name = format!("jsonl {}", path.display());
        let mut output = Output {
            path: path.to_owned(),
            file: None,
            max_bytes: options.max_bytes,
            max_files: options.max_files,
        };
        output.current().map_err(|(_, source)| SinkError::Io {
            sink: name.clone(),
            source,
        })?;
        let stats = registry.register(&name);
        stats.buffer_capacity.set(options.buffer_bytes);
        let shared = Arc::new(Shared {
            name,
            path: path.to_owned(),
            options,
            stats,
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
        });
        let sink = JsonlSink {
            hostname: hostname.to_owned(),
            shared,
        };
        Ok((sink, output))
    }

    /// Starts the writer thread on `output`.
    fn start(&self, output: Output) -> Result<(), SinkError> {
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("jsonl-writer".into())
            .spawn(move || write_queue(&shared, output))
            .map(drop)
            .map_err(|source| SinkError::Io {
                sink: self.shared.name.clone(),
                source,
            })
    }

    /// The sink's counters.
    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.shared.stats
    }

    /// Queues `batch`; drops the oldest queued batches when the buffer is full.
    fn push(&self, batch: Batch) {
        let shared = &self.shared;
        let capacity = shared.options.buffer_bytes;
        let size = batch.cost();
        let mut dropped: Items = [0; 4];
        let mut queue = shared.lock();
        // A batch that cannot fit beside the one being written evicts nothing.
        let fits = queue.writing + size <= capacity;
        while fits && queue.bytes + size > capacity {
            let Some(old) = queue.batches.pop_front() else {
                break;
            };
            queue.bytes -= old.cost();
            for (kind, n) in old.items.iter().enumerate() {
                queue.pending[kind] -= n;
                dropped[kind] += n;
            }
        }
        if queue.bytes + size > capacity {
            // Larger than what the buffer can hold beside the batch being written.
            for (kind, n) in batch.items.iter().enumerate() {
                dropped[kind] += n;
            }
        } else {
            queue.bytes += size;
            for (kind, n) in batch.items.iter().enumerate() {
                queue.pending[kind] += n;
            }
            queue.batches.push_back(batch);
            shared.work.notify_one();
        }
        shared.stats.buffer_bytes.set(queue.bytes);
        let first_drop = dropped.iter().any(|&n| n > 0) && !queue.drop_logged;
        if first_drop {
            queue.drop_logged = true;
        }
        drop(queue);
        add_items(&shared.stats.dropped, &dropped);
        if first_drop {
            tracing::warn!(
                "sink {}: buffer full ({capacity} bytes): dropping the oldest batches (counted in /status)",
                shared.name
            );
        }
    }
}

impl Drop for JsonlSink {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
    }
}

/// The JSON lines of one item, each without its newline.
pub fn lines(item: &Telemetry, hostname: &str) -> Vec<String> {
    let encode = |value: Result<String, serde_json::Error>| value.unwrap_or_default();
    match item {
        Telemetry::Points(points) => points
            .iter()
            .map(|p| {
                encode(serde_json::to_string(&Line {
                    kind: "point",
                    item: p,
                    host: hostname,
                }))
            })
            .collect(),
        Telemetry::Sketches(sketches) => sketches
            .iter()
            .map(|s| {
                encode(serde_json::to_string(&sketch_line::SketchLine::new(
                    s, hostname,
                )))
            })
            .collect(),
        Telemetry::Traces(chunks) => chunks
            .iter()
            .flat_map(|chunk| chunk.spans.iter().map(move |span| (chunk.priority, span)))
            .map(|(priority, span)| {
                encode(serde_json::to_string(&SpanLine {
                    kind: "span",
                    span,
                    priority,
                    host: hostname,
                }))
            })
            .collect(),
        Telemetry::Event(event) => {
            let host = event.hostname.as_deref().unwrap_or(hostname);
            vec![encode(serde_json::to_string(&Line {
                kind: "event",
                item: event,
                host,
            }))]
        }
        Telemetry::ServiceCheck(check) => {
            let host = check.hostname.as_deref().unwrap_or(hostname);
            vec![encode(serde_json::to_string(&Line {
                kind: "service_check",
                item: check,
                host,
            }))]
        }
        Telemetry::Logs(records) => records
            .iter()
            .map(|record| {
                let mut line = serde_json::Map::new();
                line.insert("kind".into(), "log".into());
                line.extend(super::datadog::logs::entry_json(record, hostname));
                encode(serde_json::to_string(&line))
            })
            .collect(),
    }
}

/// The index in [`Items`] of what `item` holds.
fn kind_index(item: &Telemetry) -> usize {
    match item {
        Telemetry::Points(_) | Telemetry::Sketches(_) => 0,
        Telemetry::Traces(_) => 1,
        Telemetry::Event(_) | Telemetry::ServiceCheck(_) => 2,
        Telemetry::Logs(_) => 3,
    }
}

impl Sink for JsonlSink {
    fn write(&mut self, batch: &[Telemetry]) -> Result<(), SinkError> {
        let mut bytes = Vec::new();
        let mut items: Items = [0; 4];
        for item in batch {
            for line in lines(item, &self.hostname) {
                bytes.extend_from_slice(line.as_bytes());
                bytes.push(b'\n');
                items[kind_index(item)] += 1;
            }
        }
        if !bytes.is_empty() {
            bytes.shrink_to_fit();
            self.push(Batch { bytes, items });
        }
        Ok(())
    }

    /// Waits up to [`JsonlOptions::flush_wait`] for the queue to be written;
    /// what is still queued then is logged and counted in `unflushed`, and
    /// stays queued.
    fn flush(&mut self) -> Result<(), SinkError> {
        let shared = &self.shared;
        let deadline = Instant::now() + shared.options.flush_wait;
        let wait = || {
            let mut queue = shared.lock();
            queue.flushes += 1;
            shared.work.notify_all();
            while !queue.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                queue = shared
                    .progress
                    .wait_timeout(queue, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            queue.pending
        };
        // The writer is a thread of its own, so waiting is safe anywhere; on a
        // multi-thread runtime the worker's other tasks move elsewhere meanwhile.
        let pending = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            _ => wait(),
        };
        if pending.iter().all(|&n| n == 0) {
            return Ok(());
        }
        add_items(&shared.stats.unflushed, &pending);
        let last = shared
            .stats
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| "none".to_owned());
        tracing::warn!(
            "sink {}: {} points, {} spans and {} events/checks not written within the {:?} flush (last error: {last}); they stay queued while the sidecar runs",
            shared.name,
            pending[0],
            pending[1],
            pending[2],
            shared.options.flush_wait,
        );
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next batch to write, marked as being written; `None` once the sink
    /// is dropped and its queue empty.
    fn take(&self) -> Option<Batch> {
        let mut queue = self.lock();
        loop {
            if let Some(batch) = queue.batches.pop_front() {
                queue.writing = batch.cost();
                return Some(batch);
            }
            if queue.closed {
                return None;
            }
            queue = self
                .work
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// `batch` is written (or given up).
    fn finish(&self, batch: &Batch) {
        let mut queue = self.lock();
        queue.writing = 0;
        queue.bytes -= batch.cost();
        for (kind, n) in batch.items.iter().enumerate() {
            queue.pending[kind] -= n;
        }
        self.stats.buffer_bytes.set(queue.bytes);
        drop(queue);
        self.progress.notify_all();
    }

    /// Sleeps `delay` after a failure, or less if a flush begins or the sink is dropped.
    fn back_off(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut queue = self.lock();
        let (flushes, closed) = (queue.flushes, queue.closed);
        while queue.flushes == flushes && queue.closed == closed {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            queue = self
                .work
                .wait_timeout(queue, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn closed(&self) -> bool {
        self.lock().closed
    }
}

/// The writer thread: appends queued batches until the sink is dropped and its queue written.
fn write_queue(shared: &Shared, mut output: Output) {
    let stats = &shared.stats;
    // Kinds of error logged since the last successful write.
    let mut logged: BTreeSet<&'static str> = BTreeSet::new();
    let mut failures = 0u64;
    let mut closed_at: Option<Instant> = None;
    while let Some(batch) = shared.take() {
        let mut done = 0;
        let mut attempt = 0;
        loop {
            match output.append(&batch.bytes, &mut done) {
                Ok(()) => {
                    add_items(&stats.sent, &batch.items);
                    stats.bytes.add(batch.bytes.len() as u64);
                    stats.batches.inc();
                    stats.last_success.store(
                        crate::clock::unix_now(),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    if failures > 0 {
                        tracing::info!(
                            "sink {}: writes again after {failures} failures",
                            shared.name
                        );
                        failures = 0;
                        logged.clear();
                    }
                    shared.lock().drop_logged = false;
                    break;
                }
                Err((operation, err)) => {
                    let kind = error_kind(err.kind());
                    failures += 1;
                    stats.io_errors.inc(kind);
                    let message = format!("{operation} {}: {err}", shared.path.display());
                    if logged.insert(kind) {
                        tracing::error!(
                            "sink {}: {message}; retrying, the batch stays queued (counted in /status; logged once per kind of error)",
                            shared.name
                        );
                    }
                    stats.set_last_error(message);
                    if shared.closed() {
                        let since = *closed_at.get_or_insert_with(Instant::now);
                        if since.elapsed() >= DRAIN_AFTER_DROP {
                            let left = shared.lock().pending;
                            tracing::warn!(
                                "sink {} (removed): gave up on {} points, {} spans, {} events/checks",
                                shared.name,
                                left[0],
                                left[1],
                                left[2]
                            );
                            return;
                        }
                    }
                    shared.back_off(RETRY.delay(attempt));
                    attempt += 1;
                }
            }
        }
        shared.finish(&batch);
    }
}

mod file;

#[cfg(test)]
#[path = "jsonl/tests.rs"]
mod tests;
