//! `dynoscope-sidecar run`: wires the components together for the life of the app.
//!
//! Order matters: signal handlers and the config come first, then the pipeline, the
//! receivers (bound before the app starts so its first traces are not lost) and the
//! integration checks, then the app; background tasks run contained, so a panic in one is reported and the
//! task restarted while the app keeps running. When the app is gone the pipeline is
//! flushed and the app's status returned.

use std::future::Future;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dynoscope_crds::dyno::IntegrationConfig;
use dynoscope_crds::DynoConfig;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::checks;
use crate::cli::RunArgs;
use crate::config;
use crate::config_watch::{self, Reloader};
use crate::pipeline::{self, PipelineConfig};
use crate::receivers::logs::{AppStdio, Logs};
use crate::receivers::Receivers;
use crate::sampler::{self, Sampler};
use crate::stats::Stats;
use crate::status::{server, AdminState, AppState, StatusBoard};
use crate::supervisor::{self, Signals};

/// How often the `conf.d` directory is re-read: a few small files, and
/// polling survives every way of replacing them (editors, symlink swaps).
const CONF_D_POLL: Duration = Duration::from_secs(2);

/// Time the app's output gets to reach its end once the app is gone.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

/// Time the pipeline gets to flush once the app is gone.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the app under supervision; returns the status to exit with. `stats` are the
/// counters `main` already gave the output writers.
pub async fn run(args: RunArgs, stats: Arc<Stats>) -> i32 {
    if !supervisor::become_subreaper() && std::process::id() != 1 {
        tracing::debug!("not a subreaper: orphans of the app are reaped by init");
    }
    let source = args.source(std::env::var("DYNO").ok());
    let status = Arc::new(StatusBoard::new(source.describe()));
    status.set_command(
        args.command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
    );

    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(err) => {
            tracing::error!("{err}");
            return 70;
        }
    };

    let (bus, _) = watch::channel::<Option<Arc<DynoConfig>>>(None);
    let reloader = Reloader::new(source.clone(), bus.clone(), status.clone(), stats.clone());
    reloader.boot();
    let initial = bus.borrow().clone();

    let pipeline = pipeline::spawn(pipeline_config(initial.as_deref()), stats.clone());
    // Bound before the app starts: its first traces and metrics find a listener.
    let receivers = Receivers::start(&bus.subscribe(), &pipeline.handle(), &stats, &status).await;
    let conf_d = Arc::new(checks::confd::ConfD::default());
    conf_d.refresh(conf_d_dir(initial.as_deref()));
    let checks = Arc::new(checks::spawn(
        &integrations(initial.as_deref(), &conf_d),
        {
            let conf_d = conf_d.clone();
            move |name| conf_d.value(name).or_else(|| std::env::var(name).ok())
        },
        {
            let pipe = pipeline.handle();
            move |item| {
                pipe.send(item);
            }
        },
    ));
    status.attach_checks(checks.clone());

    // The app writes into pipes the sidecar copies to its own stdout and stderr.
    let (logs, stdio) = match Logs::start(initial.as_deref(), pipeline.handle(), &stats) {
        Ok((logs, stdio)) => (Some(logs), stdio),
        Err(err) => {
            tracing::error!(
                "cannot pipe the app's output ({err}): it writes to the sidecar's stdout and \
                 stderr directly, and no log records are made"
            );
            (None, AppStdio::default())
        }
    };
    let env = config::app_env(initial.as_deref(), |name| std::env::var(name).ok());
    let spawned = supervisor::spawn(
        &args.command,
        &env,
        [stdio.stdout.as_ref(), stdio.stderr.as_ref()].map(|fd| fd.map(AsFd::as_fd)),
    );
    // Only the app holds the write ends now: its exit closes them.
    drop(stdio);
    let app = match spawned {
        Ok(app) => app,
        Err(err) => {
            tracing::error!("{err}");
            let code = err.exit_code();
            status.set_exit(code);
            checks.shutdown();
            receivers.shutdown(FLUSH_TIMEOUT).await;
            pipeline.shutdown(FLUSH_TIMEOUT).await;
            return code;
        }
    };
    let app_pid = u32::try_from(app.pid.as_raw()).ok();
    status.set_app(app_pid, AppState::Running);
    crate::memory::unmap_once_settled();

    let tasks = [
        contained("config watcher", &stats, move || {
            config_watch::watch(reloader.clone())
        }),
        contained("sampler", &stats, {
            let (config, handle, status) = (bus.subscribe(), pipeline.handle(), status.clone());
            move || {
                let sampler = Sampler::new(Path::new("/proc"), Path::new("/sys/fs/cgroup"));
                sampler::run(
                    sampler,
                    config.clone(),
                    handle.clone(),
                    status.clone(),
                    app_pid,
                )
            }
        }),
        contained("conf.d watcher", &stats, {
            let (config, conf_d, checks) = (bus.subscribe(), conf_d.clone(), checks.clone());
            move || {
                let (config, conf_d, checks) = (config.clone(), conf_d.clone(), checks.clone());
                async move {
                    loop {
                        tokio::time::sleep(CONF_D_POLL).await;
                        let current = config.borrow().clone();
                        if conf_d.refresh(conf_d_dir(current.as_deref())) {
                            checks.reconfigure(&integrations(current.as_deref(), &conf_d));
                        }
                    }
                }
            }
        }),
        contained("admin", &stats, {
            let (config, flag) = (bus.subscribe(), args.admin_port);
            let state = AdminState {
                status: status.clone(),
                stats: stats.clone(),
            };
            move || server::run(config.clone(), flag, state.clone())
        }),
    ];

    // Tags and sinks follow the config without touching the app.
    let mut changes = bus.subscribe();
    let reconfigure = async {
        while changes.changed().await.is_ok() {
            let config = changes.borrow_and_update().clone();
            pipeline.reconfigure(pipeline_config(config.as_deref()));
            if let Some(logs) = &logs {
                logs.reconfigure(config.as_deref());
            }
            conf_d.refresh(conf_d_dir(config.as_deref()));
            checks.reconfigure(&integrations(config.as_deref(), &conf_d));
        }
        std::future::pending::<()>().await;
    };
    // Read by the supervisor thread when TERM arrives: a watch borrow is a short read lock.
    let grace = {
        let (config, flag) = (bus.subscribe(), args.grace_period.map(|g| g.get()));
        move || config::grace_period(config.borrow().as_deref(), flag)
    };
    let code = tokio::select! {
        code = supervisor::supervise(&app, signals, grace, stats.clone(), status.clone()) => code,
        () = reconfigure => 1,
    };
    status.set_exit(code);
    for task in tasks {
        task.abort();
    }
    checks.shutdown();
    // The app's last lines: passed through, and their records into the pipeline.
    if logs.as_ref().is_some_and(|logs| !logs.finish(OUTPUT_DRAIN)) {
        tracing::warn!(
            "the app's output was still open {OUTPUT_DRAIN:?} after it exited (a process it \
             started holds it?): its later lines are lost"
        );
    }
    // Receivers first: their last buckets go into the pipeline, which then flushes.
    receivers.shutdown(FLUSH_TIMEOUT).await;
    if !pipeline.shutdown(FLUSH_TIMEOUT).await {
        tracing::warn!("the pipeline did not flush within {FLUSH_TIMEOUT:?}");
    }
    code
}

fn pipeline_config(config: Option<&DynoConfig>) -> PipelineConfig {
    config.map_or_else(PipelineConfig::off, |c| {
        PipelineConfig::from_dyno(c, |name| std::env::var(name).ok())
    })
}

/// The checks this dyno runs, its `conf.d`'s included: none when observability is off.
fn integrations(
    config: Option<&DynoConfig>,
    conf_d: &checks::confd::ConfD,
) -> Vec<IntegrationConfig> {
    let Some(config) = config.filter(|c| c.enabled) else {
        return Vec::new();
    };
    let mut all = config.integrations.clone();
    if config.conf_d.is_some() {
        all.extend(conf_d.configs());
    }
    all
}

/// The `conf.d` directory this dyno reads, relative to its working directory.
fn conf_d_dir(config: Option<&DynoConfig>) -> Option<&Path> {
    config
        .filter(|c| c.enabled)
        .and_then(|c| c.conf_d.as_deref())
        .map(Path::new)
}

/// Runs `make()`'s task; when it panics, reports it and starts a fresh one a second later.
/// Aborting the returned handle stops the current task too.
fn contained<F, Fut>(name: &'static str, stats: &Arc<Stats>, make: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let stats = stats.clone();
    tokio::spawn(async move {
        loop {
            // A JoinSet aborts its task when dropped, i.e. when this task is aborted.
            let mut set = JoinSet::new();
            set.spawn(make());
            match set.join_next().await {
                Some(Err(err)) if err.is_panic() => {
                    stats.tasks.panics.inc();
                    tracing::error!(
                        "the {name} task panicked ({}); restarting it — the app is not affected",
                        pipeline::panic_message(err.into_panic().as_ref())
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => return,
            }
        }
    })
}
