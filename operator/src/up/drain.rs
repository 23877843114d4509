//! The Logplex drain beside `up`'s router: `dynoscope-sidecar drain`, when
//! the sidecar has that subcommand, run as the pseudo-dyno `drain.1` with a
//! config rendered as the dynos' are, restarted with back-off when it exits;
//! the router posts its lines to it, so `heroku.router.*` metrics come out
//! of `up` as they would from a real drain.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dynoscope_crds::render::{self, ProcessType, RenderInput, Rendered};

use super::output::Output;
use super::{ports, UpOptions, BACKOFF_STEPS};

/// The pseudo-dyno's name, in the output and in its config.
pub const DYNO: &str = "drain.1";

/// Whether `sidecar` has a `drain` subcommand (`drain --help` exits 0).
pub fn available(sidecar: &Path) -> bool {
    Command::new(sidecar)
        .args(["drain", "--help"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The drain's port: the one just below the dynos' sidecar blocks, its own
/// block of ten below that.
pub fn ports_of(agent_base: u16) -> Option<ports::DynoPorts> {
    Some(ports::DynoPorts {
        app: agent_base.checked_sub(1)?,
        agent: agent_base.checked_sub(11)?,
    })
}

/// Renders `drain.1`'s config from the manifest into `STATE/drain.1.yaml`.
pub fn render_config(
    options: &UpOptions,
    manifest: &Path,
    console_endpoint: Option<&str>,
) -> Result<PathBuf, String> {
    let file = crate::source::read_file(manifest);
    let configs = file.parsed.map_err(|e| e.to_string())?;
    let config = configs.first().ok_or("no ObservabilityConfig")?;
    let procfile =
        crate::source::read_procfile(Some(&options.app_dir.join("Procfile")), &options.app_dir)
            .map_err(|e| e.to_string())?;
    let input = RenderInput {
        config,
        procfile: procfile.as_ref(),
        formation: options.formation.as_ref(),
        heroku_app_name: None,
    };
    let (dyno, _) = render::render_dyno(&input, DYNO).map_err(|e| e.to_string())?;
    let ports = ports_of(options.agent_port).ok_or("--agent-port is too low for the drain")?;
    let mut rendered = Rendered {
        app: render::app_name(config, None),
        formation: vec![ProcessType {
            name: "drain".into(),
            quantity: 1,
            command: None,
        }],
        dynos: vec![dyno],
        warnings: Vec::new(),
    };
    ports::assign(&mut rendered, ports.agent);
    if let Some(endpoint) = console_endpoint {
        crate::console::add_sink(&mut rendered, endpoint);
    }
    let path = options.state_dir.join(format!("{DYNO}.yaml"));
    let text = rendered
        .dynos
        .first()
        .map(|d| d.to_yaml())
        .unwrap_or_default();
    crate::fs::write_if_changed(&path, text.as_bytes(), 0o644)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// The running drain process, stopped with `up`.
#[derive(Debug, Clone, Default)]
pub struct DrainProcess {
    pid: Arc<AtomicU32>,
    stopping: Arc<AtomicBool>,
}

impl DrainProcess {
    /// Runs `sidecar drain --config CONFIG --listen 127.0.0.1:PORT` on a
    /// thread of its own, restarting it with Heroku's back-off.
    pub fn start(options: &UpOptions, config: PathBuf, port: u16, output: &Output) -> Self {
        let process = DrainProcess::default();
        let (sidecar, backoff, app_dir) = (
            options.sidecar.clone(),
            options.backoff,
            options.app_dir.clone(),
        );
        let (output, this) = (output.clone(), process.clone());
        let _ = std::thread::Builder::new()
            .name("drain".into())
            .spawn(move || {
                let mut crashes = 0usize;
                while !this.stopping.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let child = Command::new(&sidecar)
                        .arg("drain")
                        .arg("--config")
                        .arg(&config)
                        .args(["--listen", &format!("127.0.0.1:{port}")])
                        .current_dir(&app_dir)
                        .env("DYNO", DYNO)
                        .stdin(Stdio::null())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        // Its own group, as the dynos': `up` stops it.
                        .process_group(0)
                        .spawn();
                    let mut child = match child {
                        Ok(child) => child,
                        Err(err) => {
                            output.system("heroku[drain]", &format!("cannot start: {err}"));
                            return;
                        }
                    };
                    this.pid.store(child.id(), Ordering::Relaxed);
                    output.follow("drain", child.stdout.take(), child.stderr.take());
                    let code = child.wait().map_or(1, super::exit_code);
                    this.pid.store(0, Ordering::Relaxed);
                    output.system(
                        "heroku[drain]",
                        &format!("Process exited with status {code}"),
                    );
                    if this.stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    if started.elapsed() > backoff * 10 {
                        crashes = 0;
                    }
                    let step = BACKOFF_STEPS[crashes.min(BACKOFF_STEPS.len() - 1)];
                    crashes += 1;
                    std::thread::sleep(backoff * step + Duration::from_millis(100));
                }
            });
        process
    }

    /// SIGTERM to the drain; it is not restarted.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let pid = self.pid.load(Ordering::Relaxed);
        if let Ok(pid) = i32::try_from(pid) {
            if pid > 0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
    }
}
