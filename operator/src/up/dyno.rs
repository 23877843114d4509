//! One dyno of the formation: its process (the sidecar wrapping the command),
//! how it is started, signalled and waited for.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use super::output::Output;
use super::plan::Plan;
use super::{ports, Event, UpOptions};

/// The process of a dyno that runs.
pub(super) struct Running {
    pub(super) pid: u32,
    pub(super) spawn: u64,
    pub(super) command: String,
}

/// One dyno of the formation as `up` tracks it.
pub(super) struct Dyno {
    pub(super) name: String,
    pub(super) running: Option<Running>,
    /// Consecutive crashes, for the back-off.
    pub(super) crashes: usize,
    pub(super) restart_at: Option<Instant>,
    pub(super) started_at: Option<Instant>,
    pub(super) restarts: u32,
    /// `false` once the dyno left the formation: it is stopped and forgotten.
    pub(super) wanted: bool,
}

/// Marks the dynos the plan no longer has, adds the new ones, keeps the plan's order.
pub(super) fn sync_dynos(dynos: &mut Vec<Dyno>, plan: &Plan) {
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

/// The `heroku[web.1]` prefix of the lines Heroku's platform writes about a dyno.
pub(super) fn heroku(dyno: &str) -> String {
    format!("heroku[{dyno}]")
}

/// Starts the dyno's sidecar (which starts its command) and a thread waiting for its exit.
pub(super) fn start(
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
        options.app_port_base(),
        options.agent_port,
    )
    .map_or(options.app_port_base(), |p| p.app);
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

/// Sends `sig` to the dyno's sidecar, which passes it on to the app.
pub(super) fn kill(dyno: &Dyno, sig: Signal) {
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
