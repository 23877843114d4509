use dynoscope_crds::logs::{LogsSpec, ProcessingRule};

use super::group::{cut, Group, GroupRules, Grouper, TRUNCATED};
use super::parse::{parse, text_status, trace_id, ParseFailure};
use super::*;
use crate::telemetry::LogStatus;

fn rules() -> GroupRules {
    GroupRules {
        start: None,
        stack_traces: true,
        max_bytes: 1024,
    }
}

/// The records `lines` make, each line its own read unless it starts with `+`
/// (then it came in the same read as the line before).
fn groups(lines: &[&str], rules: &GroupRules) -> Vec<String> {
    let mut grouper = Grouper::default();
    let mut out: Vec<Group> = Vec::new();
    for line in lines {
        let (same, line) = match line.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, *line),
        };
        out.extend(grouper.push(format!("{line}\n").as_bytes(), 1, same, rules));
    }
    out.extend(grouper.flush());
    out.into_iter().map(|g| g.text).collect()
}

#[test]
fn a_python_traceback_logged_with_its_message_is_one_record() {
    let lines = [
        "ERROR [shop] - payment failed",
        "+Traceback (most recent call last):",
        "+  File \"app.py\", line 3, in <module>",
        "+    raise ValueError(\"x\")",
        "+ValueError: x",
        "INFO next",
    ];
    assert_eq!(
        groups(&lines, &rules()),
        [
            "ERROR [shop] - payment failed\nTraceback (most recent call last):\n  File \"app.py\", line 3, in <module>\n    raise ValueError(\"x\")\nValueError: x",
            "INFO next"
        ]
    );
}

#[test]
fn chained_python_exceptions_stay_in_one_record() {
    let lines = [
        "Traceback (most recent call last):",
        "  File \"a.py\", line 1, in f",
        "KeyError: 'k'",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "Traceback (most recent call last):",
        "  File \"a.py\", line 3, in g",
        "ValueError: v",
        "after",
    ];
    let out = groups(&lines, &rules());
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(out[0].ends_with("ValueError: v"));
    assert_eq!(out[1], "after");
}

#[test]
fn java_node_and_ruby_traces_join_the_line_before() {
    let java = [
        "Exception in thread \"main\" java.lang.IllegalStateException: boom",
        "\tat com.shop.App.main(App.java:12)",
        "Caused by: java.io.IOException: disk",
        "\t... 3 more",
    ];
    assert_eq!(groups(&java, &rules()).len(), 1);
    let node = ["Error: boom", "    at Object.<anonymous> (/app/x.js:1:7)"];
    assert_eq!(groups(&node, &rules()).len(), 1);
    let ruby = [
        "app.rb:3:in `f': boom (RuntimeError)",
        "\tfrom app.rb:7:in `<main>'",
    ];
    assert_eq!(groups(&ruby, &rules()).len(), 1);
}

#[test]
fn without_stack_traces_or_with_a_start_pattern_lines_group_as_told() {
    let off = GroupRules {
        stack_traces: false,
        ..rules()
    };
    assert_eq!(groups(&["a", "  b"], &off).len(), 2);
    let start = GroupRules {
        start: Regex::new(r"^\d{4}-").ok(),
        ..rules()
    };
    assert_eq!(
        groups(&["2024-01-01 a", "b", "c", "2024-01-02 d"], &start),
        ["2024-01-01 a\nb\nc", "2024-01-02 d"]
    );
}

#[test]
fn a_long_line_is_cut_and_marked_and_a_group_never_passes_the_size() {
    let (text, cut_) = cut(&[b'x'; 2000], 1024);
    assert!(cut_);
    assert_eq!(text.len(), 1024 + TRUNCATED.len());
    assert!(text.ends_with(TRUNCATED));
    // A character is never split.
    let (text, _) = cut("é".repeat(600).as_bytes(), 1023);
    assert!(text.starts_with('é') && text.ends_with(TRUNCATED));
    let long = "  ".to_owned() + &"y".repeat(600);
    assert_eq!(groups(&["start", &long, &long], &rules()).len(), 2);
}

#[test]
fn ddtrace_text_form_gives_the_trace_and_span() {
    let line = "2024-05-01 12:00:00,001 INFO [shop] [app.py:9] [dd.service=shop dd.env=prod \
                dd.version=v42 dd.trace_id=6b0f1cfc0000000010ecc0791ae0e40a dd.span_id=15901347980468612422] - hi";
    let (record, failure) = parse(line.to_owned(), Some(LogStream::Stdout), 5);
    assert_eq!(failure, None);
    assert_eq!(record.status, LogStatus::Info);
    assert_eq!(
        record.trace_id,
        Some(0x6b0f_1cfc_0000_0000_10ec_c079_1ae0_e40a)
    );
    assert_eq!(record.span_id, Some(15_901_347_980_468_612_422));
    assert_eq!(record.service.as_deref(), Some("shop"));
    assert_eq!(record.env.as_deref(), Some("prod"));
    assert_eq!(record.version.as_deref(), Some("v42"));
    assert_eq!(record.message, line);
    assert_eq!(record.timestamp_ms, 5);
    // 64-bit ids in decimal; 0 and empty values are no value.
    assert_eq!(trace_id("12345"), Some(12345));
    assert_eq!(trace_id("0"), None);
    let (record, _) = parse(
        "x [dd.service=s dd.env= dd.version= dd.trace_id=0 dd.span_id=0] y".into(),
        None,
        0,
    );
    assert_eq!(
        (record.trace_id, record.span_id, record.env),
        (None, None, None)
    );
}

#[test]
fn statuses_from_json_logfmt_and_level_words() {
    let cases = [
        (
            "at=error code=H12 desc=\"Request timeout\"",
            Some(LogStatus::Error),
        ),
        ("time=1 level=warn msg=slow", Some(LogStatus::Warning)),
        (
            "[2024-01-01 00:00:00] WARNING: disk",
            Some(LogStatus::Warning),
        ),
        ("I, [2024] DEBUG -- : ruby", Some(LogStatus::Debug)),
        ("CRITICAL the db is gone", Some(LogStatus::Critical)),
        ("an error happened", None),
        ("info about nothing", None),
    ];
    for (line, status) in cases {
        assert_eq!(text_status(line), status, "{line}");
    }
    let json = |line: &str| parse(line.to_owned(), Some(LogStream::Stdout), 0).0.status;
    assert_eq!(json(r#"{"levelname":"ERROR","msg":"x"}"#), LogStatus::Error);
    assert_eq!(json(r#"{"level":50,"msg":"pino"}"#), LogStatus::Error);
    assert_eq!(json(r#"{"severity":"WARNING"}"#), LogStatus::Warning);
    let (record, _) = parse("no level".into(), Some(LogStream::Stderr), 0);
    assert_eq!(record.status, LogStatus::Error, "stderr without a level");
    let (record, _) = parse("no level".into(), Some(LogStream::Stdout), 0);
    assert_eq!(record.status, LogStatus::Info);
}

#[test]
fn a_json_line_keeps_its_attributes_and_its_correlation() {
    let line = r#"{"message":"paid","level":"info","amount":12.5,"user":{"id":7},"dd.trace_id":"123","dd":{"span_id":"456","service":"api"}}"#;
    let (record, failure) = parse(line.to_owned(), Some(LogStream::Stdout), 0);
    assert_eq!(failure, None);
    assert_eq!(record.message, "paid");
    assert_eq!(record.trace_id, Some(123));
    assert_eq!(record.span_id, Some(456));
    assert_eq!(record.service.as_deref(), Some("api"));
    assert_eq!(record.attributes["amount"], 12.5);
    assert_eq!(record.attributes["user"]["id"], 7);
    assert!(!record.attributes.contains_key("message"));
    assert!(!record.attributes.contains_key("dd"));
    // Not an object: a text record, the failure counted.
    let (record, failure) = parse("{not json".into(), Some(LogStream::Stdout), 0);
    assert_eq!(failure, Some(ParseFailure::Json));
    assert_eq!(record.message, "{not json");
}

#[test]
fn rules_mask_exclude_and_include_in_order() {
    let rule = |type_: &str, pattern: &str, replace: Option<&str>| -> ProcessingRule {
        serde_json::from_value(serde_json::json!({
            "type": type_, "name": "r", "pattern": pattern, "replacePlaceholder": replace
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let spec = LogsSpec {
        enabled: Some(true),
        processing_rules: vec![
            rule("mask_sequences", r"card=\d+", Some("card=[masked]")),
            rule("exclude_at_match", "^GET /health", None),
            rule("include_at_match", "shop", None),
        ],
        ..LogsSpec::default()
    };
    let settings = spec
        .render("shop")
        .map(|c| Settings::compile(&c))
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("compiles"));
    let mut text = "shop paid card=4242 ok".to_owned();
    assert!(settings.apply(&mut text));
    assert_eq!(text, "shop paid card=[masked] ok");
    assert!(!settings.apply(&mut "GET /health shop".to_owned()));
    assert!(!settings.apply(&mut "unrelated".to_owned()));
}

#[test]
fn the_tap_drops_and_counts_past_its_bound_and_takes_nothing_while_off() {
    let stats = Arc::new(Stats::default());
    let tap = Tap::new(10, stats.clone());
    tap.offer(LogStream::Stdout, b"off\n");
    assert!(tap.take(Some(Duration::ZERO)).0.is_empty());
    tap.shared.on.store(true, Ordering::Relaxed);
    tap.offer(LogStream::Stdout, b"12345\n");
    tap.offer(LogStream::Stdout, b"toolong\nx\n");
    assert_eq!(stats.logs.dropped.get("budget"), 2);
    let (chunks, closed) = tap.take(None);
    assert_eq!(chunks.len(), 1);
    assert!(!closed);
    // Taken but not yet made into records: still held, still counted.
    tap.offer(LogStream::Stdout, b"abcde\n");
    assert_eq!(stats.logs.dropped.get("budget"), 3);
    tap.release(chunks[0].text.len());
    tap.offer(LogStream::Stdout, b"abcde\n");
    assert_eq!(stats.logs.dropped.get("budget"), 3);
    tap.close();
    assert!(tap.take(None).1);
}

#[test]
fn invalid_utf8_counts_with_its_replacement_bytes() {
    // 600 invalid bytes are 1 800 bytes of U+FFFD: still cut at the maximum.
    let (text, was_cut) = cut(&[0xff; 600], 1024);
    assert!(was_cut);
    assert!(text.len() <= 1024 + TRUNCATED.len());
}
