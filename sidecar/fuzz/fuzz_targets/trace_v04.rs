//! Any body to the v0.4 msgpack decoder, then to APM stats.
#![no_main]

use dynoscope_sidecar::receivers::trace::apm_stats::{ApmStats, ApmStatsConfig};
use dynoscope_sidecar::receivers::trace::decode::decode_v04;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(chunks) = decode_v04(data) {
        let mut stats = ApmStats::new(ApmStatsConfig::default());
        for chunk in &chunks {
            stats.add_chunk(chunk, 1_700_000_000);
        }
        let _ = stats.flush_all();
    }
});
