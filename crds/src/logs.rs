//! `spec.logs`: the app's stdout and stderr as log records — what users write
//! ([`LogsSpec`]) and what one dyno runs ([`LogsConfig`], rendered by
//! [`LogsSpec::render`]).
//!
//! Processing rules keep the Datadog Agent's names and meaning
//! (`exclude_at_match`, `include_at_match`, `mask_sequences`), so rules copied
//! from an Agent's `logs_config` work as they did.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest line kept whole, in bytes; longer lines are cut and marked
/// `...TRUNCATED...`. The Agent's default is 256 KB too.
pub const MAX_LINE_BYTES: u32 = 256 * 1024;

/// The app's output as log records (`spec.logs`, and per process type in `overrides`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogsSpec {
    /// Make log records of the app's output and send them to the sinks that
    /// take logs (datadog, otlp, jsonl). The output is passed through to the
    /// sidecar's stdout and stderr either way. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The records' `service`. Default: `spec.service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Datadog's `ddsource`, which picks the log pipeline, e.g. `python`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Rules applied in order to every record before any sink sees it. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processing_rules: Vec<ProcessingRule>,
    /// How lines are grouped into one record. Default: stack traces of Python,
    /// Ruby, Java and Node are grouped, nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_line: Option<MultiLineSpec>,
    /// The longest line kept whole, in bytes (1 KiB to 1 MiB). Default: 262144.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_line_bytes: Option<i64>,
}

/// One processing rule, as the Datadog Agent's `log_processing_rules`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessingRule {
    /// What the rule does.
    #[serde(rename = "type")]
    pub type_: RuleType,
    /// A name for the rule, shown in errors. Required.
    pub name: String,
    /// A regular expression (Rust `regex` syntax) searched for in the record's text.
    pub pattern: String,
    /// `mask_sequences`: what replaces each match (`$1`… refer to groups). Required there.
    #[serde(
        default,
        alias = "replace_placeholder",
        skip_serializing_if = "Option::is_none"
    )]
    pub replace_placeholder: Option<String>,
}

/// The Agent's processing rule types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleType {
    /// Drop records the pattern matches.
    ExcludeAtMatch,
    /// Keep only records the pattern matches.
    IncludeAtMatch,
    /// Replace what the pattern matches with `replacePlaceholder`.
    MaskSequences,
}

/// Multi-line grouping.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MultiLineSpec {
    /// A regular expression that matches the first line of a record (as the
    /// Agent's `multi_line` rule): lines that do not match join the record
    /// before them. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Group Python tracebacks and Ruby, Java and Node stack traces with the
    /// line before them. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_traces: Option<bool>,
}

/// The logs of one dyno, with every default resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogsConfig {
    /// The records' `service`.
    pub service: String,
    /// Datadog's `ddsource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Processing rules, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processing_rules: Vec<ProcessingRule>,
    /// The start pattern of multi-line records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_line_pattern: Option<String>,
    /// Group stack traces.
    pub stack_traces: bool,
    /// The longest line kept whole.
    pub max_line_bytes: u32,
}

impl LogsSpec {
    /// The spec merged with a process type's override: the override's set fields win.
    pub fn merged(base: Option<&LogsSpec>, over: Option<&LogsSpec>) -> LogsSpec {
        let mut merged = base.cloned().unwrap_or_default();
        let Some(over) = over else {
            return merged;
        };
        macro_rules! take {
            ($($field:ident),*) => {
                $(if over.$field.is_some() { merged.$field.clone_from(&over.$field); })*
            };
        }
        take!(enabled, service, source, multi_line, max_line_bytes);
        if !over.processing_rules.is_empty() {
            merged.processing_rules.clone_from(&over.processing_rules);
        }
        merged
    }

    /// What one dyno runs; `None` when logs are off. `service` is the dyno's.
    pub fn render(&self, service: &str) -> Option<LogsConfig> {
        if self.enabled != Some(true) {
            return None;
        }
        let multi_line = self.multi_line.clone().unwrap_or_default();
        Some(LogsConfig {
            service: self.service.clone().unwrap_or_else(|| service.to_owned()),
            source: self.source.clone(),
            processing_rules: self.processing_rules.clone(),
            multi_line_pattern: multi_line.pattern,
            stack_traces: multi_line.stack_traces.unwrap_or(true),
            max_line_bytes: self
                .max_line_bytes
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(MAX_LINE_BYTES),
        })
    }
}
