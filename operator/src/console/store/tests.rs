use super::*;
use dynoscope_crds::console::ConsolePoint;

fn point(name: &str, value: f64, ts: i64, tags: &[&str]) -> ConsolePoint {
    ConsolePoint {
        name: name.into(),
        value,
        timestamp: ts,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn span(trace: u64, id: u64, parent: u64, stack: usize) -> ConsoleSpan {
    ConsoleSpan {
        trace_id: trace.to_string(),
        span_id: id.to_string(),
        parent_id: parent.to_string(),
        service: "shop".into(),
        name: "flask.request".into(),
        resource: "GET /cart".into(),
        meta: [("error.stack".to_owned(), "x".repeat(stack))].into(),
        ..ConsoleSpan::default()
    }
}

#[test]
fn memory_is_the_sum_of_the_apps_and_the_sidecars_per_slot() {
    let mut w = Window::default();
    let now = 10_000;
    w.ingest(
        ConsoleBatch {
            dyno: "web.1".into(),
            points: vec![
                point("app.memory.rss", 100.0, now - 21, &[]),
                point("sidecar.memory.rss", 10.0, now - 21, &[]),
                point("app.memory.rss", 300.0, now - 1, &[]),
                point("app.memory.swap", 5.0, now - 1, &[]),
                point("sidecar.memory.rss", 10.0, now - 1, &[]),
                point("dyno.memory.quota", 1024.0 * 1024.0 * 1024.0, now - 1, &[]),
                // Older than the window: not kept.
                point("app.memory.rss", 1.0, now - WINDOW_SECS - 20, &[]),
            ],
            ..ConsoleBatch::default()
        },
        now,
    );
    let dyno = &w.dynos["web.1"];
    let values: Vec<f64> = dyno.memory.0.iter().map(|(_, v)| *v).collect();
    assert_eq!(values, [110.0, 315.0]);
    // The quota the sidecar reports (a standard-2X's under `up --size standard-2x`).
    assert_eq!(dyno.quota(), 1024.0 * 1024.0 * 1024.0);
    assert_eq!(DynoWindow::default().quota(), DEFAULT_QUOTA);
}

#[test]
fn apm_stats_group_by_service_operation_and_resource_and_sum_over_dynos() {
    let mut w = Window::default();
    let tags = ["service:shop", "resource:GET /cart"];
    for dyno in ["web.1", "web.2"] {
        w.ingest(
            ConsoleBatch {
                dyno: dyno.into(),
                points: vec![
                    point("trace.flask.request.hits", 3.0, 1000, &tags),
                    point("trace.flask.request.errors", 1.0, 1000, &tags),
                    point("trace.flask.request.duration.p95", 0.2, 1000, &tags),
                ],
                ..ConsoleBatch::default()
            },
            1005,
        );
    }
    let key = (
        "shop".to_owned(),
        "flask.request".to_owned(),
        "GET /cart".to_owned(),
    );
    let group = &w.services[&key];
    assert_eq!(group.hits.last(), Some(6.0));
    assert_eq!(group.errors.last(), Some(2.0));
    assert_eq!(group.p95.last(), Some(0.2));
    assert_eq!(
        split_stats_name("trace.flask.request.hits.by_http_status"),
        None
    );
}

#[test]
fn traces_merge_by_id_and_the_oldest_leave_past_the_bounds() {
    let mut w = Window::default();
    w.ingest(
        ConsoleBatch {
            dyno: "web.1".into(),
            spans: vec![span(1, 10, 0, 0)],
            ..ConsoleBatch::default()
        },
        0,
    );
    w.ingest(
        ConsoleBatch {
            dyno: "worker.1".into(),
            spans: vec![span(1, 11, 10, 0)],
            ..ConsoleBatch::default()
        },
        0,
    );
    assert_eq!(w.traces["1"].spans.len(), 2);
    assert_eq!(w.traces["1"].dynos, ["web.1", "worker.1"]);
    // 10 000 traces with 4 KiB stacks: the byte bound evicts the oldest.
    for i in 2..10_002u64 {
        w.ingest(
            ConsoleBatch {
                dyno: "web.1".into(),
                spans: vec![span(i, i * 10, 0, 4096), span(i, i * 10 + 1, i * 10, 4096)],
                ..ConsoleBatch::default()
            },
            0,
        );
    }
    assert!(w.traces.len() <= MAX_TRACES);
    assert!(w.trace_bytes <= TRACE_BYTES);
    assert!(!w.traces.contains_key("1"));
    assert!(w.traces.contains_key("10001"));
    assert_eq!(w.order.len(), w.traces.len());
    assert!(w.approx_bytes() < STATED_BOUND_BYTES);
}

#[test]
fn router_requests_fill_ten_second_buckets() {
    let mut w = Window::default();
    let request = |ms: i64, status: u16, code: Option<&str>| RouterRequest {
        timestamp_ms: ms,
        status,
        service_ms: 20.0,
        code: code.map(str::to_owned),
        ..RouterRequest::default()
    };
    w.ingest(
        ConsoleBatch {
            dyno: "router".into(),
            requests: vec![
                request(1_000_000, 200, None),
                request(1_001_000, 503, Some("H12")),
                request(1_010_000, 200, None),
            ],
            ..ConsoleBatch::default()
        },
        1_011,
    );
    assert_eq!(w.router.len(), 2);
    assert_eq!(w.router[0].count, 2);
    assert_eq!(w.router[0].classes, [0, 1, 0, 0, 1]);
    assert_eq!(w.router[0].codes["H12"], 1);
}

#[test]
fn logs_keep_the_latest_lines_within_their_bytes() {
    let mut w = Window::default();
    for i in 0..(MAX_LOGS + 10) {
        w.ingest(
            ConsoleBatch {
                dyno: "web.1".into(),
                logs: vec![ConsoleLog {
                    message: format!("line {i}"),
                    ..ConsoleLog::default()
                }],
                ..ConsoleBatch::default()
            },
            0,
        );
    }
    assert_eq!(w.logs.len(), MAX_LOGS);
    assert_eq!(
        w.logs.back().map(|(_, l)| l.message.as_str()),
        Some("line 2009")
    );
    assert_eq!(w.dropped.logs_evicted, 10);
}
