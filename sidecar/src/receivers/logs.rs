//! The app's stdout and stderr: passed through unchanged, and made into log
//! records when `logs` is on.
//!
//! ```text
//! app ─fd 1/2─► pipe ─► app-stdout / app-stderr thread ─► the sidecar's fd 1/2 (at once, in order)
//!                                      │ offer (never waits; full → dropped, counted)
//!                                      ▼
//!                          Tap (≤ TAP_BYTES) ─► app-logs thread: group ─► rules ─► parse ─► pipeline
//! ```
//!
//! - [`passthrough`]: the pipes and the copying threads; the copy happens
//!   whatever the logs config and the sinks' state.
//! - [`group`]: maximum line size and multi-line records (pure).
//! - [`parse`]: status, JSON attributes, trace correlation (pure).
//! - This module: the [`Tap`] between the two, the `app-logs` thread, and the
//!   compiled processing rules ([`Settings`]), swapped at each reload.

pub mod group;
pub mod parse;
mod passthrough;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dynoscope_crds::logs::{LogsConfig, RuleType};
use dynoscope_crds::DynoConfig;
use regex::Regex;

use crate::clock;
use crate::pipeline::PipelineHandle;
use crate::stats::Stats;
use crate::telemetry::{LogRecord, LogStream, Telemetry};
use group::{GroupRules, Grouper};
pub use passthrough::{AppStdio, PassThrough};

/// Bytes of the app's output waiting to become records or being made into
/// them; past it the copy for records is dropped and counted
/// (`dropped.budget`), the pass-through is not affected. Part of the
/// sidecar's memory total (`sidecar/MEMORY.md`); about 0.1 s of a flood at
/// full speed, so a longer flood than the records path keeps up with drops
/// whatever the bound: a larger one would only hold more memory.
pub const TAP_BYTES: usize = 4 << 20;

/// How long an open multi-line record waits for more lines once the stream is quiet.
const GROUP_WAIT: Duration = Duration::from_millis(250);

/// Records handed to the pipeline in one item.
const BATCH_RECORDS: usize = 512;

/// The compiled `logs` config of the running dyno.
#[derive(Debug)]
pub struct Settings {
    service: String,
    source: Option<String>,
    rules: Vec<Rule>,
    group: GroupRules,
}

#[derive(Debug)]
struct Rule {
    kind: RuleType,
    pattern: Regex,
    replacement: String,
}

impl Settings {
    /// Compiles a dyno's `logs`; a pattern that does not compile (validation
    /// refuses it first) names its rule.
    pub fn compile(config: &LogsConfig) -> Result<Settings, String> {
        let compile = |name: &str, pattern: &str| {
            Regex::new(pattern).map_err(|err| format!("logs rule {name:?}: {err}"))
        };
        let rules = config
            .processing_rules
            .iter()
            .map(|rule| {
                Ok(Rule {
                    kind: rule.type_,
                    pattern: compile(&rule.name, &rule.pattern)?,
                    replacement: rule.replace_placeholder.clone().unwrap_or_default(),
                })
            })
            .collect::<Result<_, String>>()?;
        let start = config
            .multi_line_pattern
            .as_deref()
            .map(|p| compile("multiLine.pattern", p))
            .transpose()?;
        Ok(Settings {
            service: config.service.clone(),
            source: config.source.clone(),
            rules,
            group: GroupRules {
                start,
                stack_traces: config.stack_traces,
                max_bytes: config.max_line_bytes as usize,
            },
        })
    }

    /// How lines are grouped into records.
    pub fn group_rules(&self) -> &GroupRules {
        &self.group
    }

    /// Applies the rules in order: `false` when an exclude or include rule drops the text.
    pub fn apply(&self, text: &mut String) -> bool {
        for rule in &self.rules {
            match rule.kind {
                RuleType::ExcludeAtMatch if rule.pattern.is_match(text) => return false,
                RuleType::IncludeAtMatch if !rule.pattern.is_match(text) => return false,
                RuleType::MaskSequences => {
                    if let std::borrow::Cow::Owned(masked) =
                        rule.pattern.replace_all(text, rule.replacement.as_str())
                    {
                        *text = masked;
                    }
                }
                _ => {}
            }
        }
        true
    }
}

/// The app's output on its way to records: a queue bounded in bytes, filled
/// by the copying threads, emptied by the `app-logs` thread.
#[derive(Clone, Debug)]
pub struct Tap {
    shared: Arc<TapShared>,
}

#[derive(Debug)]
struct TapShared {
    queue: Mutex<TapQueue>,
    ready: Condvar,
    /// Logs are on: only then is anything queued.
    on: AtomicBool,
    capacity: usize,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct TapQueue {
    chunks: VecDeque<Chunk>,
    bytes: usize,
    closed: bool,
}

#[derive(Debug)]
struct Chunk {
    stream: LogStream,
    at_ms: i64,
    text: Vec<u8>,
}

impl Tap {
    fn new(capacity: usize, stats: Arc<Stats>) -> Tap {
        Tap {
            shared: Arc::new(TapShared {
                queue: Mutex::new(TapQueue::default()),
                ready: Condvar::new(),
                on: AtomicBool::new(false),
                capacity,
                stats,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TapQueue> {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a copy of what the app wrote, if logs are on and it fits; never waits.
    pub fn offer(&self, stream: LogStream, text: &[u8]) {
        if !self.shared.on.load(Ordering::Relaxed) || text.is_empty() {
            return;
        }
        let mut queue = self.lock();
        if queue.closed || queue.bytes + text.len() > self.shared.capacity {
            drop(queue);
            let lines = memchr::memchr_iter(b'\n', text).count().max(1) as u64;
            self.shared.stats.logs.dropped.add("budget", lines);
            return;
        }
        // The reader waits only on an empty queue: waking it for every chunk of a
        // busy stream would cost a futex call per line.
        let was_empty = queue.chunks.is_empty();
        queue.bytes += text.len();
        queue.chunks.push_back(Chunk {
            stream,
            at_ms: clock::unix_millis(),
            text: text.to_vec(),
        });
        drop(queue);
        if was_empty {
            self.shared.ready.notify_one();
        }
    }

    /// Waits for chunks (at most `wait` when given); returns them and whether
    /// the tap is closed. They still count against the capacity until
    /// [`Tap::release`]d, so what the tap holds is bounded whether queued or
    /// being made into records.
    fn take(&self, wait: Option<Duration>) -> (VecDeque<Chunk>, bool) {
        let mut queue = self.lock();
        if queue.chunks.is_empty() && !queue.closed {
            queue = match wait {
                Some(wait) => {
                    self.shared
                        .ready
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .shared
                    .ready
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
        let closed = queue.closed;
        (std::mem::take(&mut queue.chunks), closed)
    }

    /// A taken chunk of `bytes` has been made into records.
    fn release(&self, bytes: usize) {
        let mut queue = self.lock();
        queue.bytes = queue.bytes.saturating_sub(bytes);
    }

    fn close(&self) {
        self.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

/// The app's output: the pass-through, and records when logs are on.
#[derive(Debug)]
pub struct Logs {
    tap: Tap,
    settings: Arc<Mutex<Option<Arc<Settings>>>>,
    passthrough: PassThrough,
    records_done: std::sync::mpsc::Receiver<()>,
}

impl Logs {
    /// Makes the app's pipes, starts the copying threads and the `app-logs`
    /// thread; the app is to be spawned with the returned [`AppStdio`].
    pub fn start(
        config: Option<&DynoConfig>,
        pipe: PipelineHandle,
        stats: &Arc<Stats>,
    ) -> std::io::Result<(Logs, AppStdio)> {
        let tap = Tap::new(TAP_BYTES, stats.clone());
        let (stdio, passthrough) = PassThrough::start(&tap, stats)?;
        let settings = Arc::new(Mutex::new(None));
        let (done_tx, records_done) = std::sync::mpsc::channel();
        {
            let (tap, settings, stats) = (tap.clone(), settings.clone(), stats.clone());
            std::thread::Builder::new()
                .name("app-logs".into())
                .spawn(move || {
                    records(&tap, &settings, &pipe, &stats);
                    let _ = done_tx.send(());
                })?;
        }
        let logs = Logs {
            tap,
            settings,
            passthrough,
            records_done,
        };
        logs.reconfigure(config);
        Ok((logs, stdio))
    }

    /// Follows a new config: logs on or off, new rules.
    pub fn reconfigure(&self, config: Option<&DynoConfig>) {
        let logs = config.filter(|c| c.enabled).and_then(|c| c.logs.as_ref());
        let settings = logs.and_then(|logs| match Settings::compile(logs) {
            Ok(settings) => Some(Arc::new(settings)),
            Err(err) => {
                tracing::error!("{err}: log records are off until the config is fixed");
                None
            }
        });
        self.tap
            .shared
            .on
            .store(settings.is_some(), Ordering::Relaxed);
        *self.settings.lock().unwrap_or_else(PoisonError::into_inner) = settings;
    }

    /// At exit: waits (at most `timeout` in all) for the app's output to be
    /// passed through and its last records handed to the pipeline.
    pub fn finish(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let passed = self.passthrough.finish(timeout);
        self.tap.close();
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        passed && self.records_done.recv_timeout(left).is_ok()
    }
}

/// The `app-logs` thread: chunks → lines → groups → rules → records → pipeline.
fn records(
    tap: &Tap,
    settings: &Mutex<Option<Arc<Settings>>>,
    pipe: &PipelineHandle,
    stats: &Stats,
) {
    let mut groupers = [Grouper::default(), Grouper::default()];
    let mut batch: Vec<LogRecord> = Vec::new();
    loop {
        let open = groupers.iter().any(Grouper::is_open);
        let (chunks, closed) = tap.take(open.then_some(GROUP_WAIT));
        let current = settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(current) = current else {
            tap.release(chunks.iter().map(|chunk| chunk.text.len()).sum());
            groupers = [Grouper::default(), Grouper::default()];
            if closed {
                return;
            }
            continue;
        };
        let quiet = chunks.is_empty();
        for chunk in chunks {
            let index = usize::from(chunk.stream == LogStream::Stderr);
            let mut same_write = false;
            for line in chunk.text.split_inclusive(|&b| b == b'\n') {
                let grouper = &mut groupers[index];
                if let Some(group) = grouper.push(line, chunk.at_ms, same_write, &current.group) {
                    emit(group, chunk.stream, &current, &mut batch, stats);
                    if batch.len() == BATCH_RECORDS {
                        send(&mut batch, pipe, stats);
                    }
                }
                same_write = true;
            }
            tap.release(chunk.text.len());
        }
        if quiet || closed {
            for (index, grouper) in groupers.iter_mut().enumerate() {
                let stream = [LogStream::Stdout, LogStream::Stderr][index];
                if let Some(group) = grouper.flush() {
                    emit(group, stream, &current, &mut batch, stats);
                }
            }
        }
        send(&mut batch, pipe, stats);
        if closed {
            return;
        }
    }
}

/// Hands the records of `batch` to the pipeline, leaving it empty.
fn send(batch: &mut Vec<LogRecord>, pipe: &PipelineHandle, stats: &Stats) {
    if batch.is_empty() {
        return;
    }
    let records = std::mem::replace(batch, Vec::with_capacity(BATCH_RECORDS));
    let n = records.len() as u64;
    if pipe.send(Telemetry::Logs(records)) {
        stats.logs.records.add(n);
    } else {
        stats.logs.dropped.add("budget", n);
    }
}

/// One group through the rules and the parser, into `batch`.
fn emit(
    group: group::Group,
    stream: LogStream,
    settings: &Settings,
    batch: &mut Vec<LogRecord>,
    stats: &Stats,
) {
    if group.lines > 1 {
        stats.logs.multiline_groups.inc();
    }
    stats.logs.truncated.add(u64::from(group.truncated));
    let mut text = group.text;
    if !settings.apply(&mut text) {
        stats.logs.dropped.inc("rule");
        return;
    }
    let (mut record, failure) = parse::parse(text, Some(stream), group.at_ms);
    if let Some(failure) = failure {
        stats.logs.parse_failures.inc(failure.as_str());
    }
    if record.service.is_none() {
        record.service = Some(settings.service.clone());
    }
    record.source.clone_from(&settings.source);
    batch.push(record);
}

#[cfg(test)]
#[path = "logs/tests.rs"]
mod tests;
