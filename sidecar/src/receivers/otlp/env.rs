//! The `OTEL_*` environment the app starts with, so that an unmodified
//! OpenTelemetry SDK exports to the sidecar and describes the dyno.
//!
//! | variable | value |
//! | --- | --- |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | `http://127.0.0.1:<otlp.port>` |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` | `http/protobuf` (the receiver serves no gRPC; some SDKs default to it) |
//! | `OTEL_SERVICE_NAME` | the dyno's service |
//! | `OTEL_RESOURCE_ATTRIBUTES` | `deployment.environment`, `service.version`, `host.name`, the dyno's tags (`dyno`, `dynotype`, `appname`, the user's) as `key=value`, and OpenTelemetry's Heroku mapping where the variables exist: `service.instance.id` ← `HEROKU_DYNO_ID`, `heroku.app.id` ← `HEROKU_APP_ID`, `heroku.release.commit` ← `HEROKU_SLUG_COMMIT`, `heroku.release.creation_timestamp` ← `HEROKU_RELEASE_CREATED_AT`, and `cloud.provider=heroku` with any of them |
//!
//! A variable the user set is left alone; nothing is set when the receiver is off.

use dynoscope_crds::DynoConfig;

/// The variables for the app; empty when the OTLP receiver is off.
pub fn app_env(
    config: &DynoConfig,
    env: &impl Fn(&str) -> Option<String>,
) -> Vec<(&'static str, String)> {
    let Some(otlp) = config.otlp.as_ref().filter(|_| config.enabled) else {
        return Vec::new();
    };
    let mut attributes: Vec<(String, String)> = Vec::new();
    if let Some(value) = &config.env {
        attributes.push(("deployment.environment".into(), value.clone()));
    }
    if let Some(version) = config.version.as_ref().and_then(|v| v.resolve(env)) {
        attributes.push(("service.version".into(), version));
    }
    attributes.push(("host.name".into(), config.hostname.clone()));
    for tag in &config.tags {
        let (key, value) = tag.split_once(':').unwrap_or((tag, ""));
        if !["env", "service", "version"].contains(&key) {
            attributes.push((key.to_owned(), value.to_owned()));
        }
    }
    let mut heroku = false;
    for (variable, key) in [
        ("HEROKU_DYNO_ID", "service.instance.id"),
        ("HEROKU_APP_ID", "heroku.app.id"),
        ("HEROKU_SLUG_COMMIT", "heroku.release.commit"),
        (
            "HEROKU_RELEASE_CREATED_AT",
            "heroku.release.creation_timestamp",
        ),
    ] {
        if let Some(value) = env(variable).filter(|v| !v.is_empty()) {
            attributes.push((key.to_owned(), value));
            heroku = true;
        }
    }
    if heroku {
        attributes.push(("cloud.provider".into(), "heroku".into()));
    }
    let resource = attributes
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join(",");
    let mut vars = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", otlp.port),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("OTEL_SERVICE_NAME", config.service.clone()),
        ("OTEL_RESOURCE_ATTRIBUTES", resource),
    ];
    vars.retain(|(name, _)| env(name).is_none());
    vars
}

/// Percent-encodes what the W3C baggage format of `OTEL_RESOURCE_ATTRIBUTES`
/// reserves (`,`, `=`, `%`, spaces, quotes, non-ASCII).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_graphic() && !matches!(byte, b',' | b'=' | b'%' | b'"' | b';' | b'\\') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(spec: &str) -> DynoConfig {
        let manifest = format!(
            "apiVersion: dynoscope.dev/v1alpha1\nkind: ObservabilityConfig\nmetadata: {{name: shop}}\nspec:\n{spec}"
        );
        let resources = dynoscope_crds::manifest::parse_documents(&manifest, "test.yaml")
            .unwrap_or_else(|e| panic!("{e}"));
        let input = dynoscope_crds::render::RenderInput {
            config: &resources[0],
            procfile: None,
            formation: None,
            heroku_app_name: None,
        };
        dynoscope_crds::render::render_dyno(&input, "web.1")
            .unwrap_or_else(|e| panic!("{e}"))
            .0
    }

    #[test]
    fn points_the_sdk_at_the_receiver_and_describes_the_dyno() {
        let config = config(
            "  env: production\n  version: {fromEnv: HEROKU_RELEASE_VERSION}\n  \
             tags: ['team:pay=ments']\n  otlp: {enabled: true, port: 14318}\n",
        );
        let lookup = |name: &str| match name {
            "HEROKU_RELEASE_VERSION" => Some("v42".to_owned()),
            "HEROKU_DYNO_ID" => Some("1f2e".to_owned()),
            "OTEL_SERVICE_NAME" => Some("mine".to_owned()),
            _ => None,
        };
        let vars = app_env(&config, &lookup);
        let get = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            Some("http://127.0.0.1:14318")
        );
        assert_eq!(get("OTEL_EXPORTER_OTLP_PROTOCOL"), Some("http/protobuf"));
        assert_eq!(get("OTEL_SERVICE_NAME"), None, "the user's own value wins");
        let resource = get("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
        for part in [
            "deployment.environment=production",
            "service.version=v42",
            "host.name=shop.web.1",
            "dyno=web.1",
            "dynotype=web",
            "appname=shop",
            "team=pay%3Dments",
            "service.instance.id=1f2e",
            "cloud.provider=heroku",
        ] {
            assert!(
                resource.split(',').any(|p| p == part),
                "{part} in {resource}"
            );
        }
        assert!(!resource.contains("heroku.app.id"), "{resource}");
    }

    #[test]
    fn nothing_when_the_receiver_is_off() {
        assert!(app_env(&config("  service: shop\n"), &|_| None).is_empty());
    }
}
