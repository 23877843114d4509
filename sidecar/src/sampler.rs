//! The memory sampler: every `processMetrics.interval` it reads the dyno's cgroup, the
//! load averages, the app's process tree and the sidecar's own memory; sends them into
//! the pipeline as gauges; prints Heroku's log-runtime-metrics lines when asked; and
//! keeps the last values for `/status`.
//!
//! Under `up` (`processMetrics.memoryFrom: processTree`) every dyno shares the host's
//! cgroup, which says nothing of one dyno: there the dyno's memory is the sidecar and the
//! app's process tree, its quota is its size's (`size.memoryQuotaBytes`, else the
//! machine's memory), R14 is reported above the quota and, past `size.memoryKillBytes`,
//! R15 is reported and the app's process group is killed with SIGKILL, as Heroku's dyno
//! manager does (the dyno then crashes and `up` restarts it). Everywhere else the cgroup
//! stays the source.
//!
//! - [`cgroup`]: the dyno's memory from cgroup v1 or v2 files.
//! - [`procs`]: `/proc` readers (process tree, own RSS, load averages).
//! - [`log_lines`]: Heroku's exact line formats.

pub mod cgroup;
pub mod log_lines;
pub mod procs;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dynoscope_crds::dyno::MemoryFrom;
use dynoscope_crds::sidecar_status::SamplerStatus;
use dynoscope_crds::DynoConfig;
use tokio::sync::watch;

use crate::clock::unix_now;
use crate::output;
use crate::pipeline::PipelineHandle;
use crate::status::StatusBoard;
use crate::telemetry::{MetricType, Point, Telemetry};
use cgroup::{Cgroup, DynoMemory};
use procs::{LoadAvg, ProcessTree, TreeUsage};

/// Why part of a sample could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// A cgroup or `/proc` file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// sysinfo cannot read the processes of this system.
    #[error("cannot list processes on this system: the app's memory and CPU are not sampled")]
    Processes,
}

/// Where the dyno's memory numbers came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemorySource {
    /// cgroup v1 files.
    CgroupV1,
    /// cgroup v2 files.
    CgroupV2,
    /// The sum of the app's processes and the sidecar: under `up`, or without a
    /// readable cgroup.
    Processes,
}

/// One reading of everything the sampler watches.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Unix seconds.
    pub at: i64,
    /// The dyno's memory.
    pub dyno: DynoMemory,
    /// Where `dyno` came from.
    pub source: MemorySource,
    /// The cgroup's limit (the size's under `up`), else the machine's memory; 0 when
    /// neither is known.
    pub quota: u64,
    /// Load averages.
    pub load: LoadAvg,
    /// The app and every process below the sidecar.
    pub app: TreeUsage,
    /// CPU of the app's tree since the previous sample, percent of one core.
    pub app_cpu: f64,
    /// The sidecar's own resident memory, bytes.
    pub sidecar_rss: u64,
    /// What could not be read this time.
    pub errors: Vec<String>,
}

/// Reads samples; holds what one sample needs from the previous one.
#[derive(Debug)]
pub struct Sampler {
    /// `/proc`, or a fixture.
    proc_root: PathBuf,
    /// The dyno's memory cgroup, when one was found.
    cgroup: Option<Cgroup>,
    /// The sidecar's pid: the app's tree is everything below it.
    pid: u32,
    /// The app's process tree.
    tree: ProcessTree,
    /// CPU milliseconds of the tree at the previous sample, for the rate.
    last_cpu: Option<(Instant, u64)>,
}

impl Sampler {
    /// A sampler of this process's dyno: the cgroup is found from `<proc_root>/self/cgroup`
    /// under `cgroup_root` (normally `/proc` and `/sys/fs/cgroup`).
    pub fn new(proc_root: &Path, cgroup_root: &Path) -> Self {
        let own = std::fs::read_to_string(proc_root.join("self/cgroup")).unwrap_or_default();
        let cgroup = Cgroup::detect(cgroup_root, &own);
        Sampler {
            proc_root: proc_root.to_owned(),
            cgroup,
            pid: std::process::id(),
            tree: ProcessTree::new(proc_root),
            last_cpu: None,
        }
    }

    /// The cgroup in use, if any.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// Reads everything now; what fails is listed in [`Sample::errors`] and reads as zero.
    /// `budget` says where the dyno's memory and quota come from.
    pub fn sample(&mut self, budget: &Budget) -> Sample {
        let mut errors = Vec::new();
        let now = Instant::now();
        let app = self.tree.descendants(self.pid).unwrap_or_else(|err| {
            errors.push(err.to_string());
            TreeUsage::default()
        });
        let app_cpu = match self.last_cpu.replace((now, app.cpu_ms)) {
            Some((then, ms)) if now > then => {
                // Processes that left the tree take their time with them: never negative.
                let used = app.cpu_ms.saturating_sub(ms) as f64 / 1000.0;
                used * 100.0 / now.duration_since(then).as_secs_f64()
            }
            _ => 0.0,
        };
        let sidecar_rss = procs::rss(&self.proc_root, "self").unwrap_or(0);
        let cgroup = match budget.from {
            MemoryFrom::Cgroup => self.cgroup.as_ref().map(Cgroup::read),
            MemoryFrom::ProcessTree => None,
        };
        let (dyno, source) = match cgroup {
            Some(Ok(memory)) => (memory, source_of(self.cgroup.as_ref())),
            other => {
                if let Some(Err(err)) = other {
                    errors.push(err.to_string());
                }
                let memory = DynoMemory {
                    rss: app.rss + sidecar_rss,
                    swap: app.swap,
                    quota: budget
                        .quota
                        .filter(|_| budget.from == MemoryFrom::ProcessTree),
                    ..DynoMemory::default()
                };
                (memory, MemorySource::Processes)
            }
        };
        let load = std::fs::read_to_string(self.proc_root.join("loadavg"))
            .ok()
            .and_then(|text| procs::parse_loadavg(&text))
            .unwrap_or_default();
        let quota = dyno
            .quota
            .or_else(|| procs::mem_total(&self.proc_root))
            .unwrap_or(0);
        Sample {
            at: unix_now(),
            dyno,
            source,
            quota,
            load,
            app,
            app_cpu,
            sidecar_rss,
            errors,
        }
    }
}

/// Where a dyno's memory and quota come from, from its config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// The cgroup, or (under `up`) the process tree.
    pub from: MemoryFrom,
    /// The size's quota, bytes: used only with [`MemoryFrom::ProcessTree`].
    pub quota: Option<u64>,
    /// The size's R15 limit, bytes: past it the app is killed (process tree only).
    pub kill: Option<u64>,
}

impl Budget {
    /// The budget a config gives.
    pub fn of(config: &DynoConfig) -> Self {
        let size = config.size.as_ref();
        Budget {
            from: config.process_metrics.memory_from,
            quota: size.map(|s| s.memory_quota_bytes),
            kill: size.map(|s| s.memory_kill_bytes),
        }
    }

    /// Whether `total` is past the R15 limit where the sidecar itself must kill the app
    /// (on Heroku and in containers the platform or the kernel does).
    pub fn must_kill(&self, total: u64) -> bool {
        self.from == MemoryFrom::ProcessTree && self.kill.is_some_and(|kill| total > kill)
    }
}

fn source_of(cgroup: Option<&Cgroup>) -> MemorySource {
    match cgroup.map(|c| c.version) {
        Some(cgroup::CgroupVersion::V1) => MemorySource::CgroupV1,
        Some(cgroup::CgroupVersion::V2) => MemorySource::CgroupV2,
        None => MemorySource::Processes,
    }
}

/// The gauges of a sample: bytes for memory, percent of a core for CPU.
pub fn points(sample: &Sample) -> Vec<Point> {
    let b = |bytes: u64| bytes as f64;
    let mut values = vec![
        ("dyno.memory.rss", b(sample.dyno.rss)),
        ("dyno.memory.cache", b(sample.dyno.cache)),
        ("dyno.memory.swap", b(sample.dyno.swap)),
        ("dyno.memory.total", b(sample.dyno.total())),
        ("dyno.memory.pgpgin", b(sample.dyno.pgpgin)),
        ("dyno.memory.pgpgout", b(sample.dyno.pgpgout)),
    ];
    if sample.quota > 0 {
        values.push(("dyno.memory.quota", b(sample.quota)));
    }
    values.extend([
        ("dyno.load_avg.1m", sample.load.one),
        ("dyno.load_avg.5m", sample.load.five),
        ("dyno.load_avg.15m", sample.load.fifteen),
        ("app.memory.rss", b(sample.app.rss)),
        ("app.memory.swap", b(sample.app.swap)),
        ("app.cpu", sample.app_cpu),
        ("app.processes", f64::from(sample.app.processes)),
        ("sidecar.memory.rss", b(sample.sidecar_rss)),
    ]);
    values
        .into_iter()
        .map(|(name, value)| Point {
            name: name.to_owned(),
            metric_type: MetricType::Gauge,
            value,
            timestamp: sample.at,
            interval: 0,
            tags: Vec::new(),
            origin: None,
        })
        .collect()
}

/// What the sampler does, from the running config; `None` when it is off.
#[derive(Clone, Debug, PartialEq)]
struct Settings {
    interval: Duration,
    log_lines: bool,
    source: String,
    dyno_id: String,
    budget: Budget,
}

impl Settings {
    fn of(config: Option<&DynoConfig>) -> Option<Settings> {
        let config = config.filter(|c| c.enabled && c.process_metrics.enabled)?;
        let heroku_dyno_id = std::env::var("HEROKU_DYNO_ID").ok();
        Some(Settings {
            // A zero interval would spin; validation refuses it, this is a second guard.
            interval: config
                .process_metrics
                .interval
                .get()
                .max(Duration::from_millis(10)),
            log_lines: config.process_metrics.log_lines,
            source: config.dyno.clone(),
            dyno_id: log_lines::dyno_id(&config.app, &config.dyno, heroku_dyno_id.as_deref()),
            budget: Budget::of(config),
        })
    }
}

/// Samples until the config channel closes, following config changes. `app` is the
/// app's process group, killed past R15 under `up`.
pub async fn run(
    mut sampler: Sampler,
    mut config: watch::Receiver<Option<Arc<DynoConfig>>>,
    pipeline: PipelineHandle,
    status: Arc<StatusBoard>,
    app: Option<u32>,
) {
    loop {
        let current = Settings::of(config.borrow_and_update().as_deref());
        let Some(settings) = current else {
            if config.changed().await.is_err() {
                return;
            }
            continue;
        };
        let mut ticker = tokio::time::interval(settings.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => take(&mut sampler, &settings, &pipeline, &status, app),
                changed = config.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if Settings::of(config.borrow().as_deref()).as_ref() != Some(&settings) {
                        break;
                    }
                }
            }
        }
    }
}

fn take(
    sampler: &mut Sampler,
    settings: &Settings,
    pipeline: &PipelineHandle,
    status: &StatusBoard,
    app: Option<u32>,
) {
    let stats = pipeline.stats();
    let sample = sampler.sample(&settings.budget);
    stats.sampler.samples.inc();
    if !sample.errors.is_empty() {
        stats.sampler.errors.inc();
        tracing::debug!("sampler: {}", sample.errors.join("; "));
    }
    let points = points(&sample);
    status.set_sampler(SamplerStatus {
        at: sample.at,
        memory_source: match serde_json::to_value(sample.source) {
            Ok(serde_json::Value::String(source)) => source,
            _ => format!("{:?}", sample.source),
        },
        values: points.iter().map(|p| (p.name.clone(), p.value)).collect(),
        errors: sample.errors.clone(),
    });
    pipeline.send(Telemetry::Points(points));
    let total = sample.dyno.total();
    let kill = settings.budget.must_kill(total);
    let over_quota: Vec<String> = if kill {
        log_lines::r15_lines(total, sample.quota).to_vec()
    } else {
        log_lines::r14_lines(total, sample.quota)
            .map(|lines| lines.to_vec())
            .unwrap_or_default()
    };
    if !over_quota.is_empty() {
        stats.sampler.over_quota.inc();
    }
    if settings.log_lines {
        let mut text = String::new();
        for line in [
            log_lines::load_line(&settings.source, &settings.dyno_id, &sample.load),
            log_lines::memory_line(
                &settings.source,
                &settings.dyno_id,
                &sample.dyno,
                sample.quota,
            ),
        ]
        .into_iter()
        .chain(over_quota)
        {
            text.push_str(&line);
            text.push('\n');
        }
        // Queued for stdout's writer thread: a blocked or closed stdout must not stop
        // sampling (lines it cannot take are dropped and counted there).
        output::stdout(text.as_bytes());
    }
    if kill {
        kill_app(app, total, stats);
    }
}

/// R15 under `up`: SIGKILL to the app's process group, as Heroku's dyno manager kills a
/// dyno at twice its quota. The supervisor then sees the app exit (137), the sidecar
/// exits with it and `up` restarts the crashed dyno with its back-off. Killing, rather
/// than only printing, keeps a leaking app from taking the laptop's memory, and shows
/// the restart a team would see on Heroku.
fn kill_app(app: Option<u32>, total: u64, stats: &crate::stats::Stats) {
    let Some(group) = app.and_then(|pid| i32::try_from(pid).ok()) else {
        return;
    };
    tracing::warn!(
        "R15: the dyno uses {} MB, past its size's limit: sending SIGKILL to the app's process group",
        total >> 20
    );
    match nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(group),
        nix::sys::signal::Signal::SIGKILL,
    ) {
        Ok(()) => stats.sampler.killed.inc(),
        Err(err) => tracing::warn!("cannot kill the app's process group: {err}"),
    }
}

#[cfg(test)]
mod tests;
