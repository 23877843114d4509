//! The trace receiver's edge: how many connections it holds, how long a
//! client may take, and how many request bytes it holds at once.
//!
//! | limit | default | past it |
//! | --- | --- | --- |
//! | open connections | [`MAX_CONNECTIONS`] | the new connection is closed at once, counted |
//! | request head, and idle keep-alive | [`IDLE_TIMEOUT`] | the connection is closed |
//! | request body | [`BODY_TIMEOUT`] from the first body byte wanted | 408, the connection is closed |
//! | bodies in flight, all connections | [`IN_FLIGHT_BYTES`] | 429 |
//! | connection read buffer | [`MAX_BUF_BYTES`] | hyper reads no further until it is consumed |
//!
//! Connections are served by [`crate::http_server`] with these limits.
//! hyper's header-read timer starts as soon as a connection waits for a
//! request head, on a fresh connection as on a kept-alive one, so one timer
//! closes both slow senders of headers and idle connections.
//!
//! A body's bytes are charged to the in-flight budget before they are read:
//! all at once by its `Content-Length`, or chunk by chunk for a chunked body.
//! A request that cannot be charged at once is refused (429) rather than
//! queued, so a crowd of slow senders costs the budget, not the heap.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use bytes::BytesMut;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections served at once; more are closed as they arrive. Default: 128
/// (a dyno's tracers hold a few each).
pub const MAX_CONNECTIONS: usize = 128;
/// How long a connection may take to send a request head, or stay idle
/// between requests. Default: 10 s (tracers flush every second).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may take, all of it. Default: 10 s (ddtrace
/// itself gives up after 2 s).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Request body bytes held at once across all connections. Default: 16 MiB,
/// at least one request of the largest size.
pub const IN_FLIGHT_BYTES: usize = 16 << 20;
/// The most a connection's read buffer grows to. Default: 64 KiB.
pub const MAX_BUF_BYTES: usize = 64 << 10;
/// Test-only override of [`IDLE_TIMEOUT`], in milliseconds (shared with the admin endpoint).
pub use crate::http_server::IDLE_TIMEOUT_ENV;
/// Test-only override of [`BODY_TIMEOUT`], in milliseconds.
pub const BODY_TIMEOUT_ENV: &str = "DYNOSCOPE_BODY_TIMEOUT_MS";

/// The timeouts in force; [`Limits::from_env`] reads the test-only overrides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Request head and idle keep-alive. Default: [`IDLE_TIMEOUT`].
    pub idle: Duration,
    /// A whole request body. Default: [`BODY_TIMEOUT`].
    pub body: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle: IDLE_TIMEOUT,
            body: BODY_TIMEOUT,
        }
    }
}

impl Limits {
    /// The defaults, with [`IDLE_TIMEOUT_ENV`] and [`BODY_TIMEOUT_ENV`]
    /// applied (they exist so that tests need not wait 10 s; a value that
    /// is not a positive number of milliseconds is ignored).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Self {
        let millis = |name| {
            env(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&ms| ms > 0)
                .map(Duration::from_millis)
        };
        let defaults = Limits::default();
        Limits {
            idle: millis(IDLE_TIMEOUT_ENV).unwrap_or(defaults.idle),
            body: millis(BODY_TIMEOUT_ENV).unwrap_or(defaults.body),
        }
    }
}

impl Limits {
    /// The limits of a receiver's HTTP listener: this module's connection
    /// limit and read buffer, these timeouts, `drain` at shutdown.
    pub fn http(&self, drain: Duration) -> crate::http_server::Limits {
        crate::http_server::Limits {
            idle_timeout: self.idle,
            max_connections: MAX_CONNECTIONS,
            when_full: crate::http_server::WhenFull::Close,
            max_buf_bytes: MAX_BUF_BYTES,
            drain,
        }
    }
}

/// Counts a connection closed because [`MAX_CONNECTIONS`] were open; logs the first.
pub fn refuse_connection(counter: &crate::stats::Counter, receiver: &str) {
    counter.inc();
    if counter.get() == 1 {
        tracing::warn!(
            "{receiver}: {MAX_CONNECTIONS} connections open; closing new ones \
             (counted in dynoscope-sidecar status)"
        );
    }
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// Over the per-request limit.
    #[error("payload over {0} bytes")]
    TooLarge(usize),
    /// The in-flight budget cannot take it now.
    #[error("the sidecar holds {IN_FLIGHT_BYTES} bytes of requests already; retry later")]
    Busy,
    /// The client sent too slowly.
    #[error("the request body did not arrive within {0:?}")]
    Timeout(Duration),
    /// The connection failed or ended mid-body.
    #[error("the request body ended early")]
    Incomplete,
}

impl BodyError {
    /// The answer's status.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Busy => StatusCode::TOO_MANY_REQUESTS,
            BodyError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Incomplete => StatusCode::BAD_REQUEST,
        }
    }

    /// The reason it is counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            BodyError::TooLarge(_) => "too_large",
            BodyError::Busy => "in_flight_budget",
            BodyError::Timeout(_) => "body_timeout",
            BodyError::Incomplete => "incomplete_body",
        }
    }
}

/// The byte budget of request bodies in flight, shared by every connection.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
}

impl BodyBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        BodyBudget {
            bytes: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Bytes not held now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Takes `n` bytes of the budget, now or never.
    pub fn charge(&self, n: usize) -> Result<OwnedSemaphorePermit, BodyError> {
        let n = u32::try_from(n).map_err(|_| BodyError::TooLarge(n))?;
        self.bytes
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| BodyError::Busy)
    }
}

/// A request body and its share of the [`BodyBudget`], given back when this
/// is dropped (once the body is decoded and queued).
#[derive(Debug)]
pub struct HeldBody {
    /// The body.
    pub bytes: Bytes,
    _charge: Option<OwnedSemaphorePermit>,
}

/// Reads a body of at most `limit` bytes within `timeout`, charging it to `budget`.
pub async fn read_body(
    budget: &BodyBudget,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<HeldBody, BodyError> {
    let announced = content_length(headers);
    if announced.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut charge = announced.map(|n| budget.charge(n)).transpose()?;
    let read = async {
        // Capacity only from an announced length already within the limit and charged.
        let mut buf = BytesMut::with_capacity(announced.unwrap_or(0));
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Incomplete)?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if buf.len() + data.len() > limit {
                return Err(BodyError::TooLarge(limit));
            }
            if announced.is_none() {
                let more = budget.charge(data.len())?;
                match &mut charge {
                    Some(held) => held.merge(more),
                    None => charge = Some(more),
                }
            }
            buf.extend_from_slice(&data);
        }
        Ok(buf.freeze())
    };
    let bytes = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| BodyError::Timeout(timeout))??;
    Ok(HeldBody {
        bytes,
        _charge: charge,
    })
}

/// The announced body length, if any and well formed.
pub fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
#[path = "edge/tests.rs"]
mod tests;
