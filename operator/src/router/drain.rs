//! Forwards router lines to a Logplex drain URL as Logplex does: batches of
//! at most 100 messages or about a second, one `Logplex-Frame-Id` per batch
//! kept on retries, 3 tries on 5xx and connection errors, dropped on 4xx.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use super::logplex;
use super::{RouterError, Stats};

/// Bytes of messages waiting for the drain at most; the oldest go first.
pub const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;
/// A batch leaves when it is this old, even when short of 100 messages.
pub const MAX_BATCH_AGE: Duration = Duration::from_secs(1);
/// Tries of one batch: the first and two retries.
pub const TRIES: u32 = 3;
/// How long one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the drain is: `http://[user:pass@]host:port/path`.
#[derive(Debug, Clone, PartialEq)]
pub struct DrainUrl {
    /// `host:port`, to connect to.
    pub authority: String,
    /// Path and query of the POST.
    pub path: String,
    /// `Basic …` when the URL has credentials.
    authorization: Option<String>,
}

impl DrainUrl {
    /// Parses a drain URL; only `http://` (the router and the drain share a host or a network).
    pub fn parse(url: &str) -> Result<DrainUrl, RouterError> {
        let bad = |why: &str| RouterError::DrainUrl(url.to_owned(), why.to_owned());
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// drains are supported by the local router"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?.as_str();
        let (credentials, host) = match authority.rsplit_once('@') {
            Some((credentials, host)) => (Some(credentials), host),
            None => (None, authority),
        };
        let host = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        Ok(DrainUrl {
            authority: host,
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            authorization: credentials.map(|c| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(c)
                )
            }),
        })
    }
}

/// Messages waiting for the drain, bounded in bytes.
#[derive(Debug, Default)]
pub(super) struct DrainQueue {
    inner: Mutex<Queued>,
}

#[derive(Debug, Default)]
struct Queued {
    messages: VecDeque<(Instant, String)>,
    bytes: usize,
}

impl DrainQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues one message; returns how many old ones it pushed out.
    pub(super) fn push(&self, message: String) -> u64 {
        let mut queued = self.lock();
        queued.bytes += message.len();
        queued.messages.push_back((Instant::now(), message));
        let mut dropped = 0;
        while queued.bytes > MAX_QUEUED_BYTES {
            let Some((_, old)) = queued.messages.pop_front() else {
                break;
            };
            queued.bytes -= old.len();
            dropped += 1;
        }
        dropped
    }

    /// The next batch, when 100 messages wait or the oldest waited a second.
    fn next_batch(&self, flush: bool) -> Option<Vec<String>> {
        let mut queued = self.lock();
        let (oldest, _) = queued.messages.front()?;
        let due = flush
            || queued.messages.len() >= logplex::MAX_BATCH
            || oldest.elapsed() >= MAX_BATCH_AGE;
        if !due {
            return None;
        }
        let n = queued.messages.len().min(logplex::MAX_BATCH);
        let batch: Vec<String> = queued.messages.drain(..n).map(|(_, m)| m).collect();
        queued.bytes -= batch.iter().map(String::len).sum::<usize>();
        Some(batch)
    }
}

/// Posts batches from `queue` to `url` for as long as the router runs.
pub(super) async fn forward(queue: Arc<DrainQueue>, url: DrainUrl, stats: Arc<Stats>) {
    let token = logplex::drain_token();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        while let Some(batch) = queue.next_batch(false) {
            post_batch(&batch, &url, &token, &stats).await;
        }
    }
}

async fn post_batch(batch: &[String], url: &DrainUrl, token: &str, stats: &Stats) {
    let body = Bytes::from(logplex::body(batch.iter().map(String::as_str)));
    let frame_id = logplex::frame_id();
    for attempt in 1..=TRIES {
        match post(url, body.clone(), batch.len(), &frame_id, token).await {
            Ok(status) if status.is_success() => {
                stats.add(&stats.drain_posted, batch.len() as u64);
                return;
            }
            Ok(status) if status.is_client_error() => {
                tracing::warn!(
                    "router: the drain answered {status}: {} lines dropped",
                    batch.len()
                );
                break;
            }
            _ if attempt < TRIES => {
                stats.add(&stats.drain_retries, 1);
                tokio::time::sleep(Duration::from_millis(250) * attempt).await;
            }
            _ => {}
        }
    }
    stats.add(&stats.drain_dropped, batch.len() as u64);
}

/// One POST; the status, or `None` when the drain could not be reached.
async fn post(
    url: &DrainUrl,
    body: Bytes,
    count: usize,
    frame_id: &str,
    token: &str,
) -> Result<StatusCode, ()> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(&url.authority)
            .await
            .map_err(|_| ())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| ())?;
        tokio::spawn(connection);
        let mut request = Request::post(url.path.as_str())
            .header("host", url.authority.as_str())
            .header("content-type", logplex::CONTENT_TYPE)
            .header("logplex-msg-count", count.to_string())
            .header("logplex-frame-id", frame_id)
            .header("logplex-drain-token", token)
            .header("user-agent", "Logplex/v72 (dynoscope router)");
        if let Some(authorization) = &url.authorization {
            request = request.header("authorization", authorization.as_str());
        }
        let request = request.body(Full::new(body)).map_err(|_| ())?;
        let response = sender.send_request(request).await.map_err(|_| ())?;
        Ok(response.status())
    };
    tokio::time::timeout(POST_TIMEOUT, exchange)
        .await
        .unwrap_or(Err(()))
}

/// Sends what is left, at most a few batches, when the router stops.
pub(super) async fn flush(queue: &DrainQueue, url: &DrainUrl, stats: &Stats) {
    let token = logplex::drain_token();
    for _ in 0..10 {
        let Some(batch) = queue.next_batch(true) else {
            return;
        };
        post_batch(&batch, url, &token, stats).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_urls() {
        let url = DrainUrl::parse("http://user:pass@127.0.0.1:5999/logs?x=1")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url.authority, "127.0.0.1:5999");
        assert_eq!(url.path, "/logs?x=1");
        assert_eq!(url.authorization.as_deref(), Some("Basic dXNlcjpwYXNz"));
        let plain = DrainUrl::parse("http://drain/logs").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain.authority, "drain:80");
        assert!(plain.authorization.is_none());
        assert!(DrainUrl::parse("https://drain/logs").is_err());
        assert!(DrainUrl::parse("not a url").is_err());
    }

    #[test]
    fn queue_batches_by_100_and_drops_oldest_over_its_bytes() {
        let queue = DrainQueue::default();
        for i in 0..150 {
            assert_eq!(queue.push(format!("line {i}")), 0);
        }
        let first = queue.next_batch(false).unwrap_or_default();
        assert_eq!(first.len(), 100);
        assert_eq!(first[0], "line 0");
        // 50 left, younger than a second: not due unless flushed.
        assert!(queue.next_batch(false).is_none());
        assert_eq!(queue.next_batch(true).map(|b| b.len()), Some(50));

        let big = "x".repeat(MAX_QUEUED_BYTES / 4 + 1);
        let dropped: u64 = (0..4).map(|_| queue.push(big.clone())).sum();
        assert_eq!(dropped, 1);
        assert_eq!(queue.next_batch(true).map(|b| b.len()), Some(3));
    }
}
