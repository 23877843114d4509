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
        origin: None,
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
        "# HELP jobs_done_total jobs.done (count)\n# TYPE jobs_done_total counter\n\
         jobs_done_total{q=\"x\"} 7\n\
         # HELP mem_rss mem.rss (gauge)\n# TYPE mem_rss gauge\nmem_rss 5\n\
         # HELP odd odd (gauge)\n# TYPE odd gauge\nodd{msg=\"say \\\"hi\\\"\"} 1\n\
         # HELP req_total req (rate)\n# TYPE req_total counter\nreq_total 5\n"
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

#[test]
fn a_distribution_is_a_summary_of_its_latest_quantiles_and_running_totals() {
    let exporter = Exporter::default();
    let sketch_point = |values: &[f64]| {
        let mut sketch = crate::telemetry::DogSketch::new();
        for v in values {
            sketch.insert(*v, 1);
        }
        SketchPoint {
            name: "shop.payload".into(),
            timestamp: 1_700_000_000,
            interval: 10,
            tags: vec!["route:a".into()],
            sketch,
            origin: None,
        }
    };
    exporter.record_sketch(&sketch_point(&[1000.0; 4]));
    let series = exporter.record_sketch(&sketch_point(&[1.0, 1.0]));
    assert_eq!(series.len(), 6);
    let text = exporter.render();
    assert_eq!(
        text,
        "# HELP shop_payload shop.payload (distribution)\n# TYPE shop_payload summary\n\
         shop_payload{route=\"a\",quantile=\"0.5\"} 1\n\
         shop_payload{route=\"a\",quantile=\"0.9\"} 1\n\
         shop_payload{route=\"a\",quantile=\"0.95\"} 1\n\
         shop_payload{route=\"a\",quantile=\"0.99\"} 1\n\
         shop_payload_sum{route=\"a\"} 4002\n\
         shop_payload_count{route=\"a\"} 6\n"
    );
}

#[test]
fn a_flood_of_unique_series_stays_within_the_stated_bytes_and_counts_the_drops() {
    let exporter = Exporter::default();
    let (mut recorded, mut dropped) = (0u64, 0u64);
    for i in 0..60_000 {
        let user = format!("user:{i}");
        let p = point("shop.hits", MetricType::Gauge, 1.0, &["env:prod", &user]);
        match exporter.record(&p) {
            Some(_) => recorded += 1,
            None => dropped += 1,
        }
    }
    let held = exporter.held_bytes();
    // Within the budget plus the one series admitted just under it.
    assert!(held <= MAX_BYTES + 512, "{held}");
    assert!(held >= MAX_BYTES, "{held}");
    assert!(dropped > 0 && recorded > 10_000, "{recorded} {dropped}");
    assert_eq!(exporter.dropped_series(), dropped);
    // A series already held keeps its value fresh past the budget.
    let first = point("shop.hits", MetricType::Gauge, 7.0, &["env:prod", "user:0"]);
    assert_eq!(exporter.record(&first).map(|(_, v)| v.value), Some(7.0));
    assert!(!exporter.render().contains("user=\"59999\""));
}
