//! `watch`: reconcile on start, then on every change of the manifest directory, debounced.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};

use crate::files::{FileReconciler, Report};
use crate::source::SourceError;

/// How long the directory must be quiet before a reconcile: editors write in
/// several steps (truncate, write, rename), and one reconcile should see the result.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Errors of the watch loop.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The watcher could not start.
    #[error("cannot watch {path}: {source}")]
    Notify {
        /// The directory.
        path: String,
        /// The watcher's error.
        source: notify::Error,
    },
    /// The manifest directory went away.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Whether `event` may have changed a file's content. A reconcile's own
/// reads of the manifests arrive as access events (open, close after reading);
/// counting them as changes would make every reconcile schedule the next one.
pub fn is_change(event: &notify::Event) -> bool {
    match event.kind {
        EventKind::Access(kind) => kind == AccessKind::Close(AccessMode::Write),
        _ => true,
    }
}

/// Logs what a reconcile did.
pub fn log_report(report: &Report) {
    for path in &report.written {
        tracing::info!("wrote {}", path.display());
    }
    for path in &report.removed {
        tracing::info!("removed {}", path.display());
    }
    for error in &report.errors {
        tracing::error!("{error}");
    }
}

/// Reconciles now and after every change until `stop` yields a message (or is dropped).
pub fn run(
    reconciler: &mut FileReconciler,
    manifests: &Path,
    stop: &mpsc::Receiver<()>,
) -> Result<(), WatchError> {
    let (tx, events) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Only the fact that something changed matters: everything is re-read.
        if event.is_ok_and(|e| is_change(&e)) {
            let _ = tx.send(());
        }
    })
    .map_err(|source| WatchError::Notify {
        path: manifests.display().to_string(),
        source,
    })?;
    watcher
        // A file is watched through its directory, so editors' atomic renames are seen.
        .watch(
            crate::source::dir_of(manifests),
            RecursiveMode::NonRecursive,
        )
        .map_err(|source| WatchError::Notify {
            path: manifests.display().to_string(),
            source,
        })?;
    log_report(&reconciler.reconcile()?);
    tracing::info!("watching {}", manifests.display());
    loop {
        match stop.try_recv() {
            Ok(()) | Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
            Err(mpsc::TryRecvError::Empty) => {}
        }
        match events.recv_timeout(Duration::from_millis(200)) {
            Ok(_) => {
                while events.recv_timeout(DEBOUNCE).is_ok() {}
                match reconciler.reconcile() {
                    Ok(report) => log_report(&report),
                    Err(err) => tracing::error!("{err}"),
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, ModifyKind};
    use notify::{Event, EventKind};

    use super::is_change;

    #[test]
    fn reads_are_not_changes_and_writes_renames_and_removals_are() {
        let kinds = [
            (EventKind::Access(AccessKind::Open(AccessMode::Any)), false),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                false,
            ),
            (EventKind::Access(AccessKind::Read), false),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                true,
            ),
            (EventKind::Modify(ModifyKind::Data(DataChange::Any)), true),
            (EventKind::Create(CreateKind::File), true),
            (EventKind::Remove(notify::event::RemoveKind::File), true),
        ];
        for (kind, expected) in kinds {
            assert_eq!(is_change(&Event::new(kind)), expected, "{kind:?}");
        }
    }
}
