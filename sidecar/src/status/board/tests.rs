use serde_json::json;

use super::*;

#[test]
fn a_snapshot_joins_the_sections_and_the_counters() {
    let board = StatusBoard::new("file /etc/dyno.yaml".into());
    board.set_receiver(
        "dogstatsd",
        json!({"udp": "127.0.0.1:8125", "socket": null}),
    );
    board.set_reload_failed(&std::io::Error::other("bad"));
    let stats = Stats::default();
    stats.dogstatsd.metrics.add(3);
    stats.dogstatsd.parse_errors.inc("bad_value");
    stats.reloads.failed.inc();
    let sink = stats.sinks.register("jsonl /tmp/board-test.jsonl");
    sink.sent.points.add(5);
    sink.errors.timeout.inc();
    sink.io_errors.inc("storage_full");

    let status = board.snapshot(&stats);
    assert_eq!(status.config.source, "file /etc/dyno.yaml");
    assert_eq!(status.config.observability, Observability::Off);
    assert_eq!(
        status.last_reload.as_ref().map(|r| r.result),
        Some(ReloadResult::Error)
    );
    let dogstatsd = &status.receivers["dogstatsd"];
    assert_eq!(dogstatsd.udp.as_deref(), Some("127.0.0.1:8125"));
    assert_eq!(dogstatsd.counts["metrics"], 3);
    assert_eq!(dogstatsd.errors["bad_value"], 1);
    assert_eq!(status.counters.get("reloads", "failed"), Some(1));
    assert_eq!(status.counters.get("dogstatsd", "metrics"), Some(3));
    let jsonl = status
        .sinks
        .iter()
        .find(|s| s.name == "jsonl /tmp/board-test.jsonl")
        .unwrap_or_else(|| panic!("no sink in {:?}", status.sinks));
    assert_eq!(jsonl.kind, "jsonl");
    assert_eq!(jsonl.sent.points, 5);
    assert_eq!(jsonl.errors.timeout, 1);
    assert_eq!(jsonl.io_errors["storage_full"], 1);
}

#[test]
fn the_served_json_keeps_the_field_names_readers_use() {
    let board = StatusBoard::new("none".into());
    board.set_app(Some(42), AppState::Running);
    let json = serde_json::to_value(board.snapshot(&Stats::default())).unwrap_or_default();
    assert_eq!(json["app"]["pid"], 42);
    assert_eq!(json["app"]["state"], "running");
    assert_eq!(json["config"]["observability"], "off");
    assert_eq!(json["counters"]["pipeline"]["accepted"], 0);
    assert!(json["checks"].is_array() && json["sinks"].is_array());
}
