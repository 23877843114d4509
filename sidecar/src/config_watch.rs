//! Hot reload: watch the config's files, debounce, parse, validate, diff, apply.
//!
//! The directory of each file is watched (not the file): an editor's or the operator's
//! atomic rename replaces the file's inode, and Kubernetes swaps the `..data` symlink of
//! a mounted ConfigMap. Events for the file's name or for `..`-prefixed names mark the
//! config dirty; after [`DEBOUNCE`] of quiet it is read again. A slow poll backs the
//! watcher up (a directory that appears later, a file system without inotify).
//!
//! A valid new config is published on the config channel, which every component
//! watches and compares against its own part; an invalid one is reported and the last
//! good config stays.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dynoscope_crds::DynoConfig;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::config::{self, ConfigSource, Contents};
use crate::stats::Stats;
use crate::status::StatusBoard;

/// Quiet time after a file event before the config is read.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// Time between reads when no event came.
pub const POLL: Duration = Duration::from_secs(2);

/// The sender side of the config channel: `None` while no valid config was ever read.
pub type ConfigBus = watch::Sender<Option<Arc<DynoConfig>>>;

/// Reads the source and publishes what changed. Clones share what was last read, so
/// the watcher restarted after a panic (or started after boot) does not report again.
#[derive(Clone, Debug)]
pub struct Reloader {
    source: ConfigSource,
    /// What the files held at the last read, so an unchanged file is not parsed again
    /// and a broken one is reported once.
    last: Arc<Mutex<Option<Contents>>>,
    /// Whether the last read failed (unreadable, invalid), so that a read of the running
    /// config again is reported once as a recovery and clears the error in `/status`.
    failing: Arc<AtomicBool>,
    bus: ConfigBus,
    status: Arc<StatusBoard>,
    stats: Arc<Stats>,
}

impl Reloader {
    /// A reloader publishing on `bus`.
    pub fn new(
        source: ConfigSource,
        bus: ConfigBus,
        status: Arc<StatusBoard>,
        stats: Arc<Stats>,
    ) -> Self {
        Reloader {
            source,
            last: Arc::default(),
            failing: Arc::default(),
            bus,
            status,
            stats,
        }
    }

    /// The first read, at boot. An invalid config is reported; the app runs anyway.
    pub fn boot(&self) {
        let (contents, parsed) = self.source.load();
        *self.last() = Some(contents);
        match parsed {
            None => tracing::info!(
                "no config given (--config or --manifest): running the app without observability"
            ),
            Some(Ok(config)) => {
                tracing::info!(
                    "config {} loaded from {}",
                    config.config_hash,
                    self.source.describe()
                );
                self.publish(config);
            }
            Some(Err(err)) => {
                tracing::error!(
                    "{err}\n  observability is off; the app runs anyway. Fix the config: the sidecar watches it and applies it once it is valid."
                );
                self.failing.store(true, Ordering::Relaxed);
                self.status.set_reload_failed(&err);
            }
        }
    }

    /// Reads the source again and applies it if it changed.
    pub fn check(&self) {
        let contents = self.source.read();
        if self.last().as_ref() == Some(&contents) {
            return;
        }
        let parsed = self.source.parse(&contents);
        *self.last() = Some(contents);
        let Some(parsed) = parsed else { return };
        let running = self.bus.borrow().clone();
        let running_hash = running.as_ref().map(|c| c.config_hash.clone());
        match parsed {
            Ok(config) if Some(&config.config_hash) == running_hash.as_ref() => {
                // The running config is back (a file restored, a transient read error gone).
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        "config {} readable again from {}: the error is cleared",
                        config.config_hash,
                        self.source.describe()
                    );
                    self.status.set_reloaded(Vec::new());
                    self.status.set_config(Some(&config));
                }
            }
            Ok(config) => {
                self.failing.store(false, Ordering::Relaxed);
                let changed = config::diff(running.as_deref(), Some(&config));
                tracing::info!(
                    "config reloaded: {} -> {} (changed: {})",
                    running_hash.as_deref().unwrap_or("none"),
                    config.config_hash,
                    changed.join(", ")
                );
                self.stats.reloads.ok.inc();
                self.status.set_reloaded(changed);
                self.publish(config);
            }
            Err(err) => {
                self.failing.store(true, Ordering::Relaxed);
                self.stats.reloads.failed.inc();
                match &running_hash {
                    Some(hash) => tracing::error!("{err}\n  keeping the running config {hash}"),
                    None => {
                        tracing::error!("{err}\n  observability stays off; the app keeps running")
                    }
                }
                self.status.set_reload_failed(&err);
            }
        }
    }

    fn last(&self) -> MutexGuard<'_, Option<Contents>> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, config: DynoConfig) {
        self.status.set_config(Some(&config));
        self.bus.send_replace(Some(Arc::new(config)));
    }
}

/// Watches until the task is dropped.
pub async fn watch(reloader: Reloader) {
    if reloader.source == ConfigSource::None {
        return;
    }
    let (dirty_tx, mut dirty) = mpsc::channel::<()>(1);
    let mut watcher = start(&reloader.source, dirty_tx.clone(), true);
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await;
    loop {
        tokio::select! {
            _ = dirty.recv() => {
                tokio::time::sleep(DEBOUNCE).await;
                while dirty.try_recv().is_ok() {}
                reloader.check();
            }
            _ = poll.tick() => {
                if watcher.is_none() {
                    // Said once at the start; retried quietly until the directory exists.
                    watcher = start(&reloader.source, dirty_tx.clone(), false);
                }
                reloader.check();
            }
        }
    }
}

/// Starts watching the directories of the source's files (and of their symlink
/// targets); `report`: log why it cannot.
fn start(
    source: &ConfigSource,
    dirty: mpsc::Sender<()>,
    report: bool,
) -> Option<RecommendedWatcher> {
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut names: BTreeSet<OsString> = BTreeSet::new();
    for file in source.files() {
        let resolved = std::fs::canonicalize(file).ok();
        for path in std::iter::once(file.to_owned()).chain(resolved) {
            if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
                dirs.insert(dir.to_owned());
                names.insert(name.to_owned());
            }
        }
    }
    let relevant = move |event: &notify::Event| {
        // Our own reads show up as access events.
        let access = matches!(event.kind, EventKind::Access(kind) if kind != notify::event::AccessKind::Close(notify::event::AccessMode::Write));
        !access
            && event.paths.iter().any(|path| {
                path.file_name().is_some_and(|name| {
                    names.contains(name) || name.to_string_lossy().starts_with("..")
                })
            })
    };
    let handler = move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if relevant(&event) {
                // Full means a read is already due.
                let _ = dirty.try_send(());
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(err) => {
            if report {
                tracing::warn!("cannot watch the config ({err}); polling it every {POLL:?}");
            }
            return None;
        }
    };
    for dir in &dirs {
        if let Err(err) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            if report {
                tracing::warn!(
                    "cannot watch {} ({err}); polling it every {POLL:?}",
                    dir.display()
                );
            }
            return None;
        }
    }
    Some(watcher)
}
