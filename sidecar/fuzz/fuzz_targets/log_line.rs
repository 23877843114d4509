//! Any output of the app: lines grouped (stack traces, a small maximum size),
//! each record parsed (status, JSON, ddtrace correlation) and encoded for the
//! Datadog logs intake.
#![no_main]

use dynoscope_sidecar::receivers::logs::group::{GroupRules, Grouper, TRUNCATED};
use dynoscope_sidecar::receivers::logs::parse::parse;
use dynoscope_sidecar::sinks::datadog::logs::log_entry;
use dynoscope_sidecar::telemetry::LogStream;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rules = GroupRules { start: None, stack_traces: true, max_bytes: 256 };
    let mut grouper = Grouper::default();
    let mut groups = Vec::new();
    for (i, line) in data.split_inclusive(|&b| b == b'\n').enumerate() {
        groups.extend(grouper.push(line, 0, i % 3 != 0, &rules));
    }
    groups.extend(grouper.flush());
    for group in groups {
        assert!(group.text.len() <= 256 + TRUNCATED.len());
        let (record, _) = parse(group.text, Some(LogStream::Stderr), 0);
        let _ = log_entry(&record, "host");
    }
});
