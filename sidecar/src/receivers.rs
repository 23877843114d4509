//! What the app sends the sidecar: DogStatsD datagrams, Datadog traces, OTLP
//! from OpenTelemetry SDKs, and its stdout and stderr ([`logs`], started with
//! the app rather than here); and what Heroku's Logplex posts to the drain
//! process ([`drain`], started by `dynoscope-sidecar drain` only).
//!
//! Each receiver is split as Vector splits its sources: pure decoding
//! (`dogstatsd::parser`, `trace::decode`) with table tests beside it, and
//! the socket wiring at the edge (`dogstatsd::server`, `trace::server`,
//! `otlp::server`). [`Receivers::start`] binds them all before the app starts, so a tracer's
//! first payload finds a listener; [`Receivers::shutdown`] flushes what they
//! hold into the pipeline once the app is gone.

pub mod dogstatsd;
pub mod drain;
pub mod logs;
pub mod otlp;
pub mod trace;

use std::sync::Arc;
use std::time::Duration;

use dynoscope_crds::DynoConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::pipeline::PipelineHandle;
use crate::stats::Stats;
use crate::status::StatusBoard;

/// The running receivers.
#[derive(Debug)]
pub struct Receivers {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Receivers {
    /// Binds the receivers of the config `config` holds now and serves them,
    /// following its changes (a port change rebinds).
    pub async fn start(
        config: &watch::Receiver<Option<Arc<DynoConfig>>>,
        pipe: &PipelineHandle,
        stats: &Arc<Stats>,
        status: &Arc<StatusBoard>,
    ) -> Self {
        let (shutdown, stopping) = watch::channel(false);
        let current = config.borrow().clone();
        let dogstatsd = dogstatsd::server::Receiver::bind(
            current.as_deref(),
            pipe.clone(),
            stats.clone(),
            status.clone(),
        );
        let traces = trace::server::Receiver::bind(
            config.clone(),
            pipe.clone(),
            stats.clone(),
            status.clone(),
        )
        .await;
        let otlp =
            otlp::Receiver::bind(config.clone(), pipe.clone(), stats.clone(), status.clone());
        let mut follow = config.clone();
        follow.mark_unchanged();
        let tasks = vec![
            tokio::spawn(dogstatsd.run(follow.clone(), stopping.clone())),
            tokio::spawn(traces.run(follow.clone(), stopping.clone())),
            tokio::spawn(otlp.run(follow, stopping)),
        ];
        Receivers { shutdown, tasks }
    }

    /// Stops receiving, reads what is queued, flushes every aggregate into
    /// the pipeline; gives up after `timeout`.
    pub async fn shutdown(self, timeout: Duration) {
        self.shutdown.send_replace(true);
        let all = futures_join(self.tasks);
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!("the receivers did not flush within {timeout:?}");
        }
    }
}

/// Runs a receiver's loop until `shutdown` turns true (or its sender is
/// gone): `tick` every `every`, `changed` with each new config while its owner lives.
pub(crate) async fn follow_config<S>(
    state: &mut S,
    mut config: watch::Receiver<Option<Arc<DynoConfig>>>,
    mut shutdown: watch::Receiver<bool>,
    every: Duration,
    mut tick: impl FnMut(&mut S),
    mut changed: impl AsyncFnMut(&mut S, Option<Arc<DynoConfig>>),
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut following = true;
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut shutdown) => break,
            _ = interval.tick() => tick(state),
            result = config.changed(), if following => {
                if result.is_err() {
                    // The config's owner is gone: the sidecar is stopping.
                    following = false;
                    continue;
                }
                let next = config.borrow_and_update().clone();
                changed(state, next).await;
            }
        }
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        if let Err(err) = task.await {
            if err.is_panic() {
                tracing::error!("a receiver panicked while stopping");
            }
        }
    }
}
