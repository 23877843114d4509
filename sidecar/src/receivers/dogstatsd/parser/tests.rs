//! Table tests of the DogStatsD grammar: one row per rule, one per malformed form.

use super::*;

fn metric(line: &str) -> Metric<'_> {
    match parse_line(line.as_bytes()) {
        Ok(Message::Metric(m)) => m,
        other => panic!("{line:?}: expected a metric, got {other:?}"),
    }
}

#[test]
fn metric_types() {
    let cases = [
        ("a:1|c", MetricKind::Count),
        ("a:1|g", MetricKind::Gauge),
        ("a:1|ms", MetricKind::Timer),
        ("a:1|h", MetricKind::Histogram),
        ("a:1|s", MetricKind::Set),
        ("a:1|d", MetricKind::Distribution),
    ];
    for (line, kind) in cases {
        assert_eq!(metric(line).kind, kind, "{line}");
    }
}

#[test]
fn metric_values() {
    let cases: &[(&str, &[f64])] = &[
        ("a:1|c", &[1.0]),
        ("a:-2.5|g", &[-2.5]),
        ("a:+3|g", &[3.0]),
        ("a:1e3|h", &[1000.0]),
        ("a:.5|ms", &[0.5]),
        ("a:1:2:3.5|h", &[1.0, 2.0, 3.5]),
        ("a:4:5|c|@0.5|#x", &[4.0, 5.0]),
        ("a:7:8|d", &[7.0, 8.0]),
        // Sets carry a member, not numbers, even with `:` in it.
        ("a:user:42|s", &[]),
    ];
    for (line, values) in cases {
        let got: Vec<f64> = metric(line).values().collect();
        assert_eq!(&got, values, "{line}");
    }
}

#[test]
fn set_members() {
    let cases = [
        ("a:abc|s", Some("abc")),
        ("a:user:42|s", Some("user:42")),
        ("a:1|c", None),
    ];
    for (line, member) in cases {
        assert_eq!(metric(line).set_member(), member, "{line}");
    }
}

#[test]
fn optional_fields_in_any_order() {
    let lines = [
        "page.views:1|c|@0.5|#env:prod,a|c:abc|e:it-false,cn-x|card:high|T1700000000",
        "page.views:1|c|T1700000000|card:high|e:it-false,cn-x|c:abc|#env:prod,a|@0.5",
        "page.views:1|c|#env:prod,a|T1700000000|@0.5|card:high|c:abc|e:it-false,cn-x",
    ];
    for line in lines {
        let m = metric(line);
        assert_eq!(m.name, "page.views", "{line}");
        assert_eq!(m.sample_rate, 0.5, "{line}");
        assert_eq!(
            m.tags.iter().collect::<Vec<_>>(),
            ["env:prod", "a"],
            "{line}"
        );
        assert_eq!(m.origin.container_id, Some("abc"), "{line}");
        assert_eq!(m.origin.external_data, Some("it-false,cn-x"), "{line}");
        assert_eq!(m.origin.cardinality, Some("high"), "{line}");
        assert_eq!(m.timestamp, Some(1_700_000_000), "{line}");
    }
}

#[test]
fn defaults_when_fields_absent() {
    let m = metric("a.b:1|g");
    assert_eq!(m.sample_rate, 1.0);
    assert!(m.tags.is_empty());
    assert_eq!((m.origin, m.timestamp), (Origin::default(), None));
}

#[test]
fn unknown_fields_are_ignored() {
    let cases = ["a:1|c|x:future", "a:1|c|", "a:1|c||#t", "a:1|c|zzz|#t|@1"];
    for line in cases {
        let m = metric(line);
        assert_eq!((m.name, m.first_value), ("a", 1.0), "{line}");
    }
}

#[test]
fn tags() {
    let cases: &[(&str, &[&str])] = &[
        ("a:1|c|#", &[]),
        ("a:1|c|#a", &["a"]),
        ("a:1|c|#a,b:c", &["a", "b:c"]),
        ("a:1|c|#a,,b,", &["a", "b"]),
        ("a:1|c|#url:http://x/y?z=1", &["url:http://x/y?z=1"]),
        ("a:1|c|#é:ü", &["é:ü"]),
    ];
    for (line, tags) in cases {
        assert_eq!(
            &metric(line).tags.iter().collect::<Vec<_>>(),
            tags,
            "{line}"
        );
    }
}

#[test]
fn names_keep_everything_before_the_first_colon() {
    let cases = [
        ("a.b_c-d:1|c", "a.b_c-d"),
        ("héllo:1|c", "héllo"),
        ("with space:1|c", "with space"),
    ];
    for (line, name) in cases {
        assert_eq!(metric(line).name, name, "{line}");
    }
}

#[test]
fn malformed_metrics() {
    let cases: &[(&[u8], ParseError)] = &[
        (b"a", ParseError::MissingField),
        (b"a:1", ParseError::MissingField),
        (b"a|c", ParseError::MissingField),
        (b":1|c", ParseError::EmptyName),
        (b"a:|c", ParseError::BadValue),
        (b"a:x|c", ParseError::BadValue),
        (b"a:1:|c", ParseError::BadValue),
        (b"a:1:x|h", ParseError::BadValue),
        (b"a:nan|g", ParseError::BadValue),
        (b"a:inf|g", ParseError::BadValue),
        (b"a:|s", ParseError::BadValue),
        (b"a:1|x", ParseError::BadType),
        (b"a:1|", ParseError::BadType),
        (b"a:1|cc", ParseError::BadType),
        (b"a:1|c|@x", ParseError::BadRate),
        (b"a:1|c|@0", ParseError::BadRate),
        (b"a:1|c|@1.5", ParseError::BadRate),
        (b"a:1|c|@-1", ParseError::BadRate),
        (b"a:1|c|@", ParseError::BadRate),
        (b"a:1|g|T", ParseError::BadTimestamp),
        (b"a:1|g|Tabc", ParseError::BadTimestamp),
        (b"a:1|g|T-5", ParseError::BadTimestamp),
        (b"a:1|c|#\xff", ParseError::NotUtf8),
        (b"\xc3(:1|c", ParseError::NotUtf8),
    ];
    for (line, err) in cases {
        assert_eq!(
            parse_line(line),
            Err(*err),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn oversized_lines() {
    let mut line = b"a:1|c|#".to_vec();
    line.resize(MAX_LINE_BYTES, b'x');
    assert!(parse_line(&line).is_ok());
    line.push(b'x');
    assert_eq!(parse_line(&line), Err(ParseError::Oversized));
}

fn event(line: &str) -> Event<'_> {
    match parse_line(line.as_bytes()) {
        Ok(Message::Event(e)) => e,
        other => panic!("{line:?}: expected an event, got {other:?}"),
    }
}

#[test]
fn events() {
    let e = event("_e{5,4}:title|text|d:1700000000|h:web.1|k:key|p:low|s:python|t:error|#a,b:c");
    assert_eq!((e.raw_title, e.raw_text), ("title", "text"));
    assert_eq!(e.timestamp, Some(1_700_000_000));
    assert_eq!(e.hostname, Some("web.1"));
    assert_eq!(e.aggregation_key, Some("key"));
    assert_eq!(e.priority, Some("low"));
    assert_eq!(e.source_type, Some("python"));
    assert_eq!(e.alert_type, Some("error"));
    assert_eq!(e.tags.iter().collect::<Vec<_>>(), ["a", "b:c"]);

    let cases: &[(&str, &str, &str)] = &[
        ("_e{1,0}:t|", "t", ""),
        // Lengths are bytes: the title is 2 chars and 3 bytes.
        ("_e{3,2}:é!|ok", "é!", "ok"),
        // The text may contain `|`: the length says where it ends.
        ("_e{1,3}:t|a|b|#x", "t", "a|b"),
        ("_e{1,10}:t|line\\nnext", "t", "line\nnext"),
    ];
    for (line, title, text) in cases {
        let e = event(line);
        assert_eq!((&*e.title(), &*e.text()), (*title, *text), "{line}");
    }
}

#[test]
fn event_fields_that_are_ignored() {
    let e = event("_e{1,1}:t|x|p:urgent|t:fatal|z:unknown");
    assert_eq!((e.priority, e.alert_type), (None, None));
}

#[test]
fn event_to_telemetry() {
    let e = event("_e{1,1}:t|x|#b,a,b").to_telemetry(42);
    assert_eq!(e.timestamp, 42);
    assert_eq!(e.tags, ["a", "b"]);
}

#[test]
fn malformed_events() {
    let cases: &[(&str, ParseError)] = &[
        ("_e{", ParseError::BadEventHeader),
        ("_e{5}:title|", ParseError::BadEventHeader),
        ("_e{a,1}:t|x", ParseError::BadEventHeader),
        ("_e{1,-1}:t|x", ParseError::BadEventHeader),
        ("_e{5,4}:tit", ParseError::TruncatedEvent),
        ("_e{5,4}:title|te", ParseError::TruncatedEvent),
        ("_e{5,4}:titlextext", ParseError::TruncatedEvent),
        ("_e{1,2}:t|abc", ParseError::TruncatedEvent),
        // A length that ends inside a multi-byte character.
        ("_e{1,1}:é|x", ParseError::TruncatedEvent),
        ("_e{99999999999999999999,1}:t|x", ParseError::BadEventHeader),
        ("_e{18446744073709551615,1}:t|x", ParseError::TruncatedEvent),
        ("_e{0,1}:|x", ParseError::EmptyTitle),
        ("_e{1,1}:t|x|d:soon", ParseError::BadTimestamp),
    ];
    for (line, err) in cases {
        assert_eq!(parse_line(line.as_bytes()), Err(*err), "{line}");
    }
}

fn check(line: &str) -> ServiceCheck<'_> {
    match parse_line(line.as_bytes()) {
        Ok(Message::ServiceCheck(c)) => c,
        other => panic!("{line:?}: expected a service check, got {other:?}"),
    }
}

#[test]
fn service_checks() {
    let c = check("_sc|db.up|2|d:1700000000|h:web.1|#a,b|m:down\\nhard, really m\\: yes");
    assert_eq!((c.name, c.status), ("db.up", 2));
    assert_eq!(c.timestamp, Some(1_700_000_000));
    assert_eq!(c.hostname, Some("web.1"));
    assert_eq!(c.tags.iter().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(c.message().as_deref(), Some("down\nhard, really m: yes"));

    let cases: &[(&str, u8, Option<&str>)] = &[
        ("_sc|a|0", 0, None),
        ("_sc|a|1|", 1, None),
        ("_sc|a|3|m:", 3, Some("")),
        ("_sc|a|0|x:y|m:hi", 0, Some("hi")),
        // As the Agent splits them, `m:` ends at the next `|`; what follows
        // is another field, known or not, never part of the message.
        ("_sc|a|2|#t|m:db down|c:in-4026532001", 2, Some("db down")),
        ("_sc|a|2|m:db down|z|#t", 2, Some("db down")),
        ("_sc|a|2|m:a | b", 2, Some("a ")),
    ];
    for (line, status, message) in cases {
        let c = check(line);
        assert_eq!(
            (c.status, c.message().as_deref()),
            (*status, *message),
            "{line}"
        );
    }
}

/// The `c:`, `e:` and `card:` forms, as `(fields, expected origin)`.
fn origin_cases() -> Vec<(&'static str, Origin<'static>)> {
    let none = Origin::default();
    vec![
        (
            "c:ci-abc123",
            Origin {
                container_id: Some("abc123"),
                ..none
            },
        ),
        (
            "c:abc123",
            Origin {
                container_id: Some("abc123"),
                ..none
            },
        ),
        (
            "c:in-4026532001",
            Origin {
                cgroup_inode: Some(4_026_532_001),
                ..none
            },
        ),
        // Malformed: ignored, as the Agent ignores them.
        ("c:in-x", none),
        ("c:", none),
        ("card:sometimes", none),
        ("e:", none),
        (
            "e:it-false,cn-web,pu-1234|card:orchestrator|c:ci-9",
            Origin {
                container_id: Some("9"),
                cgroup_inode: None,
                external_data: Some("it-false,cn-web,pu-1234"),
                cardinality: Some("orchestrator"),
            },
        ),
        (
            "card:none|c:in-7",
            Origin {
                cgroup_inode: Some(7),
                cardinality: Some("none"),
                ..none
            },
        ),
        // Single-letter fields of no protocol are ignored.
        (
            "q:what|z|card:low",
            Origin {
                cardinality: Some("low"),
                ..none
            },
        ),
    ]
}

#[test]
fn origin_fields_on_metrics_events_and_service_checks_in_any_order() {
    for (fields, origin) in origin_cases() {
        let line = format!("a:1|c|{fields}|#t|@0.5");
        assert_eq!(metric(&line).origin, origin, "{line}");
        let line = format!("a:1|c|#t|{fields}|T1700000000");
        let m = metric(&line);
        assert_eq!(
            (m.origin, m.timestamp),
            (origin, Some(1_700_000_000)),
            "{line}"
        );

        let line = format!("_e{{1,2}}:t|tx|{fields}|#t|k:key");
        let e = event(&line);
        assert_eq!(
            (e.origin, e.raw_text, e.aggregation_key),
            (origin, "tx", Some("key")),
            "{fields}"
        );

        for line in [
            format!("_sc|name|2|#tags|m:db down|{fields}"),
            format!("_sc|name|2|{fields}|m:db down|#tags"),
        ] {
            let c = check(&line);
            assert_eq!(c.origin, origin, "{line}");
            assert_eq!(c.message().as_deref(), Some("db down"), "{line}");
            assert_eq!(c.tags.iter().collect::<Vec<_>>(), ["tags"], "{line}");
        }
    }
}

#[test]
fn origin_reaches_the_telemetry_item() {
    let c = check("_sc|name|2|#tags|m:db down|c:in-4026532001").to_telemetry(1);
    assert_eq!(c.message.as_deref(), Some("db down"));
    let origin = c.origin.unwrap();
    assert_eq!(
        (origin.cgroup_inode, origin.container_id),
        (Some(4_026_532_001), None)
    );
    let e = event("_e{1,1}:t|x|c:ci-abc|card:high").to_telemetry(1);
    let origin = e.origin.unwrap();
    assert_eq!(
        (
            origin.container_id.as_deref(),
            origin.cardinality.as_deref()
        ),
        (Some("abc"), Some("high"))
    );
    assert_eq!(check("_sc|name|0").to_telemetry(1).origin, None);
}

#[test]
fn malformed_service_checks() {
    let cases: &[(&str, ParseError)] = &[
        ("_sc|", ParseError::BadServiceCheck),
        ("_sc|name", ParseError::BadServiceCheck),
        ("_sc||0", ParseError::BadServiceCheck),
        ("_sc|name|", ParseError::BadServiceCheck),
        ("_sc|name|4", ParseError::BadStatus),
        ("_sc|name|ok", ParseError::BadStatus),
        ("_sc|name|0|d:x", ParseError::BadTimestamp),
    ];
    for (line, err) in cases {
        assert_eq!(parse_line(line.as_bytes()), Err(*err), "{line}");
    }
}

#[test]
fn datagram_lines() {
    let cases: &[(&[u8], &[&[u8]])] = &[
        (b"", &[]),
        (b"\n\n", &[]),
        (b"a:1|c\n", &[b"a:1|c"]),
        (b"a:1|c\nb:2|g", &[b"a:1|c", b"b:2|g"]),
        (b"a:1|c\r\n\nb:2|g\n", &[b"a:1|c", b"b:2|g"]),
    ];
    for (datagram, want) in cases {
        assert_eq!(
            &lines(datagram).collect::<Vec<_>>(),
            want,
            "{}",
            String::from_utf8_lossy(datagram)
        );
    }
}

#[test]
fn error_names_are_unique() {
    let mut names: Vec<&str> = ParseError::ALL.iter().map(|e| e.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ParseError::ALL.len());
}
