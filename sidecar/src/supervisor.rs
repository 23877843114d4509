//! Supervision of the app: its own process group, forwarded signals, the grace period,
//! zombie reaping, and its exit status.
//!
//! The app is spawned with std's `Command` in a new process group and is never waited
//! for through its `Child`: every child of the sidecar (the app and orphans re-parented
//! to it as PID 1 or subreaper) is reaped by [`reap`] with `waitpid(-1)` on SIGCHLD, the
//! way tini does. So nothing else in the sidecar may wait for children of its own.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use crate::stats::Stats;
use crate::status::{AppState, StatusBoard};

/// Why the app could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// No command after `--`.
    #[error(
        "no command to run: write it after `--`, e.g. `dynoscope-sidecar run -- python app.py`"
    )]
    NoCommand,
    /// The command could not be executed.
    #[error("cannot start {command:?}: {source}")]
    Spawn {
        /// The program.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

impl SupervisorError {
    /// The exit status a shell would give: 127 for a missing command, 126 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            SupervisorError::Spawn { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                127
            }
            _ => 126,
        }
    }
}

/// The signals the sidecar handles, installed before the app starts so none is missed.
#[derive(Debug)]
pub struct Signals {
    child: tokio::signal::unix::Signal,
    forwarded: Vec<(Signal, tokio::signal::unix::Signal)>,
}

/// Signals passed on to the app's process group; TERM and INT also start the grace period.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

impl Signals {
    /// Installs the handlers. Must run inside the tokio runtime.
    pub fn install() -> Result<Self, SupervisorError> {
        let child = signal(SignalKind::child()).map_err(SupervisorError::Signals)?;
        let forwarded = FORWARDED
            .iter()
            .map(|sig| signal(SignalKind::from_raw(*sig as i32)).map(|stream| (*sig, stream)))
            .collect::<Result<_, _>>()
            .map_err(SupervisorError::Signals)?;
        Ok(Signals { child, forwarded })
    }
}

/// The next forwarded signal.
async fn next_forwarded(forwarded: &mut [(Signal, tokio::signal::unix::Signal)]) -> Signal {
    std::future::poll_fn(|cx| {
        for (sig, stream) in forwarded.iter_mut() {
            if stream.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(*sig);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Makes the sidecar the reaper of orphans below it (Linux). Returns whether that worked.
pub fn become_subreaper() -> bool {
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_child_subreaper(true).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// The running app.
#[derive(Debug)]
pub struct App {
    /// Its pid, also its process group's id.
    pub pid: Pid,
}

/// Starts `command` in its own process group with the sidecar's environment plus `env`.
pub fn spawn(command: &[OsString], env: &[(&str, String)]) -> Result<App, SupervisorError> {
    let (program, args) = command.split_first().ok_or(SupervisorError::NoCommand)?;
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .process_group(0)
        .spawn()
        .map_err(|source| SupervisorError::Spawn {
            command: program.to_string_lossy().into_owned(),
            source,
        })?;
    let raw = i32::try_from(child.id()).unwrap_or(i32::MAX);
    // Dropping a std Child neither kills nor waits for it: `reap` collects its status.
    drop(child);
    Ok(App {
        pid: Pid::from_raw(raw),
    })
}

/// Runs until the app is gone and returns the status to exit with (128+n for signal n).
///
/// Signals are forwarded to the app's group. The first TERM or INT starts the grace
/// period (`grace()` read at that moment); later ones are forwarded but do not shorten
/// it. When it ends the group gets SIGKILL. When the app exits by itself, this returns
/// at once; after a TERM it waits (within the grace period) for the rest of the group.
pub async fn supervise(
    app: &App,
    signals: &mut Signals,
    grace: impl Fn() -> Duration,
    stats: &Stats,
    status: &StatusBoard,
) -> i32 {
    let mut exit: Option<i32> = reap(app.pid, stats);
    let mut deadline: Option<Instant> = None;
    let mut killed = false;
    let Signals { child, forwarded } = signals;
    loop {
        if let Some(code) = exit {
            if deadline.is_none() || killed || !group_alive(app.pid) {
                return code;
            }
        }
        let kill_at = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = child.recv() => {
                if let Some(code) = reap(app.pid, stats) {
                    exit = Some(code);
                }
            }
            sig = next_forwarded(forwarded) => {
                forward(app.pid, sig, stats);
                if matches!(sig, Signal::SIGTERM | Signal::SIGINT) && deadline.is_none() {
                    let grace = grace();
                    tracing::info!("{sig} received: the app has {grace:?} to exit before SIGKILL");
                    deadline = Some(Instant::now() + grace);
                    status.set_app(None, AppState::Stopping);
                }
            }
            _ = tokio::time::sleep_until(kill_at), if deadline.is_some() && !killed => {
                tracing::warn!("the grace period is over: sending SIGKILL to the app's process group");
                let _ = killpg(app.pid, Signal::SIGKILL);
                killed = true;
            }
            // The app is gone but its group is still finishing: look again shortly.
            _ = tokio::time::sleep(Duration::from_millis(50)), if exit.is_some() => {
                reap(app.pid, stats);
            }
        }
    }
}

fn forward(group: Pid, sig: Signal, stats: &Stats) {
    match killpg(group, sig) {
        Ok(()) => stats.supervisor.signals_forwarded.inc(),
        // The group is already gone: nothing to tell.
        Err(Errno::ESRCH) => {}
        Err(err) => tracing::warn!("cannot forward {sig} to the app: {err}"),
    }
}

/// Whether any process of the group is still there.
fn group_alive(group: Pid) -> bool {
    killpg(group, None).is_ok()
}

/// Reaps every exited child; returns the app's exit status if it was among them.
pub fn reap(app: Pid, stats: &Stats) -> Option<i32> {
    let mut app_status = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                if pid == app {
                    app_status = Some(code);
                } else {
                    stats.supervisor.reaped.inc();
                }
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                if pid == app {
                    app_status = Some(128 + sig as i32);
                } else {
                    stats.supervisor.reaped.inc();
                }
            }
            Ok(WaitStatus::StillAlive) => break,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            // ECHILD: no children at all.
            Err(_) => break,
        }
    }
    app_status
}
