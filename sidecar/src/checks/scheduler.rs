//! Running checks: one task per check, its interval, timeout and back-off,
//! what `/status` shows, and hot reload.
//!
//! Each run is its own task, so a panic surfaces as a `JoinError` (reported
//! as a CRITICAL service check and in the status) and the check starts afresh;
//! a slow server only delays its own check. Nothing here blocks the
//! pipeline: telemetry leaves through the sink callback, which must not block
//! either (`pipeline::PipelineHandle::send` does not).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dynoscope_crds::dyno::IntegrationConfig;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::url;
use super::{service_check_of, service_check_tags, unresolved_tags, Check, CheckError};
use crate::clock::unix_now;
use crate::telemetry::{ServiceCheck, Telemetry};

/// Where checks send points and service checks.
type Sink = Arc<dyn Fn(Telemetry) + Send + Sync>;
/// How checks read variables (the process environment, or a map in tests).
type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Service check status values.
const OK: u8 = 0;
const CRITICAL: u8 = 2;

/// How checks are run, beyond each check's own interval and timeout.
#[derive(Clone, Debug)]
pub struct Options {
    /// After consecutive failures a check waits its interval × 2^failures, at
    /// most this long (or its interval, if longer). Default: 5 minutes.
    pub max_backoff: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// What `/status` shows of one check: the API crate's model, kept by the check's task.
pub use dynoscope_crds::sidecar_status::CheckStatus;

/// What a [`ChecksHandle::reconfigure`] did, by check name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// New checks, started.
    pub added: Vec<String>,
    /// Checks no longer configured, stopped.
    pub removed: Vec<String>,
    /// Checks whose settings changed, restarted.
    pub restarted: Vec<String>,
    /// Checks left running as they were.
    pub unchanged: Vec<String>,
}

/// The running checks. Dropping it stops them.
pub struct ChecksHandle {
    shared: Shared,
    running: Mutex<BTreeMap<String, Running>>,
}

impl std::fmt::Debug for ChecksHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChecksHandle")
            .field("checks", &self.status())
            .finish()
    }
}

#[derive(Clone)]
struct Shared {
    env: Env,
    sink: Sink,
    options: Options,
    /// The runtime the checks run on, so `reconfigure` works from any thread.
    runtime: Handle,
}

struct Running {
    config: IntegrationConfig,
    /// What `config` resolved to when the check started: a `conf.d` edit or a
    /// changed variable restarts the check even though `config` is the same.
    target: Result<url::Target, url::TargetError>,
    status: Arc<Mutex<CheckStatus>>,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts `configs` with default [`Options`]. Must be called within a Tokio runtime.
pub fn spawn(
    configs: &[IntegrationConfig],
    env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    sink: impl Fn(Telemetry) + Send + Sync + 'static,
) -> ChecksHandle {
    spawn_with(Options::default(), configs, env, sink)
}

/// Starts `configs`. Must be called within a Tokio runtime.
pub fn spawn_with(
    options: Options,
    configs: &[IntegrationConfig],
    env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    sink: impl Fn(Telemetry) + Send + Sync + 'static,
) -> ChecksHandle {
    let handle = ChecksHandle {
        shared: Shared {
            env: Arc::new(env),
            sink: Arc::new(sink),
            options,
            runtime: Handle::current(),
        },
        running: Mutex::new(BTreeMap::new()),
    };
    handle.reconfigure(configs);
    handle
}

impl ChecksHandle {
    /// Applies a new set of checks: starts new ones, stops removed ones,
    /// restarts changed ones, and leaves the others running undisturbed.
    pub fn reconfigure(&self, configs: &[IntegrationConfig]) -> Reconfigured {
        let mut report = Reconfigured::default();
        let mut running = lock(&self.running);
        let mut wanted: BTreeMap<&str, &IntegrationConfig> = BTreeMap::new();
        for config in configs {
            if wanted.insert(&config.name, config).is_some() {
                tracing::warn!(check = %config.name, "two integrations share a name; the last one runs");
            }
        }
        let names: Vec<String> = running.keys().cloned().collect();
        for name in names {
            if !wanted.contains_key(name.as_str()) {
                running.remove(&name);
                report.removed.push(name);
            }
        }
        for (name, config) in wanted {
            match running.get(name) {
                Some(current)
                    if current.config == *config
                        && current.target == url::resolve(config, &*self.shared.env) =>
                {
                    report.unchanged.push(name.to_owned());
                    continue;
                }
                Some(_) => report.restarted.push(name.to_owned()),
                None => report.added.push(name.to_owned()),
            }
            running.insert(name.to_owned(), self.start(config.clone()));
        }
        if !(report.added.is_empty() && report.removed.is_empty() && report.restarted.is_empty()) {
            tracing::info!(
                added = ?report.added,
                removed = ?report.removed,
                restarted = ?report.restarted,
                "integration checks reconfigured"
            );
        }
        report
    }

    /// Every check's status, by name.
    pub fn status(&self) -> Vec<CheckStatus> {
        lock(&self.running)
            .values()
            .map(|running| lock(&running.status).clone())
            .collect()
    }

    /// Stops every check.
    pub fn shutdown(&self) {
        lock(&self.running).clear();
    }

    fn start(&self, config: IntegrationConfig) -> Running {
        let status = Arc::new(Mutex::new(CheckStatus {
            name: config.name.clone(),
            kind: format!("{:?}", config.type_).to_lowercase(),
            ..CheckStatus::default()
        }));
        let task = self.shared.runtime.spawn(supervise(
            config.clone(),
            self.shared.clone(),
            Arc::clone(&status),
        ));
        Running {
            target: url::resolve(&config, &*self.shared.env),
            config,
            status,
            task,
        }
    }
}

/// Aborts the run task when the supervisor is stopped mid-run.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The life of one check: resolve, run, report, wait; forever.
async fn supervise(config: IntegrationConfig, shared: Shared, status: Arc<Mutex<CheckStatus>>) {
    let interval = config.interval.get().max(Duration::from_millis(10));
    let timeout = config.timeout.get();
    let mut check: Option<Check> = None;
    let mut secret: Option<String> = None;
    loop {
        let started = Instant::now();
        let (instances, results, service_check) = match &check {
            Some(_) => run_once(&mut check, timeout, &config.tags, &shared).await,
            None => match url::resolve(&config, &*shared.env) {
                Ok(target) => {
                    secret = target.password().map(|s| s.expose().to_owned());
                    lock(&status).target = Some(target.to_string());
                    check = Some(Check::new(target, &config));
                    run_once(&mut check, timeout, &config.tags, &shared).await
                }
                Err(error) => (
                    vec![unresolved_tags(&config)],
                    vec![Err(CheckError::from(error))],
                    service_check_of(&config),
                ),
            },
        };

        let timestamp = unix_now();
        let checks: Vec<ServiceCheck> = instances
            .into_iter()
            .zip(results)
            .map(|(tags, result)| {
                let message = result
                    .err()
                    .map(|error| scrub(&error.to_string(), secret.as_deref()));
                ServiceCheck {
                    name: service_check.to_owned(),
                    status: if message.is_some() { CRITICAL } else { OK },
                    timestamp,
                    hostname: None,
                    message,
                    tags: service_check_tags(&config, with_extra(tags, &config.tags)),
                    origin: None,
                }
            })
            .collect();
        let errors: Vec<&str> = checks.iter().filter_map(|c| c.message.as_deref()).collect();

        // The status first, so whoever sees the service check sees the status that goes with it.
        let wait = {
            let mut status = lock(&status);
            status.runs += 1;
            status.last_run = Some(timestamp);
            status.last_duration_ms = Some(started.elapsed().as_millis() as u64);
            if errors.is_empty() {
                if status.consecutive_failures > 0 {
                    tracing::info!(check = %config.name, "integration check recovered");
                }
                status.consecutive_failures = 0;
                status.last_success = Some(timestamp);
                status.last_error = None;
            } else {
                let error = errors.join("; ");
                if status.consecutive_failures == 0 {
                    tracing::warn!(check = %config.name, %error, "integration check failed");
                }
                status.failures += 1;
                status.consecutive_failures = status.consecutive_failures.saturating_add(1);
                status.last_error = Some(error);
            }
            let wait = backoff(
                interval,
                status.consecutive_failures,
                shared.options.max_backoff,
            );
            status.next_run_in_ms = Some(wait.as_millis() as u64);
            wait
        };
        for check in checks {
            (shared.sink)(Telemetry::ServiceCheck(check));
        }
        tokio::time::sleep(wait.saturating_sub(started.elapsed().min(interval))).await;
    }
}

/// One run of `check` in its own task, under `timeout`; sends its points.
///
/// Returns each instance's tags and result, and the service check's name. A
/// panic leaves `check` empty so the next run starts from the target again.
async fn run_once(
    check: &mut Option<Check>,
    timeout: Duration,
    extra_tags: &[String],
    shared: &Shared,
) -> (Vec<Vec<String>>, Vec<Result<(), CheckError>>, &'static str) {
    let Some(mut current) = check.take() else {
        return (Vec::new(), Vec::new(), "");
    };
    let instances = current.instances();
    let service_check = current.service_check();
    let task = AbortOnDrop(tokio::spawn(async move {
        let mut points = Vec::new();
        let results = match tokio::time::timeout(timeout, current.run(&mut points)).await {
            Ok(results) => results,
            Err(_) => {
                current.reset();
                let count = current.instances().len();
                (0..count)
                    .map(|_| Err(CheckError::Timeout(timeout)))
                    .collect()
            }
        };
        (current, points, results)
    }));
    let mut task = task;
    let results = match (&mut task.0).await {
        Ok((current, mut points, results)) => {
            *check = Some(current);
            if !extra_tags.is_empty() {
                for point in &mut points {
                    point.tags = with_extra(std::mem::take(&mut point.tags), extra_tags);
                }
            }
            if !points.is_empty() {
                (shared.sink)(Telemetry::Points(points));
            }
            results
        }
        Err(error) => {
            let reason = if error.is_panic() {
                panic_message(error.into_panic())
            } else {
                "cancelled".to_owned()
            };
            tracing::error!(%reason, "an integration check panicked");
            instances
                .iter()
                .map(|_| Err(CheckError::Panicked(reason.clone())))
                .collect()
        }
    };
    (instances, results, service_check)
}

/// `tags` plus the check's own (a `conf.d` instance's `tags:`), without duplicates.
fn with_extra(mut tags: Vec<String>, extra: &[String]) -> Vec<String> {
    for tag in extra {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    tags
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// The wait before the next run: the interval, doubled per consecutive failure, capped.
fn backoff(interval: Duration, failures: u32, max: Duration) -> Duration {
    dynoscope_backoff::Backoff::new(interval, max.max(interval)).delay(failures)
}

/// Replaces the password, should a server or library echo it, with `***`.
fn scrub(message: &str, secret: Option<&str>) -> String {
    match secret {
        // Shorter ones would blank out ordinary words of the message.
        Some(secret) if secret.len() >= 4 => message.replace(secret, "***"),
        _ => message.to_owned(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data; keep serving it.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let second = Duration::from_secs(1);
        let cap = Duration::from_secs(300);
        assert_eq!(backoff(second, 0, cap), second);
        assert_eq!(backoff(second, 1, cap), 2 * second);
        assert_eq!(backoff(second, 3, cap), 8 * second);
        assert_eq!(backoff(second, 9, cap), cap);
        assert_eq!(backoff(second, u32::MAX, cap), cap);
        // An interval longer than the cap is kept.
        let hour = Duration::from_secs(3600);
        assert_eq!(backoff(hour, 2, cap), hour);
    }

    #[test]
    fn scrub_hides_an_echoed_password() {
        assert_eq!(scrub("bad pw hunter22!", Some("hunter22")), "bad pw ***!");
        assert_eq!(scrub("a b c", Some("a")), "a b c");
        assert_eq!(scrub("x", None), "x");
    }
}
