//! Moving entries from memory to the disk buffer: the spill job (entries
//! evicted while the endpoint fails) and the final spill of a flush.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::send::delivery_runtime;
use super::{Queued, Shared, KINDS};

impl Shared {
    /// Starts the spill job on the delivery runtime's blocking pool, unless one runs.
    pub(super) fn start_spill(shared: &Arc<Shared>) {
        if shared.spill_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let job = shared.clone();
        match delivery_runtime() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || job.spill_job());
            }
            Err(_) => shared.spill_running.store(false, Ordering::Release),
        }
    }

    /// Writes the spill queue to disk until it is empty. The entries stay
    /// charged to the spill queue until written, and their endpoints' newer
    /// entries wait, so delivery stays in order.
    fn spill_job(&self) {
        loop {
            let taken: Vec<(usize, Queued)> = {
                let mut buffer = self.lock();
                if buffer.spill.is_empty() {
                    self.spill_running.store(false, Ordering::Release);
                    return;
                }
                let taken: Vec<(usize, Queued)> = buffer.spill.drain(..).collect();
                for (index, _) in &taken {
                    buffer.spilling[*index] = true;
                }
                taken
            };
            let written = self.write_to_disk(&taken);
            let mut buffer = self.lock();
            for (index, queued) in &taken {
                buffer.unspill(*index, queued);
                buffer.spilling[*index] = false;
            }
            self.publish(&buffer);
            drop(buffer);
            let lost: [u64; KINDS] = std::array::from_fn(|k| {
                taken
                    .iter()
                    .filter(|(i, _)| self.endpoints[*i].kind.index() == k)
                    .map(|(_, q)| q.entry.items)
                    .sum::<u64>()
                    - written[k]
            });
            self.count_dropped(&lost);
            self.wake.notify_one();
        }
    }

    /// Writes `entries` (oldest first) to the disk buffer; returns the items written, by kind.
    fn write_to_disk(&self, entries: &[(usize, Queued)]) -> [u64; KINDS] {
        let mut written = [0u64; KINDS];
        let Some(disk) = &self.disk else {
            return written;
        };
        // Consecutive entries of one endpoint go in one write.
        for run in entries.chunk_by(|(a, _), (b, _)| a == b) {
            let index = run[0].0;
            let endpoint = &self.endpoints[index];
            let records: Vec<_> = run
                .iter()
                .filter(|(_, q)| q.target.is_none())
                .map(|(_, q)| (&q.entry, q.at))
                .collect();
            match disk.write(endpoint.name, endpoint.kind, &records) {
                Ok(n) => {
                    let items: u64 = records[..n].iter().map(|(e, _)| e.items).sum();
                    written[endpoint.kind.index()] += items;
                    self.stats.buffer_kinds.0[endpoint.kind.index()]
                        .spilled
                        .add(n as u64);
                }
                Err(err) => {
                    self.stats
                        .set_last_error(format!("disk buffer {}: {err}", disk.path.display()));
                    tracing::warn!(
                        "sink {}: cannot write to the disk buffer {}: {err}; dropping what does not fit in memory (counted in /status)",
                        self.name,
                        disk.path.display()
                    );
                }
            }
        }
        written
    }

    /// At the end of a flush: writes everything still held in memory (the
    /// batch in flight, the spill queue, the queues) to the disk buffer.
    /// Returns the items of the batch in flight it saved, by kind (they
    /// still count as pending until the task is done with them).
    pub(super) fn spill_everything(&self) -> [u64; KINDS] {
        let Some(disk) = &self.disk else {
            return [0; KINDS];
        };
        // Let a running spill job finish: its entries are older.
        let until = Instant::now() + Duration::from_secs(1);
        while self.spill_running.load(Ordering::Acquire) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut buffer = self.lock();
        let kind_of = |index: usize| self.endpoints[index].kind.index();
        let (mut in_flight, mut taken) = ([0u64; KINDS], [0u64; KINDS]);
        // The batch in flight stays charged (the task finishes it); a copy goes to disk.
        let mut all: Vec<(usize, Queued)> = Vec::new();
        for (index, q) in &buffer.in_flight {
            in_flight[kind_of(*index)] += q.entry.items;
            let copy = Queued {
                seq: q.seq,
                at: q.at,
                entry: q.entry.clone(),
                target: q.target.clone(),
            };
            all.push((*index, copy));
        }
        let spilled: Vec<(usize, Queued)> = buffer.spill.drain(..).collect();
        for (index, q) in &spilled {
            buffer.unspill(*index, q);
            taken[kind_of(*index)] += q.entry.items;
        }
        all.extend(spilled);
        for index in 0..buffer.queues.len() {
            let entries: Vec<Queued> = buffer.queues[index].drain(..).collect();
            for q in &entries {
                buffer.unqueue(index, q);
                taken[kind_of(index)] += q.entry.items;
            }
            all.extend(entries.into_iter().map(|q| (index, q)));
        }
        // Per endpoint: in flight, then spilled, then queued — oldest first (a stable sort).
        all.sort_by_key(|(index, _)| *index);
        self.publish(&buffer);
        drop(buffer);
        if all.is_empty() {
            return [0; KINDS];
        }
        let written = self.write_to_disk(&all);
        disk.sync();
        if written.iter().any(|&n| n > 0) {
            tracing::info!(
                "sink {}: wrote {} to the disk buffer {}; the next start delivers them",
                self.name,
                super::in_words(&written),
                disk.path.display()
            );
        }
        // One endpoint's in-flight entries are written before its others.
        let saved: [u64; KINDS] = std::array::from_fn(|k| written[k].min(in_flight[k]));
        // What was taken from the queues and not written is lost with the process.
        let lost: [u64; KINDS] =
            std::array::from_fn(|k| taken[k].saturating_sub(written[k] - saved[k]));
        self.count_dropped(&lost);
        saved
    }
}
