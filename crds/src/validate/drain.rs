//! `spec.drain`: a port in range, credentials by reference, route patterns
//! that are paths, a body limit that fits the sidecar's memory budget.

use super::sinks::check_secret;
use super::Problems;
use crate::observability::ObservabilityConfigSpec;

/// The largest `maxBodyBytes`: a body is held whole while it is parsed.
const MAX_BODY_LIMIT: u64 = 32 << 20;

/// Adds the problems of `spec.drain` to `p`.
pub(super) fn check(p: &mut Problems, spec: &ObservabilityConfigSpec) {
    let Some(drain) = &spec.drain else {
        return;
    };
    if let Some(port) = drain.port.filter(|port| !(1..=65535).contains(port)) {
        p.error(
            "spec.drain.port",
            format!("{port} is not a port: use 1-65535"),
        );
    }
    if let Some(auth) = &drain.basic_auth {
        if auth.username.is_empty() || auth.username.contains(':') {
            p.error(
                "spec.drain.basicAuth.username",
                "must be non-empty and without `:` (it is the `user` of https://user:pass@host/logs)",
            );
        }
        check_secret(
            p,
            "spec.drain.basicAuth.password",
            &auth.password,
            "{fromEnv: DRAIN_PASSWORD}",
        );
    }
    for (i, token) in drain.tokens.iter().enumerate() {
        check_secret(
            p,
            &format!("spec.drain.tokens[{i}]"),
            token,
            "{fromEnv: DRAIN_TOKEN}",
        );
    }
    if let Some(bytes) = drain.max_body_bytes {
        if bytes.0 == 0 || bytes.0 > MAX_BODY_LIMIT {
            p.error(
                "spec.drain.maxBodyBytes",
                format!(
                    "is {} bytes: use 1 byte to 32Mi (Logplex sends ~100 KB batches)",
                    bytes.0
                ),
            );
        }
    }
    for (i, route) in drain.routes.iter().enumerate() {
        if !route.starts_with('/') || route.contains(char::is_whitespace) {
            p.error(
                format!("spec.drain.routes[{i}]"),
                format!(
                    "{route:?} is not a path pattern: write it as `/orders/:id` or `/static/*`"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::{problems_under, Severity};

    fn problems(spec: &str) -> Vec<(Severity, String, String)> {
        problems_under(spec, "spec.drain")
    }

    #[test]
    fn a_literal_password_or_token_is_an_error_naming_the_field() {
        let found =
            problems("drain: {basicAuth: {username: u, password: hunter2}, tokens: [d.123]}");
        let fields: Vec<&str> = found.iter().map(|f| f.1.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.drain.basicAuth.password", "spec.drain.tokens[0]"],
            "{found:?}"
        );
        assert!(found.iter().all(|f| f.0 == Severity::Error));
        assert!(found[0].2.contains("literal secret"), "{found:?}");
    }

    #[test]
    fn ports_routes_and_body_limits_are_checked() {
        let found = problems("drain: {port: 0, routes: ['orders/:id'], maxBodyBytes: 1Gi}");
        let fields: Vec<&str> = found.iter().map(|f| f.1.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.drain.port",
                "spec.drain.maxBodyBytes",
                "spec.drain.routes[0]"
            ],
            "{found:?}"
        );
    }

    #[test]
    fn references_and_defaults_are_fine() {
        assert!(problems("drain: {}").is_empty());
        assert!(problems(
            "drain: {basicAuth: {username: heroku, password: {fromEnv: DRAIN_PASSWORD}}, \
             tokens: [{fromEnv: DRAIN_TOKEN}], routes: ['/orders/:id', '/static/*']}"
        )
        .is_empty());
    }
}
