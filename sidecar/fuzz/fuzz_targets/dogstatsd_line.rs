//! Any datagram: split into lines, parse each, fold the metrics, flush.
#![no_main]

use dynoscope_sidecar::receivers::dogstatsd::aggregate::{Aggregator, AggregatorConfig};
use dynoscope_sidecar::receivers::dogstatsd::parser::{lines, parse_line, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut agg) = Aggregator::new(AggregatorConfig { max_bytes: 64 << 10, ..AggregatorConfig::default() }) else {
        return;
    };
    for line in lines(data) {
        match parse_line(line) {
            Ok(Message::Metric(m)) => {
                let _ = m.values().count();
                agg.insert(&m, 1_700_000_000);
            }
            Ok(Message::Event(e)) => {
                let _ = e.to_telemetry(0);
            }
            Ok(Message::ServiceCheck(c)) => {
                let _ = c.to_telemetry(0);
            }
            Err(_) => {}
        }
    }
    let _ = agg.flush_all();
});
