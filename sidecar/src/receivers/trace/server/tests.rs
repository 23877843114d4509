use super::telemetry::{intake_path, proxied_headers};
use super::*;
use axum::http::Uri;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, value.parse().unwrap_or_else(|_| unreachable!()));
    }
    map
}

#[test]
fn media_types_drop_parameters_and_case() {
    let h = headers(&[("content-type", "Application/MsgPack; charset=binary")]);
    assert_eq!(media_type(&h), "application/msgpack");
    assert_eq!(media_type(&HeaderMap::new()), "");
}

#[test]
fn tracer_telemetry_keeps_its_path_and_headers_but_not_hop_by_hop_ones_or_a_key() {
    let uri: Uri = "/telemetry/proxy/api/v2/apmtelemetry?x=1"
        .parse()
        .unwrap_or_else(|_| unreachable!());
    assert_eq!(intake_path(&uri), "/api/v2/apmtelemetry?x=1");
    let sent = headers(&[
        ("content-type", "application/json"),
        ("dd-telemetry-request-type", "app-started"),
        ("dd-telemetry-api-version", "v2"),
        ("dd-client-library-language", "python"),
        ("dd-session-id", "80f9"),
        ("host", "127.0.0.1:8126"),
        ("content-length", "16287"),
        ("connection", "keep-alive"),
        ("dd-api-key", "from-the-tracer"),
    ]);
    let kept = proxied_headers(&sent);
    let mut names: Vec<&str> = kept.keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "content-type",
            "dd-client-library-language",
            "dd-session-id",
            "dd-telemetry-api-version",
            "dd-telemetry-request-type",
        ]
    );
    assert_eq!(kept["dd-telemetry-request-type"], "app-started");
}

#[test]
fn chunks_with_priority_zero_or_less_are_not_kept() {
    let chunk = |priority| TraceChunk {
        priority,
        spans: Vec::new(),
    };
    assert!(is_kept(&chunk(None)));
    assert!(is_kept(&chunk(Some(1))));
    assert!(is_kept(&chunk(Some(2))));
    assert!(!is_kept(&chunk(Some(0))));
    assert!(!is_kept(&chunk(Some(-1))));
}

#[test]
fn real_statuses_are_asked_for_by_any_value_but_a_false_one() {
    let asks = |value: Option<&str>| {
        let h = match value {
            Some(v) => headers(&[(SEND_REAL_HTTP_STATUS, v)]),
            None => HeaderMap::new(),
        };
        wants_real_status(&h)
    };
    assert!(!asks(None));
    for yes in ["true", "1", "yes", "T", "TRUE"] {
        assert!(asks(Some(yes)), "{yes}");
    }
    for no in ["", "0", "f", "F", "false", "False", "FALSE"] {
        assert!(!asks(Some(no)), "{no}");
    }
}
