//! `dynoscope-sidecar drain`: the Logplex drain as a process of its own — a
//! collector app's web dyno on Heroku, a service in compose, a Deployment in
//! Kubernetes, or a process `up` starts beside the formation.
//!
//! The same config (a rendered DynoConfig, or the manifest rendered for
//! `$DYNO`, default `drain.1`), the same pipeline and sinks as a dyno's
//! sidecar, hot-reloaded; no app to supervise. The dyno's own `dyno:` and
//! `dynotype:` tags are left off: each drained line names its own dyno.
//! SIGTERM or SIGINT stops accepting, flushes what is aggregated and the
//! pipeline, and exits 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dynoscope_crds::drain::{DrainConfig, DRAIN_PORT};
use dynoscope_crds::DynoConfig;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::cli::DrainArgs;
use crate::config_watch::{self, Reloader};
use crate::pipeline::{self, PipelineConfig};
use crate::receivers::drain::server::{self, Settings, Shared};
use crate::receivers::otlp;
use crate::stats::Stats;
use crate::status::{self, AdminState, StatusBoard};

/// How often closed buckets are flushed.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Time the pipeline gets to flush at exit.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves the drain until SIGTERM or SIGINT; returns the exit status.
pub async fn run(args: DrainArgs, stats: Arc<Stats>) -> i32 {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install the SIGTERM/SIGINT handlers");
        return 70;
    };
    let source = args.source(std::env::var("DYNO").ok());
    let status = Arc::new(StatusBoard::new(source.describe()));
    let (bus, _) = watch::channel::<Option<Arc<DynoConfig>>>(None);
    let reloader = Reloader::new(source, bus.clone(), status.clone(), stats.clone());
    reloader.boot();
    let initial = bus.borrow().clone();
    let drain = drain_config(initial.as_deref());

    let pipeline = pipeline::spawn(pipeline_config(initial.as_deref()), stats.clone());
    let env = |name: &str| std::env::var(name).ok();
    let shared = Shared::new(
        pipeline.handle(),
        stats.clone(),
        Settings::resolve(&drain, env),
    );
    let addr = listen_addr(args.listen, std::env::var("PORT").ok().as_deref(), &drain);
    let listener = match server::bind(addr) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(
                "cannot listen on {addr}: {err}; pass --listen or set spec.drain.port to a free port"
            );
            return 69;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    if drain.basic_auth.is_none() && drain.tokens.is_empty() {
        tracing::warn!(
            "drain: no basicAuth or tokens in spec.drain: every request is accepted; \
             set credentials before exposing {bound} beyond this host"
        );
    }
    tracing::info!(
        "drain: Logplex drain on http://{bound}/logs, Fir telemetry (OTLP/HTTP) on http://{bound}/v1/"
    );
    status.set_receiver(
        "drain",
        serde_json::json!({"tcp": bound.to_string(), "max_body_bytes": drain.max_body_bytes}),
    );
    let otlp = otlp::Routes::new(bus.subscribe(), pipeline.handle(), stats.clone());
    let serving = server::serve(listener, shared.clone(), &otlp);

    let admin = tokio::spawn({
        let state = AdminState {
            status: status.clone(),
            stats: stats.clone(),
        };
        status::server::run(bus.subscribe(), args.admin_port, state)
    });
    let watcher = tokio::spawn(config_watch::watch(reloader));
    let flusher = tokio::spawn({
        let (shared, otlp) = (shared.clone(), otlp.clone());
        async move {
            let mut every = tokio::time::interval(FLUSH_EVERY);
            loop {
                every.tick().await;
                shared.flush(false);
                otlp.flush_stats(false);
            }
        }
    });
    let mut changes = bus.subscribe();
    let follow = async {
        while changes.changed().await.is_ok() {
            let config = changes.borrow_and_update().clone();
            pipeline.reconfigure(pipeline_config(config.as_deref()));
            let next = drain_config(config.as_deref());
            if next.port != drain.port && args.listen.is_none() {
                tracing::warn!(
                    "drain: spec.drain.port changed to {}; the drain keeps {bound} until it restarts",
                    next.port
                );
            }
            shared.reconfigure(Settings::resolve(&next, env));
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
        () = follow => {},
    }
    tracing::info!("drain: stopping");
    serving.close().await;
    for task in [admin, watcher, flusher] {
        task.abort();
    }
    shared.flush(true);
    otlp.flush_stats(true);
    if !pipeline.shutdown(FLUSH_TIMEOUT).await {
        tracing::warn!("the pipeline did not flush within {FLUSH_TIMEOUT:?}");
    }
    0
}

/// `spec.drain` of the config, or the defaults.
fn drain_config(config: Option<&DynoConfig>) -> DrainConfig {
    config.and_then(|c| c.drain.clone()).unwrap_or_default()
}

/// `--listen`, else `0.0.0.0:$PORT`, else `0.0.0.0:<spec.drain.port>`.
fn listen_addr(
    flag: Option<SocketAddr>,
    port_env: Option<&str>,
    drain: &DrainConfig,
) -> SocketAddr {
    if let Some(addr) = flag {
        return addr;
    }
    let port = port_env
        .and_then(|p| p.trim().parse::<u16>().ok())
        .unwrap_or(if drain.port == 0 {
            DRAIN_PORT
        } else {
            drain.port
        });
    SocketAddr::from(([0, 0, 0, 0], port))
}

/// The dyno's pipeline config without its own `dyno:`/`dynotype:` tags, and
/// on even when an override turned the dyno's observability off.
fn pipeline_config(config: Option<&DynoConfig>) -> PipelineConfig {
    let Some(config) = config else {
        return PipelineConfig::off();
    };
    let mut config = config.clone();
    config.enabled = true;
    let mut pipeline = PipelineConfig::from_dyno(&config, |name| std::env::var(name).ok());
    pipeline
        .tags
        .retain(|t| !t.starts_with("dyno:") && !t.starts_with("dynotype:"));
    pipeline
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_flag_then_port_env_then_spec() {
        let spec = DrainConfig {
            port: 9000,
            ..DrainConfig::default()
        };
        let flag: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        assert_eq!(listen_addr(Some(flag), Some("5000"), &spec), flag);
        assert_eq!(listen_addr(None, Some("5000"), &spec).port(), 5000);
        assert_eq!(listen_addr(None, None, &spec).port(), 9000);
        assert_eq!(
            listen_addr(None, Some("x"), &DrainConfig::default()).port(),
            8130
        );
    }
}
