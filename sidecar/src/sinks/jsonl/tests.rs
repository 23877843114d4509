use super::*;
use crate::telemetry::{MetricType, Point, ServiceCheck, TraceChunk};

fn point(name: &str, value: f64) -> Point {
    Point {
        name: name.into(),
        metric_type: MetricType::Gauge,
        value,
        timestamp: 1_700_000_000,
        interval: 0,
        tags: vec!["dyno:web.1".into()],
        origin: None,
    }
}

/// One batch of `n` points named `name`.
fn batch(name: &str, n: usize) -> Vec<Telemetry> {
    vec![Telemetry::Points(
        (0..n).map(|i| point(name, i as f64)).collect(),
    )]
}

/// The file's lines, each parsed (a split line fails the parse), as their `name`s.
fn names(path: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    assert!(text.ends_with('\n'), "{}: {text:?}", path.display());
    text.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("{}: {line:?}: {err}", path.display()));
            value["name"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

/// The bytes of one batch of `n` points named `name`, as written.
fn encoded(name: &str, n: usize) -> usize {
    batch(name, n)
        .iter()
        .flat_map(|item| lines(item, "h"))
        .map(|line| line.len() + 1)
        .sum()
}

fn options(max_bytes: u64, max_files: u32) -> JsonlOptions {
    JsonlOptions {
        max_bytes,
        max_files,
        ..JsonlOptions::default()
    }
}

#[test]
fn a_point_line_has_every_field_in_order() {
    let got = lines(
        &Telemetry::Points(vec![Point {
            name: "app.memory.rss".into(),
            value: 1024.0,
            ..point("", 0.0)
        }]),
        "shop.web.1",
    );
    assert_eq!(
        got,
        [
            r#"{"kind":"point","name":"app.memory.rss","type":"gauge","value":1024.0,"timestamp":1700000000,"interval":0,"tags":["dyno:web.1"],"host":"shop.web.1"}"#
        ]
    );
}

#[test]
fn spans_and_checks_carry_their_kind_and_host() {
    let chunk = TraceChunk {
        priority: Some(1),
        spans: vec![Span {
            name: "web.request".into(),
            ..Span::default()
        }],
    };
    let span_line = lines(&Telemetry::Traces(vec![chunk]), "h").concat();
    assert!(
        span_line.starts_with(r#"{"kind":"span","service":"","name":"web.request""#),
        "{span_line}"
    );
    assert!(
        span_line.ends_with(r#""priority":1,"host":"h"}"#),
        "{span_line}"
    );
    let check = ServiceCheck {
        name: "postgres.can_connect".into(),
        status: 0,
        timestamp: 1,
        hostname: Some("db-host".into()),
        message: None,
        tags: vec![],
        origin: None,
    };
    let check_line = lines(&Telemetry::ServiceCheck(check), "h").concat();
    assert!(
        check_line.starts_with(r#"{"kind":"service_check","name":"postgres.can_connect""#),
        "{check_line}"
    );
    assert!(check_line.ends_with(r#""host":"db-host"}"#), "{check_line}");
}

#[test]
fn flush_makes_every_batch_visible_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    // What was there stays: the sink appends.
    std::fs::write(&path, "{\"kind\":\"old\"}\n").unwrap();
    let registry = SinkRegistry::default();
    let mut sink = JsonlSink::open(&path, "h", JsonlOptions::default(), &registry).unwrap();
    let check = ServiceCheck {
        name: "redis.can_connect".into(),
        status: 0,
        timestamp: 1,
        hostname: None,
        message: None,
        tags: vec![],
        origin: None,
    };
    let batches = [
        batch("a", 2),
        vec![Telemetry::ServiceCheck(check)],
        batch("b", 1),
    ];
    let mut want = String::from("{\"kind\":\"old\"}\n");
    for b in &batches {
        sink.write(b).unwrap();
        for item in b {
            for line in lines(item, "h") {
                want.push_str(&line);
                want.push('\n');
            }
        }
    }
    sink.flush().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), want);
    let stats = sink.stats();
    assert_eq!(stats.name, format!("jsonl {}", path.display()));
    assert_eq!((stats.sent.points.get(), stats.sent.events.get()), (3, 1));
    assert_eq!(stats.batches.get(), 3);
    assert_eq!(
        stats.bytes.get(),
        (want.len() - "{\"kind\":\"old\"}\n".len()) as u64
    );
    assert_eq!(stats.buffer_bytes.get(), 0);
    assert_eq!(stats.unflushed.points.get(), 0);
    // The sink is listed in /status.
    assert!(registry.get(&stats.name).is_some());
}

#[test]
fn rotates_by_size_keeping_max_files_and_never_splitting_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    // Two one-line batches fill a file; the third goes to a fresh one.
    let size = encoded("p1", 1);
    let mut sink = JsonlSink::open(
        &path,
        "h",
        options(2 * size as u64, 2),
        &SinkRegistry::default(),
    )
    .unwrap();
    for i in 1..=7 {
        sink.write(&batch(&format!("p{i}"), 1)).unwrap();
    }
    sink.flush().unwrap();
    assert_eq!(names(&path), ["p7"]);
    assert_eq!(names(&rotated(&path, 1)), ["p5", "p6"]);
    assert_eq!(names(&rotated(&path, 2)), ["p3", "p4"]);
    // p1 and p2 were rotated past maxFiles and removed.
    assert!(!rotated(&path, 3).exists());

    // A batch larger than maxBytes is written whole to a fresh file.
    sink.write(&batch("big", 5)).unwrap();
    sink.flush().unwrap();
    assert_eq!(names(&path), ["big"; 5]);
    assert_eq!(names(&rotated(&path, 1)), ["p7"]);
    assert_eq!(names(&rotated(&path, 2)), ["p5", "p6"]);
    assert_eq!(sink.stats().sent.points.get(), 12);
}

#[test]
fn a_file_rotated_or_removed_by_someone_else_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let mut sink =
        JsonlSink::open(&path, "h", options(1 << 20, 2), &SinkRegistry::default()).unwrap();
    sink.write(&batch("before", 1)).unwrap();
    sink.flush().unwrap();
    // Another dyno sharing the file rotated it.
    std::fs::rename(&path, rotated(&path, 1)).unwrap();
    sink.write(&batch("after", 1)).unwrap();
    sink.flush().unwrap();
    assert_eq!(names(&rotated(&path, 1)), ["before"]);
    assert_eq!(names(&path), ["after"]);
    std::fs::remove_file(&path).unwrap();
    sink.write(&batch("again", 1)).unwrap();
    sink.flush().unwrap();
    assert_eq!(names(&path), ["again"]);
}

#[test]
fn a_full_buffer_drops_the_oldest_batches_and_counts_their_items() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    // Room for three one-point batches; the writer is not started yet, as if
    // it were stuck on a slow disk.
    let cost = encoded("p1", 1) as u64 + BATCH_OVERHEAD;
    let options = JsonlOptions {
        buffer_bytes: 3 * cost,
        ..JsonlOptions::default()
    };
    let (mut sink, output) =
        JsonlSink::unstarted(&path, "h", options, &SinkRegistry::default()).unwrap();
    for i in 1..=5 {
        sink.write(&batch(&format!("p{i}"), 1)).unwrap();
    }
    let stats = sink.stats().clone();
    assert_eq!(stats.dropped.points.get(), 2);
    assert_eq!(stats.buffer_bytes.get(), 3 * cost);
    assert_eq!(stats.buffer_capacity.get(), 3 * cost);
    // A batch larger than the whole buffer is itself dropped, evicting nothing.
    sink.write(&batch("big", 4)).unwrap();
    assert_eq!(stats.dropped.points.get(), 6);
    assert_eq!(stats.buffer_bytes.get(), 3 * cost);

    sink.start(output).unwrap();
    sink.flush().unwrap();
    assert_eq!(names(&path), ["p3", "p4", "p5"]);
    assert_eq!(stats.sent.points.get(), 3);
    assert_eq!(stats.buffer_bytes.get(), 0);
}

#[test]
fn a_failing_file_is_counted_and_retried_until_it_works_again() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join("t.jsonl");
    let options = JsonlOptions {
        flush_wait: Duration::from_millis(500),
        ..JsonlOptions::default()
    };
    let mut sink = JsonlSink::open(&path, "h", options, &SinkRegistry::default()).unwrap();
    let stats = sink.stats().clone();
    // The directory goes away: the file cannot be reopened.
    std::fs::remove_dir_all(&sub).unwrap();
    sink.write(&batch("kept", 2)).unwrap();
    // The flush gives up in time; the pipeline is not held up.
    sink.flush().unwrap();
    assert!(stats.io_errors.get("not_found") >= 1);
    assert_eq!(stats.unflushed.points.get(), 2);
    assert_eq!(stats.sent.points.get(), 0);
    let last = stats.last_error.lock().unwrap().clone().unwrap_or_default();
    assert!(
        last.starts_with("open ") && last.contains("t.jsonl"),
        "{last}"
    );

    // Once the directory is back, the queued batch is written.
    std::fs::create_dir(&sub).unwrap();
    sink.flush().unwrap();
    assert_eq!(names(&path), ["kept", "kept"]);
    assert_eq!(stats.sent.points.get(), 2);
    assert_eq!(
        stats.unflushed.points.get(),
        2,
        "the second flush left nothing"
    );
}

#[test]
fn spec_values_out_of_range_take_the_defaults() {
    let default = JsonlOptions::default();
    assert_eq!(default.max_bytes, 100 * 1024 * 1024);
    assert_eq!(default.max_files, 5);
    assert_eq!(default.buffer_bytes, 8 * 1024 * 1024);
    assert_eq!(default.flush_wait, Duration::from_millis(1500));
    assert_eq!(JsonlOptions::from_spec(None, None, None), default);
    assert_eq!(JsonlOptions::from_spec(Some(0), Some(0), Some(-1)), default);
    assert_eq!(
        JsonlOptions::from_spec(Some(1000), Some(2), Some(65536)),
        JsonlOptions {
            max_bytes: 1000,
            max_files: 2,
            buffer_bytes: 65536,
            ..default
        }
    );
}

#[test]
fn a_sketch_is_one_line_with_its_totals_quantiles_and_bins() {
    let mut sketch = crate::telemetry::DogSketch::new();
    for v in [1.0, 2.0, 2.0, 4.0] {
        sketch.insert(v, 1);
    }
    let item = Telemetry::Sketches(vec![crate::telemetry::SketchPoint {
        name: "shop.payload".into(),
        timestamp: 1_700_000_000,
        interval: 10,
        tags: vec!["dyno:web.1".into()],
        sketch,
        origin: Some(std::sync::Arc::new(crate::telemetry::Origin {
            container_id: Some("abc".into()),
            ..Default::default()
        })),
    }]);
    let lines = lines(&item, "h");
    assert_eq!(lines.len(), 1);
    let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap_or_default();
    assert_eq!(line["kind"], "sketch");
    assert_eq!(line["name"], "shop.payload");
    assert_eq!((&line["count"], &line["sum"]), (&4.into(), &9.0.into()));
    assert_eq!((&line["min"], &line["max"]), (&1.0.into(), &4.0.into()));
    // The value its bin stands for (γ^45), within 1/128 of 2.
    let p50 = line["quantiles"]["p50"].as_f64().unwrap_or(f64::NAN);
    assert!((p50 - 2.0).abs() <= 2.0 / 128.0, "{p50}");
    assert_eq!(line["k"], serde_json::json!([1338, 1383, 1427]));
    assert_eq!(line["n"], serde_json::json!([1, 2, 1]));
    assert_eq!(line["host"], "h");
    assert_eq!(line["origin"], serde_json::json!({"container_id": "abc"}));
}
