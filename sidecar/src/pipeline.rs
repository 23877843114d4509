//! The pipeline: every producer's [`Telemetry`] → one bounded queue → tag → sinks.
//!
//! Producers (receivers, the sampler, checks) hold a cloneable
//! [`PipelineHandle`] whose [`send`](PipelineHandle::send) never blocks: when
//! the queue holds [`QUEUE_BYTES`] (each item's size estimated by its
//! `approx_bytes`) or [`QUEUE_CAPACITY`] items, the item is dropped and
//! counted by kind in [`crate::stats::PipelineStats`]. A receiver that can
//! refuse at its edge asks [`PipelineHandle::has_room`] first, so that past
//! the budget the sender is told (429) rather than answered and dropped. One
//! task drains the queue in batches, adds the dyno's tags
//! ([`PipelineConfig::tags`]) and hands each batch to every sink, each running
//! in a task of its own ([`fanout`]). A tracer's own telemetry
//! ([`TracerTelemetry`]) shares the queue and goes untouched to the sinks that
//! forward it (the Datadog sink); when none takes it, it is dropped and
//! counted. Aggregation and APM stats are not
//! here: they run in the receivers that call them
//! (`receivers::dogstatsd::aggregate`, `receivers::trace::apm_stats`).
//!
//! The owner keeps the [`Pipeline`]: [`Pipeline::reconfigure`] applies a new
//! config between two batches as a diff — the tag set is the tagging step's,
//! and only sinks whose own config changed are rebuilt, taking over their
//! predecessor's buffer ([`fanout`]); queued items stay queued and the
//! pipeline never waits for a sink. [`Pipeline::shutdown`] drains the queue
//! and waits for every sink's flush. A panic in a stage is contained: the
//! task is restarted on the same queue and the same running sinks, the panic
//! is counted and logged, and nothing else of the sidecar (least of all the
//! app) notices; a panic in a sink's write costs that sink the batch.
//!

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use dynoscope_crds::observability::SinkSpec;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;

pub use crate::config::PipelineConfig;
use crate::sinks::{self, BuildError, Sink};
use crate::stats::{SinkRegistry, Stats};
use crate::telemetry::{Telemetry, TracerTelemetry};

mod fanout;
use fanout::Fanout;

/// Items the queue holds before [`PipelineHandle::send`] drops.
pub const QUEUE_CAPACITY: usize = 8192;
/// Approximate bytes the queue holds before [`PipelineHandle::send`] drops:
/// 16 MiB. An item larger than that is taken only into an empty queue (a
/// full 8 MiB ddtrace payload decodes to more), so the queue holds at most
/// the larger of this and one item. Part of the sidecar's memory total
/// (sidecar/MEMORY.md).
pub const QUEUE_BYTES: usize = 16 << 20;
/// Items taken from the queue at once.
const BATCH: usize = 512;

/// What the queue carries, with the size it was charged against [`QUEUE_BYTES`].
#[derive(Debug)]
struct Item {
    /// Taken off the queue's byte gauge when the item leaves the queue: the
    /// same number that was added, whatever tagging does to the item after.
    bytes: usize,
    data: Data,
}

#[derive(Debug)]
enum Data {
    /// For every sink, tagged first.
    Telemetry(Telemetry),
    /// For the sinks that forward it, as it is.
    TracerTelemetry(TracerTelemetry),
}

/// The producers' side of the pipeline: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct PipelineHandle {
    queue: mpsc::Sender<Item>,
    stats: Arc<Stats>,
}

impl PipelineHandle {
    /// Queues `item`; returns `false` (and counts a drop) when the queue is full or closed.
    pub fn send(&self, item: Telemetry) -> bool {
        let (bytes, kind) = (item.approx_bytes(), item.kind());
        self.enqueue(bytes, kind, Data::Telemetry(item))
    }

    /// Queues a tracer's own telemetry for the sinks that forward it; returns
    /// `false` (and counts a drop) when the queue is full or closed.
    pub fn forward_tracer_telemetry(&self, request: TracerTelemetry) -> bool {
        let bytes = request.approx_bytes();
        self.enqueue(bytes, "tracer_telemetry", Data::TracerTelemetry(request))
    }

    /// Whether an item of about `bytes` would fit in the queue now: a hint
    /// for a receiver deciding to refuse a request before reading it.
    pub fn has_room(&self, bytes: usize) -> bool {
        let queued = self.stats.pipeline.queued_bytes.get();
        queued.saturating_add(bytes as u64) <= limit(bytes)
    }

    fn enqueue(&self, bytes: usize, kind: &'static str, data: Data) -> bool {
        let pipeline = &self.stats.pipeline;
        if !pipeline.queued_bytes.add_within(bytes as u64, limit(bytes)) {
            if pipeline.dropped_over_budget.inc(kind) {
                tracing::warn!(
                    "the telemetry pipeline holds its {QUEUE_BYTES}-byte budget: dropping {kind}; \
                     further drops are only counted (dynoscope-sidecar status)"
                );
            }
            return false;
        }
        match self.queue.try_send(Item { bytes, data }) {
            Ok(()) => {
                pipeline.accepted.inc();
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                pipeline.queued_bytes.sub(bytes as u64);
                pipeline.dropped_full.inc();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                pipeline.queued_bytes.sub(bytes as u64);
                pipeline.dropped_closed.inc();
                false
            }
        }
    }

    /// The sidecar's counters, for producers that count their own events.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }
}

/// The fill an item of `bytes` may bring the queue to: [`QUEUE_BYTES`], or
/// the item alone when it is larger.
fn limit(bytes: usize) -> u64 {
    QUEUE_BYTES.max(bytes) as u64
}

/// Builds one sink of a config, registering its stats; the real one is
/// [`sinks::build`], tests inject others.
pub(crate) type SinkFactory = Arc<
    dyn Fn(&SinkSpec, &PipelineConfig, &SinkRegistry) -> Result<Box<dyn Sink>, BuildError>
        + Send
        + Sync,
>;

/// The owner's side of a running pipeline.
#[derive(Debug)]
pub struct Pipeline {
    handle: PipelineHandle,
    config: watch::Sender<Arc<PipelineConfig>>,
    shutdown: watch::Sender<bool>,
    driver: JoinHandle<()>,
}

/// Starts the pipeline with the sinks of `config`. Must be called inside a tokio runtime.
pub fn spawn(config: PipelineConfig, stats: Arc<Stats>) -> Pipeline {
    spawn_with(config, stats, Arc::new(sinks::build))
}

pub(crate) fn spawn_with(
    config: PipelineConfig,
    stats: Arc<Stats>,
    factory: SinkFactory,
) -> Pipeline {
    let (queue_tx, queue_rx) = mpsc::channel(QUEUE_CAPACITY);
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let worker = Worker {
        // Behind a mutex so that a restarted task takes over the same queue.
        queue: Arc::new(Mutex::new(queue_rx)),
        config: config_rx,
        shutdown: shutdown_rx,
        // Outside the task, so that a restarted task keeps the running sinks.
        sinks: Arc::new(Mutex::new(Fanout::new(factory, stats.clone()))),
        stats: stats.clone(),
    };
    Pipeline {
        handle: PipelineHandle {
            queue: queue_tx,
            stats,
        },
        config: config_tx,
        shutdown: shutdown_tx,
        driver: tokio::spawn(worker.drive()),
    }
}

impl Pipeline {
    /// A handle for a producer.
    pub fn handle(&self) -> PipelineHandle {
        self.handle.clone()
    }

    /// Applies new tags and sinks between two batches, rebuilding only the
    /// sinks whose own config changed; does nothing when `config` is unchanged.
    pub fn reconfigure(&self, config: PipelineConfig) {
        self.config.send_if_modified(|current| {
            let changed = **current != config;
            if changed {
                *current = Arc::new(config);
            }
            changed
        });
    }

    /// Refuses new items, writes what is queued, waits for the sinks' flushes;
    /// gives up after `timeout`.
    /// Returns whether everything was flushed in time.
    pub async fn shutdown(self, timeout: Duration) -> bool {
        self.shutdown.send_replace(true);
        tokio::time::timeout(timeout, self.driver).await.is_ok()
    }
}

#[derive(Clone)]
struct Worker {
    queue: Arc<Mutex<mpsc::Receiver<Item>>>,
    config: watch::Receiver<Arc<PipelineConfig>>,
    shutdown: watch::Receiver<bool>,
    sinks: Arc<Mutex<Fanout>>,
    stats: Arc<Stats>,
}

impl Worker {
    /// Runs the pipeline task, restarting it when it panics.
    async fn drive(self) {
        loop {
            match tokio::spawn(self.clone().work()).await {
                Ok(()) => return,
                Err(err) if err.is_panic() => {
                    self.stats.pipeline.panics.inc();
                    tracing::error!(
                        "the telemetry pipeline panicked ({}); restarting it — the app is not affected",
                        panic_message(err.into_panic().as_ref())
                    );
                    // The failing batch is gone; a short pause keeps a repeating fault from spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => return,
            }
        }
    }

    async fn work(mut self) {
        let mut queue = self.queue.lock().await;
        let mut sinks = self.sinks.lock().await;
        let mut config = self.config.borrow_and_update().clone();
        // A diff: after a restart, the sinks already running stay as they are.
        sinks.apply(&config);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            if *self.shutdown.borrow() {
                break;
            }
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => break,
                changed = self.config.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    config = self.config.borrow_and_update().clone();
                    sinks.apply(&config);
                    self.stats.pipeline.reconfigured.inc();
                }
                received = queue.recv_many(&mut batch, BATCH) => {
                    if received == 0 {
                        break;
                    }
                    deliver(&mut batch, &config, &sinks, &self.stats);
                    // Under a flood the queue is never empty: let the
                    // receivers and the admin endpoint have the worker too.
                    tokio::task::yield_now().await;
                }
            }
        }
        // Shutting down: refuse new items, write what is queued.
        queue.close();
        while queue.recv_many(&mut batch, BATCH).await > 0 {
            deliver(&mut batch, &config, &sinks, &self.stats);
        }
        sinks.shutdown().await;
    }
}

/// Tags a batch and hands it to every sink, and hands tracer telemetry to
/// the sinks that forward it; empties `batch`.
fn deliver(batch: &mut Vec<Item>, config: &PipelineConfig, sinks: &Fanout, stats: &Stats) {
    stats.pipeline.processed.add(batch.len() as u64);
    let dequeued: usize = batch.iter().map(|item| item.bytes).sum();
    stats.pipeline.queued_bytes.sub(dequeued as u64);
    let mut telemetry = Vec::with_capacity(batch.len());
    for item in batch.drain(..) {
        match item.data {
            Data::Telemetry(mut item) => {
                tag(&mut item, &config.tags);
                telemetry.push(item);
            }
            Data::TracerTelemetry(request) => {
                // What came before it goes first, in every sink's queue.
                sinks.write(std::mem::take(&mut telemetry));
                if sinks.forward(request) {
                    stats.traces.telemetry_forwarded.inc();
                } else {
                    stats.traces.telemetry_dropped.inc("no_datadog_sink");
                }
            }
        }
    }
    sinks.write(telemetry);
}

/// Adds the dyno's tags; spans keep theirs (tracers set env, service and version themselves).
///
/// An item that already names its service (APM stats of a span of another
/// service, a DogStatsD metric tagged `service:other`) keeps its own unified
/// service tags: the dyno's `service:`, `env:` and `version:` describe the
/// dyno's service, not that one, and Datadog would file the point under both.
fn tag(item: &mut Telemetry, dyno_tags: &[String]) {
    if dyno_tags.is_empty() {
        return;
    }
    let merge = |tags: &mut Vec<String>| {
        let own_service = tags.iter().any(|t| t.starts_with("service:"));
        let unified = |t: &&String| {
            t.starts_with("service:") || t.starts_with("env:") || t.starts_with("version:")
        };
        if own_service {
            tags.extend(dyno_tags.iter().filter(|t| !unified(t)).cloned());
        } else {
            tags.extend(dyno_tags.iter().cloned());
        }
        tags.sort_unstable();
        tags.dedup();
    };
    match item {
        Telemetry::Points(points) => points.iter_mut().for_each(|p| merge(&mut p.tags)),
        Telemetry::Sketches(sketches) => sketches.iter_mut().for_each(|s| merge(&mut s.tags)),
        Telemetry::Event(event) => merge(&mut event.tags),
        Telemetry::ServiceCheck(check) => merge(&mut check.tags),
        Telemetry::Logs(records) => records.iter_mut().for_each(|r| merge(&mut r.tags)),
        Telemetry::Traces(_) => {}
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

#[cfg(test)]
#[path = "pipeline/tests.rs"]
mod tests;
