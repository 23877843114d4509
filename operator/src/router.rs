//! A local stand-in for Heroku's router: one port in front of the web dynos,
//! Heroku's request headers, H-code error pages and a router line for every
//! request, printed as `heroku[router]` and optionally sent to a Logplex drain.
//!
//! - [`proxy`]: the HTTP proxy itself (hyper), random choice of a running dyno.
//! - [`line`]: the router line and request ids.
//! - [`logplex`]: Logplex's frame format.
//! - [`drain`]: batching and posting the lines to a drain URL.
//!
//! `up` runs it on a thread of its own in front of its web dynos and tells it
//! their states; `dynoscope-operator router` runs it alone (compose), where a
//! dyno's state is only known by whether it accepts connections.

pub mod drain;
pub mod line;
pub mod logplex;
mod proxy;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use dynoscope_crds::console::{ConsoleBatch, RouterRequest};

use crate::console::Console;
use crate::up::output::Output;
use drain::{DrainQueue, DrainUrl};
use line::RouterLine;

/// Heroku's router timeout: the dyno's first byte within 30 s, else H12.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Client connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// Router lines waiting for the writer thread at most; more are dropped and counted.
const LINE_QUEUE: usize = 10_000;

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A bad `--drain-url`.
    #[error("drain URL {0:?}: {1}; pass http://[user:pass@]host:port/path")]
    DrainUrl(String, String),
    /// A bad `--backend`.
    #[error("backend {0:?}: write it as DYNO=HOST:PORT, e.g. web.1=web.1:5000")]
    Backend(String),
    /// The runtime or the listener.
    #[error("router: {0}")]
    Io(#[from] std::io::Error),
}

/// Settings of one router.
#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// Time to the dyno's first response byte before H12. Default: 30 s.
    pub timeout: Duration,
    /// Where the lines also go, as Logplex sends them. Default: none.
    pub drain_url: Option<DrainUrl>,
    /// Client connections at once. Default: [`MAX_CONNECTIONS`].
    pub max_connections: usize,
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions {
            timeout: DEFAULT_TIMEOUT,
            drain_url: None,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// What the router knows of a web dyno's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynoHealth {
    /// Running: requests go to it.
    Up,
    /// Crashed, waiting for its restart: H10 when no dyno is up.
    Crashed,
    /// Stopped or starting.
    Down,
}

/// One web dyno behind the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `web.1`.
    pub dyno: String,
    /// `host:port`, resolved at each connection (compose's service names).
    pub addr: String,
    /// Its state.
    pub health: DynoHealth,
}

impl Backend {
    /// `web.1=host:port`, as `--backend` takes it; up until it refuses.
    pub fn parse(text: &str) -> Result<Backend, RouterError> {
        match text.split_once('=') {
            Some((dyno, addr)) if !dyno.is_empty() && addr.contains(':') => Ok(Backend {
                dyno: dyno.to_owned(),
                addr: addr.to_owned(),
                health: DynoHealth::Up,
            }),
            _ => Err(RouterError::Backend(text.to_owned())),
        }
    }
}

/// The web dynos, shared with whoever knows their states (`up`).
#[derive(Debug, Clone, Default)]
pub struct Backends(Arc<RwLock<Vec<Backend>>>);

impl Backends {
    /// Replaces the dynos.
    pub fn set(&self, backends: Vec<Backend>) {
        let mut current = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if *current != backends {
            *current = backends;
        }
    }

    /// The dynos as they are now.
    pub fn snapshot(&self) -> Vec<Backend> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The router's counters, in one place.
#[derive(Debug, Default)]
pub struct Stats {
    /// Router lines written.
    pub lines: AtomicU64,
    /// Router lines dropped: the writer fell behind.
    pub lines_dropped: AtomicU64,
    /// Lines the drain accepted.
    pub drain_posted: AtomicU64,
    /// Lines lost to the drain: 4xx, three failed tries, or pushed out of the queue.
    pub drain_dropped: AtomicU64,
    /// Retried posts.
    pub drain_retries: AtomicU64,
}

impl Stats {
    fn add(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// `lines=… lines_dropped=… drain_posted=… drain_dropped=… drain_retries=…`.
    pub fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "lines={} lines_dropped={} drain_posted={} drain_dropped={} drain_retries={}",
            get(&self.lines),
            get(&self.lines_dropped),
            get(&self.drain_posted),
            get(&self.drain_dropped),
            get(&self.drain_retries)
        )
    }
}

/// Where the router lines are printed.
#[derive(Debug, Clone)]
pub enum LineTarget {
    /// `up`'s output as `heroku[router]`, and its console when it runs one.
    Up(Output, Option<Console>),
    /// Standard output as `heroku logs` prints them (compose).
    Stdout,
}

/// Hands finished lines to the writer thread without blocking a worker.
#[derive(Debug, Clone)]
pub(crate) struct LineSender {
    tx: SyncSender<(jiff::Timestamp, RouterLine)>,
    stats: Arc<Stats>,
}

impl LineSender {
    fn send(&self, line: RouterLine) {
        if self.tx.try_send((jiff::Timestamp::now(), line)).is_err() {
            self.stats.add(&self.stats.lines_dropped, 1);
        }
    }
}

/// A running router; it stops with the process.
#[derive(Debug, Clone)]
pub struct Router {
    /// The dynos it routes to.
    pub backends: Backends,
    /// Its counters.
    pub stats: Arc<Stats>,
}

/// Starts a router on `listener` on threads of its own and returns at once.
pub fn spawn(
    listener: std::net::TcpListener,
    options: RouterOptions,
    target: LineTarget,
) -> Result<Router, RouterError> {
    let (router, future) = prepare(listener, options, target)?;
    let runtime = runtime()?;
    std::thread::Builder::new()
        .name("router".into())
        .spawn(move || runtime.block_on(future.run()))?;
    Ok(router)
}

/// Runs a router on `listener` until SIGTERM or SIGINT; then sends what the drain has not got.
pub fn run_alone(
    listener: std::net::TcpListener,
    options: RouterOptions,
    backends: Vec<Backend>,
) -> Result<(), RouterError> {
    let drain_url = options.drain_url.clone();
    let (router, future) = prepare(listener, options, LineTarget::Stdout)?;
    router.backends.set(backends);
    let runtime = runtime()?;
    let stats = router.stats.clone();
    runtime.block_on(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let queue = future.drain.as_ref().map(|(q, _)| q.clone());
        tokio::select! {
            () = future.run() => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        if let (Some(queue), Some(url)) = (queue, drain_url) {
            // Lines still with the writer thread reach the queue within moments.
            tokio::time::sleep(Duration::from_millis(200)).await;
            drain::flush(&queue, &url, &stats).await;
        }
        Ok::<_, std::io::Error>(())
    })?;
    eprintln!("router stopped: {}", router.stats.summary());
    Ok(())
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("router-worker")
        .enable_all()
        .build()
}

/// The router's work, to run on a runtime.
struct Serving {
    listener: std::net::TcpListener,
    ctx: Arc<proxy::Ctx>,
    max_connections: usize,
    drain: Option<(Arc<DrainQueue>, DrainUrl)>,
    stats: Arc<Stats>,
}

impl Serving {
    async fn run(self) {
        if let Some((queue, url)) = self.drain {
            tokio::spawn(drain::forward(queue, url, self.stats.clone()));
        }
        let Ok(listener) = tokio::net::TcpListener::from_std(self.listener) else {
            tracing::error!("router: cannot use its listener");
            return;
        };
        proxy::serve(listener, self.ctx, self.max_connections).await;
    }
}

fn prepare(
    listener: std::net::TcpListener,
    options: RouterOptions,
    target: LineTarget,
) -> Result<(Router, Serving), RouterError> {
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let stats = Arc::new(Stats::default());
    let drain = options
        .drain_url
        .map(|url| (Arc::new(DrainQueue::default()), url));
    let (tx, rx) = mpsc::sync_channel(LINE_QUEUE);
    spawn_writer(
        rx,
        target,
        drain.as_ref().map(|(q, _)| q.clone()),
        stats.clone(),
    )?;
    let backends = Backends::default();
    let ctx = Arc::new(proxy::Ctx {
        backends: backends.clone(),
        timeout: options.timeout,
        port,
        lines: LineSender {
            tx,
            stats: stats.clone(),
        },
    });
    Ok((
        Router {
            backends,
            stats: stats.clone(),
        },
        Serving {
            listener,
            ctx,
            max_connections: options.max_connections,
            drain,
            stats,
        },
    ))
}

/// Prints every line (stdout writes may block: never on a runtime worker),
/// feeds the console and queues it for the drain.
fn spawn_writer(
    rx: Receiver<(jiff::Timestamp, RouterLine)>,
    target: LineTarget,
    drain: Option<Arc<DrainQueue>>,
    stats: Arc<Stats>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("router-lines".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut requests = Vec::new();
                for (at, line) in std::iter::once(first).chain(rx.try_iter().take(255)) {
                    let text = line.to_string();
                    match &target {
                        LineTarget::Up(output, _) => output.line("heroku[router]", &text),
                        LineTarget::Stdout => {
                            use std::io::Write as _;
                            let stamp = at.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00");
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "{stamp} heroku[router]: {text}");
                            let _ = out.flush();
                        }
                    }
                    stats.add(&stats.lines, 1);
                    if let Some(queue) = &drain {
                        let dropped = queue.push(logplex::router_message(at, &text));
                        stats.add(&stats.drain_dropped, dropped);
                    }
                    requests.push(RouterRequest {
                        timestamp_ms: at.as_millisecond(),
                        method: line.method,
                        path: line.path,
                        status: line.status,
                        service_ms: line.service_ms.unwrap_or(0) as f64,
                        connect_ms: line.connect_ms.unwrap_or(0) as f64,
                        code: line.code.map(str::to_owned),
                    });
                }
                if let LineTarget::Up(_, Some(console)) = &target {
                    console.ingest(ConsoleBatch {
                        dyno: "router".into(),
                        requests,
                        ..ConsoleBatch::default()
                    });
                }
            }
        })?;
    Ok(())
}

/// The address a `--listen` names, bound now so a taken port fails at start.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, RouterError> {
    Ok(std::net::TcpListener::bind(addr)?)
}
