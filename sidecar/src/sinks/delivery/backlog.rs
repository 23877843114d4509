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
        let mut queues = Vec::with_capacity(shared.endpoints.len());
        for (index, endpoint) in shared.endpoints.iter().enumerate() {
            let queue = std::mem::take(&mut buffer.queues[index]);
            let items: u64 = queue.iter().map(|q| q.entry.items).sum();
            buffer.pending[endpoint.kind.index()] -= items;
            buffer.queued_bytes -= buffer.queue_bytes[index];
            buffer.queue_bytes[index] = 0;
            queues.push(queue);
        }
        shared
            .stats
            .buffer_bytes
            .set(buffer.queued_bytes + buffer.in_flight_bytes);
        drop(buffer);
        // A flush waiting for the buffer to empty sees it now.
        shared.progress.notify_all();
        Backlog {
            endpoints: shared.endpoints.iter().map(|e| (e.name, e.kind)).collect(),
            queues,
        }
    }

    /// Queues a predecessor's backlog ahead of what this sink queued itself
    /// (it is older). Entries for an endpoint this sink does not have, and
    /// the oldest entries past this buffer's limit, are dropped and counted.
    pub fn accept_backlog(&self, backlog: Backlog) {
        let shared = &self.shared;
        let capacity = shared.config.buffer_bytes;
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
        // `pending` counts queued and in-flight items; the in-flight part stays.
        let mut pending = buffer.pending;
        let mut current: Vec<(usize, Queued)> = Vec::new();
        for (index, queue) in buffer.queues.iter_mut().enumerate() {
            let kind = shared.endpoints[index].kind;
            pending[kind.index()] -= queue.iter().map(|q| q.entry.items).sum::<u64>();
            current.extend(queue.drain(..).map(|q| (index, q)));
        }
        current.sort_by_key(|(_, q)| q.seq);
        all.extend(current);
        // The newest entries that fit beside the batch in flight are kept.
        let mut bytes = buffer.in_flight_bytes;
        let mut keep_from = all.len();
        for (i, (_, queued)) in all.iter().enumerate().rev() {
            if bytes + queued.cost() > capacity {
                break;
            }
            bytes += queued.cost();
            keep_from = i;
        }
        buffer.queued_bytes = 0;
        buffer.queue_bytes.iter_mut().for_each(|b| *b = 0);
        let mut seq = 0;
        for (i, (index, mut queued)) in all.into_iter().enumerate() {
            let kind = shared.endpoints[index].kind;
            if i < keep_from {
                dropped[kind.index()] += queued.entry.items;
                continue;
            }
            queued.seq = seq;
            seq += 1;
            pending[kind.index()] += queued.entry.items;
            buffer.queued_bytes += queued.cost();
            buffer.queue_bytes[index] += queued.cost();
            buffer.queues[index].push_back(queued);
        }
        buffer.next_seq = seq;
        buffer.pending = pending;
        shared
            .stats
            .buffer_bytes
            .set(buffer.queued_bytes + buffer.in_flight_bytes);
        drop(buffer);
        for kind in ItemKind::ALL {
            let n = dropped[kind.index()];
            if n > 0 {
                kind.counter(&shared.stats.dropped).add(n);
                tracing::warn!(
                    "sink {}: {n} {} of the replaced sink's buffer did not fit in the new one ({capacity} bytes); dropped (counted in /status)",
                    shared.name,
                    kind.noun()
                );
            }
        }
        shared.wake.notify_one();
    }
}
