//! Taking the next batch: from the disk buffer, the spill queue or the
//! queues, oldest first; and giving its memory back when it is done.

use bytes::Bytes;

use super::buffer::{self, Buffer};
use super::{Batch, Next, Queued, Shared};
use std::sync::atomic::Ordering;

impl Shared {
    /// What to send next: the disk's records first (they are the oldest),
    /// then the spill queue's, then the oldest endpoint's queue.
    pub(super) fn next(&self) -> Option<Next> {
        let mut buffer = self.lock();
        if let Some(disk) = self
            .disk
            .as_ref()
            .filter(|_| !self.closed.load(Ordering::Relaxed))
        {
            let mut oldest: Option<(u64, usize)> = None;
            for (index, endpoint) in self.endpoints.iter().enumerate() {
                match disk.has_unread(endpoint.name) {
                    // The buffer is busy (a spill or the first scan): try again when it wakes us.
                    None => return None,
                    Some(false) => {}
                    Some(true) => {
                        let id = disk.first_segment(endpoint.name).unwrap_or(u64::MAX);
                        if oldest.is_none_or(|(first, _)| id < first) {
                            oldest = Some((id, index));
                        }
                    }
                }
            }
            if let Some((_, index)) = oldest {
                return Some(Next::Disk(index));
            }
            if let Some(index) = buffer.spill.front().map(|(i, _)| *i) {
                return Some(Next::Batch(Box::new(self.take_spilled(&mut buffer, index))));
            }
        }
        let (index, endpoint) = self
            .endpoints
            .iter()
            .enumerate()
            .filter(|(i, _)| !buffer.queues[*i].is_empty() && !buffer.spilling[*i])
            .min_by_key(|(i, _)| buffer.queues[*i].front().map(|q| q.seq))?;
        let mut taken: Vec<Queued> = Vec::new();
        let mut raw_len = endpoint.prefix.len() + endpoint.suffix.len();
        while let Some(next) = buffer.queues[index].front() {
            let fits = raw_len + next.entry.bytes.len() <= self.config.batch_bytes;
            let alone = next.target.is_some();
            if !taken.is_empty() && (!fits || taken.len() >= endpoint.max_entries || alone) {
                break;
            }
            let Some(queued) = buffer.queues[index].pop_front() else {
                break;
            };
            raw_len += queued.entry.bytes.len() + endpoint.separator.len();
            taken.push(queued);
            if alone {
                break;
            }
        }
        // Still held: `kind_bytes` and `pending` count the batch in flight too.
        let raw_bytes: u64 = taken.iter().map(Queued::cost).sum();
        buffer.queued_bytes -= raw_bytes;
        buffer.queue_bytes[index] -= raw_bytes;
        buffer.in_flight_bytes += raw_bytes;
        let body = buffer::frame(endpoint, taken.iter().map(|q| q.entry.bytes.as_slice()));
        let items = taken.iter().map(|q| q.entry.items).sum();
        let target = taken.last().and_then(|q| q.target.clone());
        buffer.in_flight = taken.into_iter().map(|q| (index, q)).collect();
        Some(Next::Batch(Box::new(Batch {
            endpoint: index,
            target,
            body: Bytes::from(body),
            items,
            raw_bytes,
            disk: None,
        })))
    }

    /// A batch of the spill queue's first entries of `index` (the endpoint came back before they reached disk).
    fn take_spilled(&self, buffer: &mut Buffer, index: usize) -> Batch {
        let endpoint = &self.endpoints[index];
        let mut taken: Vec<Queued> = Vec::new();
        let mut raw_len = endpoint.prefix.len() + endpoint.suffix.len();
        while let Some((i, next)) = buffer.spill.front() {
            let fits = raw_len + next.entry.bytes.len() <= self.config.batch_bytes;
            if *i != index || (!taken.is_empty() && (!fits || taken.len() >= endpoint.max_entries))
            {
                break;
            }
            let Some((i, queued)) = buffer.spill.pop_front() else {
                break;
            };
            buffer.unspill(i, &queued);
            raw_len += queued.entry.bytes.len() + endpoint.separator.len();
            taken.push(queued);
        }
        let kind = buffer.kind(index).index();
        let raw_bytes: u64 = taken.iter().map(Queued::cost).sum();
        // In flight now: held in the budget like any batch in flight.
        buffer.in_flight_bytes += raw_bytes;
        buffer.kind_bytes[kind] += raw_bytes;
        let items: u64 = taken.iter().map(|q| q.entry.items).sum();
        buffer.pending[kind] += items;
        let body = buffer::frame(endpoint, taken.iter().map(|q| q.entry.bytes.as_slice()));
        buffer.in_flight = taken.into_iter().map(|q| (index, q)).collect();
        Batch {
            endpoint: index,
            target: None,
            body: Bytes::from(body),
            items,
            raw_bytes,
            disk: None,
        }
    }

    /// A batch is done (delivered, refused, or given up).
    pub(super) fn finish(&self, batch: &Batch) {
        let kind = self.endpoints[batch.endpoint].kind;
        let mut buffer = self.lock();
        if batch.disk.is_none() {
            buffer.in_flight_bytes -= batch.raw_bytes;
            buffer.kind_bytes[kind.index()] -= batch.raw_bytes;
            buffer.pending[kind.index()] -= batch.items;
            buffer.in_flight.clear();
        }
        self.publish(&buffer);
        drop(buffer);
        self.progress.notify_all();
    }
}
