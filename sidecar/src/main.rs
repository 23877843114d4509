//! `dynoscope-sidecar`: parse the arguments, build the runtime, run.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use dynoscope_crds::sidecar_status;
use dynoscope_sidecar::output::{self, Output};
use dynoscope_sidecar::stats::Stats;
use dynoscope_sidecar::{cli, clock, collector, memory, run, status, supervisor};

/// How long the last lines get to reach stdout and stderr at exit: a reader that has
/// stopped reading must not hold the exit, which the dyno manager is timing.
const EXIT_FLUSH: Duration = Duration::from_millis(500);

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Run(args) => {
            // Before any thread starts: every thread shares the arenas and inherits the mask.
            memory::cap_allocator_arenas();
            supervisor::block_signals()?;
            let stats = Arc::new(Stats::default());
            let (output, runtime) = start(&stats)?;
            let code = runtime.block_on(run::run(args, stats));
            runtime.shutdown_timeout(Duration::from_millis(100));
            output.flush(EXIT_FLUSH);
            std::process::exit(code);
        }
        cli::Command::Drain(args) => {
            memory::cap_allocator_arenas();
            let stats = Arc::new(Stats::default());
            let (output, runtime) = start(&stats)?;
            let code = runtime.block_on(collector::run(args, stats));
            runtime.shutdown_timeout(Duration::from_millis(100));
            output.flush(EXIT_FLUSH);
            std::process::exit(code);
        }
        cli::Command::Status(args) => {
            let now = sidecar_status::fetch(&args.admin, Duration::from_secs(5))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&now)?);
            } else {
                print!("{}", status::render(&now, clock::unix_now()));
            }
            Ok(())
        }
    }
}

/// The output writers, the log subscriber and the async runtime.
fn start(stats: &Arc<Stats>) -> anyhow::Result<(&'static Output, tokio::runtime::Runtime)> {
    let output = output::install(
        Output::start(
            stats.clone(),
            output::queue_bytes(std::env::var(output::QUEUE_BYTES_ENV).ok().as_deref()),
        )
        .context("cannot start the output writers")?,
    );
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DYNOSCOPE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(output.stderr.clone())
        // Colours only for people: log drains would keep the escape codes.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok((output, runtime))
}
