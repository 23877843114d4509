use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use super::*;

/// Serves one connection with `answer` and returns the address.
fn one_answer(answer: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && matches!(stream.read(&mut byte), Ok(1)) {
                request.push(byte[0]);
            }
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    addr
}

#[test]
fn an_older_document_fills_the_model_with_defaults() {
    // What sidecars before the typed model served: no `counts` on receivers,
    // no `kind`/`started`/`builds` on sinks.
    let old = serde_json::json!({
        "version": "0.1.0",
        "pid": 7,
        "uptime_seconds": 1.5,
        "config": {"source": "none", "hash": null, "observability": "off"},
        "last_reload": {"result": "error", "at": 10, "error": "bad", "changed": []},
        "app": {"pid": 8, "state": "running", "command": ["sleep", "1"], "exit_code": null},
        "sampler": null,
        "receivers": {"apm": {"tcp": "127.0.0.1:8126", "socket": null, "max_request_bytes": 10}},
        "checks": [{"name": "redis", "type": "redis", "runs": 2, "failures": 1,
                    "consecutive_failures": 1, "last_error": "refused"}],
        "counters": {"reloads": {"ok": 0, "failed": 1},
                     "dogstatsd": {"metrics": 3, "parse_errors": {"bad_value": 1}}},
        "sinks": [{"name": "jsonl /tmp/x", "sent": {"points": 4}, "buffer_capacity": 100}],
    });
    let status: SidecarStatus = serde_json::from_value(old).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.app.state, AppState::Running);
    assert_eq!(status.config.observability, Observability::Off);
    assert_eq!(
        status.last_reload.map(|r| r.result),
        Some(ReloadResult::Error)
    );
    assert_eq!(
        status.receivers["apm"].tcp.as_deref(),
        Some("127.0.0.1:8126")
    );
    assert_eq!(status.sinks[0].sent.points, 4);
    assert_eq!(status.sinks[0].started, None);
    assert_eq!(status.checks[0].state(), CheckState::Failing);
    assert_eq!(status.counters.get("reloads", "failed"), Some(1));
    assert_eq!(status.counters.get("dogstatsd", "parse_errors"), None);
    assert!(matches!(
        &status.counters.0["dogstatsd"]["parse_errors"],
        CounterValue::ByKind(kinds) if kinds["bad_value"] == 1
    ));
}

#[test]
fn the_model_round_trips_through_json() {
    let mut status = SidecarStatus {
        version: "1".into(),
        ..SidecarStatus::default()
    };
    status.sinks.push(SinkStatus {
        name: "datadog datadoghq.com".into(),
        kind: "datadog".into(),
        started: Some(5),
        builds: Some(2),
        ..SinkStatus::default()
    });
    let json = serde_json::to_string(&status).unwrap_or_default();
    let back: SidecarStatus = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, status);
}

#[test]
fn the_client_reads_a_sized_and_a_chunked_answer() {
    let sized = one_answer(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n{\"pid\": 42}     ",
    );
    let status = fetch(&sized, Duration::from_secs(2)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.pid, 42);

    let chunked = one_answer(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"pid\r\n6\r\n\": 43}\r\n0\r\n\r\n",
    );
    let status = fetch(&chunked, Duration::from_secs(2)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.pid, 43);
}

#[test]
fn the_client_says_what_was_wrong() {
    let not_found = one_answer("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
    let err = fetch(&not_found, Duration::from_secs(2)).map(|_| ());
    assert!(
        matches!(&err, Err(FetchError::Response { reason, .. }) if reason.contains("404")),
        "{err:?}"
    );

    let short = one_answer("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{}");
    let err = fetch(&short, Duration::from_secs(2)).map(|_| ());
    assert!(
        matches!(&err, Err(FetchError::Response { reason, .. }) if reason.contains("ends after 2 of 100")),
        "{err:?}"
    );

    // A port nobody listens on: bind one, then free it.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.to_string())
        .unwrap_or_default();
    let err = fetch(&closed, Duration::from_secs(2)).map(|_| ());
    assert!(matches!(err, Err(FetchError::Connect { .. })), "{err:?}");
}
