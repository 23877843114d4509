//! Links and events ddtrace writes as JSON in `meta` (v0.5), read back.

use super::*;

fn with_meta(key: &str, json: &str) -> Span {
    Span {
        meta: BTreeMap::from([(Str::from(key), Str::from(json))]),
        ..Span::default()
    }
}

#[test]
fn meta_links_as_ddtrace_writes_them_on_v05() {
    // Observed from ddtrace 4.16's v0.5 encoder.
    let span = with_meta(
        "_dd.span_links",
        r#"[{"trace_id": "00000000000000050000000000000007", "span_id": "0000000000000009", "attributes": {"n": "3", "k": "v"}, "flags": 0}]"#,
    );
    let links = span.meta_links();
    assert_eq!(links.len(), 1);
    assert_eq!(
        (links[0].trace_id_high, links[0].trace_id, links[0].span_id),
        (5, 7, 9)
    );
    assert_eq!(links[0].attributes.get("k").map(|v| &**v), Some("v"));
    assert_eq!(links[0].trace_flags(), None);
}

#[test]
fn meta_events_with_typed_json_attributes() {
    let span = with_meta(
        "events",
        r#"[{"name": "boom", "time_unix_nano": 123456789, "attributes": {"f": 1.5, "arr": [1, 2], "i": 2, "bb": true, "a": "b", "o": {"x": 1}}}]"#,
    );
    let events = span.meta_events();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!((&*e.name, e.time_unix_nano), ("boom", 123_456_789));
    assert_eq!(e.attributes.get("f"), Some(&AttributeValue::Double(1.5)));
    assert_eq!(e.attributes.get("i"), Some(&AttributeValue::Int(2)));
    assert_eq!(e.attributes.get("bb"), Some(&AttributeValue::Bool(true)));
    assert_eq!(
        e.attributes.get("a"),
        Some(&AttributeValue::String("b".into()))
    );
    assert_eq!(
        e.attributes.get("arr"),
        Some(&AttributeValue::Array(vec![
            AttributeValue::Int(1),
            AttributeValue::Int(2)
        ]))
    );
    // An object has no attribute type: left out.
    assert_eq!(e.attributes.get("o"), None);
}

#[test]
fn meta_that_is_not_their_json_reads_as_none() {
    for json in ["", "{}", "[1]", r#"[{"trace_id": "zz", "span_id": "1"}]"#] {
        assert!(
            with_meta("_dd.span_links", json).meta_links().is_empty(),
            "{json}"
        );
        assert!(with_meta("events", json).meta_events().is_empty(), "{json}");
    }
}
