//! Hand-built payloads: one per lenient case and per malformed form.

use super::*;
use rmp::encode as enc;

mod interning;
mod v05;

/// A msgpack builder, so each test spells its payload out.
#[derive(Default, Clone)]
pub(super) struct Mp(pub Vec<u8>);

impl Mp {
    pub(super) fn arr(mut self, n: u32) -> Self {
        enc::write_array_len(&mut self.0, n).unwrap();
        self
    }
    pub(super) fn arr32(mut self, n: u32) -> Self {
        self.0.push(0xdd);
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }
    pub(super) fn map(mut self, n: u32) -> Self {
        enc::write_map_len(&mut self.0, n).unwrap();
        self
    }
    pub(super) fn map32(mut self, n: u32) -> Self {
        self.0.push(0xdf);
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }
    pub(super) fn str(mut self, s: &str) -> Self {
        enc::write_str(&mut self.0, s).unwrap();
        self
    }
    pub(super) fn str_bytes(mut self, b: &[u8]) -> Self {
        enc::write_str_len(&mut self.0, b.len() as u32).unwrap();
        self.0.extend_from_slice(b);
        self
    }
    pub(super) fn bin(mut self, b: &[u8]) -> Self {
        enc::write_bin(&mut self.0, b).unwrap();
        self
    }
    pub(super) fn uint(mut self, u: u64) -> Self {
        enc::write_uint(&mut self.0, u).unwrap();
        self
    }
    pub(super) fn u64(mut self, u: u64) -> Self {
        enc::write_u64(&mut self.0, u).unwrap();
        self
    }
    pub(super) fn sint(mut self, i: i64) -> Self {
        enc::write_sint(&mut self.0, i).unwrap();
        self
    }
    pub(super) fn f64(mut self, f: f64) -> Self {
        enc::write_f64(&mut self.0, f).unwrap();
        self
    }
    pub(super) fn f32(mut self, f: f32) -> Self {
        enc::write_f32(&mut self.0, f).unwrap();
        self
    }
    pub(super) fn nil(mut self) -> Self {
        enc::write_nil(&mut self.0).unwrap();
        self
    }
    pub(super) fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    /// `key` then the value written by `value`.
    pub(super) fn kv(self, key: &str, value: impl FnOnce(Self) -> Self) -> Self {
        value(self.str(key))
    }
}

/// A complete ddtrace-like v0.4 span map.
fn full_span(m: Mp, trace_id: u64, span_id: u64, parent_id: u64) -> Mp {
    m.map(12)
        .kv("service", |m| m.str("shop"))
        .kv("name", |m| m.str("flask.request"))
        .kv("resource", |m| m.str("GET /cart"))
        .kv("type", |m| m.str("web"))
        .kv("trace_id", |m| m.uint(trace_id))
        .kv("span_id", |m| m.uint(span_id))
        .kv("parent_id", |m| m.uint(parent_id))
        .kv("start", |m| m.sint(1_700_000_000_000_000_000))
        .kv("duration", |m| m.sint(1_500_000))
        .kv("error", |m| m.uint(1))
        .kv("meta", |m| {
            m.map(2)
                .str("http.status_code")
                .str("500")
                .str("_dd.p.tid")
                .str("6553f10000000000")
        })
        .kv("metrics", |m| {
            m.map(2)
                .str("_sampling_priority_v1")
                .uint(2)
                .str("_dd.measured")
                .f64(1.0)
        })
}

fn one_span(body: &[u8]) -> Span {
    let chunks = decode_v04(body).unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].spans.len(), 1);
    chunks[0].spans[0].clone()
}

#[test]
fn v04_full_span() {
    let body = full_span(Mp::default().arr(1).arr(1), u64::MAX, 2, 0).0;
    let chunks = decode_v04(&body).unwrap();
    assert_eq!(chunks[0].priority, Some(2));
    let s = &chunks[0].spans[0];
    assert_eq!(
        (&*s.service, &*s.name, &*s.resource, &*s.span_type),
        ("shop", "flask.request", "GET /cart", "web")
    );
    assert_eq!((s.trace_id, s.span_id, s.parent_id), (u64::MAX, 2, 0));
    assert_eq!(
        (s.start, s.duration, s.error),
        (1_700_000_000_000_000_000, 1_500_000, 1)
    );
    assert_eq!(s.meta.get("http.status_code").map(|v| &**v), Some("500"));
    assert_eq!(
        s.meta.get("_dd.p.tid").map(|v| &**v),
        Some("6553f10000000000")
    );
    assert_eq!(s.metrics.get("_dd.measured"), Some(&1.0));
}

#[test]
fn v04_missing_keys_take_zero_values() {
    // ddtrace omits parent_id, error and type when zero or empty.
    let s = one_span(
        &Mp::default()
            .arr(1)
            .arr(1)
            .map(1)
            .kv("name", |m| m.str("x"))
            .0,
    );
    assert_eq!(
        s,
        Span {
            name: "x".into(),
            ..Span::default()
        }
    );
    let s = one_span(&Mp::default().arr(1).arr(1).map(0).0);
    assert_eq!(s, Span::default());
}

#[test]
fn v04_nil_anywhere() {
    let body = Mp::default()
        .arr(1)
        .arr(1)
        .map(8)
        .kv("service", Mp::nil)
        .kv("trace_id", Mp::nil)
        .kv("start", Mp::nil)
        .kv("error", Mp::nil)
        .kv("meta", Mp::nil)
        .kv("metrics", |m| m.map(2).str("a").nil().str("b").f64(2.0))
        .kv("type", Mp::nil)
        .kv("resource", |m| m.str("r"))
        .0;
    let s = one_span(&body);
    assert_eq!(
        (&*s.service, s.trace_id, s.start, s.error, &*s.resource),
        ("", 0, 0, 0, "r")
    );
    assert!(s.meta.is_empty());
    assert_eq!(s.metrics.len(), 1);
    // A nil trace is an empty one.
    let chunks = decode_v04(&Mp::default().arr(1).nil().0).unwrap();
    assert!(chunks[0].spans.is_empty());
}

#[test]
fn v04_strings_as_bin_and_invalid_utf8() {
    let body = Mp::default()
        .arr(1)
        .arr(1)
        .map(3)
        .kv("service", |m| m.bin(b"svc"))
        .kv("name", |m| m.str_bytes(b"bad\xffname"))
        .kv("meta", |m| m.map(1).bin(b"k\xc3").bin(b"v"))
        .0;
    let s = one_span(&body);
    assert_eq!(&*s.service, "svc");
    assert_eq!(&*s.name, "bad\u{fffd}name");
    assert_eq!(s.meta.get("k\u{fffd}").map(|v| &**v), Some("v"));
}

#[test]
fn v04_numbers_interchange() {
    type Case = (&'static str, Mp, fn(&Span) -> f64, f64);
    let cases: Vec<Case> = vec![
        (
            "trace_id as u64 marker",
            Mp::default().u64(7),
            |s| s.trace_id as f64,
            7.0,
        ),
        (
            "trace_id as negative int",
            Mp::default().sint(-1),
            |s| s.trace_id as f64,
            u64::MAX as f64,
        ),
        (
            "trace_id as float",
            Mp::default().f64(42.0),
            |s| s.trace_id as f64,
            42.0,
        ),
        (
            "start as uint",
            Mp::default().uint(1 << 40),
            |s| s.start as f64,
            (1u64 << 40) as f64,
        ),
        (
            "duration as float",
            Mp::default().f32(2.5),
            |s| s.duration as f64,
            2.0,
        ),
        (
            "error as bool-ish uint",
            Mp::default().uint(1),
            |s| f64::from(s.error),
            1.0,
        ),
        (
            "metric as int",
            Mp::default().sint(-3),
            |s| s.metrics["m"],
            -3.0,
        ),
        (
            "metric as f32",
            Mp::default().f32(0.5),
            |s| s.metrics["m"],
            0.5,
        ),
    ];
    for (what, value, get, want) in cases {
        let key = match what.split(' ').next() {
            Some("metric") => "metrics",
            Some(k) => k,
            None => unreachable!(),
        };
        let body = if key == "metrics" {
            Mp::default()
                .arr(1)
                .arr(1)
                .map(1)
                .str("metrics")
                .map(1)
                .str("m")
                .raw(&value.0)
        } else {
            Mp::default().arr(1).arr(1).map(1).str(key).raw(&value.0)
        };
        assert_eq!(get(&one_span(&body.0)), want, "{what}");
    }
}

#[test]
fn v04_long_headers() {
    let body = Mp::default()
        .arr32(1)
        .arr32(1)
        .map32(2)
        .kv("name", |m| m.str("long"))
        .kv("meta", |m| m.map32(1).str("k").str("v"))
        .0;
    let s = one_span(&body);
    assert_eq!((&*s.name, s.meta.len()), ("long", 1));
}

#[test]
fn v04_unknown_keys_and_wrong_types_are_skipped() {
    let body = Mp::default()
        .arr(1)
        .arr(1)
        .map(9)
        .kv("meta_struct", |m| m.map(1).str("appsec").bin(&[1, 2, 3]))
        .kv("span_links", |m| {
            m.arr(1)
                .map(2)
                .str("trace_id")
                .uint(1)
                .str("attributes")
                .map(1)
                .str("a")
                .str("b")
        })
        .kv("future", |m| {
            m.arr(2).f64(1.0).raw(&[0xd6, 0x01, 1, 2, 3, 4])
        })
        .kv("meta", |m| m.str("not a map"))
        .kv("metrics", |m| {
            m.map(2).str("ok").uint(1).str("bad").str("x")
        })
        .kv("trace_id", |m| m.str("not a number"))
        .kv("service", |m| m.uint(5))
        .kv("name", |m| m.str("kept"))
        .raw(&[0x01, 0x02]) // a non-string key (1) and its value (2)
        .0;
    let s = one_span(&body);
    assert_eq!(&*s.name, "kept");
    assert_eq!((&*s.service, s.trace_id), ("", 0));
    assert!(s.meta.is_empty());
    assert_eq!(s.metrics.keys().map(|k| &**k).collect::<Vec<_>>(), ["ok"]);
}

#[test]
fn v04_several_traces_and_priorities() {
    let mut m = Mp::default().arr(3).arr(2);
    // Child first: the root is found by parent_id, not by position.
    m = m
        .map(2)
        .kv("span_id", |m| m.uint(2))
        .kv("parent_id", |m| m.uint(1));
    m = m
        .map(3)
        .kv("span_id", |m| m.uint(1))
        .kv("parent_id", |m| m.uint(0))
        .kv("metrics", |m| m.map(1).str(SAMPLING_PRIORITY_KEY).sint(-1));
    // A distributed trace: the local root has a parent elsewhere.
    m = m
        .arr(1)
        .map(2)
        .kv("parent_id", |m| m.uint(99))
        .kv("metrics", |m| m.map(1).str(SAMPLING_PRIORITY_KEY).f64(1.0));
    m = m.arr(0);
    let chunks = decode_v04(&m.0).unwrap();
    let got: Vec<(usize, Option<i32>)> =
        chunks.iter().map(|c| (c.spans.len(), c.priority)).collect();
    assert_eq!(got, [(2, Some(-1)), (1, Some(1)), (0, None)]);
}

#[test]
fn v04_malformed() {
    let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
        ("empty body", vec![], DecodeError::Truncated),
        (
            "not an array",
            Mp::default().map(0).0,
            DecodeError::NotTraces,
        ),
        ("nil body", Mp::default().nil().0, DecodeError::NotTraces),
        (
            "trace not an array",
            Mp::default().arr(1).str("x").0,
            DecodeError::NotSpans,
        ),
        (
            "span not a map",
            Mp::default().arr(1).arr(1).arr(0).0,
            DecodeError::SpanNotMap,
        ),
        (
            "truncated array",
            Mp::default().arr(2).arr(0).0,
            DecodeError::Truncated,
        ),
        (
            "truncated string",
            Mp::default()
                .arr(1)
                .arr(1)
                .map(1)
                .str("name")
                .raw(&[0xa5, b'a'])
                .0,
            DecodeError::Truncated,
        ),
        (
            "truncated map",
            Mp::default().arr(1).arr(1).map(2).str("name").str("x").0,
            DecodeError::Truncated,
        ),
        (
            "forged array32",
            Mp::default()
                .arr(1)
                .arr(1)
                .map(1)
                .str("x")
                .arr32(u32::MAX)
                .0,
            DecodeError::Truncated,
        ),
        (
            "forged trace count",
            Mp::default().arr32(u32::MAX).0,
            DecodeError::Truncated,
        ),
        (
            "reserved marker",
            Mp::default().arr(1).arr(1).map(1).str("x").raw(&[0xc1]).0,
            DecodeError::BadMarker,
        ),
    ];
    for (what, body, err) in cases {
        assert_eq!(decode_v04(&body), Err(err), "{what}");
    }
}

#[test]
fn v04_deep_nesting_does_not_overflow_the_stack() {
    let mut m = Mp::default().arr(1).arr(1).map(1).str("deep");
    for _ in 0..100_000 {
        m = m.arr(1);
    }
    let body = m.nil().0;
    assert_eq!(one_span(&body), Span::default());
}

#[test]
fn json_bodies() {
    let body = br#"[[
        {"service":"shop","name":"rack.request","resource":"GET /","type":"web",
         "trace_id":18446744073709551615,"span_id":1,"parent_id":0,"start":1700000000000000000,
         "duration":1.5e6,"error":1,"meta":{"a":"b","n":null},"metrics":{"_sampling_priority_v1":2,"x":0.5,"y":null}},
        {"name":"child","span_id":2,"parent_id":1,"unknown":{"deep":[1,2]}}
    ], [], null]"#;
    let chunks = decode_json(body).unwrap();
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[0].priority, Some(2));
    let root = &chunks[0].spans[0];
    assert_eq!(
        (root.trace_id, root.duration, root.error),
        (u64::MAX, 1_500_000, 1)
    );
    assert_eq!(root.meta.len(), 1);
    assert_eq!(root.metrics.len(), 2);
    assert_eq!(&*chunks[0].spans[1].name, "child");
    assert!(chunks[1].spans.is_empty() && chunks[2].spans.is_empty());

    let cases: &[(&[u8], DecodeError)] = &[
        (b"", DecodeError::JsonSyntax),
        (b"[[{]]", DecodeError::JsonSyntax),
        (b"{}", DecodeError::JsonShape),
        (b"[[1]]", DecodeError::JsonShape),
        (br#"[[{"trace_id":"1"}]]"#, DecodeError::JsonShape),
    ];
    for (body, err) in cases {
        assert_eq!(
            decode_json(body),
            Err(*err),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn error_names_are_unique() {
    let all = [
        DecodeError::Truncated,
        DecodeError::NotTraces,
        DecodeError::NotSpans,
        DecodeError::SpanNotMap,
        DecodeError::BadSpanLength,
        DecodeError::BadStringIndex,
        DecodeError::BadStringTable,
        DecodeError::BadMarker,
        DecodeError::JsonSyntax,
        DecodeError::JsonShape,
    ];
    let mut names: Vec<&str> = all.iter().map(|e| e.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len());
}
