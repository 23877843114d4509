//! Hand-over between a replaced sink and its successor: the queued entries
//! leave the old buffer and join the new one, oldest first, within the new
//! buffer's limit.

use std::collections::VecDeque;

use super::{Delivery, ItemKind, Queued};

/// The queued, unsent entries of a replaced sink, on their way to its successor.
#[derive(Debug)]
pub struct Backlog {
    /// Per endpoint of the old sink: its name and kind, to find the same one in the new sink.
    endpoints: Vec<(&'static str, ItemKind)>,
    /// Per endpoint: its entries, oldest first (with their push order).
    queues: Vec<VecDeque<Queued>>,
}

impl Backlog {
    /// Entries held.
    pub fn len(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Delivery {
    /// Takes every queued entry out of the buffer, for a successor with the
    /// same destination. The batch in flight (if any) stays: the old task
    /// keeps trying it once the sink is dropped, as any dropped sink does.
    pub fn take_backlog(&self) -> Backlog {
        let shared = &self.shared;
        let mut buffer = shared.lock();
        let mut queues: Vec<VecDeque<Queued>> = Vec::with_capacity(shared.endpoints.len());
        for index in 0..shared.endpoints.len() {
            let queue = std::mem::take(&mut buffer.queues[index]);
            for queued in &queue {
                buffer.unqueue(index, queued);
            }
            queues.push(queue);
        }
        // Entries on their way to disk are older than the queues': they go first.
        let spilled: Vec<(usize, Queued)> = buffer.spill.drain(..).collect();
        for (index, queued) in spilled.into_iter().rev() {
            buffer.unspill(index, &queued);
            queues[index].push_front(queued);
        }
        shared.publish(&buffer);
        drop(buffer);
        // A flush waiting for the buffer to empty sees it now.
        shared.progress.notify_all();
        Backlog {
            endpoints: shared.endpoints.iter().map(|e| (e.name, e.kind)).collect(),
            queues,
        }
    }

    /// Queues a predecessor's backlog ahead of what this sink queued itself
    /// (it is older). Entries for an endpoint this sink does not have are
    /// dropped and counted; the rest are queued again oldest first, each
    /// making room as a push does, within this buffer's budget and shares.
    pub fn accept_backlog(&self, backlog: Backlog) {
        let shared = &self.shared;
        let mut dropped = [0u64; super::KINDS];
        let mut buffer = shared.lock();
        // Old entries in their old push order, then the current ones in theirs.
        let mut all: Vec<(usize, Queued)> = Vec::new();
        for ((name, kind), queue) in backlog.endpoints.into_iter().zip(backlog.queues) {
            let found = shared
                .endpoints
                .iter()
                .position(|e| e.name == name && e.kind == kind);
            match found {
                Some(index) => all.extend(queue.into_iter().map(|q| (index, q))),
                None => dropped[kind.index()] += queue.iter().map(|q| q.entry.items).sum::<u64>(),
            }
        }
        all.sort_by_key(|(_, q)| q.seq);
        let mut current: Vec<(usize, Queued)> = Vec::new();
        for index in 0..buffer.queues.len() {
            let queue = std::mem::take(&mut buffer.queues[index]);
            for queued in &queue {
                buffer.unqueue(index, queued);
            }
            current.extend(queue.into_iter().map(|q| (index, q)));
        }
        current.sort_by_key(|(_, q)| q.seq);
        all.extend(current);
        for (index, queued) in all {
            let kind = buffer.kind(index);
            let admission = buffer.admit(kind, queued.cost());
            for (old_index, old) in admission.evicted {
                dropped[buffer.kind(old_index).index()] += old.entry.items;
            }
            if admission.fits {
                buffer.enqueue(index, queued.entry, queued.target, queued.at);
            } else {
                dropped[kind.index()] += queued.entry.items;
            }
        }
        shared.publish(&buffer);
        drop(buffer);
        for kind in ItemKind::ALL {
            let n = dropped[kind.index()];
            if n > 0 {
                kind.counter(&shared.stats.dropped).add(n);
                tracing::warn!(
                    "sink {}: {n} {} of the replaced sink's buffer did not fit in the new one ({} bytes); dropped (counted in /status)",
                    shared.name,
                    kind.noun(),
                    shared.config.buffer_bytes
                );
            }
        }
        shared.wake.notify_one();
    }
}
