//! The delivery task of a sink: takes batches from its buffer, compresses
//! them off the async workers, posts them with the one HTTP client and retries
//! them (see the parent module for the policy). It runs on the delivery
//! thread's own runtime.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Why the delivery machinery every network sink shares could not be set
/// up (once per process; cloned to each sink that asks).
#[derive(Clone, Debug, thiserror::Error)]
pub enum SetupError {
    /// The delivery thread or its runtime could not start.
    #[error("cannot start the delivery thread: {0}; the process is out of threads or memory (check the dyno's process limit and memory)")]
    Thread(String),
    /// rustls refused its provider's protocol versions (a build problem).
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    /// reqwest could not build the client.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The runtime every delivery task runs on: one thread of its own. The
/// pipeline task encodes on an async worker and, under a flood, keeps it
/// for long polls; a delivery task it wakes would wait in that worker's
/// next-task slot, which other workers cannot steal, and deliver nothing
/// while the flood lasts (observed: 0 batches in 10 s). On its own thread
/// delivery keeps its pace, and its work never delays the receivers.
pub(super) fn delivery_runtime() -> Result<tokio::runtime::Handle, SetupError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Handle, SetupError>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("dynoscope-delivery")
                .build()
                .map_err(|err| SetupError::Thread(err.to_string()))?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("dynoscope-delivery".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .map_err(|err| SetupError::Thread(err.to_string()))?;
            Ok(handle)
        })
        .clone()
}

/// The one HTTP client of every network sink: one connection pool,
/// HTTP/1.1 keep-alive, http and https (rustls, ring, the system's roots).
/// Redirects are not followed (a 3xx is refused like a 4xx: following one
/// would carry the API key header to another host), and no proxy is taken
/// from the environment.
pub(super) fn http_client() -> Result<reqwest::Client, SetupError> {
    static CLIENT: OnceLock<Result<reqwest::Client, SetupError>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                // A malformed system certificate is skipped, as browsers do.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                tracing::warn!("no trusted root certificates found (install ca-certificates or set SSL_CERT_FILE): https sinks will fail");
            }
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .http1_only()
                .pool_idle_timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .map_err(|err| SetupError::Client(describe(&err)))
        })
        .clone()
}

pub(super) fn compress(compression: Compression, raw: &[u8]) -> std::io::Result<Bytes> {
    match compression {
        Compression::None => Ok(Bytes::copy_from_slice(raw)),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(raw.len() / 4),
                flate2::Compression::fast(),
            );
            encoder.write_all(raw)?;
            encoder.finish().map(Bytes::from)
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(raw)
            .map(Bytes::from)
            .map_err(std::io::Error::other),
    }
}

/// A batch's body compressed as its endpoint wants, on a blocking thread:
/// a 1 MiB batch costs milliseconds of CPU, which the async workers owe
/// the receivers (a flood of traces must not stall delivery, nor delivery
/// the receivers).
async fn compressed(shared: &Shared, endpoint: usize, raw: Bytes) -> Bytes {
    let compression = shared.endpoints[endpoint].compression;
    if compression == Compression::None {
        return raw;
    }
    let input = raw.clone();
    let done = tokio::task::spawn_blocking(move || compress(compression, &input)).await;
    match done {
        Ok(Ok(body)) => body,
        Ok(Err(err)) => {
            tracing::error!("sink {}: cannot compress a batch: {err}", shared.name);
            raw
        }
        Err(err) => {
            tracing::error!("sink {}: compressing a batch failed: {err}", shared.name);
            raw
        }
    }
}

/// The delivery task.
pub(super) async fn run(shared: Arc<Shared>, client: reqwest::Client) {
    if let Some(disk) = shared.disk.clone() {
        // A previous run's segments are scanned before anything is sent: they are the oldest.
        let endpoints: Vec<_> = shared.endpoints.iter().map(|e| (e.name, e.kind)).collect();
        let _ = tokio::task::spawn_blocking(move || disk.prepare(&endpoints)).await;
    }
    let mut refused_logged = BTreeSet::new();
    let mut closed_at: Option<Instant> = None;
    loop {
        tokio::select! {
            () = shared.wake.notified() => {}
            () = tokio::time::sleep(shared.config.batch_interval) => {}
        }
        while let Some(next) = shared.next() {
            let mut batch = match next {
                Next::Batch(batch) => *batch,
                Next::Disk(index) => match from_disk(&shared, index).await {
                    Some(batch) => batch,
                    None => break,
                },
            };
            batch.body = compressed(&shared, batch.endpoint, batch.body).await;
            let give_up_at = closed_at.map(|at| at + DRAIN_AFTER_DROP);
            let done = send(&shared, &client, &batch, give_up_at, &mut refused_logged).await;
            if let (Some(mark), Some(disk)) = (batch.disk.clone(), shared.disk.clone()) {
                if done {
                    let kind = shared.endpoints[batch.endpoint].kind;
                    shared.stats.buffer_kinds.0[kind.index()]
                        .replayed
                        .add(mark.records);
                }
                let _ = tokio::task::spawn_blocking(move || {
                    if done {
                        disk.commit(&mark);
                    } else {
                        disk.release(&mark);
                    }
                })
                .await;
            }
            shared.finish(&batch);
        }
        if shared.closed.load(Ordering::Relaxed) {
            let since = *closed_at.get_or_insert_with(Instant::now);
            if shared.lock().is_empty() || since.elapsed() >= DRAIN_AFTER_DROP {
                let left = shared.lock().pending;
                if left.iter().any(|&n| n > 0) {
                    tracing::warn!(
                        "sink {} (removed): gave up on {}",
                        shared.name,
                        in_words(&left)
                    );
                }
                return;
            }
        }
    }
}

/// The next batch of endpoint `index` from the disk buffer, read on a blocking thread.
async fn from_disk(shared: &Arc<Shared>, index: usize) -> Option<Batch> {
    let disk = shared.disk.clone()?;
    let endpoint = &shared.endpoints[index];
    let (name, max_bytes, max_entries) = (
        endpoint.name,
        shared.config.batch_bytes,
        endpoint.max_entries,
    );
    let (records, mark) =
        tokio::task::spawn_blocking(move || disk.read(name, max_bytes, max_entries))
            .await
            .ok()??;
    let body = buffer::frame(endpoint, records.iter().map(|r| r.entry.bytes.as_slice()));
    Some(Batch {
        endpoint: index,
        target: None,
        body: Bytes::from(body),
        items: records.iter().map(|r| r.entry.items).sum(),
        raw_bytes: 0,
        disk: Some(mark),
    })
}

/// What one attempt came to.
enum Outcome {
    Delivered,
    /// Retry, after `Retry-After` if given; `unreachable`: nothing answered.
    Retry {
        after: Option<Duration>,
        unreachable: bool,
    },
    /// Drop the batch.
    Refused,
}

/// Posts `batch` until it is delivered or refused (true), or `give_up_at` passes (false).
async fn send(
    shared: &Shared,
    client: &reqwest::Client,
    batch: &Batch,
    give_up_at: Option<Instant>,
    refused_logged: &mut BTreeSet<u16>,
) -> bool {
    let endpoint = &shared.endpoints[batch.endpoint];
    let stats = &shared.stats;
    let mut attempt: u32 = 0;
    loop {
        let outcome = attempt_once(shared, client, endpoint, batch, refused_logged).await;
        match outcome {
            Outcome::Delivered => {
                endpoint.kind.counter(&stats.sent).add(batch.items);
                stats.bytes.add(batch.body.len() as u64);
                stats.batches.inc();
                stats
                    .last_success
                    .store(crate::clock::unix_now(), Ordering::Relaxed);
                if attempt > 0 {
                    tracing::info!(
                        "sink {}: {} delivers again after {attempt} retries",
                        shared.name,
                        endpoint.name
                    );
                }
                for logged in &shared.drop_logged {
                    logged.store(false, Ordering::Relaxed);
                }
                return true;
            }
            Outcome::Refused => {
                endpoint.kind.counter(&stats.rejected).add(batch.items);
                return true;
            }
            Outcome::Retry { after, unreachable } => {
                if attempt == 0 {
                    let last = stats
                        .last_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    tracing::warn!(
                        "sink {}: {} failed ({}); retrying with back-off",
                        shared.name,
                        endpoint.name,
                        last.unwrap_or_default()
                    );
                }
                let delay = match after {
                    Some(after) => after.min(shared.config.backoff_max),
                    None if unreachable => reconnect_backoff(&shared.config, attempt),
                    None => backoff(&shared.config, attempt),
                };
                let wake_at = Instant::now() + delay;
                if give_up_at.is_some_and(|at| wake_at >= at) {
                    endpoint.kind.counter(&stats.unflushed).add(batch.items);
                    return false;
                }
                // A flush starting now cuts the wait short once: it wants a try
                // before its deadline. Later waits keep the policy (no burst).
                tokio::select! {
                    () = tokio::time::sleep_until(wake_at.into()) => {}
                    () = shared.flush_started.notified() => {}
                }
                stats.retries.inc();
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

async fn attempt_once(
    shared: &Shared,
    client: &reqwest::Client,
    endpoint: &Endpoint,
    batch: &Batch,
    refused_logged: &mut BTreeSet<u16>,
) -> Outcome {
    let stats = &shared.stats;
    let uri = batch.target.as_ref().map_or(&endpoint.uri, |t| &t.uri);
    let url = match reqwest::Url::parse(&uri.to_string()) {
        Ok(url) => url,
        Err(err) => {
            stats.set_last_error(format!("{}: invalid URL: {err}", endpoint.name));
            return Outcome::Refused;
        }
    };
    let mut request = reqwest::Request::new(http::Method::POST, url);
    let headers = request.headers_mut();
    if let Some(target) = &batch.target {
        headers.extend(target.headers.clone());
    }
    // Extending replaces same-named headers: the endpoint's credentials win.
    headers.extend(endpoint.headers.clone());
    headers
        .entry(USER_AGENT)
        .or_insert(HeaderValue::from_static(concat!(
            "dynoscope/",
            env!("CARGO_PKG_VERSION")
        )));
    let encoding = match endpoint.compression {
        Compression::Gzip => Some("gzip"),
        Compression::Snappy => Some("snappy"),
        Compression::None => None,
    };
    if let Some(encoding) = encoding {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    *request.body_mut() = Some(reqwest::Body::from(batch.body.clone()));
    let mut timeout = shared.config.request_timeout;
    if let Some(flush) = shared.flush_deadline() {
        timeout = timeout.min(
            flush
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(50)),
        );
    }
    let response = match tokio::time::timeout(timeout, client.execute(request)).await {
        Err(_) => {
            stats.errors.timeout.inc();
            stats.set_last_error(format!("{}: no response within {timeout:?}", endpoint.name));
            return Outcome::Retry {
                after: None,
                unreachable: true,
            };
        }
        Ok(Err(err)) => {
            stats.errors.connection.inc();
            // Without the URL: a URL may carry credentials (user:password@).
            stats.set_last_error(format!(
                "{}: {}",
                endpoint.name,
                describe(&err.without_url())
            ));
            return Outcome::Retry {
                after: None,
                unreachable: true,
            };
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if status.is_success() {
        return Outcome::Delivered;
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    stats.set_last_error(format!("{}: HTTP {status}", endpoint.name));
    let retry = Outcome::Retry {
        after: retry_after,
        unreachable: false,
    };
    match status {
        StatusCode::REQUEST_TIMEOUT => {
            stats.errors.status_408.inc();
            retry
        }
        StatusCode::TOO_MANY_REQUESTS => {
            stats.errors.status_429.inc();
            retry
        }
        s if s.is_server_error() => {
            stats.errors.status_5xx.inc();
            retry
        }
        s => {
            stats.errors.status_4xx.inc();
            if refused_logged.insert(s.as_u16()) {
                tracing::error!(
                    "sink {}: {} refused a batch with HTTP {s}; such batches are dropped (counted in /status; logged once per status)",
                    shared.name,
                    endpoint.name
                );
            }
            Outcome::Refused
        }
    }
}

/// An error and its causes, one line.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
