//! Any body to the v0.5 msgpack decoder.
#![no_main]

use dynoscope_sidecar::receivers::trace::decode::decode_v05;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_v05(data);
});
