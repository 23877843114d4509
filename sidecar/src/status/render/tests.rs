use std::collections::BTreeMap;

use dynoscope_crds::sidecar_status::{
    AppState, AppStatus, ConfigStatus, Counters, DiskBufferStatus, KindBufferStatus,
    ReceiverStatus, ReloadStatus, SamplerStatus, SendErrors,
};

use super::*;

const NOW: i64 = 1_000_000;

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

/// A sidecar with one of everything: a receiver, a busy and a failing sink, a passing and a failing check.
fn status() -> SidecarStatus {
    let counters: Counters = serde_json::from_value(serde_json::json!({
        "reloads": {"ok": 2, "failed": 1},
        "dogstatsd": {"metrics": 7, "parse_errors": {"bad_value": 1}},
    }))
    .unwrap_or_default();
    SidecarStatus {
        version: "0.3.0".into(),
        pid: 10,
        uptime_seconds: 125.4,
        config: ConfigStatus {
            source: "file /etc/dyno.yaml".into(),
            hash: Some("9f2c".into()),
            resource: Some("default/shop".into()),
            dyno: Some("web.1".into()),
            observability: Observability::On,
        },
        last_reload: Some(ReloadStatus {
            result: ReloadResult::Ok,
            at: NOW - 5,
            error: None,
            changed: vec!["sinks".into(), "tags".into()],
        }),
        app: AppStatus {
            pid: Some(11),
            state: AppState::Running,
            command: vec!["python".into(), "app.py".into()],
            exit_code: None,
        },
        sampler: Some(SamplerStatus {
            at: NOW - 3,
            memory_source: "cgroup_v2".into(),
            values: [("dyno.memory.rss".to_owned(), 3.0 * 1024.0 * 1024.0)].into(),
            errors: Vec::new(),
        }),
        receivers: [(
            "dogstatsd".to_owned(),
            ReceiverStatus {
                udp: Some("127.0.0.1:8125".into()),
                counts: counts(&[("datagrams", 4), ("metrics", 7)]),
                errors: counts(&[("bad_value", 1), ("bad_type", 0)]),
                ..ReceiverStatus::default()
            },
        )]
        .into(),
        sinks: vec![
            SinkStatus {
                name: "jsonl /tmp/t.jsonl".into(),
                kind: "jsonl".into(),
                sent: ItemCounts {
                    points: 12,
                    spans: 3,
                    ..ItemCounts::default()
                },
                bytes: 1536,
                batches: 4,
                buffer_bytes: 1024 * 1024,
                buffer_capacity: 8 * 1024 * 1024,
                last_success: NOW - 2,
                io_errors: counts(&[("storage_full", 2)]),
                ..SinkStatus::default()
            },
            SinkStatus {
                name: "datadog datadoghq.com".into(),
                kind: "datadog".into(),
                retries: 6,
                errors: SendErrors {
                    timeout: 1,
                    status_5xx: 5,
                    ..SendErrors::default()
                },
                dropped: ItemCounts {
                    points: 9,
                    ..ItemCounts::default()
                },
                buffer_capacity: 100,
                buffer_kinds: BTreeMap::from([(
                    "points".to_owned(),
                    KindBufferStatus {
                        share_bytes: 40,
                        memory_bytes: 0,
                        disk_bytes: 2048,
                        oldest: NOW - 30,
                        spilled: 7,
                        replayed: 3,
                    },
                )]),
                disk: Some(DiskBufferStatus {
                    path: "/var/lib/dynoscope/dd".into(),
                    capacity: 1 << 20,
                    bytes: 2048,
                    corrupt_records: 1,
                }),
                last_error: Some("503 Service Unavailable".into()),
                started: Some(NOW - 60),
                builds: Some(2),
                ..SinkStatus::default()
            },
        ],
        checks: vec![
            CheckStatus {
                name: "redis".into(),
                kind: "redis".into(),
                target: Some("redis://:***@localhost:6379".into()),
                runs: 3,
                last_run: Some(NOW - 1),
                last_duration_ms: Some(4),
                last_success: Some(NOW - 1),
                ..CheckStatus::default()
            },
            CheckStatus {
                name: "postgres".into(),
                kind: "postgres".into(),
                target: Some("postgres://localhost:1/shop".into()),
                runs: 2,
                failures: 2,
                consecutive_failures: 2,
                last_run: Some(NOW - 10),
                last_error: Some("cannot connect to localhost:1: refused".into()),
                ..CheckStatus::default()
            },
        ],
        counters,
    }
}

#[track_caller]
fn assert_contains(text: &str, want: &str) {
    assert!(text.contains(want), "want\n{want}\nin\n{text}");
}

#[test]
fn the_header_config_and_app() {
    let text = render(&status(), NOW);
    assert!(
        text.starts_with(
            "dynoscope sidecar (v0.3.0)\n==========================\n  PID: 10\n  Uptime: 2m5s\n"
        ),
        "{text}"
    );
    assert_contains(
        &text,
        "Config\n======\n  Source: file /etc/dyno.yaml\n  Observability: on\n  Hash: 9f2c\n  \
         Resource: default/shop\n  Dyno: web.1\n  Reloads: 2 ok, 1 failed\n  \
         Last reload: ok (changed: sinks, tags)\n",
    );
    assert_contains(
        &text,
        "App\n===\n  PID: 11\n  State: running\n  Command: python app.py\n",
    );
}

#[test]
fn each_receiver_with_its_counts_and_errors_by_kind() {
    let text = render(&status(), NOW);
    assert_contains(
        &text,
        "  dogstatsd\n  ---------\n    Listening: udp 127.0.0.1:8125\n    \
         Received: datagrams 4, metrics 7\n    Errors: bad_value 1\n",
    );
}

#[test]
fn each_sink_with_what_it_sent_dropped_and_its_buffer() {
    let text = render(&status(), NOW);
    assert_contains(
        &text,
        "  jsonl /tmp/t.jsonl\n  ------------------\n    \
         Sent: 12 points, 0 sketches, 3 spans, 0 events, 0 logs, 0 telemetry\n    \
         Bytes: 1.5 KiB   Batches: 4   Retries: 0\n    \
         Errors: storage_full 2\n    Dropped: none\n    Rejected: none\n    \
         Buffer: 1.0 MiB of 8.0 MiB (12%)\n    Last success: 2s ago\n    Last error: none\n",
    );
    assert_contains(
        &text,
        "  datadog datadoghq.com\n  ---------------------\n    \
         Sent: 0 points, 0 sketches, 0 spans, 0 events, 0 logs, 0 telemetry\n    \
         Bytes: 0 B   Batches: 0   Retries: 6\n    \
         Errors: timeout 1, status_5xx 5\n    Dropped: points 9\n    Rejected: none\n    \
         Buffer: 0 B of 100 B (0%)\n      \
         points: 0 B of 40 B share, disk 2.0 KiB, spilled 7, replayed 3, oldest 30s ago\n    \
         Disk buffer: 2.0 KiB of 1.0 MiB in /var/lib/dynoscope/dd, 1 corrupt records skipped\n    \
         Last success: never\n    \
         Last error: 503 Service Unavailable\n    Started: 1m ago, built 2×\n",
    );
}

#[test]
fn each_check_with_its_instance_status_and_last_error() {
    let text = render(&status(), NOW);
    assert_contains(
        &text,
        "  redis\n  -----\n    Type: redis\n    Instance: redis://:***@localhost:6379\n    \
         Status: OK\n    Runs: 3, failures: 0\n    Last run: 1s ago (took 4 ms)\n    \
         Last success: 1s ago\n    Last error: none\n",
    );
    assert_contains(
        &text,
        "  postgres\n  --------\n    Type: postgres\n    Instance: postgres://localhost:1/shop\n    \
         Status: FAILING (2 in a row)\n    Runs: 2, failures: 2\n    Last run: 10s ago\n    \
         Last success: never\n    Last error: cannot connect to localhost:1: refused\n",
    );
}

#[test]
fn the_sampler_and_the_counters() {
    let text = render(&status(), NOW);
    assert_contains(
        &text,
        "Memory sampler\n==============\n  Last sample: 3s ago\n  Memory source: cgroup_v2\n  \
         dyno.memory.rss: 3.00 MiB\n",
    );
    assert_contains(
        &text,
        "Counters\n========\n  dogstatsd.metrics: 7\n  dogstatsd.parse_errors: bad_value 1\n  \
         reloads.failed: 1\n  reloads.ok: 2\n",
    );
}

#[test]
fn the_logs_lines_records_and_drops_by_reason() {
    let mut status = status();
    status.counters = serde_json::from_value(serde_json::json!({
        "logs": {"lines_read": 12, "bytes_read": 2048, "records": 9, "multiline_groups": 1,
                 "truncated": 0, "passthrough_errors": 0,
                 "dropped": {"rule": 2}, "parse_failures": {"json": 1}},
    }))
    .unwrap_or_default();
    let text = render(&status, NOW);
    assert_contains(
        &text,
        "Logs\n====\n  Lines read: 12 (2.0 KiB)\n  Records: 9 (multi-line 1, lines cut at the \
         maximum size 0)\n  Dropped: rule 2\n  Parse failures: json 1\n",
    );
    assert_contains(
        &render(&SidecarStatus::default(), NOW),
        "Logs\n====\n  No app output read yet.\n",
    );
}

#[test]
fn an_empty_sidecar_says_what_is_missing() {
    let text = render(&SidecarStatus::default(), NOW);
    for want in [
        "Receivers\n=========\n  None (observability is off).\n",
        "Sinks\n=====\n  None.\n",
        "Checks\n======\n  None assigned to this dyno.\n",
        "  No sample yet (off, or the first one is due).\n",
        "  Observability: off (no valid config)\n",
        "  Last reload: none\n",
    ] {
        assert_contains(&text, want);
    }
}
