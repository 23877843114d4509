//! The running sinks: each in a task of its own behind a bounded queue, and a
//! reload applied to them as a diff.
//!
//! The pipeline's task hands each tagged batch to every sink's queue without
//! waiting ([`Fanout::write`]); a sink that falls behind misses batches
//! (counted in `pipeline.sink_queue_full`), the others do not notice. A sink's
//! `flush`, which may wait for its backend, runs on a blocking thread started
//! by the sink's task, so no flush ever holds up the pipeline.
//!
//! [`Fanout::apply`] compares each sink's [`OwnConfig`] with the running
//! ones: an equal one keeps running as it is (connection, buffer, counters,
//! task); a new or changed one is built; the rest are retired. A rebuilt sink
//! with the [`destination`] of a retired one is its successor: the retired
//! sink's task writes what was queued to it, then hands over its
//! [`Backlog`] (or, for a sink without one, flushes), and only then does the
//! successor write — so nothing accepted is lost and a file is never written
//! by two sinks at once. A retired sink without a successor is flushed and
//! dropped, on its own task; a network sink's delivery task then keeps
//! sending what it still holds in the background
//! (`delivery::DRAIN_AFTER_DROP`). Shutdown waits for retiring sinks too.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use dynoscope_crds::observability::SinkSpec;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{PipelineConfig, SinkFactory};
use crate::sinks::{destination, own_config, Backlog, OwnConfig, Sink};
use crate::stats::Stats;
use crate::telemetry::{Telemetry, TracerTelemetry};

/// Batches a sink's queue holds before the pipeline skips that sink. Batches
/// are shared between sinks (one allocation however many sinks), and a sink's
/// `write` only encodes, so a full queue means a sink stuck in a bug, not a
/// slow backend (that one's buffer fills and drops instead).
pub(crate) const SINK_QUEUE_BATCHES: usize = 32;

/// What a sink's task is given, in order.
#[derive(Debug)]
enum Command {
    /// A tagged batch to write.
    Write(Arc<[Telemetry]>),
    /// A tracer's own telemetry to forward.
    Forward(Arc<TracerTelemetry>),
}

/// What a sink's task does once its queue is closed.
#[derive(Debug)]
enum Fate {
    /// Shutting down: flush, within the pipeline's deadline.
    Shutdown,
    /// Replaced or removed; a successor with the same destination waits for
    /// the backlog (`Some`) or the flush (`None`) to be done.
    Retire(Option<oneshot::Sender<Option<Backlog>>>),
}

/// A sink running in its own task.
#[derive(Debug)]
struct Running {
    own: OwnConfig,
    destination: String,
    /// Whether it forwards tracers' own telemetry.
    forwards: bool,
    queue: mpsc::Sender<Command>,
    fate: oneshot::Sender<Fate>,
    task: JoinHandle<()>,
}

impl Running {
    /// Closes its queue; the task writes what is queued, then meets `fate`.
    fn end(self, fate: Fate) -> JoinHandle<()> {
        // The fate is sent before the queue closes, so the task finds it there.
        let _ = self.fate.send(fate);
        drop(self.queue);
        self.task
    }
}

/// The running sinks of the pipeline.
pub(crate) struct Fanout {
    running: Vec<Running>,
    /// Tasks of retired sinks still writing or flushing, awaited at shutdown.
    retiring: Vec<JoinHandle<()>>,
    factory: SinkFactory,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

impl Fanout {
    /// No sinks yet; [`Fanout::apply`] starts them.
    pub(crate) fn new(factory: SinkFactory, stats: Arc<Stats>) -> Self {
        Fanout {
            running: Vec::new(),
            retiring: Vec::new(),
            factory,
            stats,
        }
    }

    /// Makes the running sinks those of `config`, rebuilding only the sinks
    /// whose own config changed. Never waits on a sink.
    pub(crate) fn apply(&mut self, config: &PipelineConfig) {
        self.retiring.retain(|task| !task.is_finished());
        let mut old: Vec<Option<Running>> = self.running.drain(..).map(Some).collect();
        let mut next = Vec::with_capacity(config.sinks.len());
        for spec in &config.sinks {
            let own = own_config(spec, config);
            let same = old
                .iter_mut()
                .find(|r| r.as_ref().is_some_and(|r| r.own == own));
            if let Some(kept) = same.and_then(Option::take) {
                self.stats.pipeline.sinks_kept.inc();
                next.push(kept);
                continue;
            }
            if let Some(started) = self.start(spec, config, own, &mut old) {
                next.push(started);
            }
        }
        for retired in old.into_iter().flatten() {
            self.stats.pipeline.sinks_retired.inc();
            self.retiring.push(retired.end(Fate::Retire(None)));
        }
        self.running = next;
    }

    /// Builds and starts the sink `spec`; a running sink with its destination
    /// (taken out of `old`) hands over to it.
    fn start(
        &mut self,
        spec: &SinkSpec,
        config: &PipelineConfig,
        own: OwnConfig,
        old: &mut [Option<Running>],
    ) -> Option<Running> {
        let destination = destination(spec);
        let predecessor = old
            .iter_mut()
            .find(|r| r.as_ref().is_some_and(|r| r.destination == destination))
            .and_then(Option::take);
        let sink = match (self.factory)(spec, config, &self.stats.sinks) {
            Ok(sink) => sink,
            Err(err) => {
                tracing::error!("{err}; this sink stays off until the config changes");
                if let Some(predecessor) = predecessor {
                    self.stats.pipeline.sinks_retired.inc();
                    self.retiring.push(predecessor.end(Fate::Retire(None)));
                }
                return None;
            }
        };
        self.stats.pipeline.sinks_built.inc();
        let handover = predecessor.map(|predecessor| {
            self.stats.pipeline.sinks_retired.inc();
            let (tx, rx) = oneshot::channel();
            self.retiring.push(predecessor.end(Fate::Retire(Some(tx))));
            rx
        });
        let forwards = sink.takes_tracer_telemetry();
        let (queue, commands) = mpsc::channel(SINK_QUEUE_BATCHES);
        let (fate, fate_rx) = oneshot::channel();
        let task = tokio::spawn(run_sink(
            sink,
            commands,
            fate_rx,
            handover,
            self.stats.clone(),
        ));
        Some(Running {
            own,
            destination,
            forwards,
            queue,
            fate,
            task,
        })
    }

    /// Hands a tagged batch to every sink; never waits.
    pub(crate) fn write(&self, batch: Vec<Telemetry>) {
        if batch.is_empty() {
            return;
        }
        let items = batch.len() as u64;
        let batch: Arc<[Telemetry]> = batch.into();
        for sink in &self.running {
            if sink.queue.try_send(Command::Write(batch.clone())).is_err() {
                self.stats.pipeline.sink_queue_full.add(items);
            }
        }
    }

    /// Offers a tracer's telemetry to the sinks that forward it; returns whether any took it.
    pub(crate) fn forward(&self, request: TracerTelemetry) -> bool {
        let request = Arc::new(request);
        let mut taken = false;
        for sink in self.running.iter().filter(|s| s.forwards) {
            taken |= sink
                .queue
                .try_send(Command::Forward(request.clone()))
                .is_ok();
        }
        taken
    }

    /// Closes every sink's queue and waits for each to write and flush what
    /// it holds, and for retired sinks to finish theirs.
    pub(crate) async fn shutdown(&mut self) {
        let mut tasks: Vec<_> = self
            .running
            .drain(..)
            .map(|r| r.end(Fate::Shutdown))
            .collect();
        tasks.append(&mut self.retiring);
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// A sink's task: waits for its predecessor's hand-over, writes what it is
/// given, then meets its fate.
async fn run_sink(
    mut sink: Box<dyn Sink>,
    mut commands: mpsc::Receiver<Command>,
    fate: oneshot::Receiver<Fate>,
    predecessor: Option<oneshot::Receiver<Option<Backlog>>>,
    stats: Arc<Stats>,
) {
    if let Some(predecessor) = predecessor {
        // An error: the predecessor's task is gone (it panicked); nothing to take.
        if let Ok(Some(backlog)) = predecessor.await {
            stats.pipeline.handed_over.add(backlog.len() as u64);
            sink.accept_backlog(backlog);
        }
    }
    while let Some(command) = commands.recv().await {
        // A panic is contained here: the batch is lost to this sink, which carries on.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| match &command {
            Command::Write(batch) => sink.write(batch),
            Command::Forward(request) => {
                sink.forward_tracer_telemetry(request);
                Ok(())
            }
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                stats.pipeline.sink_errors.inc();
                tracing::warn!("{err}");
            }
            Err(panic) => {
                stats.pipeline.panics.inc();
                tracing::error!(
                    "a sink panicked ({}); it drops that batch and carries on — the app is not affected",
                    super::panic_message(panic.as_ref())
                );
            }
        }
    }
    match fate.await {
        Ok(Fate::Shutdown) => drop(flush(sink, &stats).await),
        Ok(Fate::Retire(Some(successor))) => match sink.take_backlog() {
            Some(backlog) => {
                let _ = successor.send(Some(backlog));
            }
            None => {
                // The successor writes to the same place: only once this one is done.
                drop(flush(sink, &stats).await);
                let _ = successor.send(None);
            }
        },
        // Removed: what it holds is written now; a network sink's delivery
        // task keeps sending what the flush left, in the background.
        Ok(Fate::Retire(None)) => drop(flush(sink, &stats).await),
        // The pipeline is gone without a shutdown: nothing to wait for.
        Err(_) => drop(sink),
    }
}

/// Flushes `sink` on a blocking thread (a flush may wait for its backend).
async fn flush(mut sink: Box<dyn Sink>, stats: &Stats) -> Option<Box<dyn Sink>> {
    let flushed = tokio::task::spawn_blocking(move || {
        let result = sink.flush();
        (sink, result)
    })
    .await;
    match flushed {
        Ok((sink, result)) => {
            if let Err(err) = result {
                stats.pipeline.sink_errors.inc();
                tracing::warn!("{err}");
            }
            Some(sink)
        }
        Err(err) => {
            if err.is_panic() {
                stats.pipeline.panics.inc();
                tracing::error!(
                    "a sink panicked while flushing ({})",
                    super::panic_message(err.into_panic().as_ref())
                );
            }
            None
        }
    }
}
