//! A recording HTTP endpoint standing in for Datadog's intake and OTLP
//! collectors: binds 127.0.0.1:0 on its own thread, records every request
//! (gzip bodies decompressed), and answers with a status and delay the test
//! sets. Also [`get`], a plain HTTP GET for test assertions, and
//! [`Prometheus`], a real Prometheus server for the Prometheus sink tests.

// A harness for tests: a server that cannot start fails the test, loudly.
#![allow(clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use tempfile::TempDir;

use crate::servers::free_port;
use crate::wait_for;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// `POST`, …
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names lower-case, values as sent.
    pub headers: Vec<(String, String)>,
    /// The body, gunzipped when `Content-Encoding: gzip`.
    pub body: Vec<u8>,
    /// The status the intake answered.
    pub answered: u16,
}

impl Recorded {
    /// The value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: Vec<Recorded>,
    status: u16,
    delay: Duration,
    /// Paths whose bodies are dropped after decoding (a benchmark's bulk).
    forget_bodies_of: Vec<String>,
}

/// The recording endpoint; stops when dropped.
#[derive(Debug)]
pub struct Intake {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Intake {
    /// Starts an endpoint answering 200 at once.
    pub fn start() -> Intake {
        let inner = Arc::new(Mutex::new(Inner {
            status: 200,
            ..Inner::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding loopback");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let stop = Some(serve(listener, inner.clone()));
        Intake { url, inner, stop }
    }

    /// Stops listening, as an intake that is down: connections are refused
    /// until [`Intake::resume`]. What it recorded stays.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let address = self.url.trim_start_matches("http://").to_owned();
        wait_for(
            Duration::from_secs(10),
            "the intake to refuse connections",
            || TcpStream::connect(&address).is_err().then_some(()),
        );
    }

    /// Listens again on the same port after [`Intake::stop`].
    pub fn resume(&mut self) {
        let address = self.url.trim_start_matches("http://").to_owned();
        let listener = wait_for(Duration::from_secs(10), "the intake's port again", || {
            std::net::TcpListener::bind(&address).ok()
        });
        self.stop = Some(serve(listener, self.inner.clone()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answer every following request with `status`.
    pub fn set_status(&self, status: u16) {
        self.lock().status = status;
    }

    /// Keep no body of requests to `path` (their other fields stay): for
    /// benchmarks that would otherwise hold gigabytes.
    pub fn forget_bodies_of(&self, path: &str) {
        self.lock().forget_bodies_of.push(path.to_owned());
    }

    /// Wait `delay` before answering every following request.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The requests to `path` answered with 2xx.
    pub fn accepted(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path && (200..300).contains(&r.answered))
            .collect()
    }
}

/// Serves `listener` on a thread of its own until the returned sender fires.
fn serve(
    listener: std::net::TcpListener,
    state: Arc<Mutex<Inner>>,
) -> tokio::sync::oneshot::Sender<()> {
    listener.set_nonblocking(true).expect("non-blocking");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
            let app = axum::Router::new().fallback(record).with_state(state);
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
    });
    stop
}

impl Drop for Intake {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn record(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (status, delay, forget) = {
        let inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
        let forget = inner.forget_bodies_of.iter().any(|p| uri.path() == p);
        (inner.status, inner.delay, forget)
    };
    let body = if forget { Bytes::new() } else { body };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let body = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .map(|_| out)
            .unwrap_or_else(|e| format!("<bad gzip: {e}>").into_bytes())
    } else {
        body.to_vec()
    };
    let recorded = Recorded {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        answered: status,
    };
    inner
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .requests
        .push(recorded);
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// `GET http://127.0.0.1:<port><path>`: the status and body, or `None` if nothing answers.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    request(port, "GET", path, &[], b"")
}

/// `METHOD path` with `headers` and `body` to 127.0.0.1:`port`: the status
/// and the body (de-chunked); `None` when the server does not answer.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    // A server may answer (413, 401) before reading the body and close.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// What to run when Prometheus is missing.
pub const INSTALL_PROMETHEUS: &str = "apt-get install prometheus";

/// A real Prometheus server on a free loopback port, with remote write
/// enabled and its own storage; killed when dropped.
#[derive(Debug)]
pub struct Prometheus {
    /// The port of its HTTP API.
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus; `scrape` (e.g. `127.0.0.1:9464`) is scraped every second when given.
    pub fn start(scrape: Option<&str>) -> Prometheus {
        let binary = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("`prometheus` is not installed: {INSTALL_PROMETHEUS}"));
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut config = String::from("global: {scrape_interval: 1s, evaluation_interval: 1s}\n");
        if let Some(target) = scrape {
            config.push_str(&format!(
                "scrape_configs:\n  - job_name: sidecar\n    static_configs: [{{targets: ['{target}']}}]\n"
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("writing the config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("a log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        let server = Prometheus {
            port,
            child,
            _dir: dir,
        };
        wait_for(Duration::from_secs(30), "prometheus to be ready", || {
            get(port, "/-/ready").filter(|(s, _)| *s == 200).map(|_| ())
        });
        server
    }

    /// The first value of an instant PromQL query, if any series matched.
    pub fn query(&self, promql: &str) -> Option<f64> {
        let mut encoded = String::new();
        for b in promql.bytes() {
            if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) {
                encoded.push(b as char);
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        let (_, body) = get(self.port, &format!("/api/v1/query?query={encoded}"))?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
