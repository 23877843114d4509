//! How a sink buffers, batches and retries, and what its spec sets of it.

use std::time::Duration;

use dynoscope_crds::buffer::BufferSpec;

use super::KINDS;

/// Default buffer per sink: 8 MiB.
pub const DEFAULT_BUFFER_BYTES: u64 = 8 * 1024 * 1024;

/// How a sink buffers, batches and retries.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryConfig {
    /// The memory budget: queued plus in-flight bytes (before compression)
    /// before the oldest are dropped or spilled to disk. Default: 8 MiB.
    pub buffer_bytes: u64,
    /// Largest batch before compression. Default: 1 MiB (Datadog takes 5 MB raw, 500 kB compressed).
    pub batch_bytes: usize,
    /// How long an entry may wait for a batch to fill. Default: 2 s.
    pub batch_interval: Duration,
    /// One request's time limit. Default: 10 s.
    pub request_timeout: Duration,
    /// First retry delay; doubles per attempt, with full jitter. Default: 250 ms.
    pub backoff_base: Duration,
    /// Longest retry delay (and cap of `Retry-After`). Default: 30 s.
    pub backoff_max: Duration,
    /// Longest retry delay after a connection error or a timeout: the
    /// endpoint is unreachable, and a retry costs it nothing, so it is tried
    /// often enough to find it back quickly. Default: 1 s.
    pub reconnect_max: Duration,
    /// How long [`Delivery::flush`] waits for the buffer to empty. Default: 1.5 s
    /// (the sidecar gives its pipeline 2 s to flush once the app is gone).
    pub flush_wait: Duration,
    /// Weight of each [`ItemKind`]'s share of the buffer, in [`ItemKind`]
    /// order; spread over the kinds the sink's endpoints carry. Default:
    /// [`dynoscope_crds::buffer::Shares::DEFAULTS`].
    pub shares: [u32; KINDS],
    /// Where what the buffer cannot hold goes instead of being dropped. Default: nowhere.
    pub disk: Option<DiskConfig>,
}

impl DeliveryConfig {
    /// This config with the buffer a sink's spec sets: `bufferBytes` (the
    /// older field) or `buffer` (memory budget, shares, disk).
    #[must_use]
    pub fn with_buffer(self, buffer_bytes: Option<i64>, buffer: Option<&BufferSpec>) -> Self {
        let memory = buffer
            .and_then(|b| b.memory_bytes.map(|m| m.0))
            .or(buffer_bytes.and_then(|b| u64::try_from(b).ok()))
            .filter(|&b| b > 0)
            .unwrap_or(DEFAULT_BUFFER_BYTES);
        let disk = buffer.filter(|b| b.is_disk()).and_then(|b| {
            Some(DiskConfig {
                path: b.path.as_deref()?.into(),
                max_bytes: b.max_bytes.map_or(DEFAULT_DISK_BYTES, |m| m.0),
            })
        });
        DeliveryConfig {
            buffer_bytes: memory,
            shares: buffer.map_or(self.shares, |b| b.shares.resolved()),
            disk,
            ..self
        }
    }
}

/// Default disk buffer bound: 256 MiB.
pub const DEFAULT_DISK_BYTES: u64 = 256 * 1024 * 1024;

/// A sink's disk buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// Its directory, one per sink.
    pub path: std::path::PathBuf,
    /// The disk bytes it may take.
    pub max_bytes: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            batch_bytes: 1024 * 1024,
            batch_interval: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            reconnect_max: Duration::from_secs(1),
            flush_wait: Duration::from_millis(1500),
            shares: dynoscope_crds::buffer::Shares::DEFAULTS,
            disk: None,
        }
    }
}
