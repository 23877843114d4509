//! Validation of `spec.logs` and of each override's `logs`.

use super::Problems;
use crate::logs::{LogsSpec, RuleType};
use crate::observability::{ObservabilityConfigSpec, SinkSpec};

/// The range `maxLineBytes` may take.
const LINE_BYTES: std::ops::RangeInclusive<i64> = 1024..=(1 << 20);

/// Checks `spec.logs` and `spec.overrides.<type>.logs`, each merged as a dyno would run it.
pub(super) fn check(p: &mut Problems, spec: &ObservabilityConfigSpec) {
    if let Some(logs) = &spec.logs {
        check_one(p, "spec.logs", logs, spec);
    }
    for (name, over) in &spec.overrides {
        if let Some(logs) = &over.logs {
            let merged = LogsSpec::merged(spec.logs.as_ref(), Some(logs));
            check_one(p, &format!("spec.overrides.{name}.logs"), &merged, spec);
        }
    }
}

/// Whether a sink of this type takes log records.
pub fn takes_logs(sink: &SinkSpec) -> bool {
    matches!(
        sink,
        SinkSpec::Datadog { .. } | SinkSpec::Otlp { .. } | SinkSpec::Jsonl { .. }
    )
}

fn check_one(p: &mut Problems, base: &str, logs: &LogsSpec, spec: &ObservabilityConfigSpec) {
    for (i, rule) in logs.processing_rules.iter().enumerate() {
        let field = format!("{base}.processingRules[{i}]");
        if rule.name.trim().is_empty() {
            p.error(
                format!("{field}.name"),
                "is empty: give the rule a name, shown in errors",
            );
        }
        if let Err(err) = regex::Regex::new(&rule.pattern) {
            p.error(
                format!("{field}.pattern"),
                format!("does not compile as a regular expression: {err}"),
            );
        }
        match (rule.type_, &rule.replace_placeholder) {
            (RuleType::MaskSequences, None) => p.error(
                format!("{field}.replacePlaceholder"),
                "is missing: a mask_sequences rule needs the text that replaces each match, e.g. `[masked]`",
            ),
            (RuleType::ExcludeAtMatch | RuleType::IncludeAtMatch, Some(_)) => p.warning(
                format!("{field}.replacePlaceholder"),
                "is used only by mask_sequences rules: remove it",
            ),
            _ => {}
        }
    }
    if let Some(pattern) = logs.multi_line.as_ref().and_then(|m| m.pattern.as_ref()) {
        if let Err(err) = regex::Regex::new(pattern) {
            p.error(
                format!("{base}.multiLine.pattern"),
                format!("does not compile as a regular expression: {err}"),
            );
        }
    }
    if let Some(bytes) = logs.max_line_bytes {
        if !LINE_BYTES.contains(&bytes) {
            p.error(
                format!("{base}.maxLineBytes"),
                format!(
                    "is {bytes}: use {} to {} bytes",
                    LINE_BYTES.start(),
                    LINE_BYTES.end()
                ),
            );
        }
    }
    if logs.enabled == Some(true) && !spec.sinks.iter().any(takes_logs) {
        let sinks: Vec<&str> = spec.sinks.iter().map(SinkSpec::kind).collect();
        let have = if sinks.is_empty() {
            "only the default stdout sink".to_owned()
        } else {
            format!("sinks of type {}", sinks.join(", "))
        };
        p.error(
            format!("{base}.enabled"),
            format!(
                "logs are on but no sink takes them ({have}; stdout already shows the app's \
                 output and prometheus takes metrics only): add a datadog, otlp or jsonl sink"
            ),
        );
    }
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
