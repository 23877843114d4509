//! The command line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use dynoscope_crds::duration::HumanDuration;

use crate::config::ConfigSource;

/// dynoscope's sidecar: runs the app of a dyno and observes it.
#[derive(Debug, Parser)]
#[command(name = "dynoscope-sidecar", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the app (the command after `--`) and observe it.
    Run(RunArgs),
    /// Print a running sidecar's status.
    Status(StatusArgs),
    /// Serve a Logplex drain: Heroku's router, runtime and add-on lines into
    /// `heroku.*` metrics, the app's lines into log records, through the
    /// config's sinks. Runs as its own process, not in a dyno.
    Drain(DrainArgs),
}

/// `dynoscope-sidecar drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// A DynoConfig rendered by dynoscope-operator; watched and hot-reloaded.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "manifest",
        required_unless_present = "manifest"
    )]
    pub config: Option<PathBuf>,
    /// An ObservabilityConfig manifest to render for this process ($DYNO, else
    /// `drain.1`); watched and hot-reloaded.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// The Procfile (with --manifest). Default: `Procfile` beside the manifest, if any.
    #[arg(long, value_name = "FILE", requires = "manifest")]
    pub procfile: Option<PathBuf>,
    /// Where to listen. Default: `0.0.0.0:$PORT` when PORT is set (a Heroku
    /// web dyno), else `0.0.0.0:<spec.drain.port>` (8130).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Loopback port of /status (0: off); overrides the config's adminPort.
    #[arg(long, value_name = "PORT")]
    pub admin_port: Option<u16>,
}

impl DrainArgs {
    /// Where the config comes from. `dyno` is `$DYNO`, if set.
    pub fn source(&self, dyno: Option<String>) -> ConfigSource {
        let dyno = dyno
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| "drain.1".to_owned());
        config_source(
            self.config.as_deref(),
            self.manifest.as_deref(),
            self.procfile.as_deref(),
            dyno,
        )
    }
}

/// `dynoscope-sidecar run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A DynoConfig rendered by dynoscope-operator; watched and hot-reloaded.
    #[arg(long, value_name = "FILE", conflicts_with = "manifest")]
    pub config: Option<PathBuf>,
    /// An ObservabilityConfig manifest to render for this dyno ($DYNO); watched and hot-reloaded.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// The app's Procfile (with --manifest). Default: `Procfile` beside the manifest, if any.
    #[arg(long, value_name = "FILE", requires = "manifest")]
    pub procfile: Option<PathBuf>,
    /// Time between SIGTERM and SIGKILL, e.g. `30s`; overrides the config's gracePeriod.
    #[arg(long, value_name = "DURATION")]
    pub grace_period: Option<HumanDuration>,
    /// Loopback port of /status (0: off); overrides the config's adminPort.
    #[arg(long, value_name = "PORT")]
    pub admin_port: Option<u16>,
    /// The app's command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// `dynoscope-sidecar status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The sidecar's admin address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8127")]
    pub admin: String,
    /// Print the raw JSON of /status.
    #[arg(long)]
    pub json: bool,
}

impl RunArgs {
    /// Where the config comes from. `dyno` is `$DYNO`, if set.
    pub fn source(&self, dyno: Option<String>) -> ConfigSource {
        let dyno = match dyno.filter(|d| !d.trim().is_empty()) {
            Some(dyno) => dyno,
            None if self.manifest.is_some() && self.config.is_none() => {
                tracing::warn!("DYNO is not set: rendering the manifest for web.1");
                "web.1".to_owned()
            }
            None => "web.1".to_owned(),
        };
        config_source(
            self.config.as_deref(),
            self.manifest.as_deref(),
            self.procfile.as_deref(),
            dyno,
        )
    }
}

/// A rendered config file, else a manifest rendered for `dyno`, else none.
fn config_source(
    config: Option<&Path>,
    manifest: Option<&Path>,
    procfile: Option<&Path>,
    dyno: String,
) -> ConfigSource {
    if let Some(config) = config {
        return ConfigSource::File(absolute(config));
    }
    let Some(manifest) = manifest else {
        return ConfigSource::None;
    };
    let manifest = absolute(manifest);
    let procfile = procfile.map(absolute).or_else(|| {
        let beside = manifest.parent().map(|dir| dir.join("Procfile"))?;
        beside.is_file().then_some(beside)
    });
    ConfigSource::Manifest {
        manifest,
        procfile,
        dyno,
    }
}

/// Watching needs absolute paths: the directory of `dyno.yaml` is `.`, not ``.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
