//! Supervision of the app: its own process group, forwarded signals, the grace period,
//! zombie reaping, and its exit status.
//!
//! All of it runs on one OS thread of its own (see [`Signals`]), never on the async
//! runtime: it waits only on a `signalfd` and the grace period's deadline, so a SIGTERM
//! reaches the app at once whatever else in the sidecar is stuck (a full stdout pipe, a
//! busy worker). `main` blocks the handled signals before any thread starts
//! ([`block_signals`]), so only that thread ever sees them.
//!
//! The app is spawned with `posix_spawnp` in a new process group and is not waited for
//! by its pid alone: every child of the sidecar (the app and orphans re-parented
//! to it as PID 1 or subreaper) is reaped by [`reap`] with `waitpid(-1)` on SIGCHLD, the
//! way tini does. So nothing else in the sidecar may wait for children of its own.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::spawn::{posix_spawnp, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::{killpg, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

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
    /// The supervisor's signals or its thread could not be set up.
    #[error("cannot set up signal handling: {0}")]
    Signals(std::io::Error),
    /// [`Signals::install`] ran without [`block_signals`] first.
    #[error(
        "the supervisor's signals are not blocked: call supervisor::block_signals() at the \
         start of main, before any thread starts"
    )]
    NotBlocked,
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

/// Signals passed on to the app's process group; TERM and INT also start the grace period.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// How often the supervisor looks whether the rest of the app's group is gone, once the
/// app itself has exited after a TERM: the group's members are not all its children.
const GROUP_POLL: Duration = Duration::from_millis(50);

/// The forwarded signals and SIGCHLD: what the supervisor thread waits for.
fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for sig in FORWARDED {
        set.add(sig);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks the signals the supervisor handles in the calling thread and so in every
/// thread it starts afterwards. Call it first thing in `main`, before any thread exists:
/// a thread that left SIGTERM unblocked would take it with the default action and end
/// the process without the app getting its grace period.
///
/// Blocked, the signals wait for the supervisor thread's `signalfd`. The app does not
/// inherit the mask: [`spawn`] starts it with an empty one.
pub fn block_signals() -> Result<(), SupervisorError> {
    handled()
        .thread_block()
        .map_err(|errno| SupervisorError::Signals(errno.into()))
}

/// The supervisor thread, started before the app so no signal is missed: signals that
/// arrive before the app is handed over wait, blocked, in its `signalfd`.
#[derive(Debug)]
pub struct Signals {
    /// Hands the thread the app to supervise; dropping it ends an idle thread.
    start: std::sync::mpsc::Sender<Job>,
}

/// What the supervisor thread needs once the app runs.
struct Job {
    /// The app's pid and process group.
    app: Pid,
    /// The grace period, read when the first TERM or INT arrives: a reload may change it.
    grace: Box<dyn Fn() -> Duration + Send>,
    /// Forwarded signals and reaped orphans are counted.
    stats: Arc<Stats>,
    /// `/status` shows the app stopping.
    status: Arc<StatusBoard>,
    /// Where the app's exit status goes: `run` awaits it on the async side.
    exit: tokio::sync::oneshot::Sender<i32>,
}

impl Signals {
    /// Opens the `signalfd` and starts the supervisor thread. The signals must have
    /// been blocked by [`block_signals`] before any thread started.
    pub fn install() -> Result<Self, SupervisorError> {
        let handled = handled();
        let mask = SigSet::thread_get_mask().map_err(|e| SupervisorError::Signals(e.into()))?;
        if handled.iter().any(|sig| !mask.contains(sig)) {
            return Err(SupervisorError::NotBlocked);
        }
        let fd = SignalFd::with_flags(&handled, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| SupervisorError::Signals(e.into()))?;
        let (start, jobs) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("supervisor".into())
            .spawn(move || {
                if let Ok(job) = jobs.recv() {
                    let code = supervise_on_this_thread(&fd, &job);
                    // The async side may be gone already (the sidecar is exiting): fine.
                    let _ = job.exit.send(code);
                }
            })
            .map_err(SupervisorError::Signals)?;
        Ok(Signals { start })
    }
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

/// Starts `command` in its own process group with the sidecar's environment plus `env`,
/// with `output[0]` and `output[1]` (when given) as its fds 1 and 2.
///
/// With `posix_spawnp` rather than std's `Command`, whose child keeps the spawning
/// thread's signal mask: the app must start with nothing blocked (the sidecar blocks
/// TERM and the rest for its supervisor thread) and SIGPIPE at its default (std ignores
/// it in the sidecar), as if started by a shell.
pub fn spawn(
    command: &[OsString],
    env: &[(&str, String)],
    output: [Option<BorrowedFd<'_>>; 2],
) -> Result<App, SupervisorError> {
    let (program, _) = command.split_first().ok_or(SupervisorError::NoCommand)?;
    let failed = |source: std::io::Error| SupervisorError::Spawn {
        command: program.to_string_lossy().into_owned(),
        source,
    };
    let c_string = |bytes: Vec<u8>| {
        CString::new(bytes).map_err(|_| {
            failed(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an argument contains a NUL byte",
            ))
        })
    };
    let argv = command
        .iter()
        .map(|arg| c_string(arg.as_bytes().to_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut vars: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    vars.extend(
        env.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    let envp = vars
        .into_iter()
        .map(|(k, v)| c_string([k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<Result<Vec<_>, _>>()?;
    let attr = spawn_attr().map_err(|errno| failed(errno.into()))?;
    let mut actions = PosixSpawnFileActions::init().map_err(|errno| failed(errno.into()))?;
    for (target, fd) in (1..).zip(output) {
        if let Some(fd) = fd {
            // dup2 clears close-on-exec on the copy: the app keeps only fds 1 and 2.
            actions
                .add_dup2(fd.as_raw_fd(), target)
                .map_err(|errno| failed(errno.into()))?;
        }
    }
    // `reap` collects the app's status, like every other child's.
    let pid = posix_spawnp(&argv[0], &actions, &attr, &argv, &envp)
        .map_err(|errno| failed(errno.into()))?;
    Ok(App { pid })
}

/// The app's own process group, an empty signal mask, SIGPIPE at its default.
fn spawn_attr() -> nix::Result<PosixSpawnAttr> {
    let mut attr = PosixSpawnAttr::init()?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETPGROUP
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
    )?;
    attr.set_pgroup(Pid::from_raw(0))?;
    attr.set_sigmask(&SigSet::empty())?;
    let mut default = SigSet::empty();
    default.add(Signal::SIGPIPE);
    attr.set_sigdefault(&default)?;
    Ok(attr)
}

/// Runs until the app is gone and returns the status to exit with (128+n for signal n).
///
/// The work happens on the supervisor thread started by [`Signals::install`], which
/// waits on nothing but its `signalfd` and the clock: a stuck stdout, sink or worker
/// cannot delay a signal for the app. Signals are forwarded to the app's group. The
/// first TERM or INT starts the grace period (`grace()` read at that moment); later ones
/// are forwarded but do not shorten it. When it ends the group gets SIGKILL. When the
/// app exits by itself, this returns at once; after a TERM it waits (within the grace
/// period) for the rest of the group.
pub async fn supervise(
    app: &App,
    signals: Signals,
    grace: impl Fn() -> Duration + Send + 'static,
    stats: Arc<Stats>,
    status: Arc<StatusBoard>,
) -> i32 {
    let (exit, code) = tokio::sync::oneshot::channel();
    let job = Job {
        app: app.pid,
        grace: Box::new(grace),
        stats,
        status,
        exit,
    };
    if signals.start.send(job).is_err() {
        tracing::error!("the supervisor thread is gone: the app's exit cannot be awaited");
        return 70;
    }
    code.await.unwrap_or_else(|_| {
        tracing::error!("the supervisor thread panicked: the app's exit cannot be awaited");
        70
    })
}

/// The supervisor thread's loop: see [`supervise`].
fn supervise_on_this_thread(fd: &SignalFd, job: &Job) -> i32 {
    let Job {
        app,
        grace,
        stats,
        status,
        ..
    } = job;
    let app = *app;
    let mut exit: Option<i32> = reap(app, stats);
    let mut deadline: Option<Instant> = None;
    let mut killed = false;
    loop {
        if let Some(code) = exit {
            if deadline.is_none() || killed || !group_alive(app) {
                return code;
            }
        }
        let now = Instant::now();
        let kill_in = deadline
            .filter(|_| !killed)
            .map(|at| at.saturating_duration_since(now));
        if kill_in == Some(Duration::ZERO) {
            tracing::warn!("the grace period is over: sending SIGKILL to the app's process group");
            let _ = killpg(app, Signal::SIGKILL);
            killed = true;
            continue;
        }
        // The app is gone but its group is still finishing: look again shortly.
        let wake_in = match (kill_in, exit.is_some()) {
            (Some(kill_in), true) => Some(kill_in.min(GROUP_POLL)),
            (kill_in, true) => kill_in.or(Some(GROUP_POLL)),
            (kill_in, false) => kill_in,
        };
        let timeout = wake_in.map_or(PollTimeout::NONE, |d| {
            // Rounded up: waking a millisecond early would spin until the deadline.
            PollTimeout::try_from(d + Duration::from_micros(999)).unwrap_or(PollTimeout::MAX)
        });
        match poll(&mut [PollFd::new(fd.as_fd(), PollFlags::POLLIN)], timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(err) => {
                tracing::error!("cannot wait for signals: {err}");
                std::thread::sleep(GROUP_POLL);
            }
        }
        while let Ok(Some(info)) = fd.read_signal() {
            let Ok(sig) =
                i32::try_from(info.ssi_signo).map_or(Err(Errno::EINVAL), Signal::try_from)
            else {
                continue;
            };
            if sig == Signal::SIGCHLD {
                if let Some(code) = reap(app, stats) {
                    exit = Some(code);
                }
                continue;
            }
            forward(app, sig, stats);
            if matches!(sig, Signal::SIGTERM | Signal::SIGINT) && deadline.is_none() {
                let grace = grace();
                tracing::info!("{sig} received: the app has {grace:?} to exit before SIGKILL");
                deadline = Some(Instant::now() + grace);
                status.set_app(None, AppState::Stopping);
            }
        }
        if exit.is_some() {
            reap(app, stats);
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
