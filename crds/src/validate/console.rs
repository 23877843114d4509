//! The `console` sink: its endpoint must be the console's base URL.

use super::Problems;
use crate::console::{ConsoleSinkSpec, INGEST_PATH};

/// Checks `spec.sinks[i]` of type `console`.
pub(super) fn check(p: &mut Problems, field: &str, spec: &ConsoleSinkSpec) {
    let field = format!("{field}.endpoint");
    if !spec.endpoint.starts_with("http://") {
        p.error(
            &field,
            format!(
                "{:?} is not a plain http:// URL: the console is local, write e.g. http://127.0.0.1:5050",
                spec.endpoint
            ),
        );
        return;
    }
    if spec.endpoint.trim_end_matches('/').ends_with(INGEST_PATH) {
        p.error(
            field,
            format!(
                "{:?} names the ingest path: give the console's base URL, e.g. http://127.0.0.1:5050; the sink adds {INGEST_PATH}",
                spec.endpoint
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(endpoint: &str) -> Vec<String> {
        let mut p = Problems::default();
        check(
            &mut p,
            "spec.sinks[0]",
            &ConsoleSinkSpec {
                endpoint: endpoint.to_owned(),
            },
        );
        p.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_endpoint_is_the_consoles_base_url() {
        assert!(problems("http://127.0.0.1:5050").is_empty());
        assert!(problems("http://operator:5050/").is_empty());
        let bad = problems("127.0.0.1:5050");
        assert!(bad[0].contains("spec.sinks[0].endpoint"), "{bad:?}");
        let bad = problems("http://127.0.0.1:5050/api/ingest");
        assert!(bad[0].contains("base URL"), "{bad:?}");
    }
}
