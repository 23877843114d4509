//! The loopback admin endpoint: `GET /status`, the [`SidecarStatus`] as JSON.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use dynoscope_crds::sidecar_status::SidecarStatus;
use dynoscope_crds::DynoConfig;
use tokio::sync::watch;

use super::StatusBoard;
use crate::config;
use crate::http_server::{self, Limits};
use crate::stats::Stats;

/// What the handlers read.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The status board.
    pub status: Arc<StatusBoard>,
    /// The counters.
    pub stats: Arc<Stats>,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/status", get(status))
        .with_state(state)
}

async fn status(State(state): State<AdminState>) -> Json<SidecarStatus> {
    Json(state.status.snapshot(&state.stats))
}

/// The admin port's bounds: people and `up` read it now and then, a few at a time.
fn limits() -> Limits {
    Limits {
        max_connections: 16,
        ..Limits::new()
    }
    .with_env_override()
}

/// Serves `/status` on an already-bound listener until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()>,
) {
    http_server::serve(listener, router(state), limits(), shutdown, || {}).await;
}

/// Serves on `127.0.0.1:<admin port>`, re-binding when the config's port changes
/// (`flag` overrides the config). A port that cannot be bound is reported, never fatal.
pub async fn run(
    mut config: watch::Receiver<Option<Arc<DynoConfig>>>,
    flag: Option<u16>,
    state: AdminState,
) {
    loop {
        let port = config::admin_port(config.borrow_and_update().as_deref(), flag);
        let listener = match port {
            0 => None,
            port => {
                match tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await
                {
                    Ok(listener) => {
                        tracing::info!("status at http://127.0.0.1:{port}/status");
                        Some(listener)
                    }
                    Err(err) => {
                        tracing::error!("cannot serve /status on 127.0.0.1:{port}: {err}; set another adminPort");
                        None
                    }
                }
            }
        };
        let mut watcher = config.clone();
        let port_changed = async move {
            loop {
                if watcher.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                if config::admin_port(watcher.borrow_and_update().as_deref(), flag) != port {
                    return;
                }
            }
        };
        match listener {
            Some(listener) => serve(listener, state.clone(), port_changed).await,
            None => port_changed.await,
        }
    }
}

#[cfg(test)]
mod tests;
