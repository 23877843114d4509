//! Cumulative → delta, per series, in a state bounded by bytes.
//!
//! An OpenTelemetry SDK's default temporality is cumulative: each export
//! carries the total since the series started (`start_time_unix_nano`).
//! Datadog counts and sketches are deltas, so each series' last total is
//! kept and the next one is sent as the difference, as the Agent's OTLP
//! translator does:
//!
//! - the first point of a series is sent whole when the series started
//!   after the sidecar did (the Agent's `initial_cumulative_monotonic_value:
//!   auto`): the app started under the sidecar, so its total is all new;
//!   otherwise it only sets the baseline;
//! - a total that goes down, or a new start time, is a reset: the new total
//!   is sent as the delta (what was counted since the reset);
//! - a point no newer than the last one is dropped (a retry, out of order).
//!
//! Series are keyed by a 64-bit hash of name, kind and tags. The state holds
//! at most [`MAX_STATE_BYTES`]; past it, series unseen for [`STALE_NANOS`]
//! are forgotten, and if that is not enough a new series' point is dropped
//! and counted (the series keeps being dropped until room frees).

use std::collections::HashMap;
use std::hash::BuildHasher;

/// Bytes the state may hold. Default: 4 MiB (~40 000 counter series).
pub const MAX_STATE_BYTES: usize = 4 << 20;
/// A series unseen this long may be forgotten when the state is full: 15 minutes.
pub const STALE_NANOS: u64 = 15 * 60 * 1_000_000_000;
/// What an entry costs beyond its values: the key, the times, the map's slot.
const ENTRY_OVERHEAD: usize = 64;

/// The last total of a series.
#[derive(Clone, Debug, PartialEq)]
pub enum Total {
    /// A sum's total.
    Number(f64),
    /// Bucket counts with their count and sum.
    Buckets {
        /// Scale of an exponential histogram; 0 for explicit bounds.
        scale: i32,
        /// `(bucket key, count)`, sorted by key: see [`bucket_key`].
        counts: Vec<(i64, u64)>,
        /// Total count.
        count: u64,
        /// Total sum.
        sum: f64,
    },
}

/// The key of a bucket: its part (0 explicit or positive, 1 negative, 2
/// zero) and its index, so that one sorted list holds them all.
pub fn bucket_key(part: u8, index: i32) -> i64 {
    (i64::from(part) << 33) + i64::from(index)
}

impl Total {
    fn bytes(&self) -> usize {
        match self {
            Total::Number(_) => 0,
            Total::Buckets { counts, .. } => counts.len() * size_of::<(i64, u64)>(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    start: u64,
    time: u64,
    total: Total,
}

/// What to do with a cumulative point.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Send the difference from this previous total; `None`: send the
    /// point whole (first point of a new series, or a reset). `start` is
    /// where the delta begins (nanoseconds).
    Send {
        /// The previous total, to subtract.
        previous: Option<Total>,
        /// Start of the delta's interval.
        start: u64,
    },
    /// Nothing to send: the baseline of an older series, or a stale point.
    Skip,
    /// The state is full: not sent, counted.
    Full,
}

/// Every series' last total.
#[derive(Debug)]
pub struct DeltaState {
    series: HashMap<u64, Entry>,
    bytes: usize,
    limit: usize,
    /// Unix nanoseconds when the sidecar started: series started after it are new.
    started: u64,
    hasher: foldhash::fast::FixedState,
}

impl DeltaState {
    /// An empty state of at most `limit` bytes, for a sidecar started at `started` (unix ns).
    pub fn new(limit: usize, started: u64) -> Self {
        DeltaState {
            series: HashMap::new(),
            bytes: 0,
            limit,
            started,
            hasher: foldhash::fast::FixedState::with_seed(0x0d17_05c0),
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Series held now.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The key of a series.
    pub fn key(&self, kind: &str, name: &str, tags: &[String]) -> u64 {
        self.hasher.hash_one((kind, name, tags))
    }

    /// Records `total` at `time` for series `key` (started at `start`) and says what to send.
    pub fn step(&mut self, key: u64, start: u64, time: u64, total: Total) -> Step {
        let cost = ENTRY_OVERHEAD + total.bytes();
        match self.series.get_mut(&key) {
            Some(entry) => {
                if time <= entry.time {
                    return Step::Skip;
                }
                let reset = (start != 0 && start != entry.start) || went_down(&entry.total, &total);
                self.bytes = self.bytes + total.bytes() - entry.total.bytes();
                let previous = std::mem::replace(&mut entry.total, total);
                let from = entry.time;
                entry.time = time;
                entry.start = start;
                if reset {
                    Step::Send {
                        previous: None,
                        start: if start != 0 { start } else { from },
                    }
                } else {
                    Step::Send {
                        previous: Some(previous),
                        start: from,
                    }
                }
            }
            None => {
                if self.bytes + cost > self.limit {
                    self.expire(time);
                    if self.bytes + cost > self.limit {
                        return Step::Full;
                    }
                }
                self.bytes += cost;
                self.series.insert(key, Entry { start, time, total });
                if start != 0 && start >= self.started {
                    Step::Send {
                        previous: None,
                        start,
                    }
                } else {
                    Step::Skip
                }
            }
        }
    }

    /// Forgets the series unseen for [`STALE_NANOS`] before `now`.
    fn expire(&mut self, now: u64) {
        let mut freed = 0;
        self.series.retain(|_, entry| {
            let keep = now.saturating_sub(entry.time) < STALE_NANOS;
            if !keep {
                freed += ENTRY_OVERHEAD + entry.total.bytes();
            }
            keep
        });
        self.bytes -= freed;
    }
}

fn went_down(before: &Total, now: &Total) -> bool {
    match (before, now) {
        (Total::Number(a), Total::Number(b)) => b < a,
        (
            Total::Buckets {
                scale: scale_a,
                counts: counts_a,
                count: a,
                ..
            },
            Total::Buckets {
                scale: scale_b,
                counts: counts_b,
                count: b,
                ..
            },
        ) => {
            b < a
                || scale_a != scale_b
                || counts_a.iter().any(|(key, n)| {
                    counts_b
                        .binary_search_by_key(key, |(k, _)| *k)
                        .ok()
                        .and_then(|i| counts_b.get(i))
                        .is_none_or(|(_, m)| m < n)
                })
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000;

    #[test]
    fn a_new_series_started_after_the_sidecar_is_sent_whole_then_as_deltas() {
        let mut state = DeltaState::new(MAX_STATE_BYTES, S);
        let key = state.key("sum", "jobs", &["a:b".to_owned()]);
        let first = state.step(key, S + 1, S + 10, Total::Number(7.0));
        assert_eq!(
            first,
            Step::Send {
                previous: None,
                start: S + 1
            }
        );
        let second = state.step(key, S + 1, S + 20, Total::Number(10.0));
        assert_eq!(
            second,
            Step::Send {
                previous: Some(Total::Number(7.0)),
                start: S + 10
            }
        );
        // A retry of the same point is not counted twice.
        assert_eq!(
            state.step(key, S + 1, S + 20, Total::Number(10.0)),
            Step::Skip
        );
    }

    #[test]
    fn an_older_series_sets_a_baseline_and_a_reset_is_sent_whole() {
        let mut state = DeltaState::new(MAX_STATE_BYTES, S);
        let key = state.key("sum", "jobs", &[]);
        assert_eq!(
            state.step(key, S - 500, S + 10, Total::Number(100.0)),
            Step::Skip
        );
        // The app restarted: a lower total with a new start.
        let reset = state.step(key, S + 15, S + 20, Total::Number(3.0));
        assert_eq!(
            reset,
            Step::Send {
                previous: None,
                start: S + 15
            }
        );
    }

    #[test]
    fn the_state_is_bounded_in_bytes_and_stale_series_make_room() {
        let mut state = DeltaState::new(3 * ENTRY_OVERHEAD, S);
        for i in 0..3 {
            let key = state.key("sum", &format!("m{i}"), &[]);
            assert_ne!(
                state.step(key, S + 1, S + 2, Total::Number(1.0)),
                Step::Full
            );
        }
        let key = state.key("sum", "m3", &[]);
        assert_eq!(
            state.step(key, S + 1, S + 3, Total::Number(1.0)),
            Step::Full
        );
        assert_eq!(state.bytes(), 3 * ENTRY_OVERHEAD);
        // Much later the old series are stale and make room.
        let later = S + 2 + STALE_NANOS;
        assert!(matches!(
            state.step(key, S + 1, later, Total::Number(1.0)),
            Step::Send { .. }
        ));
        assert_eq!(state.len(), 1);
    }
}
