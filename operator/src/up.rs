//! `up`: runs an app's Procfile formation on a laptop, like `heroku local`,
//! every dyno wrapped by the sidecar.
//!
//! The manifest beside the Procfile is reconciled by file mode into
//! `STATE/rendered/<app>/<dyno>.yaml`; each dyno runs as
//! `dynoscope-sidecar run --config … -- sh -c '<command>'` with `DYNO`, `PORT`
//! and its own listener ports. Crashed dynos restart with Heroku's back-off,
//! shortened; an edited manifest is re-rendered and every sidecar hot-reloads
//! it; Ctrl-C / SIGTERM stops every dyno with SIGTERM, then SIGKILL after the
//! grace period.

pub mod output;
pub mod ports;
pub mod state;
pub mod status;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dynoscope_crds::procfile::Procfile;
use dynoscope_crds::render::{self, ProcessType, RenderInput};
use dynoscope_crds::DynoConfig;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use notify::Watcher;

use crate::files::{FileReconciler, Options};
use crate::up::output::Output;
use crate::up::state::{DynoState, UpState};

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
    /// Writing the state failed.
    #[error("cannot write {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

enum Event {
    Exited {
        dyno: String,
        spawn: u64,
        status: ExitStatus,
    },
    Changed,
    Signal,
}

struct Running {
    pid: u32,
    spawn: u64,
    command: String,
}

/// One dyno of the formation as `up` tracks it.
struct Dyno {
    name: String,
    running: Option<Running>,
    /// Consecutive crashes, for the back-off.
    crashes: usize,
    restart_at: Option<Instant>,
    started_at: Option<Instant>,
    restarts: u32,
    /// `false` once the dyno left the formation: it is stopped and forgotten.
    wanted: bool,
}

/// Runs the formation until a signal stops it; returns when every dyno is gone.
pub fn run(options: UpOptions) -> Result<(), UpError> {
    let procfile_path = options.app_dir.join("Procfile");
    if !procfile_path.is_file() {
        return Err(UpError::NoProcfile(options.app_dir.clone()));
    }
    let manifest = options.app_dir.join(MANIFEST);
    let rendered_dir = options.state_dir.join("rendered");
    let mut reconciler = FileReconciler::new(Options {
        manifests: manifest.clone(),
        out: rendered_dir.clone(),
        procfile: Some(procfile_path.clone()),
        formation: options.formation.clone(),
        heroku_app_name: None,
        local_agent_port: Some(options.agent_port),
    });
    let report = reconciler.reconcile()?;
    if !report.errors.is_empty() {
        return Err(UpError::Invalid(report.errors.join("\n")));
    }
    let mut plan = Plan::read(&options, &manifest, &rendered_dir)?.ok_or_else(|| {
        UpError::Invalid(format!(
            "{}: no ObservabilityConfig found; write one (see examples/shop)",
            manifest.display()
        ))
    })?;

    let (tx, events) = mpsc::channel();
    let watch_tx = tx.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
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
    .map_err(|source| UpError::Watch {
        path: options.app_dir.clone(),
        source,
    })?;
    watcher
        .watch(&options.app_dir, notify::RecursiveMode::NonRecursive)
        .map_err(|source| UpError::Watch {
            path: options.app_dir.clone(),
            source,
        })?;
    forward_signals(tx.clone());

    // "HH:MM:SS heroku[worker.1]" is the longest prefix.
    let output = Output::new(
        plan.dyno_names()
            .map(|n| heroku(n).len())
            .max()
            .unwrap_or(16)
            + 9,
    );
    let mut dynos: Vec<Dyno> = Vec::new();
    let mut spawns = 0u64;
    let mut stopping: Option<Instant> = None;
    // Events taken off the channel while debouncing a change.
    let mut deferred: std::collections::VecDeque<Event> = std::collections::VecDeque::new();
    let state_path = options.state_dir.join("up.json");
    sync_dynos(&mut dynos, &plan);

    loop {
        let now = Instant::now();
        if stopping.is_none() {
            for dyno in dynos.iter_mut().filter(|d| d.wanted && d.running.is_none()) {
                if dyno.restart_at.is_some_and(|at| at > now) {
                    continue;
                }
                spawns += 1;
                start(dyno, spawns, &plan, &options, &output, &tx);
            }
        }
        dynos.retain(|d| d.wanted || d.running.is_some());
        write_state(&state_path, &plan, &dynos, stopping.is_some())?;
        if stopping.is_some() && dynos.iter().all(|d| d.running.is_none()) {
            output.system("dynoscope", "all dynos stopped");
            return Ok(());
        }
        if let Some(since) = stopping {
            if since.elapsed() > plan.grace + Duration::from_secs(2) {
                for dyno in dynos.iter().filter(|d| d.running.is_some()) {
                    output.system(&heroku(&dyno.name), "Error R12 (Exit timeout) -> At least one process failed to exit within the grace period; sending SIGKILL");
                    kill(dyno, Signal::SIGKILL);
                }
            }
        }

        let next = match deferred.pop_front() {
            Some(event) => Ok(event),
            None => events.recv_timeout(Duration::from_millis(100)),
        };
        match next {
            Ok(Event::Exited {
                dyno,
                spawn,
                status,
            }) => {
                let Some(entry) = dynos.iter_mut().find(|d| d.name == dyno) else {
                    continue;
                };
                if entry.running.as_ref().is_none_or(|r| r.spawn != spawn) {
                    continue;
                }
                entry.running = None;
                let code = exit_code(status);
                output.system(
                    &heroku(&dyno),
                    &format!("Process exited with status {code}"),
                );
                if stopping.is_some() || !entry.wanted {
                    output.system(&heroku(&dyno), "State changed from up to down");
                    continue;
                }
                output.system(&heroku(&dyno), "State changed from up to crashed");
                let ran_long = entry
                    .started_at
                    .is_some_and(|t| t.elapsed() > options.backoff * 10);
                if ran_long {
                    entry.crashes = 0;
                }
                let step = BACKOFF_STEPS[entry.crashes.min(BACKOFF_STEPS.len() - 1)];
                entry.crashes += 1;
                entry.restarts += 1;
                entry.restart_at = Some(Instant::now() + options.backoff * step);
            }
            Ok(Event::Changed) => {
                // Editors write in several steps: let them finish (for a second
                // at most). Other events that arrive meanwhile wait their turn.
                let until = Instant::now() + Duration::from_secs(1);
                while let Ok(event) = events.recv_timeout(crate::watch::DEBOUNCE) {
                    if !matches!(event, Event::Changed) {
                        deferred.push_back(event);
                    }
                    if Instant::now() > until {
                        break;
                    }
                }
                match reconciler.reconcile() {
                    Ok(report) => {
                        for error in &report.errors {
                            output.system("dynoscope", &format!("manifest not applied: {error}"));
                        }
                        if report.errors.is_empty() {
                            let changed = report
                                .written
                                .iter()
                                .filter(|p| !p.ends_with("status.yaml"))
                                .count();
                            output.system("dynoscope", &format!("manifest applied: {changed} dyno configs changed; sidecars reload them live"));
                            if let Ok(Some(next)) = Plan::read(&options, &manifest, &rendered_dir) {
                                plan = next;
                                sync_dynos(&mut dynos, &plan);
                                for dyno in
                                    dynos.iter().filter(|d| !d.wanted && d.running.is_some())
                                {
                                    output.system(
                                        &heroku(&dyno.name),
                                        "Stopping: no longer in the formation",
                                    );
                                    kill(dyno, Signal::SIGTERM);
                                }
                                // A new command needs a new process: restart those dynos.
                                for dyno in dynos.iter_mut().filter(|d| d.wanted) {
                                    let new_command = plan.command(&dyno.name);
                                    if let (Some(running), Some(new)) = (&dyno.running, new_command)
                                    {
                                        if running.command != new {
                                            output.system(
                                                &heroku(&dyno.name),
                                                "Restarting: the command changed",
                                            );
                                            kill(dyno, Signal::SIGTERM);
                                            dyno.restart_at = None;
                                            dyno.crashes = 0;
                                        }
                                    }
                                }
                            }
                        }
                    }
                    Err(err) => output.system("dynoscope", &format!("manifest not applied: {err}")),
                }
            }
            Ok(Event::Signal) => {
                if stopping.is_some() {
                    output.system("dynoscope", "second signal: sending SIGKILL to all dynos");
                    for dyno in &dynos {
                        kill(dyno, Signal::SIGKILL);
                    }
                    continue;
                }
                output.system("dynoscope", "sending SIGTERM to all dynos");
                stopping = Some(Instant::now());
                for dyno in dynos.iter_mut() {
                    dyno.restart_at = None;
                    kill(dyno, Signal::SIGTERM);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

/// What should run: the formation and each dyno's rendered config.
struct Plan {
    formation: Vec<ProcessType>,
    configs: BTreeMap<String, (PathBuf, DynoConfig)>,
    grace: Duration,
}

impl Plan {
    fn read(
        options: &UpOptions,
        manifest: &Path,
        rendered_dir: &Path,
    ) -> Result<Option<Plan>, UpError> {
        let file = crate::source::read_file(manifest);
        let Ok(configs) = file.parsed else {
            return Ok(None);
        };
        let Some(config) = configs.first() else {
            return Ok(None);
        };
        let procfile = crate::source::read_procfile(
            Some(&options.app_dir.join("Procfile")),
            &options.app_dir,
        )?
        .unwrap_or_else(Procfile::default);
        let input = RenderInput {
            config,
            procfile: Some(&procfile),
            formation: options.formation.as_ref(),
            heroku_app_name: None,
        };
        let formation = render::resolve_formation(&input);
        let app_dir = rendered_dir.join(render::app_name(config, None));
        let mut configs = BTreeMap::new();
        for kind in &formation {
            for i in 1..=kind.quantity {
                let dyno = format!("{}.{i}", kind.name);
                let path = app_dir.join(format!("{dyno}.yaml"));
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if let Ok(config) = DynoConfig::from_yaml(&text, &path.display().to_string()) {
                    configs.insert(dyno, (path, config));
                }
            }
        }
        let grace = configs
            .values()
            .map(|(_, c)| c.grace_period.get())
            .max()
            .unwrap_or(Duration::from_secs(30));
        Ok(Some(Plan {
            formation,
            configs,
            grace,
        }))
    }

    fn dyno_names(&self) -> impl Iterator<Item = &str> {
        self.configs.keys().map(String::as_str)
    }

    fn command(&self, dyno: &str) -> Option<&str> {
        self.configs
            .get(dyno)
            .and_then(|(_, c)| c.command.as_deref())
    }
}

fn sync_dynos(dynos: &mut Vec<Dyno>, plan: &Plan) {
    for dyno in dynos.iter_mut() {
        dyno.wanted = plan.configs.contains_key(&dyno.name);
    }
    for name in plan.configs.keys() {
        if !dynos.iter().any(|d| &d.name == name) {
            dynos.push(Dyno {
                name: name.clone(),
                running: None,
                crashes: 0,
                restart_at: None,
                started_at: None,
                restarts: 0,
                wanted: true,
            });
        }
    }
    let order: Vec<&String> = plan.configs.keys().collect();
    dynos.sort_by_key(|d| {
        order
            .iter()
            .position(|n| **n == d.name)
            .unwrap_or(usize::MAX)
    });
}

fn heroku(dyno: &str) -> String {
    format!("heroku[{dyno}]")
}

fn start(
    dyno: &mut Dyno,
    spawn: u64,
    plan: &Plan,
    options: &UpOptions,
    output: &Output,
    tx: &mpsc::Sender<Event>,
) {
    let Some((config_path, config)) = plan.configs.get(&dyno.name) else {
        return;
    };
    let Some(command) = config.command.clone() else {
        output.system(
            &heroku(&dyno.name),
            "no command: add this process type to the Procfile",
        );
        dyno.wanted = false;
        return;
    };
    let port = ports::ports(
        &plan.formation,
        &dyno.name,
        options.port,
        options.agent_port,
    )
    .map_or(options.port, |p| p.app);
    let state = if dyno.restarts == 0 {
        "down"
    } else {
        "crashed"
    };
    output.system(
        &heroku(&dyno.name),
        &format!("State changed from {state} to starting"),
    );
    output.system(
        &heroku(&dyno.name),
        &format!("Starting process with command `{command}`"),
    );
    let mut cmd = Command::new(&options.sidecar);
    cmd.arg("run")
        .arg("--config")
        .arg(config_path)
        .args(["--", "sh", "-c", &command])
        .current_dir(&options.app_dir)
        .env("DYNO", &dyno.name)
        .env("PORT", port.to_string())
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: the terminal's Ctrl-C reaches `up` only, which
        // then stops every dyno the way Heroku does.
        .process_group(0);
    match cmd.spawn() {
        Ok(mut child) => {
            output.follow(&dyno.name, child.stdout.take(), child.stderr.take());
            let pid = child.id();
            let name = dyno.name.clone();
            let events = tx.clone();
            dyno.running = Some(Running {
                pid,
                spawn,
                command,
            });
            dyno.started_at = Some(Instant::now());
            output.system(
                &heroku(&dyno.name),
                &format!("State changed from starting to up (pid {pid})"),
            );
            std::thread::spawn(move || wait_exit(pid, name, spawn, events));
        }
        Err(err) => {
            output.system(
                &heroku(&dyno.name),
                &format!("cannot start {}: {err}", options.sidecar.display()),
            );
            dyno.restart_at = Some(Instant::now() + options.backoff * 5);
        }
    }
}

/// Waits for a child by pid (the `Child` stays with the main loop, which signals it).
fn wait_exit(pid: u32, dyno: String, spawn: u64, events: mpsc::Sender<Event>) {
    use nix::sys::wait::{waitpid, WaitStatus};
    use std::os::unix::process::ExitStatusExt;
    let Ok(raw) = i32::try_from(pid) else { return };
    loop {
        match waitpid(Pid::from_raw(raw), None) {
            Ok(WaitStatus::Exited(_, code)) => {
                let _ = events.send(Event::Exited {
                    dyno,
                    spawn,
                    status: ExitStatus::from_raw((code & 0xff) << 8),
                });
                return;
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                let _ = events.send(Event::Exited {
                    dyno,
                    spawn,
                    status: ExitStatus::from_raw(sig as i32),
                });
                return;
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => {
                let _ = events.send(Event::Exited {
                    dyno,
                    spawn,
                    status: ExitStatus::from_raw(0),
                });
                return;
            }
        }
    }
}

fn kill(dyno: &Dyno, sig: Signal) {
    if let Some(running) = &dyno.running {
        if let Ok(pid) = i32::try_from(running.pid) {
            let _ = signal::kill(Pid::from_raw(pid), sig);
        }
    }
}

/// The status as a shell reports it: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

fn forward_signals(tx: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if tx.send(Event::Signal).is_err() {
                    return;
                }
            }
        });
    });
}

fn write_state(path: &Path, plan: &Plan, dynos: &[Dyno], stopping: bool) -> Result<(), UpError> {
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
                }
            })
            .collect(),
    };
    let text = serde_json::to_string_pretty(&state).unwrap_or_default();
    crate::fs::write_if_changed(path, text.as_bytes(), 0o644)
        .map(|_| ())
        .map_err(|source| UpError::State {
            path: path.to_owned(),
            source,
        })
}
