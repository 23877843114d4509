//! Interning: strings found by position and by hash are the strings sent.

use super::*;
use crate::receivers::trace::decode::interner::same_bytes;
use std::sync::Arc;

#[test]
fn strings_are_interned_per_payload() {
    let mut m = Mp::default().arr(1).arr(2);
    // The meta keys swap positions: found by hash, not by position.
    for meta in [["a", "b"], ["b", "a"]] {
        m = m.map(2).kv("service", |m| m.str("shop")).kv("meta", |m| {
            m.map(2).str(meta[0]).str("1").str(meta[1]).str("2")
        });
    }
    let chunks = decode_v04(&m.0).unwrap();
    let [first, second] = &chunks[0].spans[..] else {
        panic!("two spans")
    };
    assert!(Arc::ptr_eq(&first.service, &second.service));
    for key in ["a", "b"] {
        let key_of = |s: &Span| s.meta.get_key_value(key).map(|(k, _)| k.clone());
        assert!(Arc::ptr_eq(
            &key_of(first).unwrap(),
            &key_of(second).unwrap()
        ));
    }
}

/// The strings of a v0.4 span: service, name, meta entries, metrics keys.
type SpanStrs<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);

#[test]
fn v04_strings_by_position_are_compared_not_assumed() {
    // Each case decodes its spans in one payload, so every span after the
    // first meets, at each position, the string the span before had there.
    let long_a = "a".repeat(70);
    let long_b = format!("{}b", "a".repeat(69));
    let (meta_a, meta_b) = ([("k", long_a.as_str())], [("k", long_b.as_str())]);
    let cases: Vec<(&str, Vec<SpanStrs>)> = vec![
        (
            "meta keys of equal length",
            vec![
                ("s", "n", &[("env", "prod")], &[]),
                ("s", "n", &[("ver", "prod")], &[]),
            ],
        ),
        (
            "meta values of equal length",
            vec![
                ("s", "n", &[("env", "prod")], &[]),
                ("s", "n", &[("env", "test")], &[]),
                ("s", "n", &[("env", "prod")], &[]),
            ],
        ),
        (
            "values one byte apart, at each width of the compare",
            vec![
                (
                    "s",
                    "n",
                    &[("k", "abc"), ("l", "abcdefg"), ("m", "0123456789abcdef")],
                    &[],
                ),
                (
                    "s",
                    "n",
                    &[("k", "abd"), ("l", "abcdefh"), ("m", "0123456789abcdeg")],
                    &[],
                ),
                (
                    "s",
                    "n",
                    &[("k", "bbc"), ("l", "bbcdefg"), ("m", "1123456789abcdef")],
                    &[],
                ),
            ],
        ),
        (
            "a value that is a prefix of the one before",
            vec![
                ("s", "n", &[("http.url", "/cart/12")], &[]),
                ("s", "n", &[("http.url", "/cart/1")], &[]),
                ("s", "n", &[("http.url", "")], &[]),
            ],
        ),
        (
            "keys that change places",
            vec![
                ("s", "n", &[("a", "1"), ("b", "2")], &[]),
                ("s", "n", &[("b", "2"), ("a", "1")], &[]),
            ],
        ),
        (
            "more, then fewer, then no entries",
            vec![
                ("s", "n", &[("a", "1")], &["m"]),
                ("s", "n", &[("a", "1"), ("b", "2"), ("c", "3")], &["m", "n"]),
                ("s", "n", &[], &[]),
                ("s", "n", &[("c", "3")], &["n"]),
            ],
        ),
        (
            "a repeated key: the last value wins",
            vec![
                ("s", "n", &[("a", "1"), ("a", "2")], &[]),
                ("s", "n", &[("a", "2"), ("a", "1")], &[]),
            ],
        ),
        (
            "services and names of equal length",
            vec![
                ("shop", "flask.request", &[], &[]),
                ("cart", "flask.requesT", &[], &[]),
                ("shop", "flask.request", &[], &[]),
            ],
        ),
        (
            "metrics keys of equal length",
            vec![
                ("s", "n", &[], &["m1", "m2"]),
                ("s", "n", &[], &["m2", "m3"]),
            ],
        ),
        (
            "strings too long to intern",
            vec![
                ("s", &long_a, &meta_a, &[]),
                ("s", &long_b, &meta_b, &[]),
                ("s", &long_a, &meta_a, &[]),
            ],
        ),
    ];
    for (what, spans) in cases {
        let mut m = Mp::default().arr(1).arr(spans.len() as u32);
        for &(service, name, meta, metrics) in &spans {
            m = m
                .map(4)
                .kv("service", |m| m.str(service))
                .kv("name", |m| m.str(name));
            m = m.str("meta").map(meta.len() as u32);
            for (k, v) in meta {
                m = m.str(k).str(v);
            }
            m = m.str("metrics").map(metrics.len() as u32);
            for k in metrics {
                m = m.str(k).f64(1.0);
            }
        }
        let want: Vec<Span> = spans
            .iter()
            .map(|&(service, name, meta, metrics)| Span {
                service: service.into(),
                name: name.into(),
                meta: meta.iter().map(|&(k, v)| (k.into(), v.into())).collect(),
                metrics: metrics.iter().map(|&k| (k.into(), 1.0)).collect(),
                ..Span::default()
            })
            .collect();
        assert_eq!(decode_v04(&m.0).unwrap()[0].spans, want, "{what}");
    }
}

#[test]
fn v04_random_spans_decode_like_plain_inserts() {
    // Strings picked to collide at a position: equal lengths, prefixes, one
    // byte apart at either end, beyond the 64 interned bytes, invalid UTF-8
    // and its repair; as str or bin.
    let pool: Vec<Vec<u8>> = [
        &b""[..],
        b"env",
        b"ver",
        b"en",
        b"envx",
        b"production",
        b"productioN",
        b"Production",
        b"http.status_code",
        b"http.status_codf",
        b"bad\xff",
        "bad\u{fffd}".as_bytes(),
    ]
    .iter()
    .map(|b| b.to_vec())
    .chain([
        "x".repeat(33).into_bytes(),
        format!("{}y", "x".repeat(32)).into_bytes(),
        "a".repeat(70).into_bytes(),
        format!("{}b", "a".repeat(69)).into_bytes(),
    ])
    .collect();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut pick = |n: usize| {
        // xorshift64: deterministic, no dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let text = |b: &[u8]| -> Str { String::from_utf8_lossy(b).as_ref().into() };
    for _ in 0..200 {
        let spans = 1 + pick(8);
        let mut m = Mp::default().arr(1).arr(spans as u32);
        let mut want = Vec::new();
        for _ in 0..spans {
            let mut span = Span::default();
            let (service, name) = (&pool[pick(pool.len())], &pool[pick(pool.len())]);
            m = m.map(4).str("service").str_bytes(service);
            m = m.str("name").bin(name);
            (span.service, span.name) = (text(service), text(name));
            // Beyond the 32 remembered meta positions, sometimes.
            let entries = pick(40);
            m = m.str("meta").map(entries as u32);
            for _ in 0..entries {
                let (k, v) = (&pool[pick(pool.len())], &pool[pick(pool.len())]);
                m = if pick(2) == 0 {
                    m.str_bytes(k)
                } else {
                    m.bin(k)
                };
                m = m.str_bytes(v);
                span.meta.insert(text(k), text(v));
            }
            let entries = pick(20);
            m = m.str("metrics").map(entries as u32);
            for i in 0..entries {
                let k = &pool[pick(pool.len())];
                m = m.str_bytes(k).uint(i as u64);
                span.metrics.insert(text(k), i as f64);
            }
            want.push(span);
        }
        assert_eq!(decode_v04(&m.0).unwrap()[0].spans, want);
    }
}

#[test]
fn same_bytes_is_equality() {
    for len in 0..=80 {
        let a: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        assert!(same_bytes(&a, &a.clone()), "equal, {len} bytes");
        for at in 0..len {
            let mut b = a.clone();
            b[at] ^= 0x20;
            assert!(!same_bytes(&a, &b), "{len} bytes, differing at {at}");
        }
        if len > 0 {
            assert!(
                !same_bytes(&a, &a[..len - 1]),
                "{len} bytes against a prefix"
            );
        }
    }
}
