//! Kubernetes mode (`dynoscope-operator kube`): a kube-rs controller that
//! reconciles ObservabilityConfig resources into ConfigMaps.
//!
//! # Layout
//!
//! - [`controller`]: `reconcile` and `error_policy`; render (the same
//!   renderer as file mode) → ConfigMap apply → status apply → Events.
//! - [`configmap`]: the desired ConfigMap, a pure function of a resource and its render.
//! - [`leader`]: Lease-based leader election; only the leader runs the controller.
//! - [`metrics`]: the counters and `/metrics`, `/healthz`, `/readyz`.
//!
//! [`run`] wires them: signals → shutdown; the election → whether the
//! controller runs; the controller → metrics. [`RBAC_RULES`] lists every API
//! call the controller makes; the Helm chart's roles are tested against it.

pub mod configmap;
pub mod controller;
pub mod leader;
pub mod metrics;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use dynoscope_crds::ObservabilityConfig;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::runtime::{watcher, Controller};
use kube::Client;
use tokio::sync::watch;

use self::controller::Context;
use self::leader::{Elector, LeaseConfig};
use self::metrics::Metrics;

/// `dynoscope-operator kube`: the settings of Kubernetes mode.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Watch only this namespace. Default: all namespaces.
    #[arg(long, env = "DYNOSCOPE_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of `/metrics`, `/healthz` and `/readyz`. Default: `0.0.0.0:8080`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Elect a leader with a Lease so only one replica reconciles. Default: true.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader Lease. Default: `dynoscope-operator`.
    #[arg(long, default_value = "dynoscope-operator")]
    pub lease_name: String,
    /// Namespace of the leader Lease. Default: the pod's namespace (the client's default namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Seconds a Lease stays valid without renewal; the renew deadline and retry
    /// period are 2/3 and 2/15 of it. Default: 15.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// This replica's identity in the Lease and in Events. Default: `$POD_NAME`, else `$HOSTNAME`.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

/// Which scope the roles of one rule apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RbacScope {
    /// The watched namespaces (a ClusterRole, or a Role in the one watched namespace).
    Watched,
    /// Only the operator's own namespace (a Role), for its Lease.
    OperatorNamespace,
}

/// One RBAC rule: every verb the controller uses on one resource, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RbacRule {
    /// API group, `""` for the core group.
    pub api_group: &'static str,
    /// Resource, with `/status` for the subresource.
    pub resource: &'static str,
    /// Verbs, sorted.
    pub verbs: &'static [&'static str],
    /// Where the rule is granted.
    pub scope: RbacScope,
    /// Which calls need it.
    pub why: &'static str,
}

/// Every API call of Kubernetes mode, as RBAC rules: the chart grants exactly these.
pub const RBAC_RULES: &[RbacRule] = &[
    RbacRule {
        api_group: "dynoscope.dev",
        resource: "observabilityconfigs",
        verbs: &["list", "watch"],
        scope: RbacScope::Watched,
        why: "the controller's watch of the resources (and the readiness check's list)",
    },
    RbacRule {
        api_group: "dynoscope.dev",
        resource: "observabilityconfigs/status",
        verbs: &["patch"],
        scope: RbacScope::Watched,
        why: "status (conditions, observedGeneration, per-dyno hashes), written by server-side apply",
    },
    RbacRule {
        api_group: "",
        resource: "configmaps",
        verbs: &["create", "list", "patch", "watch"],
        scope: RbacScope::Watched,
        why: "one ConfigMap per resource by server-side apply (patch; create when it is new), and the watch of the ConfigMaps it owns",
    },
    RbacRule {
        api_group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        scope: RbacScope::Watched,
        why: "Events on the resources (patch: the recorder counts a repeated Event)",
    },
    RbacRule {
        api_group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["create", "get", "update"],
        scope: RbacScope::OperatorNamespace,
        why: "leader election: read the Lease, create it, renew or take it over",
    },
];

/// Runs Kubernetes mode on its own runtime until SIGTERM or SIGINT.
pub fn run_blocking(options: Options) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(options))?;
    Ok(ExitCode::SUCCESS)
}

/// Connects (in-cluster config or `KUBECONFIG`), serves the metrics, waits for
/// the API and the CRD, then reconciles while this replica leads.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let (shutdown_tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing reconciles in flight, then releasing the Lease");
        let _ = shutdown_tx.send(true);
    });
    let client = Client::try_default()
        .await
        .context("cannot configure the Kubernetes client: run in a pod with a service account, or set KUBECONFIG")?;
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(options.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on --metrics-addr {}", options.metrics_addr))?;
    let server = tokio::spawn(metrics::serve(
        listener,
        metrics.clone(),
        stopped(shutdown.clone()),
    ));
    let namespace = options.namespace.clone().filter(|ns| !ns.is_empty());
    if wait_for_api(&client, namespace.as_deref(), &metrics, shutdown.clone()).await {
        let identity = options
            .identity
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("dynoscope-operator-{}", std::process::id()));
        let ctx = Arc::new(Context::new(
            client.clone(),
            metrics.clone(),
            Some(identity.clone()),
        ));
        if options.leader_election {
            let lease_namespace = options
                .lease_namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned());
            let config = LeaseConfig::new(
                options.lease_name.clone(),
                identity,
                Duration::from_secs(options.lease_duration_seconds.max(3)),
            );
            let elector = Elector::new(Api::namespaced(client.clone(), &lease_namespace), config);
            run_elected(
                &client,
                namespace.as_deref(),
                ctx,
                elector,
                &metrics,
                shutdown,
            )
            .await;
        } else {
            metrics.set_leader(true);
            run_controller(&client, namespace.as_deref(), ctx, stopped(shutdown)).await;
        }
    }
    server.await??;
    Ok(())
}

/// Runs the controller each time this replica becomes leader, stopping it when it is not any more.
async fn run_elected(
    client: &Client,
    namespace: Option<&str>,
    ctx: Arc<Context>,
    elector: Elector,
    metrics: &Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) {
    let (leading_tx, mut leading) = watch::channel(false);
    let election = tokio::spawn(leader::run(
        elector,
        leading_tx,
        shutdown.clone(),
        metrics.clone(),
    ));
    let mut shutting_down = shutdown.clone();
    loop {
        tokio::select! {
            became = leading.wait_for(|lead| *lead) => if became.is_err() { break },
            _ = shutting_down.wait_for(|stop| *stop) => break,
        }
        let stop = futures::future::select(stopped(shutdown.clone()), demoted(leading.clone()))
            .map(|_| ());
        run_controller(client, namespace, ctx.clone(), stop).await;
        if *shutdown.borrow() {
            break;
        }
    }
    if let Err(err) = election.await {
        tracing::warn!(error = %err, "the leader election task failed");
    }
}

/// Runs the controller until `stop` resolves, then lets reconciles in flight finish.
async fn run_controller(
    client: &Client,
    namespace: Option<&str>,
    ctx: Arc<Context>,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (resources, configmaps): (Api<ObservabilityConfig>, Api<ConfigMap>) = match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let ours = format!("{}={}", configmap::MANAGED_BY_LABEL, configmap::MANAGED_BY);
    tracing::info!(
        namespace = namespace.unwrap_or("<all>"),
        "controller started"
    );
    Controller::new(resources, watcher::Config::default())
        .owns(configmaps, watcher::Config::default().labels(&ours))
        .graceful_shutdown_on(stop)
        .run(controller::reconcile, controller::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(resource = %object, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                Err(err) => tracing::warn!(error = %err, "controller"),
            }
        })
        .await;
    tracing::info!("controller stopped");
}

/// Lists the resources until the API server answers; false if shut down first.
async fn wait_for_api(
    client: &Client,
    namespace: Option<&str>,
    metrics: &Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> bool {
    let api: Api<ObservabilityConfig> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut delay = Duration::from_secs(1);
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => {
                metrics.set_ready(true);
                return true;
            }
            Err(kube::Error::Api(status)) if status.code == 404 => tracing::error!(
                "the ObservabilityConfig CRD is not installed: `kubectl apply -f crds/observabilityconfig.yaml` (the Helm chart installs it)"
            ),
            Err(kube::Error::Api(status)) if status.code == 403 => tracing::error!(
                message = %status.message,
                "the operator may not list observabilityconfigs: check its ClusterRole (or Role) and binding"
            ),
            Err(err) => tracing::warn!(error = %err, "the Kubernetes API does not answer yet"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|stop| *stop) => return false,
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Resolves once `shutdown` is true. Spawned, so the future handed to the
/// controller is `Sync` whatever tokio's wait futures are.
fn stopped(shutdown: watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + Sync {
    until(shutdown, true)
}

/// Resolves once this replica stops leading.
fn demoted(leading: watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + Sync {
    until(leading, false)
}

fn until(
    mut value: watch::Receiver<bool>,
    wanted: bool,
) -> impl std::future::Future<Output = ()> + Send + Sync {
    let (done, fired) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = value.wait_for(|v| *v == wanted).await;
        let _ = done.send(());
    });
    fired.map(|_| ())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests;
