//! The disk buffer of a network sink: what memory cannot hold, written to
//! append-only segment files and replayed in order when the endpoint takes
//! data again — also by the next sidecar started on the same directory.
//!
//! Layout: `<path>/<endpoint>/<id>.seg`, one directory per endpoint (so per
//! kind of data), segment ids increasing across the whole buffer (the lowest
//! is the oldest). A record is
//!
//! ```text
//! len u32 LE | crc32 u32 LE | items u64 LE | queued_at i64 LE | bytes
//! ```
//!
//! with `len` the length of what follows the checksum and the CRC-32 over it.
//! `<endpoint>/cursor` holds how far the first segment was delivered (`id
//! offset items`), rewritten after each delivered batch: a restart resends
//! at most the batch in flight (delivery is at least once).
//!
//! Bounds: at most `maxBytes` of segments; a write past it deletes the oldest
//! segment of any endpoint, whose undelivered items are counted as dropped.
//! A torn or corrupt record (a `kill -9` or a power loss mid-write) ends its
//! segment: the rest is skipped, counted in `corrupt_records`, and the file
//! cut there. Writes are not fsynced one by one (the page cache survives a
//! killed process); a shutdown syncs what it wrote.
//!
//! Why in-tree: Vector's disk buffer (`vector-buffers`) is part of Vector and
//! not published for other programs; the crates that are (`queue-file`,
//! `yaque`, `sled`) either lack per-record checksums, a byte bound with
//! oldest-first eviction across queues, or are far larger than the ~400
//! lines this needs.
//!
//! All of it runs off the async workers: the spill job and reads run on the
//! delivery runtime's blocking pool, the final spill in a flush, which runs
//! on a blocking thread.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, TryLockError, Weak};

use super::{Entry, ItemKind, KINDS};
use crate::stats::SinkStats;

/// A segment is closed for writing past this size.
const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

/// One sink's disk buffer; shared by the sinks a reload replaces and builds
/// on the same directory (see [`Disk::open`]).
#[derive(Debug)]
pub(in crate::sinks) struct Disk {
    pub(super) path: PathBuf,
    state: Mutex<State>,
    stats: Arc<SinkStats>,
}

#[derive(Debug, Default)]
struct State {
    /// Whether the directory was scanned.
    scanned: bool,
    max_bytes: u64,
    /// A segment is closed for writing past this size.
    segment_bytes: u64,
    next_id: u64,
    total_bytes: u64,
    logs: BTreeMap<String, Log>,
    /// Whether a drop past `max_bytes` was logged.
    drop_logged: bool,
}

#[derive(Debug, Default)]
struct Log {
    kind: Option<ItemKind>,
    segments: VecDeque<Segment>,
    /// Delivered bytes and items of the first segment.
    read_offset: u64,
    read_items: u64,
    /// A batch was read and is not committed yet.
    reading: bool,
    /// The last segment, open for appending.
    writer: Option<File>,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    id: u64,
    bytes: u64,
    items: u64,
    first_at: i64,
}

/// What a batch read from disk was, to commit it once delivered.
#[derive(Debug, Clone)]
pub(super) struct Mark {
    pub(super) endpoint: String,
    /// Records in the batch.
    pub(super) records: u64,
    segment: u64,
    end: u64,
    items: u64,
}

/// One record read back.
pub(super) struct Record {
    pub(super) entry: Entry,
    pub(super) at: i64,
}

impl Disk {
    /// The disk buffer at `path`: the one a live sink already has there, or a
    /// new one (scanned on first use, off the async workers).
    pub(in crate::sinks) fn open(path: &Path, max_bytes: u64, stats: Arc<SinkStats>) -> Arc<Disk> {
        type Open = Mutex<Vec<(PathBuf, Weak<Disk>)>>;
        static OPEN: OnceLock<Open> = OnceLock::new();
        let mut open = OPEN
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.retain(|(_, disk)| disk.strong_count() > 0);
        if let Some(disk) = open
            .iter()
            .filter(|(p, _)| p == path)
            .find_map(|(_, disk)| disk.upgrade())
        {
            disk.lock().max_bytes = max_bytes;
            return disk;
        }
        *stats
            .disk
            .path
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(path.display().to_string());
        stats.disk.capacity.set(max_bytes);
        let disk = Arc::new(Disk {
            path: path.to_owned(),
            state: Mutex::new(State {
                max_bytes,
                segment_bytes: SEGMENT_BYTES,
                ..State::default()
            }),
            stats,
        });
        open.push((path.to_owned(), Arc::downgrade(&disk)));
        disk
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state, scanned: blocks on the file system the first time.
    fn ready(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        if !state.scanned {
            state.scanned = true;
            if let Err(err) = self.scan(&mut state) {
                tracing::error!(
                    "disk buffer {}: cannot read it: {err}; it starts empty",
                    self.path.display()
                );
            }
            self.publish(&state);
        }
        state
    }

    /// Scans the directory (blocking); call from a blocking thread before the first use.
    pub(super) fn prepare(&self, endpoints: &[(&'static str, ItemKind)]) {
        let mut state = self.ready();
        for (name, kind) in endpoints {
            state.logs.entry((*name).to_owned()).or_default().kind = Some(*kind);
        }
        self.publish(&state);
    }

    /// Whether `endpoint` has records to replay; `None` while the buffer is busy.
    pub(super) fn has_unread(&self, endpoint: &str) -> Option<bool> {
        let state = match self.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        if !state.scanned {
            return None;
        }
        Some(state.logs.get(endpoint).is_some_and(|log| {
            !log.reading
                && log
                    .segments
                    .front()
                    .is_some_and(|s| s.bytes > log.read_offset || log.segments.len() > 1)
        }))
    }

    /// The lowest segment id with unread records of `endpoint`, to replay the oldest first.
    pub(super) fn first_segment(&self, endpoint: &str) -> Option<u64> {
        let state = self.state.try_lock().ok()?;
        state
            .logs
            .get(endpoint)
            .and_then(|log| log.segments.front())
            .map(|s| s.id)
    }

    /// Appends `records` (entries with their queue time) to `endpoint`'s log;
    /// returns how many were written. Failures are logged and counted by the caller.
    pub(super) fn write(
        &self,
        endpoint: &str,
        kind: ItemKind,
        records: &[(&Entry, i64)],
    ) -> io::Result<usize> {
        let mut state = self.ready();
        let mut written = 0;
        for (entry, at) in records {
            let len = HEADER + entry.bytes.len() as u64;
            self.make_room(&mut state, len);
            if state.total_bytes + len > state.max_bytes {
                break;
            }
            let id = {
                let (next, segment_bytes) = (state.next_id, state.segment_bytes);
                let log = state.logs.entry(endpoint.to_owned()).or_default();
                log.kind = Some(kind);
                let roll = log
                    .segments
                    .back()
                    .is_none_or(|s| s.bytes >= segment_bytes || log.writer.is_none());
                if roll {
                    None
                } else {
                    log.segments.back().map(|s| s.id)
                }
                .unwrap_or(next)
            };
            if id == state.next_id {
                state.next_id += 1;
                let dir = self.path.join(endpoint);
                fs::create_dir_all(&dir)?;
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(segment_path(&dir, id))?;
                let log = state.logs.entry(endpoint.to_owned()).or_default();
                log.writer = Some(file);
                log.segments.push_back(Segment {
                    id,
                    bytes: 0,
                    items: 0,
                    first_at: *at,
                });
            }
            let log = state.logs.entry(endpoint.to_owned()).or_default();
            let Some(file) = log.writer.as_mut() else {
                break;
            };
            file.write_all(&encode(entry, *at))?;
            if let Some(segment) = log.segments.back_mut() {
                segment.bytes += len;
                segment.items += entry.items;
            }
            state.total_bytes += len;
            written += 1;
        }
        self.publish(&state);
        Ok(written)
    }

    /// Deletes the oldest segments until `len` more bytes fit.
    fn make_room(&self, state: &mut State, len: u64) {
        while state.total_bytes + len > state.max_bytes {
            let oldest = state
                .logs
                .iter()
                .filter_map(|(name, log)| log.segments.front().map(|s| (s.id, name.clone())))
                .min();
            let Some((_, name)) = oldest else { return };
            let Some(log) = state.logs.get_mut(&name) else {
                return;
            };
            let Some(segment) = log.segments.pop_front() else {
                return;
            };
            let lost = segment.items - log.read_items;
            let freed = segment.bytes;
            log.read_offset = 0;
            log.read_items = 0;
            if log.segments.is_empty() {
                log.writer = None;
            }
            let kind = log.kind;
            let _ = fs::remove_file(segment_path(&self.path.join(&name), segment.id));
            state.total_bytes -= freed;
            if let Some(kind) = kind {
                kind.counter(&self.stats.dropped).add(lost);
            }
            if !state.drop_logged {
                state.drop_logged = true;
                tracing::warn!(
                    "disk buffer {}: full ({} bytes): dropping the oldest data on disk, starting with {lost} items of {name} (counted in /status)",
                    self.path.display(),
                    state.max_bytes
                );
            }
        }
    }

    /// Reads the next batch of `endpoint`: whole records up to `max_bytes`
    /// of entry bytes and `max_entries`, from its first segment.
    pub(super) fn read(
        &self,
        endpoint: &str,
        max_bytes: usize,
        max_entries: usize,
    ) -> Option<(Vec<Record>, Mark)> {
        let mut state = self.ready();
        let dir = self.path.join(endpoint);
        loop {
            let log = state.logs.get_mut(endpoint)?;
            if log.reading {
                return None;
            }
            let segment = *log.segments.front()?;
            let is_writer = log.segments.len() == 1 && log.writer.is_some();
            if log.read_offset >= segment.bytes {
                if is_writer {
                    return None;
                }
                // Fully delivered: gone.
                log.segments.pop_front();
                log.read_offset = 0;
                log.read_items = 0;
                let _ = fs::remove_file(segment_path(&dir, segment.id));
                state.total_bytes -= segment.bytes;
                continue;
            }
            let start = log.read_offset;
            let read = read_records(
                &segment_path(&dir, segment.id),
                start,
                segment.bytes,
                max_bytes,
                max_entries,
            );
            match read {
                Ok((records, end, _)) if !records.is_empty() => {
                    log.reading = true;
                    let items = records.iter().map(|r| r.entry.items).sum();
                    let mark = Mark {
                        endpoint: endpoint.to_owned(),
                        records: records.len() as u64,
                        segment: segment.id,
                        end,
                        items,
                    };
                    return Some((records, mark));
                }
                outcome => {
                    // Unreadable from here on: the rest of the segment is skipped.
                    self.stats.disk.corrupt_records.inc();
                    tracing::warn!(
                        "disk buffer {}: segment {} of {endpoint} is unreadable at byte {start} ({}); skipping the rest of it",
                        self.path.display(),
                        segment.id,
                        match outcome {
                            Err(err) | Ok((_, _, Some(err))) => err.to_string(),
                            Ok(_) => "no whole record".to_owned(),
                        },
                    );
                    log.read_offset = segment.bytes;
                    if let Some(kind) = log.kind {
                        kind.counter(&self.stats.dropped)
                            .add(segment.items - log.read_items);
                    }
                    log.read_items = segment.items;
                    if is_writer {
                        log.writer = None;
                    }
                }
            }
        }
    }

    /// A batch read with [`Disk::read`] is done (delivered or refused): it is not read again.
    pub(super) fn commit(&self, mark: &Mark) {
        let mut state = self.ready();
        let dir = self.path.join(&mark.endpoint);
        let Some(log) = state.logs.get_mut(&mark.endpoint) else {
            return;
        };
        log.reading = false;
        let Some(segment) = log.segments.front().copied() else {
            return;
        };
        if segment.id != mark.segment {
            // Dropped past maxBytes while in flight.
            return;
        }
        log.read_offset = mark.end;
        log.read_items += mark.items;
        let mut freed = 0;
        if log.read_offset >= segment.bytes {
            log.segments.pop_front();
            log.read_offset = 0;
            log.read_items = 0;
            if log.segments.is_empty() {
                log.writer = None;
            }
            let _ = fs::remove_file(segment_path(&dir, segment.id));
            freed = segment.bytes;
        }
        let cursor = match log.segments.front() {
            Some(first) => format!("{} {} {}\n", first.id, log.read_offset, log.read_items),
            None => String::new(),
        };
        let _ = fs::write(dir.join("cursor"), cursor);
        state.total_bytes -= freed;
        self.publish(&state);
    }

    /// A batch read with [`Disk::read`] was not delivered: it stays on disk for the next start.
    pub(super) fn release(&self, mark: &Mark) {
        if let Some(log) = self.lock().logs.get_mut(&mark.endpoint) {
            log.reading = false;
        }
    }

    /// Flushes what was written to the device (at shutdown).
    pub(super) fn sync(&self) {
        for log in self.lock().logs.values() {
            if let Some(file) = &log.writer {
                let _ = file.sync_data();
            }
        }
    }

    /// The bytes on disk by kind, and the oldest queue time by kind.
    fn by_kind(state: &State) -> ([u64; KINDS], [i64; KINDS]) {
        let mut bytes = [0; KINDS];
        let mut oldest = [0i64; KINDS];
        for log in state.logs.values() {
            let Some(kind) = log.kind else { continue };
            let held: u64 = log.segments.iter().map(|s| s.bytes).sum();
            bytes[kind.index()] += held.saturating_sub(log.read_offset);
            if let Some(first) = log.segments.front() {
                let slot = &mut oldest[kind.index()];
                if *slot == 0 || first.first_at < *slot {
                    *slot = first.first_at;
                }
            }
        }
        (bytes, oldest)
    }

    /// The oldest queue time on disk of `kind`; 0: none.
    pub(super) fn oldest_at(&self, kind: ItemKind) -> i64 {
        match self.state.try_lock() {
            Ok(state) => Self::by_kind(&state).1[kind.index()],
            Err(_) => 0,
        }
    }

    fn publish(&self, state: &State) {
        let (bytes, _) = Self::by_kind(state);
        for kind in ItemKind::ALL {
            self.stats.buffer_kinds.0[kind.index()]
                .disk_bytes
                .set(bytes[kind.index()]);
        }
        self.stats.disk.bytes.set(state.total_bytes);
    }

    /// Reads what a previous run left: segments, cursors; cuts torn tails.
    fn scan(&self, state: &mut State) -> io::Result<()> {
        fs::create_dir_all(&self.path)?;
        for dir in fs::read_dir(&self.path)? {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                continue;
            }
            let name = dir.file_name().to_string_lossy().into_owned();
            let mut ids: Vec<u64> = fs::read_dir(dir.path())?
                .filter_map(Result::ok)
                .filter_map(|f| {
                    let file = f.file_name().to_string_lossy().into_owned();
                    file.strip_suffix(".seg").and_then(|id| id.parse().ok())
                })
                .collect();
            ids.sort_unstable();
            let cursor = fs::read_to_string(dir.path().join("cursor")).unwrap_or_default();
            let cursor: Vec<u64> = cursor
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            let mut log = Log::default();
            for id in ids {
                let path = segment_path(&dir.path(), id);
                state.next_id = state.next_id.max(id + 1);
                if cursor.first().is_some_and(|&first| id < first) {
                    // Delivered before the last run stopped.
                    let _ = fs::remove_file(&path);
                    continue;
                }
                let (segment, torn) = scan_segment(&path, id)?;
                if torn {
                    self.stats.disk.corrupt_records.inc();
                    tracing::warn!(
                        "disk buffer {}: segment {id} of {name} ends in a torn or corrupt record (the sidecar was killed mid-write?); it is skipped and counted",
                        self.path.display()
                    );
                    OpenOptions::new()
                        .write(true)
                        .open(&path)?
                        .set_len(segment.bytes)?;
                }
                if segment.bytes == 0 {
                    let _ = fs::remove_file(&path);
                    continue;
                }
                if log.segments.is_empty() && cursor.first() == Some(&id) {
                    log.read_offset = cursor.get(1).copied().unwrap_or(0).min(segment.bytes);
                    log.read_items = cursor.get(2).copied().unwrap_or(0).min(segment.items);
                }
                state.total_bytes += segment.bytes;
                log.segments.push_back(segment);
            }
            if !log.segments.is_empty() {
                tracing::info!(
                    "disk buffer {}: {} bytes of {name} left by a previous run; delivering them first",
                    self.path.display(),
                    log.segments.iter().map(|s| s.bytes).sum::<u64>() - log.read_offset
                );
            }
            state.logs.insert(name, log);
        }
        Ok(())
    }
}

#[path = "disk/format.rs"]
mod format;
use format::{encode, read_records, scan_segment, segment_path, HEADER};

#[cfg(test)]
#[path = "disk/tests.rs"]
mod tests;
