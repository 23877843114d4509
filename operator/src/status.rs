//! Status of a resource: conditions a person can act on, observedGeneration, per-dyno hashes.
//! Shared by file mode (`status.yaml` beside the rendered files) and Kubernetes mode.

use dynoscope_crds::observability::{Condition, DynoStatus, ObservabilityConfigStatus};
use dynoscope_crds::render::Rendered;
use dynoscope_crds::validate::Problem;

/// Condition types.
pub const READY: &str = "Ready";
/// The spec was refused; the last good configs stay in place.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Rendering worked but delivering the configs failed.
pub const DEGRADED: &str = "Degraded";

/// What the operator concluded about a resource in one reconcile.
#[derive(Debug, Clone)]
pub enum Outcome<'a> {
    /// Rendered and delivered.
    Rendered(&'a Rendered),
    /// Refused; every problem listed.
    Invalid(&'a [Problem]),
    /// The manifest file itself did not parse.
    Unreadable(&'a str),
    /// Rendered, but the configs could not be written.
    WriteFailed(&'a str),
    /// Rendered, but the ConfigMap could not be applied (Kubernetes mode).
    ApplyFailed(&'a str),
}

/// The next status, from the previous one (for transition times and, when
/// nothing could be rendered, the last good dynos).
pub fn next_status(
    previous: Option<&ObservabilityConfigStatus>,
    generation: i64,
    outcome: &Outcome<'_>,
    now: &str,
) -> ObservabilityConfigStatus {
    let previous_conditions = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let kept_dynos = previous.map(|s| s.dynos.clone()).unwrap_or_default();
    let kept = if kept_dynos.is_empty() {
        "nothing was rendered before, so no dyno has a config".to_owned()
    } else {
        format!(
            "the last good configs of {} dynos stay in place",
            kept_dynos.len()
        )
    };
    let (ready, invalid, degraded, dynos) = match outcome {
        Outcome::Rendered(rendered) => {
            let names: Vec<&str> = rendered.dynos.iter().map(|d| d.dyno.as_str()).collect();
            let mut message = format!("{} dynos rendered: {}", names.len(), names.join(", "));
            let reason = if rendered.warnings.is_empty() {
                "Rendered"
            } else {
                message.push_str("; warnings: ");
                message.push_str(
                    &rendered
                        .warnings
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                );
                "RenderedWithWarnings"
            };
            let dynos = rendered
                .dynos
                .iter()
                .map(|d| DynoStatus {
                    name: d.dyno.clone(),
                    config_hash: d.config_hash.clone(),
                    integrations: d.integrations.iter().map(|i| i.name.clone()).collect(),
                })
                .collect();
            (
                ("True", reason, message),
                ("False", "Valid", "the spec is valid".to_owned()),
                ("False", "Delivered", "every config is written".to_owned()),
                dynos,
            )
        }
        Outcome::Invalid(problems) => {
            let list = problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            (
                (
                    "False",
                    "InvalidSpec",
                    format!("the spec was refused; {kept}"),
                ),
                (
                    "True",
                    "ValidationFailed",
                    format!("{list}; fix the manifest and save it again"),
                ),
                ("False", "Delivered", "nothing new to deliver".to_owned()),
                kept_dynos,
            )
        }
        Outcome::Unreadable(message) => (
            (
                "False",
                "InvalidSpec",
                format!("the manifest could not be read; {kept}"),
            ),
            (
                "True",
                "ManifestUnreadable",
                format!("{message}; fix the file and save it again"),
            ),
            ("False", "Delivered", "nothing new to deliver".to_owned()),
            kept_dynos,
        ),
        Outcome::WriteFailed(message) => (
            (
                "False",
                "WriteFailed",
                format!("the configs could not be delivered; {kept}"),
            ),
            ("False", "Valid", "the spec is valid".to_owned()),
            (
                "True",
                "WriteFailed",
                format!("{message}; check the output directory's space and permissions"),
            ),
            kept_dynos,
        ),
        Outcome::ApplyFailed(message) => (
            (
                "False",
                "ApplyFailed",
                format!("the ConfigMap could not be applied; {kept}"),
            ),
            ("False", "Valid", "the spec is valid".to_owned()),
            (
                "True",
                "ApplyFailed",
                format!(
                    "{message}; check the operator's logs and its RBAC (configmaps: create, patch)"
                ),
            ),
            kept_dynos,
        ),
    };
    let conditions = [
        (READY, ready),
        (INVALID_SPEC, invalid),
        (DEGRADED, degraded),
    ]
    .into_iter()
    .map(|(type_, (status, reason, message))| {
        let since = previous_conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.to_owned());
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            last_transition_time: Some(since),
        }
    })
    .collect();
    ObservabilityConfigStatus {
        observed_generation: Some(generation),
        conditions,
        dyno_count: Some(i64::try_from(dynos.len()).unwrap_or(i64::MAX)),
        dynos,
    }
}

/// Now, as RFC 3339 (seconds), as Kubernetes writes times.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The condition of `type_`, if any.
pub fn condition<'a>(status: &'a ObservabilityConfigStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynoscope_crds::validate::Severity;

    fn problem() -> Problem {
        Problem {
            severity: Severity::Error,
            field: "spec.apm.port".into(),
            message: "bad".into(),
        }
    }

    #[test]
    fn transitions_keep_their_time_until_the_status_changes() {
        let rendered = Rendered {
            app: "shop".into(),
            formation: vec![],
            dynos: vec![],
            warnings: vec![],
        };
        let first = next_status(None, 1, &Outcome::Rendered(&rendered), "t1");
        assert_eq!(
            condition(&first, READY)
                .unwrap()
                .last_transition_time
                .as_deref(),
            Some("t1")
        );
        let again = next_status(Some(&first), 1, &Outcome::Rendered(&rendered), "t2");
        assert_eq!(
            again, first,
            "an unchanged outcome must give a byte-identical status"
        );
        let problems = [problem()];
        let invalid = next_status(Some(&first), 2, &Outcome::Invalid(&problems), "t3");
        let ready = condition(&invalid, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.last_transition_time.as_deref()),
            ("False", Some("t3"))
        );
        let invalid_cond = condition(&invalid, INVALID_SPEC).unwrap();
        assert!(
            invalid_cond.message.contains("spec.apm.port"),
            "{invalid_cond:?}"
        );
        assert_eq!(invalid.observed_generation, Some(2));
        // The degraded condition did not change, so neither did its time.
        assert_eq!(
            condition(&invalid, DEGRADED)
                .unwrap()
                .last_transition_time
                .as_deref(),
            Some("t1")
        );
    }
}
