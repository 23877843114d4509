//! Serving an axum [`Router`] over HTTP/1.1 on an already-bound listener (TCP
//! or unix), with the bounds every HTTP server of the sidecar needs — the
//! trace receiver's and the admin endpoint's: a connection that is slow to
//! send its request, or idles between requests, is closed; a connection's read
//! buffer is bounded; and only so many connections are served at once, past
//! which a new one waits in the kernel's backlog or is closed at once
//! ([`WhenFull`]).
//!
//! `axum::serve` has no read timeout, so a client that connects and says
//! nothing would hold its socket and task for ever; hence this.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Overrides [`Limits::idle_timeout`] in milliseconds, so tests need not wait for the default.
pub const IDLE_TIMEOUT_ENV: &str = "DYNOSCOPE_IDLE_TIMEOUT_MS";

/// How long and how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long a connection may take to send a request's head, counted from
    /// when the server starts waiting for one. Hyper starts that wait again
    /// after each answer, so it is also how long a kept-alive connection may
    /// idle. Default: 10 s.
    pub idle_timeout: Duration,
    /// Connections served at once. Default: 64.
    pub max_connections: usize,
    /// What a connection past `max_connections` gets. Default: [`WhenFull::Wait`].
    pub when_full: WhenFull,
    /// The most a connection's read buffer grows to. Default: 64 KiB.
    pub max_buf_bytes: usize,
    /// At shutdown, how long requests in flight may take to finish. Default: 2 s.
    pub drain: Duration,
}

impl Limits {
    /// The defaults.
    pub const fn new() -> Self {
        Limits {
            idle_timeout: Duration::from_secs(10),
            max_connections: 64,
            when_full: WhenFull::Wait,
            max_buf_bytes: 64 << 10,
            drain: Duration::from_secs(2),
        }
    }

    /// These limits, with the idle timeout from [`IDLE_TIMEOUT_ENV`] when it is set to a number.
    pub fn with_env_override(self) -> Self {
        let from_env = std::env::var(IDLE_TIMEOUT_ENV)
            .ok()
            .and_then(|ms| ms.trim().parse::<u64>().ok())
            .filter(|&ms| ms > 0);
        match from_env {
            Some(ms) => Limits {
                idle_timeout: Duration::from_millis(ms),
                ..self
            },
            None => self,
        }
    }
}

/// What happens to a connection that arrives when every slot is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// It waits in the kernel's listen backlog until a slot frees: for a
    /// few occasional readers (the admin endpoint).
    Wait,
    /// It is closed at once and counted: for a server whose clients retry
    /// (the tracers), so that a crowd costs neither memory nor file descriptors.
    Close,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new()
    }
}

/// Serves `router` on `listener` until `shutdown` completes; then stops
/// accepting, lets requests in flight finish within [`Limits::drain`], and
/// closes every connection. `refused` is called for each connection closed
/// because every slot was taken ([`WhenFull::Close`]).
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    refused: impl Fn(),
) where
    L: axum::serve::Listener,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Waiting: the slot is taken before the accept, so past the limit the
        // kernel's backlog holds new connections rather than this process.
        let waited = match limits.when_full {
            WhenFull::Wait => tokio::select! {
                () = &mut shutdown => break,
                slot = Arc::clone(&slots).acquire_owned() => match slot {
                    Ok(slot) => Some(slot),
                    Err(_) => break,
                },
            },
            WhenFull::Close => None,
        };
        // axum's `Listener::accept` retries accept errors itself (out of file
        // descriptors, most likely) after a pause rather than spinning.
        let (io, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let slot = match waited {
            Some(slot) => slot,
            None => match Arc::clone(&slots).try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    refused();
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            let _slot = slot;
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.idle_timeout)
                .max_buf_size(limits.max_buf_bytes)
                .serve_connection(TokioIo::new(io), service);
            tokio::pin!(connection);
            tokio::select! {
                // A client that goes away or times out is not an error of the sidecar's.
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!("HTTP connection closed: {err}");
                    }
                }
                _ = stopped.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    let _ = stop.send(true);
    let drained = tokio::time::timeout(limits.drain, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::debug!(
            "closing HTTP connections still busy after {:?}",
            limits.drain
        );
    }
    // Dropping the set aborts what is left.
}

/// A listener being served by a task of its own (see [`Serving::spawn`]).
#[derive(Debug)]
pub struct Serving {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    drain: Duration,
}

impl Serving {
    /// Serves `router` on `listener` in a task of its own until [`close`](Serving::close).
    pub fn spawn<L>(
        listener: L,
        router: Router,
        limits: Limits,
        refused: impl Fn() + Send + 'static,
    ) -> Serving
    where
        L: axum::serve::Listener,
    {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            serve(listener, router, limits, shutdown, refused).await;
        });
        Serving {
            stop,
            task,
            drain: limits.drain,
        }
    }

    /// Stops accepting; requests in flight get [`Limits::drain`], then their connections are cut.
    pub async fn close(self) {
        self.stop.send_replace(true);
        let mut task = self.task;
        if tokio::time::timeout(self.drain, &mut task).await.is_err() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests;
