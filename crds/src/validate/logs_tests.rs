use crate::manifest::parse_documents;
use crate::observability::ObservabilityConfigSpec;
use crate::validate::{validate, Severity};

fn spec(yaml: &str) -> ObservabilityConfigSpec {
    let text = format!("apiVersion: dynoscope.dev/v1alpha1\nkind: ObservabilityConfig\nmetadata: {{name: shop}}\nspec: {yaml}\n");
    parse_documents(&text, "t.yaml")
        .unwrap_or_else(|e| panic!("{e}"))
        .remove(0)
        .spec
}

const JSONL: &str = "sinks: [{type: jsonl, path: /tmp/x.jsonl}]";

/// (spec, field that must be named, words the message must contain, severity)
const CASES: &[(&str, &str, &str, Severity)] = &[
    (
        "{logs: {enabled: true, processingRules: [{type: exclude_at_match, name: x, pattern: '('}]}, SINKS}",
        "spec.logs.processingRules[0].pattern",
        "does not compile",
        Severity::Error,
    ),
    (
        "{logs: {enabled: true, processingRules: [{type: mask_sequences, name: x, pattern: 'a'}]}, SINKS}",
        "spec.logs.processingRules[0].replacePlaceholder",
        "needs the text that replaces",
        Severity::Error,
    ),
    (
        "{logs: {enabled: true, processingRules: [{type: include_at_match, name: x, pattern: 'a', replacePlaceholder: b}]}, SINKS}",
        "spec.logs.processingRules[0].replacePlaceholder",
        "only by mask_sequences",
        Severity::Warning,
    ),
    (
        "{logs: {enabled: true, multiLine: {pattern: '[a-'}}, SINKS}",
        "spec.logs.multiLine.pattern",
        "does not compile",
        Severity::Error,
    ),
    (
        "{logs: {enabled: true, maxLineBytes: 10}, SINKS}",
        "spec.logs.maxLineBytes",
        "1024 to 1048576",
        Severity::Error,
    ),
    (
        "{logs: {enabled: true}, sinks: [{type: stdout}, {type: prometheus}]}",
        "spec.logs.enabled",
        "stdout, prometheus",
        Severity::Error,
    ),
    (
        "{logs: {enabled: true}}",
        "spec.logs.enabled",
        "only the default stdout sink",
        Severity::Error,
    ),
    (
        "{overrides: {web: {logs: {enabled: true}}}}",
        "spec.overrides.web.logs.enabled",
        "add a datadog, otlp or jsonl sink",
        Severity::Error,
    ),
];

#[test]
fn each_problem_names_its_field() {
    for (yaml, field, words, severity) in CASES {
        let yaml = yaml.replace("SINKS", JSONL);
        let problems = validate(&spec(&yaml), None, None);
        let found = problems.iter().find(|p| p.field == *field);
        let Some(problem) = found else {
            panic!("{yaml}: no problem at {field}: {problems:#?}");
        };
        assert!(problem.message.contains(words), "{yaml}: {problem}");
        assert_eq!(problem.severity, *severity, "{yaml}: {problem}");
    }
}

#[test]
fn valid_logs_have_no_problem() {
    let yaml = format!(
        "{{logs: {{enabled: true, service: api, source: python, maxLineBytes: 4096, \
         multiLine: {{pattern: '^\\d{{4}}-', stackTraces: false}}, processingRules: \
         [{{type: mask_sequences, name: cards, pattern: '\\d{{16}}', replacePlaceholder: '[card]'}}]}}, {JSONL}}}"
    );
    assert_eq!(validate(&spec(&yaml), None, None), []);
}

#[test]
fn an_override_changes_only_the_fields_it_sets() {
    let yaml = format!(
        "{{logs: {{enabled: true, source: python, processingRules: [{{type: exclude_at_match, name: a, pattern: x}}]}}, \
         overrides: {{worker: {{logs: {{source: sidekiq}}}}, run: {{logs: {{enabled: false}}}}}}, {JSONL}}}"
    );
    let spec = spec(&yaml);
    let merged = crate::logs::LogsSpec::merged(
        spec.logs.as_ref(),
        spec.overrides.get("worker").and_then(|o| o.logs.as_ref()),
    );
    let worker = merged.render("shop").unwrap_or_else(|| panic!("on"));
    assert_eq!(worker.source.as_deref(), Some("sidekiq"));
    assert_eq!(worker.processing_rules.len(), 1);
    assert_eq!(worker.service, "shop");
    assert_eq!(worker.max_line_bytes, crate::logs::MAX_LINE_BYTES);
    let run = crate::logs::LogsSpec::merged(
        spec.logs.as_ref(),
        spec.overrides.get("run").and_then(|o| o.logs.as_ref()),
    );
    assert_eq!(run.render("shop"), None);
}
