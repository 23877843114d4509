//! v0.5 bodies: a string table and spans as 12-arrays, and their malformed forms.

use super::*;

/// A v0.5 payload from a string table and spans as 12-arrays.
fn v05(strings: &[&str], spans: impl FnOnce(Mp) -> Mp) -> Vec<u8> {
    let mut m = Mp::default().arr(2).arr(strings.len() as u32);
    for s in strings {
        m = m.str(s);
    }
    spans(m).0
}

#[test]
fn v05_spans() {
    let strings = [
        "",
        "shop",
        "flask.request",
        "GET /cart",
        "web",
        "http.status_code",
        "200",
        SAMPLING_PRIORITY_KEY,
        "env",
        "prod",
    ];
    let body = v05(&strings, |m| {
        m.arr(1)
            .arr(2)
            .arr(12)
            .uint(1)
            .uint(2)
            .uint(3)
            .u64(u64::MAX)
            .uint(10)
            .uint(0)
            .sint(1_700_000_000_000_000_000)
            .uint(5000)
            .uint(0)
            .map(2)
            .uint(5)
            .uint(6)
            .uint(8)
            .uint(9)
            .map(1)
            .uint(7)
            .f64(1.0)
            .uint(4)
            // Lenient: an inline string, nil maps, a float number.
            .arr32(12)
            .str("inline")
            .uint(0)
            .uint(0)
            .u64(u64::MAX)
            .uint(11)
            .uint(10)
            .f64(1.7e18)
            .nil()
            .uint(1)
            .nil()
            .nil()
            .uint(0)
    });
    let chunks = decode_v05(&body).unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].priority, Some(1));
    let [root, child] = &chunks[0].spans[..] else {
        panic!("two spans")
    };
    assert_eq!(
        (
            &*root.service,
            &*root.name,
            &*root.resource,
            &*root.span_type
        ),
        ("shop", "flask.request", "GET /cart", "web")
    );
    assert_eq!(
        (
            root.trace_id,
            root.span_id,
            root.parent_id,
            root.start,
            root.duration,
            root.error
        ),
        (u64::MAX, 10, 0, 1_700_000_000_000_000_000, 5000, 0)
    );
    assert_eq!(root.meta.get("http.status_code").map(|v| &**v), Some("200"));
    assert_eq!(root.meta.get("env").map(|v| &**v), Some("prod"));
    assert_eq!(
        (
            &*child.service,
            &*child.name,
            child.parent_id,
            child.start,
            child.duration,
            child.error
        ),
        ("inline", "", 10, 1_700_000_000_000_000_000, 0, 1)
    );
    assert!(child.meta.is_empty() && child.metrics.is_empty());
}

#[test]
fn v05_malformed() {
    let span11 = |m: Mp| {
        let mut m = m.arr(1).arr(1).arr(11);
        for _ in 0..11 {
            m = m.uint(0);
        }
        m
    };
    let span_with_index = |index: u64| {
        move |m: Mp| {
            let mut m = m.arr(1).arr(1).arr(12).uint(index);
            for _ in 0..11 {
                m = m.uint(0);
            }
            m
        }
    };
    let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
        (
            "not two arrays",
            Mp::default().arr(3).0,
            DecodeError::NotTraces,
        ),
        (
            "v0.4 body",
            Mp::default().arr(1).arr(0).0,
            DecodeError::NotTraces,
        ),
        (
            "table not an array",
            Mp::default().arr(2).uint(1).arr(0).0,
            DecodeError::NotTraces,
        ),
        (
            "table entry not a string",
            Mp::default().arr(2).arr(1).uint(1).arr(0).0,
            DecodeError::BadStringTable,
        ),
        ("span of 11", v05(&[""], span11), DecodeError::BadSpanLength),
        (
            "index beyond table",
            v05(&[""], span_with_index(1)),
            DecodeError::BadStringIndex,
        ),
        (
            "negative index",
            v05(&[""], |m| {
                let mut m = m.arr(1).arr(1).arr(12).sint(-1);
                for _ in 0..11 {
                    m = m.uint(0);
                }
                m
            }),
            DecodeError::BadStringIndex,
        ),
        (
            "truncated span",
            v05(&[""], |m| m.arr(1).arr(1).arr(12).uint(0)),
            DecodeError::Truncated,
        ),
        (
            "span not an array",
            v05(&[""], |m| m.arr(1).arr(1).map(0)),
            DecodeError::BadSpanLength,
        ),
    ];
    for (what, body, err) in cases {
        assert_eq!(decode_v05(&body), Err(err), "{what}");
    }
    assert!(decode_v05(&v05(&[""], span_with_index(0))).is_ok());
}
