use super::*;
use crate::telemetry::TraceChunk;

fn point(name: &str, metric_type: MetricType, value: f64) -> Point {
    Point {
        name: name.into(),
        metric_type,
        value,
        timestamp: 100,
        interval: 10,
        tags: vec![
            "dyno:web.1".into(),
            "resource:GET /".into(),
            "service:shop".into(),
        ],
        origin: None,
    }
}

#[test]
fn a_log_record_carries_its_level_and_the_ids_its_spans_carry() {
    let stats = SinkStats::default();
    let mut pending = Pending::default();
    let mut record = LogRecord::new(1_700_000_000_000, "charged the card");
    record.status = crate::telemetry::LogStatus::Error;
    record.trace_id = Some((7u128 << 64) | 42);
    record.span_id = Some(9);
    append(&mut pending, &Telemetry::Logs(vec![record]), &stats);
    let log = &pending.batch.logs[0];
    assert_eq!(log.message, "charged the card");
    assert_eq!(log.level.as_deref(), Some("error"));
    // Spans carry the low 64 bits of the trace id: the console links them.
    assert_eq!(log.trace_id.as_deref(), Some("42"));
    assert_eq!(log.span_id.as_deref(), Some("9"));
    assert!(pending.bytes > 0);
}

#[test]
fn only_what_the_console_draws_is_kept() {
    let kept = |p: &Point| console_point(p).map(|c| (c.name, c.value, c.tags));
    assert_eq!(
        kept(&point("app.memory.rss", MetricType::Gauge, 5.0)),
        Some((
            "app.memory.rss".into(),
            5.0,
            vec!["resource:GET /".into(), "service:shop".into()]
        ))
    );
    // A count carried as its rate comes back as the bucket's count.
    assert_eq!(
        kept(&point(
            "trace.flask.request.hits",
            MetricType::CountRate,
            0.3
        ))
        .map(|k| k.1),
        Some(3.0)
    );
    assert!(kept(&point(
        "trace.flask.request.duration.p95",
        MetricType::Gauge,
        0.1
    ))
    .is_some());
    assert!(kept(&point(
        "trace.flask.request.duration.p75",
        MetricType::Gauge,
        0.1
    ))
    .is_none());
    assert!(kept(&point("shop.requests", MetricType::CountRate, 1.0)).is_none());
}

#[test]
fn a_full_pending_batch_drops_and_counts() {
    let stats = SinkStats::default();
    let mut pending = Pending::default();
    let span = Span {
        meta: [("error.stack".into(), "x".repeat(10_000).into())].into(),
        ..Span::default()
    };
    let chunk = Telemetry::Traces(vec![TraceChunk {
        priority: None,
        spans: vec![span; 10],
    }]);
    let mut rounds = 0;
    while pending.batch.dropped == 0 {
        append(&mut pending, &chunk, &stats);
        rounds += 1;
        assert!(rounds < 1000, "never full");
    }
    assert!(pending.bytes < PENDING_BYTES + 10 * (MAX_META_VALUE + 256));
    assert_eq!(
        pending.batch.spans[0].meta["error.stack"].len(),
        MAX_META_VALUE
    );
    assert_eq!(stats.dropped.spans.get(), 10);
}

#[test]
fn cut_keeps_whole_characters() {
    assert_eq!(cut("héllo", 2), "h");
    assert_eq!(cut("héllo", 3), "hé");
    assert_eq!(cut("abc", 10), "abc");
}

#[test]
fn the_endpoint_is_a_plain_http_base_url() {
    assert_eq!(authority("http://127.0.0.1:5050"), Some("127.0.0.1:5050"));
    assert_eq!(authority("http://operator:5050/"), Some("operator:5050"));
    assert_eq!(authority("https://x:1"), None);
    assert_eq!(authority("http://x:1/api"), None);
}
