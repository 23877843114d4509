//! Exponential back-off: the wait before retry `n`, doubling from a base up to a cap.
//!
//! Every retry loop of dynoscope uses this one: the network sinks (with
//! jitter), the jsonl sink's file operations, the integration checks after a
//! failure, and the operator's reconciles. A crate of its own because both
//! the sidecar and the operator need it and neither depends on the other.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Doubling waits: `base`, `2·base`, `4·base`, … never more than `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry (attempt 0).
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Whether waits are spread at random over `[d/2, d]`, so that many clients
    /// that failed together do not retry together. Default: no.
    pub jitter: bool,
}

impl Backoff {
    /// Waits from `base` doubling up to `max`, without jitter.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            jitter: false,
        }
    }

    /// The same waits, each a random point in `[d/2, d]`.
    pub const fn with_jitter(self) -> Self {
        Backoff {
            jitter: true,
            ..self
        }
    }

    /// The wait before retry `attempt` (0 for the first): `base·2^attempt`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.max);
        if !self.jitter {
            return ceiling;
        }
        let half = ceiling / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_nanos(random() % nanos)
    }
}

/// A random number without a dependency: std's hasher keys are random per process.
fn random() -> u64 {
    static STATE: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    STATE
        .get_or_init(RandomState::new)
        .hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_the_base_up_to_the_cap() {
        let backoff = Backoff::new(100 * MS, 1000 * MS);
        let waits: Vec<_> = (0..6).map(|n| backoff.delay(n)).collect();
        assert_eq!(
            waits,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        // Huge attempt numbers neither overflow nor pass the cap.
        assert_eq!(backoff.delay(u32::MAX), 1000 * MS);
    }

    #[test]
    fn jitter_stays_within_half_and_whole() {
        let backoff = Backoff::new(100 * MS, 30_000 * MS).with_jitter();
        for attempt in 0..12 {
            let ceiling = Backoff::new(100 * MS, 30_000 * MS).delay(attempt);
            for _ in 0..50 {
                let wait = backoff.delay(attempt);
                assert!(
                    wait >= ceiling / 2 && wait <= ceiling,
                    "{attempt}: {wait:?}"
                );
            }
        }
    }
}
