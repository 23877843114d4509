use super::*;

fn point(name: &str, metric_type: MetricType, value: f64, tags: &[&str]) -> Point {
    Point {
        name: name.into(),
        metric_type,
        value,
        timestamp: 1_700_000_000,
        interval: if metric_type == MetricType::Gauge {
            0
        } else {
            10
        },
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

#[test]
fn names_and_label_keys_are_sanitised() {
    assert_eq!(sanitize("shop.orders-total"), "shop_orders_total");
    assert_eq!(sanitize("9lives"), "_9lives");
    let tags = [
        "env:prod",
        "role:a",
        "role:b",
        "canary",
        "__name__:x",
        "a.b:c",
    ]
    .map(String::from);
    assert_eq!(
        labels(&tags),
        vec![
            ("a_b".into(), "c".into()),
            ("canary".into(), "true".into()),
            ("env".into(), "prod".into()),
            ("role".into(), "a,b".into()),
        ]
    );
}

#[test]
fn counts_and_rates_accumulate_into_counters_and_gauges_keep_the_last_value() {
    let exporter = Exporter::default();
    exporter.record(&point("jobs.done", MetricType::Count, 3.0, &["q:x"]));
    exporter.record(&point("jobs.done", MetricType::Count, 4.0, &["q:x"]));
    exporter.record(&point("req", MetricType::Rate, 0.5, &[]));
    exporter.record(&point("mem.rss", MetricType::Gauge, 7.0, &[]));
    exporter.record(&point("mem.rss", MetricType::Gauge, 5.0, &[]));
    exporter.record(&point("odd", MetricType::Gauge, 1.0, &["msg:say \"hi\""]));
    let text = exporter.render();
    assert_eq!(
        text,
        "# TYPE jobs_done_total counter\njobs_done_total{q=\"x\"} 7\n\
         # TYPE mem_rss gauge\nmem_rss 5\n\
         # TYPE odd gauge\nodd{msg=\"say \\\"hi\\\"\"} 1\n\
         # TYPE req_total counter\nreq_total 5\n"
    );
}

#[test]
fn a_remote_write_entry_decodes_as_a_write_request_with_sorted_labels() {
    let key = (
        "up_total".to_owned(),
        vec![
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "1".to_owned()),
        ],
    );
    let entry = remote_entry(key, 3.0, 10);
    let request = pb::WriteRequest::decode(entry.bytes.as_slice()).unwrap_or_default();
    let names: Vec<&str> = request.timeseries[0]
        .labels
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(names, ["__name__", "a", "b"]);
    assert_eq!(request.timeseries[0].samples[0].timestamp, 10_000);
}
