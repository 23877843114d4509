//! The command line: `render`, `validate`, `apply`, `delete`, `watch`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dynoscope_crds::procfile::{parse_formation, Procfile};
use dynoscope_crds::render::{self, RenderInput};
use dynoscope_crds::validate::{has_errors, Severity};

use crate::apply::{self, RESOURCE};
use crate::files::{FileReconciler, Options};
use crate::source;

/// Reconciles ObservabilityConfig resources into one DynoConfig per dyno.
#[derive(Debug, Parser)]
#[command(name = "dynoscope-operator", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the DynoConfig of every dyno (or one) as YAML.
    Render {
        /// The manifest (`-` for standard input).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// The Procfile. Default: `Procfile` beside the manifest, if any.
        #[arg(long)]
        procfile: Option<PathBuf>,
        /// Quantities over the spec's, e.g. `web=2,worker=1`.
        #[arg(long, value_parser = parse_formation_arg)]
        formation: Option<BTreeMap<String, u32>>,
        /// Only this dyno, e.g. `web.1` (may be outside the formation, e.g. `run.1`).
        #[arg(long)]
        dyno: Option<String>,
    },
    /// Check a manifest; exit 1 listing every problem.
    Validate {
        /// The manifest (`-` for standard input).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// The Procfile. Default: `Procfile` beside the manifest, if any.
        #[arg(long)]
        procfile: Option<PathBuf>,
    },
    /// Validate, then write the resources into the manifest directory.
    Apply {
        /// The manifest (`-` for standard input).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// The watched manifest directory.
        #[arg(long, default_value = "manifests")]
        manifests: PathBuf,
    },
    /// Remove the resources of a manifest from the manifest directory.
    Delete {
        /// The manifest (`-` for standard input).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// The watched manifest directory.
        #[arg(long, default_value = "manifests")]
        manifests: PathBuf,
    },
    /// Render every manifest of a directory into OUT/<app>/<dyno>.yaml, and keep doing it.
    Watch {
        /// The manifest directory.
        #[arg(long, default_value = "manifests")]
        manifests: PathBuf,
        /// The rendered-config directory.
        #[arg(long, default_value = "rendered")]
        out: PathBuf,
        /// A Procfile for every resource. Default: `Procfile` in the manifest directory, if any.
        #[arg(long)]
        procfile: Option<PathBuf>,
        /// Quantities over the spec's, e.g. `web=2,worker=1`.
        #[arg(long, value_parser = parse_formation_arg)]
        formation: Option<BTreeMap<String, u32>>,
        /// Reconcile once and exit (1 if anything failed).
        #[arg(long)]
        once: bool,
    },
    /// Run the app's Procfile formation locally, each dyno under its sidecar (like `heroku local`).
    Up {
        /// The app: its `Procfile` and `observability.yaml`.
        #[arg(default_value = ".")]
        app_dir: PathBuf,
        /// Quantities over the spec's, e.g. `web=2,worker=1`.
        #[arg(short = 'f', long, value_parser = parse_formation_arg)]
        formation: Option<BTreeMap<String, u32>>,
        /// First `PORT`; each process type gets 100 (foreman's scheme).
        #[arg(short = 'p', long, default_value_t = 5000)]
        port: u16,
        /// First port of the sidecars' listeners; each dyno gets ten (traces, DogStatsD, admin, …).
        #[arg(long, default_value_t = 18000)]
        agent_port: u16,
        /// Rendered configs and the formation's state. Default: `APP_DIR/.dynoscope`.
        #[arg(long)]
        state: Option<PathBuf>,
        /// The sidecar binary. Default: `dynoscope-sidecar` beside this binary, else on PATH.
        #[arg(long)]
        sidecar: Option<PathBuf>,
        /// Unit of the crash back-off: restarts after 0, 1, 2, 3, 9, 16 units (Heroku's shape).
        #[arg(long, default_value = "1s")]
        backoff: dynoscope_crds::duration::HumanDuration,
        /// Where the console listens (one live page: dynos, memory, APM stats, traces, checks, sinks).
        #[arg(long, default_value = crate::console::DEFAULT_ADDR)]
        console: std::net::SocketAddr,
        /// Run without the console (and without the dynos' console sinks).
        #[arg(long)]
        no_console: bool,
        /// Run without the router: web.1 listens on `--port` itself, as before.
        #[arg(long)]
        no_router: bool,
        /// The router's H12 timeout: the dyno's first response byte within it.
        #[arg(long, default_value = "30s")]
        router_timeout: dynoscope_crds::duration::HumanDuration,
        /// Also send the router lines to this Logplex drain (`http://[user:pass@]host:port/path`).
        #[arg(long)]
        drain_url: Option<String>,
        /// Dyno sizes over the manifest's: `standard-2x` for every type, or per type
        /// (`web=standard-1x,worker=performance-m`); R14/R15 follow the size's memory.
        #[arg(long, value_parser = parse_size_arg)]
        size: Option<dynoscope_crds::size::SizeOverrides>,
    },
    /// Run Heroku's router alone in front of web dynos (compose's `router` service).
    Router {
        /// Where it listens.
        #[arg(long, default_value = "0.0.0.0:5000")]
        listen: std::net::SocketAddr,
        /// A web dyno, `DYNO=HOST:PORT` (repeat): `--backend web.1=web.1:5000`.
        #[arg(long = "backend", required = true)]
        backends: Vec<String>,
        /// Also send the router lines to this Logplex drain (`http://[user:pass@]host:port/path`).
        #[arg(long)]
        drain_url: Option<String>,
        /// H12 timeout: the dyno's first response byte within it.
        #[arg(long, default_value = "30s")]
        timeout: dynoscope_crds::duration::HumanDuration,
    },
    /// Serve the console alone, fed by the dynos' `console` sinks (compose's `console` service).
    Console {
        /// Where it listens.
        #[arg(long, default_value = crate::console::DEFAULT_ADDR)]
        listen: std::net::SocketAddr,
    },
    /// Show every dyno of a running `up`: state, pid, restarts, config, memory, telemetry.
    Status {
        /// The app directory `up` runs.
        #[arg(default_value = ".")]
        app_dir: PathBuf,
        /// The state directory. Default: `APP_DIR/.dynoscope`.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Reconcile ObservabilityConfig resources of a Kubernetes cluster into ConfigMaps.
    Kube(crate::kube::Options),
}

/// `dynoscope-sidecar` beside this binary (as built and installed), else from PATH.
fn sidecar_binary() -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("dynoscope-sidecar")));
    beside
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("dynoscope-sidecar"))
}

fn parse_formation_arg(text: &str) -> Result<BTreeMap<String, u32>, String> {
    parse_formation(text).map_err(|e| e.to_string())
}

fn parse_size_arg(text: &str) -> Result<dynoscope_crds::size::SizeOverrides, String> {
    dynoscope_crds::size::SizeOverrides::parse(text).map_err(|e| e.to_string())
}

fn read_input(file: &Path) -> anyhow::Result<(String, String)> {
    use std::io::Read;
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        return Ok((text, "<stdin>".into()));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", file.display()))?;
    Ok((text, file.display().to_string()))
}

fn beside(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn procfile_for(explicit: Option<&Path>, manifest: &Path) -> anyhow::Result<Option<Procfile>> {
    Ok(source::read_procfile(explicit, &beside(manifest))?)
}

fn heroku_app_name() -> Option<String> {
    std::env::var("HEROKU_APP_NAME")
        .ok()
        .filter(|v| !v.is_empty())
}

/// Runs a command; the exit code says whether it worked.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Kube(options) => crate::kube::run_blocking(options),
        Command::Up {
            app_dir,
            formation,
            port,
            agent_port,
            state,
            sidecar,
            backoff,
            console,
            no_console,
            no_router,
            router_timeout,
            drain_url,
            size,
        } => {
            let drain_url = drain_url
                .as_deref()
                .map(crate::router::drain::DrainUrl::parse)
                .transpose()?;
            // Dynos run in the app directory: the paths they are given must not
            // be relative to ours.
            let app_dir = std::path::absolute(&app_dir).unwrap_or(app_dir);
            let state_dir = state.unwrap_or_else(|| app_dir.join(".dynoscope"));
            let state_dir = std::path::absolute(&state_dir).unwrap_or(state_dir);
            crate::up::run(crate::up::UpOptions {
                sidecar: sidecar.unwrap_or_else(sidecar_binary),
                app_dir,
                formation,
                port,
                agent_port,
                state_dir,
                backoff: backoff.get(),
                console: (!no_console).then_some(console),
                router: (!no_router).then_some(crate::router::RouterOptions {
                    timeout: router_timeout.get(),
                    drain_url,
                    ..crate::router::RouterOptions::default()
                }),
                sizes: size.unwrap_or_default(),
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Router {
            listen,
            backends,
            drain_url,
            timeout,
        } => {
            let backends = backends
                .iter()
                .map(|b| crate::router::Backend::parse(b))
                .collect::<Result<Vec<_>, _>>()?;
            let options = crate::router::RouterOptions {
                timeout: timeout.get(),
                drain_url: drain_url
                    .as_deref()
                    .map(crate::router::drain::DrainUrl::parse)
                    .transpose()?,
                ..crate::router::RouterOptions::default()
            };
            let listener = crate::router::bind(listen)?;
            eprintln!(
                "router on {listen} in front of {}",
                backends
                    .iter()
                    .map(|b| format!("{}={}", b.dyno, b.addr))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            crate::router::run_alone(listener, options, backends)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Console { listen } => {
            crate::console::run_alone(listen)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { app_dir, state } => {
            let state_dir = state.unwrap_or_else(|| app_dir.join(".dynoscope"));
            print!("{}", crate::up::status::render(&state_dir)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Render {
            file,
            procfile,
            formation,
            dyno,
        } => {
            let (text, label) = read_input(&file)?;
            let configs = dynoscope_crds::manifest::parse_documents(&text, &label)?;
            let procfile = procfile_for(procfile.as_deref(), &file)?;
            let app_name = heroku_app_name();
            let mut out = std::io::stdout().lock();
            let mut failed = false;
            for config in &configs {
                let input = RenderInput {
                    config,
                    procfile: procfile.as_ref(),
                    formation: formation.as_ref(),
                    heroku_app_name: app_name.as_deref(),
                };
                let result = match &dyno {
                    Some(dyno) => render::render_dyno(&input, dyno).map(|(c, w)| (vec![c], w)),
                    None => render::render(&input).map(|r| (r.dynos, r.warnings)),
                };
                match result {
                    Ok((dynos, warnings)) => {
                        for warning in warnings {
                            eprintln!("{label}: {}: {warning}", source::key(config));
                        }
                        for dyno in dynos {
                            write!(out, "---\n{}", dyno.to_yaml())?;
                        }
                    }
                    Err(err) => {
                        failed = true;
                        for problem in err.problems {
                            eprintln!("{label}: {}: {problem}", source::key(config));
                        }
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Validate { file, procfile } => {
            let (text, label) = read_input(&file)?;
            let configs = match dynoscope_crds::manifest::parse_documents(&text, &label) {
                Ok(configs) => configs,
                Err(err) => {
                    eprintln!("error: {err}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let procfile = procfile_for(procfile.as_deref(), &file)?;
            let mut failed = false;
            for config in &configs {
                let input = RenderInput {
                    config,
                    procfile: procfile.as_ref(),
                    formation: None,
                    heroku_app_name: None,
                };
                let key = source::key(config);
                match render::render(&input) {
                    Ok(rendered) => {
                        for warning in &rendered.warnings {
                            eprintln!("{label}: {key}: {warning}");
                        }
                        let names: Vec<&str> =
                            rendered.dynos.iter().map(|d| d.dyno.as_str()).collect();
                        println!(
                            "{RESOURCE}/{} valid ({} dynos: {})",
                            config.metadata.name.as_deref().unwrap_or_default(),
                            names.len(),
                            names.join(", ")
                        );
                    }
                    Err(err) => {
                        failed = failed || has_errors(&err.problems);
                        let mut problems = err.problems;
                        problems.sort_by_key(|p| p.severity != Severity::Error);
                        for problem in problems {
                            eprintln!("{label}: {key}: {problem}");
                        }
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Apply { file, manifests } => {
            let (text, label) = read_input(&file)?;
            std::fs::create_dir_all(&manifests)?;
            report_applied(apply::apply(&text, &label, &manifests, &beside(&file)))
        }
        Command::Delete { file, manifests } => {
            let (text, label) = read_input(&file)?;
            report_applied(apply::delete(&text, &label, &manifests))
        }
        Command::Watch {
            manifests,
            out,
            procfile,
            formation,
            once,
        } => {
            let mut reconciler = FileReconciler::new(Options {
                manifests: manifests.clone(),
                out,
                procfile,
                formation,
                heroku_app_name: heroku_app_name(),
                local_agent_port: None,
                console_endpoint: None,
                sizes: Default::default(),
            });
            if once {
                let report = reconciler.reconcile()?;
                crate::watch::log_report(&report);
                return Ok(if report.errors.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            let (stop_tx, stop) = std::sync::mpsc::channel();
            crate::signals::on_stop_signals(move || {
                let _ = stop_tx.send(());
                false
            });
            crate::watch::run(&mut reconciler, &manifests, &stop)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn report_applied(
    result: Result<Vec<(String, apply::Applied)>, apply::ApplyError>,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(done) => {
            for (name, what) in done {
                println!("{RESOURCE}/{name} {what}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("{err}");
            Ok(ExitCode::FAILURE)
        }
    }
}
