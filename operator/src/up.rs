//! `up`: runs an app's Procfile formation on a laptop, like `heroku local`,
//! every dyno wrapped by the sidecar.
//!
//! The manifest beside the Procfile is reconciled by file mode into
//! `STATE/rendered/<app>/<dyno>.yaml`; each dyno runs as
//! `dynoscope-sidecar run --config … -- sh -c '<command>'` with `DYNO`, `PORT`
//! and its own listener ports; Heroku's router (`crate::router`) listens on
//! `--port` in front of the web dynos, which take the ports above it
//! (`up/routing.rs`); each dyno has a size (`--size`, the manifest's, else
//! standard-1x) whose quota its sidecar holds its process tree to. Crashed
//! dynos restart with Heroku's back-off, shortened; an edited manifest is
//! re-rendered and every sidecar hot-reloads it; Ctrl-C / SIGTERM stops every
//! dyno with SIGTERM, then SIGKILL after the
//! grace period.

mod console;
pub mod drain;
mod dyno;
pub mod output;
mod plan;
pub mod ports;
mod routing;
pub mod size;
pub mod state;
pub mod status;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use notify::{RecommendedWatcher, Watcher};

use crate::files::{FileReconciler, Options};
use crate::up::output::Output;
use crate::up::state::{DynoState, UpState};
pub use dyno::exit_code;
use dyno::{heroku, kill, sync_dynos, Dyno};
use plan::Plan;
use routing::{start_drain, start_router, web_backends};

/// The manifest `up` reads beside the Procfile.
pub const MANIFEST: &str = "observability.yaml";

/// Heroku's crash back-off (immediately, then 20, 40, 60, 180, 320 minutes)
/// in units of `--backoff`: with 1s, a crashing dyno restarts after 0, 1, 2, 3, 9, 16 s.
const BACKOFF_STEPS: &[u32] = &[0, 1, 2, 3, 9, 16];

/// Settings of `up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The app: `Procfile` and `observability.yaml`.
    pub app_dir: PathBuf,
    /// Quantities over the spec's.
    pub formation: Option<BTreeMap<String, u32>>,
    /// First `PORT` (foreman's `--port`). Default: 5000.
    pub port: u16,
    /// First port of the sidecars' listeners; each dyno gets ten. Default: 18000.
    pub agent_port: u16,
    /// Rendered configs and `up.json`. Default: `APP_DIR/.dynoscope`.
    pub state_dir: PathBuf,
    /// The sidecar binary.
    pub sidecar: PathBuf,
    /// The unit of the crash back-off. Default: 1s.
    pub backoff: Duration,
    /// Where the console listens; `None` runs without one. Default: 127.0.0.1:5050.
    pub console: Option<std::net::SocketAddr>,
    /// The router on `port` in front of the web dynos; `None` (`--no-router`)
    /// gives web.1 `port` itself. Default: on, 30 s timeout.
    pub router: Option<crate::router::RouterOptions>,
    /// `--size`: dyno sizes over the manifest's. Default: none.
    pub sizes: dynoscope_crds::size::SizeOverrides,
}

impl UpOptions {
    /// The first app `PORT`: one past the router's when it runs, so no dyno takes its port.
    pub fn app_port_base(&self) -> u16 {
        if self.router.is_some() {
            self.port.saturating_add(1)
        } else {
            self.port
        }
    }
}

/// Why `up` could not start.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// No Procfile.
    #[error("no Procfile in {0}: write one (`web: python3 app.py`) or pass the app's directory")]
    NoProcfile(PathBuf),
    /// The Procfile or the manifest could not be read.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// The manifest is invalid at start.
    #[error("{0}")]
    Invalid(String),
    /// Watching the app directory failed.
    #[error("cannot watch {path}: {source}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// The watcher's error.
        source: notify::Error,
    },
    /// The router could not start.
    #[error("{0}; pass another --port, or --no-router")]
    Router(#[from] crate::router::RouterError),
    /// Writing the state failed.
    #[error("cannot write {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What wakes the main loop.
enum Event {
    Exited {
        dyno: String,
        spawn: u64,
        status: ExitStatus,
    },
    Changed,
    Signal,
}

/// Runs the formation until a signal stops it; returns when every dyno is gone.
pub fn run(options: UpOptions) -> Result<(), UpError> {
    let mut up = Up::prepare(options)?;
    let _watcher = up.watch_app_dir()?;
    let signals = up.tx.clone();
    crate::signals::on_stop_signals(move || signals.send(Event::Signal).is_ok());
    loop {
        up.start_due_dynos();
        if up.record_state()? {
            up.output.system("dynoscope", "all dynos stopped");
            if let Some(router) = &up.router {
                let summary = router.stats.summary();
                up.output.system("dynoscope", &format!("router: {summary}"));
            }
            return Ok(());
        }
        up.enforce_grace_period();
        match up.next_event() {
            Ok(Event::Exited {
                dyno,
                spawn,
                status,
            }) => up.on_exit(&dyno, spawn, status),
            Ok(Event::Changed) => up.on_manifest_change(),
            Ok(Event::Signal) => up.on_stop_signal(),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

/// The state of a running formation, changed by one step of [`run`] at a time.
struct Up {
    options: UpOptions,
    /// `observability.yaml` beside the Procfile.
    manifest: PathBuf,
    /// Where file mode renders the dynos' configs.
    rendered_dir: PathBuf,
    /// `up.json`, read by `dynoscope-operator status`.
    state_path: PathBuf,
    reconciler: FileReconciler,
    plan: Plan,
    dynos: Vec<Dyno>,
    /// Dynos started so far: tells a stale exit from the current process's.
    spawns: u64,
    /// When the stop signal came; `None` while the formation runs.
    stopping: Option<Instant>,
    /// Events taken off the channel while debouncing a change, not yet handled.
    deferred: VecDeque<Event>,
    tx: mpsc::Sender<Event>,
    events: mpsc::Receiver<Event>,
    output: Output,
    /// The console, when it could listen.
    console: Option<crate::console::Console>,
    /// The router, unless `--no-router`.
    router: Option<crate::router::Router>,
    /// The drain the router posts to, when the sidecar has one.
    drain: Option<drain::DrainProcess>,
}

impl Up {
    /// Renders the manifest and reads the plan; fails when either is unusable.
    fn prepare(options: UpOptions) -> Result<Self, UpError> {
        let procfile_path = options.app_dir.join("Procfile");
        if !procfile_path.is_file() {
            return Err(UpError::NoProcfile(options.app_dir.clone()));
        }
        let manifest = options.app_dir.join(MANIFEST);
        let rendered_dir = options.state_dir.join("rendered");
        let (console, console_endpoint, console_message) = console::start(options.console);
        let mut reconciler = FileReconciler::new(Options {
            manifests: manifest.clone(),
            out: rendered_dir.clone(),
            procfile: Some(procfile_path),
            formation: options.formation.clone(),
            heroku_app_name: None,
            local_agent_port: Some(options.agent_port),
            console_endpoint: console_endpoint.clone(),
            sizes: options.sizes.clone(),
        });
        let report = reconciler.reconcile()?;
        if !report.errors.is_empty() {
            return Err(UpError::Invalid(report.errors.join("\n")));
        }
        let plan = Plan::read(&options, &manifest, &rendered_dir)?.ok_or_else(|| {
            UpError::Invalid(format!(
                "{}: no ObservabilityConfig found; write one (see examples/shop)",
                manifest.display()
            ))
        })?;
        // "HH:MM:SS heroku[worker.1]" is the longest prefix.
        let output = Output::new(
            plan.dyno_names()
                .map(|n| heroku(n).len())
                .max()
                .unwrap_or(16)
                + 9,
        );
        output.system("dynoscope", &console_message);
        let (router, drain) = match &options.router {
            Some(router_options) => {
                let mut router_options = router_options.clone();
                let drain = if router_options.drain_url.is_none() {
                    start_drain(&options, &manifest, console_endpoint.as_deref(), &output)
                } else {
                    None
                };
                if let Some((_, url)) = &drain {
                    router_options.drain_url = Some(url.clone());
                }
                let router = start_router(&options, router_options, &output, console.clone())?;
                (Some(router), drain.map(|(process, _)| process))
            }
            None => (None, None),
        };
        let mut dynos = Vec::new();
        sync_dynos(&mut dynos, &plan);
        let (tx, events) = mpsc::channel();
        Ok(Up {
            state_path: options.state_dir.join("up.json"),
            options,
            manifest,
            rendered_dir,
            reconciler,
            plan,
            dynos,
            spawns: 0,
            stopping: None,
            deferred: VecDeque::new(),
            tx,
            events,
            output,
            console,
            router,
            drain,
        })
    }

    /// Reports edits of the manifest and the Procfile as [`Event::Changed`].
    fn watch_app_dir(&self) -> Result<RecommendedWatcher, UpError> {
        let watch_tx = self.tx.clone();
        let watch_error = |source| UpError::Watch {
            path: self.options.app_dir.clone(),
            source,
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = event.is_ok_and(|e| {
                    crate::watch::is_change(&e)
                        && e.paths.iter().any(|p| {
                            p.file_name()
                                .is_some_and(|n| n == MANIFEST || n == "Procfile")
                        })
                });
                if relevant {
                    let _ = watch_tx.send(Event::Changed);
                }
            })
            .map_err(watch_error)?;
        watcher
            .watch(&self.options.app_dir, notify::RecursiveMode::NonRecursive)
            .map_err(watch_error)?;
        Ok(watcher)
    }

    /// Starts every wanted dyno that is down and whose back-off is over.
    fn start_due_dynos(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        let now = Instant::now();
        for dyno in self
            .dynos
            .iter_mut()
            .filter(|d| d.wanted && d.running.is_none())
        {
            if dyno.restart_at.is_some_and(|at| at > now) {
                continue;
            }
            self.spawns += 1;
            dyno::start(
                dyno,
                self.spawns,
                &self.plan,
                &self.options,
                &self.output,
                &self.tx,
            );
        }
    }

    /// Forgets dynos that left the formation and stopped, writes `up.json`;
    /// returns whether the formation is stopping and every dyno is down.
    fn record_state(&mut self) -> Result<bool, UpError> {
        self.dynos.retain(|d| d.wanted || d.running.is_some());
        let state = write_state(
            &self.state_path,
            &self.plan,
            &self.dynos,
            self.stopping.is_some(),
        )?;
        if let Some(console) = &self.console {
            console.set_formation(&state.dynos);
        }
        if let Some(router) = &self.router {
            router.backends.set(web_backends(
                &state.dynos,
                &self.plan,
                self.options.app_port_base(),
            ));
        }
        Ok(self.stopping.is_some() && self.dynos.iter().all(|d| d.running.is_none()))
    }

    /// After the grace period (and 2 s for the sidecars' own), SIGKILLs what still runs.
    fn enforce_grace_period(&self) {
        let Some(since) = self.stopping else { return };
        if since.elapsed() <= self.plan.grace + Duration::from_secs(2) {
            return;
        }
        for dyno in self.dynos.iter().filter(|d| d.running.is_some()) {
            self.output.system(&heroku(&dyno.name), "Error R12 (Exit timeout) -> At least one process failed to exit within the grace period; sending SIGKILL");
            kill(dyno, Signal::SIGKILL);
        }
    }

    /// The next event: a deferred one first, else one from the channel within 100 ms.
    fn next_event(&mut self) -> Result<Event, mpsc::RecvTimeoutError> {
        match self.deferred.pop_front() {
            Some(event) => Ok(event),
            None => self.events.recv_timeout(Duration::from_millis(100)),
        }
    }

    /// A dyno's process exited: down when stopping, else crashed with Heroku's back-off.
    fn on_exit(&mut self, name: &str, spawn: u64, status: ExitStatus) {
        let Some(entry) = self.dynos.iter_mut().find(|d| d.name == name) else {
            return;
        };
        if entry.running.as_ref().is_none_or(|r| r.spawn != spawn) {
            return;
        }
        entry.running = None;
        let code = exit_code(status);
        let output = &self.output;
        output.system(&heroku(name), &format!("Process exited with status {code}"));
        if self.stopping.is_some() || !entry.wanted {
            output.system(&heroku(name), "State changed from up to down");
            return;
        }
        output.system(&heroku(name), "State changed from up to crashed");
        let ran_long = entry
            .started_at
            .is_some_and(|t| t.elapsed() > self.options.backoff * 10);
        if ran_long {
            entry.crashes = 0;
        }
        let step = BACKOFF_STEPS[entry.crashes.min(BACKOFF_STEPS.len() - 1)];
        entry.crashes += 1;
        entry.restarts += 1;
        entry.restart_at = Some(Instant::now() + self.options.backoff * step);
    }

    /// The manifest or the Procfile changed: re-render, then follow the new plan.
    fn on_manifest_change(&mut self) {
        // Editors write in several steps: let them finish (for a second
        // at most). Other events that arrive meanwhile wait their turn.
        let until = Instant::now() + Duration::from_secs(1);
        while let Ok(event) = self.events.recv_timeout(crate::watch::DEBOUNCE) {
            if !matches!(event, Event::Changed) {
                self.deferred.push_back(event);
            }
            if Instant::now() > until {
                break;
            }
        }
        let report = match self.reconciler.reconcile() {
            Ok(report) => report,
            Err(err) => {
                self.output
                    .system("dynoscope", &format!("manifest not applied: {err}"));
                return;
            }
        };
        for error in &report.errors {
            self.output
                .system("dynoscope", &format!("manifest not applied: {error}"));
        }
        if !report.errors.is_empty() {
            return;
        }
        let changed = report
            .written
            .iter()
            .filter(|p| !p.ends_with("status.yaml"))
            .count();
        self.output.system(
            "dynoscope",
            &format!("manifest applied: {changed} dyno configs changed; sidecars reload them live"),
        );
        if let Ok(Some(next)) = Plan::read(&self.options, &self.manifest, &self.rendered_dir) {
            self.follow(next);
        }
    }

    /// Stops dynos that left the formation and restarts those whose command changed;
    /// new dynos start at the next step.
    fn follow(&mut self, plan: Plan) {
        self.plan = plan;
        sync_dynos(&mut self.dynos, &self.plan);
        for dyno in self
            .dynos
            .iter()
            .filter(|d| !d.wanted && d.running.is_some())
        {
            self.output
                .system(&heroku(&dyno.name), "Stopping: no longer in the formation");
            kill(dyno, Signal::SIGTERM);
        }
        // A new command needs a new process: restart those dynos.
        for dyno in self.dynos.iter_mut().filter(|d| d.wanted) {
            let new_command = self.plan.command(&dyno.name);
            if let (Some(running), Some(new)) = (&dyno.running, new_command) {
                if running.command != new {
                    self.output
                        .system(&heroku(&dyno.name), "Restarting: the command changed");
                    kill(dyno, Signal::SIGTERM);
                    dyno.restart_at = None;
                    dyno.crashes = 0;
                }
            }
        }
    }

    /// SIGINT or SIGTERM: the first stops every dyno with SIGTERM, the second with SIGKILL.
    fn on_stop_signal(&mut self) {
        if self.stopping.is_some() {
            self.output
                .system("dynoscope", "second signal: sending SIGKILL to all dynos");
            for dyno in &self.dynos {
                kill(dyno, Signal::SIGKILL);
            }
            return;
        }
        self.output
            .system("dynoscope", "sending SIGTERM to all dynos");
        self.stopping = Some(Instant::now());
        if let Some(drain) = &self.drain {
            drain.stop();
        }
        for dyno in self.dynos.iter_mut() {
            dyno.restart_at = None;
            kill(dyno, Signal::SIGTERM);
        }
    }
}

fn write_state(
    path: &Path,
    plan: &Plan,
    dynos: &[Dyno],
    stopping: bool,
) -> Result<UpState, UpError> {
    let now = jiff::Timestamp::now().as_second();
    let state = UpState {
        pid: std::process::id(),
        stopping,
        dynos: dynos
            .iter()
            .map(|d| {
                let config = plan.configs.get(&d.name);
                DynoState {
                    name: d.name.clone(),
                    state: match (&d.running, d.restart_at, stopping) {
                        (Some(_), _, true) => "stopping",
                        (Some(_), _, false) => "up",
                        (None, Some(_), _) => "crashed",
                        (None, None, _) => "down",
                    }
                    .to_owned(),
                    pid: d.running.as_ref().map(|r| r.pid),
                    restarts: d.restarts,
                    config: config
                        .map(|(p, _)| p.display().to_string())
                        .unwrap_or_default(),
                    config_hash: config
                        .map(|(_, c)| c.config_hash.clone())
                        .unwrap_or_default(),
                    admin_port: config.map(|(_, c)| c.admin_port).unwrap_or(0),
                    started: d
                        .running
                        .as_ref()
                        .and(d.started_at)
                        .map(|t| now - t.elapsed().as_secs() as i64),
                }
            })
            .collect(),
    };
    let text = serde_json::to_string_pretty(&state).unwrap_or_default();
    crate::fs::write_if_changed(path, text.as_bytes(), 0o644)
        .map(|_| state)
        .map_err(|source| UpError::State {
            path: path.to_owned(),
            source,
        })
}
