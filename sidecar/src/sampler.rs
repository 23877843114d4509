//! The memory sampler: every `processMetrics.interval` it reads the dyno's cgroup, the
//! load averages, the app's process tree and the sidecar's own memory; sends them into
//! the pipeline as gauges; prints Heroku's log-runtime-metrics lines when asked; and
//! keeps the last values for `/status`.
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
    /// No readable cgroup: the sum of the app's processes and the sidecar.
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
    /// The cgroup's limit, else the machine's memory; 0 when neither is known.
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
    pub fn sample(&mut self) -> Sample {
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
        let (dyno, source) = match self.cgroup.as_ref().map(Cgroup::read) {
            Some(Ok(memory)) => (memory, source_of(self.cgroup.as_ref())),
            other => {
                if let Some(Err(err)) = other {
                    errors.push(err.to_string());
                }
                let memory = DynoMemory {
                    rss: app.rss + sidecar_rss,
                    swap: app.swap,
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
        })
    }
}

/// Samples until the config channel closes, following config changes.
pub async fn run(
    mut sampler: Sampler,
    mut config: watch::Receiver<Option<Arc<DynoConfig>>>,
    pipeline: PipelineHandle,
    status: Arc<StatusBoard>,
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
                _ = ticker.tick() => take(&mut sampler, &settings, &pipeline, &status),
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
) {
    let stats = pipeline.stats();
    let sample = sampler.sample();
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
    let over_quota = log_lines::r14_lines(sample.dyno.total(), sample.quota);
    if over_quota.is_some() {
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
        .chain(over_quota.into_iter().flatten())
        {
            text.push_str(&line);
            text.push('\n');
        }
        // Queued for stdout's writer thread: a blocked or closed stdout must not stop
        // sampling (lines it cannot take are dropped and counted there).
        output::stdout(text.as_bytes());
    }
}

#[cfg(test)]
mod tests;
