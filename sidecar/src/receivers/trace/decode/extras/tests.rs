//! `meta_struct`, `span_links` and `span_events` as ddtrace writes them, and
//! every way they can be wrong or too many.

use std::collections::BTreeMap;

use super::super::decode_v04;
use super::super::tests::Mp;
use crate::telemetry::{AttributeValue, Span, Str, MAX_ATTRIBUTES, MAX_EVENTS, MAX_LINKS};

fn span_with(key: &str, value: impl FnOnce(Mp) -> Mp) -> Span {
    let body = Mp::default()
        .arr(1)
        .arr(1)
        .map(2)
        .kv("name", |m| m.str("op"))
        .kv(key, value)
        .0;
    let chunks = decode_v04(&body).unwrap();
    chunks[0].spans[0].clone()
}

/// A link as ddtrace 4.16 writes it (key order observed).
fn link(m: Mp, trace_id: u64) -> Mp {
    m.map(6)
        .kv("trace_id", |m| m.uint(trace_id))
        .kv("span_id", |m| m.uint(9))
        .kv("attributes", |m| {
            m.map(2).str("k").str("v").str("n").str("3")
        })
        .kv("flags", |m| m.uint(0x8000_0001))
        .kv("trace_id_high", |m| m.uint(5))
        .kv("tracestate", |m| m.str("dd=s:1"))
}

fn typed(m: Mp, kind: u64, field: &str, value: impl FnOnce(Mp) -> Mp) -> Mp {
    m.map(2).kv("type", |m| m.uint(kind)).kv(field, value)
}

#[test]
fn links_as_ddtrace_sends_them() {
    let s = span_with("span_links", |m| link(m.arr(1), 7));
    assert_eq!(s.links.len(), 1);
    let l = &s.links[0];
    assert_eq!((l.trace_id, l.trace_id_high, l.span_id), (7, 5, 9));
    assert_eq!((l.flags, l.trace_flags()), (0x8000_0001, Some(1)));
    assert_eq!(&*l.tracestate, "dd=s:1");
    let attributes: Vec<(&str, &str)> = l.attributes.iter().map(|(k, v)| (&**k, &**v)).collect();
    assert_eq!(attributes, [("k", "v"), ("n", "3")]);
    assert_eq!((s.dropped_links, l.dropped_attributes), (0, 0));
}

#[test]
fn events_with_every_attribute_type() {
    let s = span_with("span_events", |m| {
        m.arr(1)
            .map(3)
            .kv("name", |m| m.str("boom"))
            .kv("time_unix_nano", |m| m.uint(123_456_789))
            .kv("attributes", |m| {
                let m = m.map(6);
                let m = typed(m.str("s"), 0, "string_value", |m| m.str("b"));
                let m = typed(m.str("b"), 1, "bool_value", |m| m.raw(&[0xc3]));
                let m = typed(m.str("i"), 2, "int_value", |m| m.sint(-2));
                let m = typed(m.str("f"), 3, "double_value", |m| m.f64(1.5));
                let m = typed(m.str("a"), 4, "array_value", |m| {
                    let m = m.map(1).str("values").arr(2);
                    let m = typed(m, 2, "int_value", |m| m.uint(1));
                    typed(m, 0, "string_value", |m| m.str("x"))
                });
                // An unknown type is skipped, not refused.
                typed(m.str("u"), 9, "other_value", |m| m.uint(1))
            })
    });
    assert_eq!(s.events.len(), 1);
    let e = &s.events[0];
    assert_eq!((&*e.name, e.time_unix_nano), ("boom", 123_456_789));
    let expected: BTreeMap<Str, AttributeValue> = BTreeMap::from([
        (Str::from("s"), AttributeValue::String("b".into())),
        (Str::from("b"), AttributeValue::Bool(true)),
        (Str::from("i"), AttributeValue::Int(-2)),
        (Str::from("f"), AttributeValue::Double(1.5)),
        (
            Str::from("a"),
            AttributeValue::Array(vec![
                AttributeValue::Int(1),
                AttributeValue::String("x".into()),
            ]),
        ),
    ]);
    assert_eq!(e.attributes, expected);
}

#[test]
fn meta_struct_keeps_the_bytes() {
    let s = span_with("meta_struct", |m| {
        m.map(2)
            .str("_dd.stack")
            .bin(&[0x81, 0xa1, b'x', 1])
            .str("bad")
            .uint(3)
    });
    let kept: Vec<(&str, &[u8])> = s.meta_struct.iter().map(|(k, v)| (&**k, &**v)).collect();
    assert_eq!(kept, [("_dd.stack", &[0x81, 0xa1, b'x', 1][..])]);
}

#[test]
fn too_many_links_events_and_attributes_are_cut_and_counted() {
    let extra = 3;
    let s = span_with("span_links", |mut m| {
        m = m.arr((MAX_LINKS + extra) as u32);
        for i in 0..MAX_LINKS + extra {
            m = link(m, i as u64);
        }
        m
    });
    assert_eq!((s.links.len(), s.dropped_links), (MAX_LINKS, extra as u32));
    let s = span_with("span_events", |mut m| {
        m = m.arr((MAX_EVENTS + extra) as u32);
        for _ in 0..MAX_EVENTS + extra {
            m = m.map(1).kv("name", |m| m.str("e"));
        }
        m
    });
    assert_eq!(
        (s.events.len(), s.dropped_events),
        (MAX_EVENTS, extra as u32)
    );
    let s = span_with("span_links", |m| {
        let mut m = m
            .arr(1)
            .map(1)
            .str("attributes")
            .map((MAX_ATTRIBUTES + extra) as u32);
        for i in 0..MAX_ATTRIBUTES + extra {
            m = m.str(&format!("k{i}")).str("v");
        }
        m
    });
    assert_eq!(s.links[0].attributes.len(), MAX_ATTRIBUTES);
    assert_eq!(s.links[0].dropped_attributes, extra as u32);
}

#[test]
fn wrong_shapes_are_skipped_and_forged_counts_end_at_the_body() {
    // Not an array, not maps, a nested array in an array: skipped, the span kept.
    let s = span_with("span_links", |m| m.str("nope"));
    assert!(s.links.is_empty());
    let s = span_with("span_links", |m| m.arr(2).uint(1).str("x"));
    assert!(s.links.is_empty());
    let s = span_with("span_events", |m| {
        m.arr(1).map(1).kv("attributes", |m| {
            typed(m.map(1).str("a"), 4, "array_value", |m| {
                let m = m.map(1).str("values").arr(1);
                typed(m, 4, "array_value", |m| m.map(0))
            })
        })
    });
    assert_eq!(
        s.events[0].attributes.get("a"),
        Some(&AttributeValue::Array(Vec::new()))
    );
    // A count of 2^32 - 1 links in a few bytes: truncated, not a long loop.
    let body = Mp::default()
        .arr(1)
        .arr(1)
        .map(1)
        .kv("span_links", |m| m.arr32(u32::MAX).map(0))
        .0;
    assert!(decode_v04(&body).is_err());
}

#[test]
fn json_bodies_carry_links_and_events_in_the_same_shapes() {
    let body = br#"[[{"name": "op",
        "span_links": [{"trace_id": 7, "trace_id_high": 5, "span_id": 9,
                        "attributes": {"k": "v", "n": 3}, "flags": 2147483649, "tracestate": "dd=s:1"},
                       "not a link"],
        "span_events": [{"name": "boom", "time_unix_nano": 123,
                         "attributes": {"a": {"type": 0, "string_value": "b"},
                                        "arr": {"type": 4, "array_value": {"values": [{"type": 2, "int_value": 1}]}},
                                        "bad": {"type": 2, "int_value": "x"}}}]},
        {"name": "lenient", "span_links": {"not": "an array"}, "span_events": 3}]]"#;
    let chunks = super::super::decode_json(body).unwrap();
    let s = &chunks[0].spans[0];
    assert_eq!(s.links.len(), 1);
    let l = &s.links[0];
    assert_eq!(
        (l.trace_id, l.trace_id_high, l.span_id, l.flags),
        (7, 5, 9, 0x8000_0001)
    );
    assert_eq!(&*l.tracestate, "dd=s:1");
    // A number is not a string attribute: skipped.
    assert_eq!(l.attributes.keys().map(|k| &**k).collect::<Vec<_>>(), ["k"]);
    let e = &s.events[0];
    assert_eq!((&*e.name, e.time_unix_nano), ("boom", 123));
    assert_eq!(
        e.attributes.get("a"),
        Some(&AttributeValue::String("b".into()))
    );
    assert_eq!(
        e.attributes.get("arr"),
        Some(&AttributeValue::Array(vec![AttributeValue::Int(1)]))
    );
    assert_eq!(e.attributes.get("bad"), None);
    let lenient = &chunks[0].spans[1];
    assert!(lenient.links.is_empty() && lenient.events.is_empty());
}
