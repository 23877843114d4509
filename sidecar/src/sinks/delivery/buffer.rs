//! The memory of a sink's buffer: one queue per endpoint, a budget per kind
//! of data, and which entry goes when the budget is full.
//!
//! Every kind the sink carries has a share of the memory budget
//! ([`DeliveryConfig::shares`], spread over the kinds the sink's endpoints
//! carry). A kind may use free room beyond its share. When the budget is
//! full, room is made by evicting, oldest first:
//! - the new entry's own kind, when it is at or over its share (a full kind
//!   drops its own oldest data);
//! - otherwise the kind furthest over its share (it borrowed that room and
//!   gives it back).
//!
//! So a kind within its share never loses data to another: a span flood
//! cannot push out metric points. Evicted entries are dropped, or handed to
//! the disk buffer when the sink has one (see `disk.rs`).

use std::collections::VecDeque;

use super::{DeliveryConfig, Endpoint, Entry, ItemKind, Queued, Target, KINDS};

/// Queued, in-flight and spilling entries of one sink.
#[derive(Debug, Default)]
pub(super) struct Buffer {
    /// Per endpoint: its entries, oldest first.
    pub(super) queues: Vec<VecDeque<Queued>>,
    /// Per endpoint: the cost of its queued entries.
    pub(super) queue_bytes: Vec<u64>,
    /// Per endpoint: its kind.
    kinds: Vec<ItemKind>,
    /// The memory budget.
    pub(super) capacity: u64,
    /// Per kind: its share of the budget.
    pub(super) shares: [u64; KINDS],
    /// Per kind: the memory its queued and in-flight entries hold.
    pub(super) kind_bytes: [u64; KINDS],
    pub(super) queued_bytes: u64,
    pub(super) in_flight_bytes: u64,
    pub(super) next_seq: u64,
    /// Items queued or in flight, by [`ItemKind`].
    pub(super) pending: [u64; KINDS],
    /// Entries of the batch in flight, until it is done: a shutdown with a
    /// disk buffer writes them there if they were not delivered.
    pub(super) in_flight: Vec<(usize, Queued)>,
    /// Evicted entries on their way to the disk buffer, oldest first.
    pub(super) spill: VecDeque<(usize, Queued)>,
    /// The memory the spill queue holds, within [`Buffer::spill_capacity`].
    pub(super) spill_bytes: u64,
    /// Per kind: the memory of its entries in the spill queue.
    pub(super) spill_kind_bytes: [u64; KINDS],
    /// Per endpoint: entries of it are being written to disk now, so its
    /// newer entries wait (delivery stays in order).
    pub(super) spilling: Vec<bool>,
}

/// What making room for one entry came to.
pub(super) struct Admission {
    /// The entry fits now.
    pub(super) fits: bool,
    /// Entries evicted to make room, oldest first, with their endpoint.
    pub(super) evicted: Vec<(usize, Queued)>,
}

impl Buffer {
    pub(super) fn new(endpoints: &[Endpoint], config: &DeliveryConfig) -> Buffer {
        let kinds: Vec<ItemKind> = endpoints.iter().map(|e| e.kind).collect();
        Buffer {
            queues: endpoints.iter().map(|_| VecDeque::new()).collect(),
            queue_bytes: vec![0; endpoints.len()],
            spilling: vec![false; endpoints.len()],
            shares: shares(&kinds, config),
            kinds,
            capacity: config.buffer_bytes,
            ..Buffer::default()
        }
    }

    /// The memory the spill queue may hold beside the budget: half of it
    /// (one pipeline write can evict a burst before the spill job runs).
    pub(super) fn spill_capacity(&self) -> u64 {
        self.capacity / 2
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queued_bytes == 0
            && self.in_flight_bytes == 0
            && self.spill.is_empty()
            && self.queues.iter().all(VecDeque::is_empty)
    }

    /// Evicts what must go for an entry of `kind` costing `size` to fit.
    pub(super) fn admit(&mut self, kind: ItemKind, size: u64) -> Admission {
        let mut evicted = Vec::new();
        // An entry that cannot fit beside the batch in flight evicts nothing.
        if self.in_flight_bytes + size > self.capacity {
            return Admission {
                fits: false,
                evicted,
            };
        }
        while self.queued_bytes + self.in_flight_bytes + size > self.capacity {
            let Some(index) = self.victim(kind, size) else {
                break;
            };
            if let Some(old) = self.queues[index].pop_front() {
                self.unqueue(index, &old);
                evicted.push((index, old));
            }
        }
        Admission {
            fits: self.queued_bytes + self.in_flight_bytes + size <= self.capacity,
            evicted,
        }
    }

    /// The endpoint whose oldest entry goes next (see the module's rules).
    fn victim(&self, kind: ItemKind, size: u64) -> Option<usize> {
        let k = kind.index();
        let own_full = self.kind_bytes[k] + size > self.shares[k];
        if own_full {
            if let Some(index) = self.oldest_of(|other| other == kind) {
                return Some(index);
            }
        }
        // The kind furthest over its share gives back what it borrowed.
        let borrower = ItemKind::ALL
            .into_iter()
            .filter(|other| *other != kind || own_full)
            .filter(|other| self.kind_bytes[other.index()] > self.shares[other.index()])
            .filter(|other| self.oldest_of(|k| k == *other).is_some())
            .max_by_key(|other| self.kind_bytes[other.index()] - self.shares[other.index()])?;
        self.oldest_of(|k| k == borrower)
    }

    /// The endpoint, among those of the kinds `pick` takes, with the oldest queued entry.
    fn oldest_of(&self, pick: impl Fn(ItemKind) -> bool) -> Option<usize> {
        self.queues
            .iter()
            .enumerate()
            .filter(|(i, _)| pick(self.kinds[*i]))
            .filter_map(|(i, q)| q.front().map(|old| (old.seq, i)))
            .min()
            .map(|(_, i)| i)
    }

    /// Queues an entry that [`Buffer::admit`] made room for.
    pub(super) fn enqueue(&mut self, index: usize, entry: Entry, target: Option<Target>, at: i64) {
        let queued = Queued {
            seq: self.next_seq,
            at,
            entry,
            target,
        };
        self.next_seq += 1;
        let size = queued.cost();
        let kind = self.kinds[index].index();
        self.queued_bytes += size;
        self.queue_bytes[index] += size;
        self.kind_bytes[kind] += size;
        self.pending[kind] += queued.entry.items;
        self.queues[index].push_back(queued);
    }

    /// Accounts for `old` leaving endpoint `index`'s queue.
    pub(super) fn unqueue(&mut self, index: usize, old: &Queued) {
        let kind = self.kinds[index].index();
        self.queued_bytes -= old.cost();
        self.queue_bytes[index] -= old.cost();
        self.kind_bytes[kind] -= old.cost();
        self.pending[kind] -= old.entry.items;
    }

    /// Adds an evicted entry to the spill queue if it has room; gives it back otherwise.
    pub(super) fn try_spill(&mut self, index: usize, old: Queued) -> Option<Queued> {
        let size = old.cost();
        if old.target.is_some() || self.spill_bytes + size > self.spill_capacity() {
            return Some(old);
        }
        self.spill_bytes += size;
        self.spill_kind_bytes[self.kinds[index].index()] += size;
        self.spill.push_back((index, old));
        None
    }

    /// Accounts for entries leaving the spill queue (written, or taken for a batch).
    pub(super) fn unspill(&mut self, index: usize, old: &Queued) {
        self.spill_bytes -= old.cost();
        self.spill_kind_bytes[self.kinds[index].index()] -= old.cost();
    }

    /// The unix seconds of the oldest entry of `kind` held in memory; 0: none.
    pub(super) fn oldest_at(&self, kind: ItemKind) -> i64 {
        let queued = self
            .queues
            .iter()
            .enumerate()
            .filter(|(i, _)| self.kinds[*i] == kind)
            .filter_map(|(_, q)| q.front().map(|q| q.at));
        let others = self
            .spill
            .iter()
            .chain(&self.in_flight)
            .filter(|(i, _)| self.kinds[*i] == kind)
            .map(|(_, q)| q.at);
        queued.chain(others).min().unwrap_or(0)
    }

    /// The kind of endpoint `index`.
    pub(super) fn kind(&self, index: usize) -> ItemKind {
        self.kinds[index]
    }
}

/// Each kind's share of the budget: the configured shares of the kinds the
/// endpoints carry, scaled to fill the whole budget.
fn shares(kinds: &[ItemKind], config: &DeliveryConfig) -> [u64; KINDS] {
    let carried = |kind: ItemKind| kinds.contains(&kind);
    let total: u64 = ItemKind::ALL
        .into_iter()
        .filter(|k| carried(*k))
        .map(|k| u64::from(config.shares[k.index()]))
        .sum();
    let mut out = [0; KINDS];
    for kind in ItemKind::ALL.into_iter().filter(|k| carried(*k)) {
        out[kind.index()] = (config.buffer_bytes * u64::from(config.shares[kind.index()]))
            .checked_div(total)
            .unwrap_or(config.buffer_bytes / kinds.len().max(1) as u64);
    }
    out
}

/// Frames `entries` as one request body of `endpoint`.
pub(super) fn frame<'a>(endpoint: &Endpoint, entries: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut raw = endpoint.prefix.clone();
    for (i, bytes) in entries.enumerate() {
        if i > 0 {
            raw.extend_from_slice(endpoint.separator);
        }
        raw.extend_from_slice(bytes);
    }
    raw.extend_from_slice(endpoint.suffix);
    raw
}
