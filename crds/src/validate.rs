//! Semantic validation: what the schema cannot say, each problem naming its field and what to do.

use std::collections::BTreeMap;
use std::fmt;

use crate::defaults;
use crate::observability::{IntegrationType, ObservabilityConfigSpec, OverrideSpec, SinkSpec};

#[path = "validate/buffer.rs"]
mod buffer;

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The resource is still rendered.
    Warning,
    /// The resource is refused.
    Error,
}

/// One thing wrong with a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The field, e.g. `spec.sinks[0].apiKey`.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{level}: {}: {}", self.field, self.message)
    }
}

/// Whether any problem is an error.
pub fn has_errors(problems: &[Problem]) -> bool {
    problems.iter().any(|p| p.severity == Severity::Error)
}

/// Process types every app may run without declaring them: one-off and release dynos.
pub const IMPLICIT_PROCESS_TYPES: &[&str] = &["run", "release", "scheduler"];

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, field.into(), message.into());
    }

    fn warning(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, field.into(), message.into());
    }

    fn push(&mut self, severity: Severity, field: String, message: String) {
        self.0.push(Problem {
            severity,
            field,
            message,
        });
    }
}

/// Checks a spec. `process_types` are the types known from the formation and
/// the Procfile; `dynos` the dynos the formation runs (both `None` when unknown).
pub fn validate(
    spec: &ObservabilityConfigSpec,
    process_types: Option<&[String]>,
    dynos: Option<&[String]>,
) -> Vec<Problem> {
    let mut p = Problems::default();

    if let Some(app) = &spec.app {
        if app.trim().is_empty() {
            p.error(
                "spec.app",
                "is empty: remove it to use HEROKU_APP_NAME or metadata.name",
            );
        }
    }
    if let Some(host) = &spec.hostname {
        if host.trim().is_empty() || host.contains(char::is_whitespace) {
            p.error(
                "spec.hostname",
                "must be `dyno` or a host name without spaces",
            );
        }
    }
    for (i, tag) in spec.tags.iter().enumerate() {
        check_tag(&mut p, &format!("spec.tags[{i}]"), tag);
    }
    for (name, process) in &spec.formation {
        let field = format!("spec.formation.{name}");
        if !valid_process_type(name) {
            p.error(
                &field,
                "process type names use letters, digits, `_` and `-` only",
            );
        }
        if let Some(q) = process.quantity {
            if q < 0 {
                p.error(
                    format!("{field}.quantity"),
                    format!("is {q}: a quantity must be 0 or more"),
                );
            }
        }
        if let Some(size) = &process.size {
            if let Err(err) = crate::size::parse(size) {
                p.error(format!("{field}.size"), err.to_string());
            }
        }
        if matches!(&process.command, Some(c) if c.trim().is_empty()) {
            p.error(
                format!("{field}.command"),
                "is empty: remove it to use the Procfile's command",
            );
        }
    }
    check_positive(
        &mut p,
        "spec.gracePeriod",
        spec.grace_period.map(|d| d.get()),
    );
    check_components(&mut p, "spec", &Components::of_spec(spec));
    check_integrations(&mut p, spec, dynos);
    check_conf_d(&mut p, spec, dynos);
    check_sinks(&mut p, spec);
    logs::check(&mut p, spec);
    otlp::check(&mut p, spec);
    drain::check(&mut p, spec);

    for (name, over) in &spec.overrides {
        let field = format!("spec.overrides.{name}");
        let known = IMPLICIT_PROCESS_TYPES.contains(&name.as_str())
            || spec.formation.contains_key(name)
            || process_types.is_some_and(|types| types.iter().any(|t| t == name));
        if !known {
            let hint = match process_types {
                Some(types) if !types.is_empty() => format!("known types: {}", types.join(", ")),
                _ => "add it to spec.formation or the Procfile".to_owned(),
            };
            p.warning(
                &field,
                format!("no process type `{name}` exists, so this override does nothing ({hint})"),
            );
        }
        for (i, tag) in over.tags.iter().enumerate() {
            check_tag(&mut p, &format!("{field}.tags[{i}]"), tag);
        }
        check_positive(
            &mut p,
            &format!("{field}.gracePeriod"),
            over.grace_period.map(|d| d.get()),
        );
        check_components(&mut p, &field, &Components::of_override(spec, over));
    }
    p.0
}

/// The receiver settings of a spec, or of a spec with one override applied.
struct Components<'a> {
    admin_port: Option<i64>,
    apm_enabled: bool,
    apm_port: Option<i64>,
    dsd_port: Option<i64>,
    percentiles: Option<&'a [f64]>,
    aggregates: Option<&'a [String]>,
    mappings: &'a [crate::observability::MappingSpec],
    interval: Option<std::time::Duration>,
    prometheus_listens: Vec<(usize, &'a str)>,
    /// Where the values came from, for messages: `spec` or `spec.overrides.worker`.
    override_fields: bool,
}

impl<'a> Components<'a> {
    fn of_spec(spec: &'a ObservabilityConfigSpec) -> Self {
        let apm = spec.apm.as_ref();
        let dsd = spec.dogstatsd.as_ref();
        Components {
            admin_port: spec.admin.as_ref().and_then(|a| a.port),
            apm_enabled: apm.and_then(|a| a.enabled).unwrap_or(true),
            apm_port: apm.and_then(|a| a.port),
            dsd_port: dsd.and_then(|d| d.port),
            percentiles: dsd.and_then(|d| d.histogram_percentiles.as_deref()),
            aggregates: dsd.and_then(|d| d.histogram_aggregates.as_deref()),
            mappings: dsd.map(|d| d.mappings.as_slice()).unwrap_or_default(),
            interval: spec
                .process_metrics
                .as_ref()
                .and_then(|m| m.interval)
                .map(|d| d.get()),
            prometheus_listens: prometheus_listens(spec),
            override_fields: false,
        }
    }

    /// Only what the override itself sets is checked field by field; clashes
    /// are checked on the merged result.
    fn of_override(spec: &'a ObservabilityConfigSpec, over: &'a OverrideSpec) -> Self {
        let base = Components::of_spec(spec);
        let apm = over.apm.as_ref();
        let dsd = over.dogstatsd.as_ref();
        Components {
            admin_port: base.admin_port,
            apm_enabled: apm.and_then(|a| a.enabled).unwrap_or(base.apm_enabled),
            apm_port: apm.and_then(|a| a.port).or(base.apm_port),
            dsd_port: dsd.and_then(|d| d.port).or(base.dsd_port),
            percentiles: dsd.and_then(|d| d.histogram_percentiles.as_deref()),
            aggregates: dsd.and_then(|d| d.histogram_aggregates.as_deref()),
            mappings: dsd.map(|d| d.mappings.as_slice()).unwrap_or_default(),
            interval: over
                .process_metrics
                .as_ref()
                .and_then(|m| m.interval)
                .map(|d| d.get()),
            prometheus_listens: base.prometheus_listens,
            override_fields: true,
        }
    }
}

fn prometheus_listens(spec: &ObservabilityConfigSpec) -> Vec<(usize, &str)> {
    spec.sinks
        .iter()
        .enumerate()
        .filter_map(|(i, sink)| match sink {
            SinkSpec::Prometheus { listen, .. } => {
                Some((i, listen.as_deref().unwrap_or(defaults::PROMETHEUS_LISTEN)))
            }
            _ => None,
        })
        .collect()
}

fn check_components(p: &mut Problems, base: &str, c: &Components<'_>) {
    if let Some(port) = c.admin_port.filter(|_| !c.override_fields) {
        if !(0..=65535).contains(&port) {
            p.error(
                "spec.admin.port",
                format!("{port} is not a port: use 1-65535, or 0 to turn /status off"),
            );
        }
    }
    for (field, port) in [("apm.port", c.apm_port), ("dogstatsd.port", c.dsd_port)] {
        if let Some(port) = port {
            if !(1..=65535).contains(&port) {
                p.error(
                    format!("{base}.{field}"),
                    format!("{port} is not a port: use 1-65535"),
                );
            }
        }
    }
    // TCP listeners of one dyno must differ (DogStatsD is UDP and may share a number).
    let mut tcp: Vec<(String, i64)> = Vec::new();
    let admin = c.admin_port.unwrap_or(i64::from(defaults::ADMIN_PORT));
    if admin != 0 {
        tcp.push(("spec.admin.port".into(), admin));
    }
    if c.apm_enabled {
        tcp.push((
            format!("{base}.apm.port"),
            c.apm_port.unwrap_or(i64::from(defaults::APM_PORT)),
        ));
    }
    for (i, listen) in &c.prometheus_listens {
        if let Some(port) = listen
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse::<i64>().ok())
        {
            tcp.push((format!("spec.sinks[{i}].listen"), port));
        } else if !c.override_fields {
            p.error(
                format!("spec.sinks[{i}].listen"),
                format!("{listen:?} is not host:port, e.g. 127.0.0.1:9464"),
            );
        }
    }
    for (i, (field_a, port_a)) in tcp.iter().enumerate() {
        for (field_b, port_b) in &tcp[i + 1..] {
            if port_a == port_b && (field_a.starts_with(base) || field_b.starts_with(base)) {
                p.error(field_b.clone(), format!("port {port_b} is already used by {field_a}: give each listener its own port"));
            }
        }
    }
    if let Some(percentiles) = c.percentiles {
        for (i, q) in percentiles.iter().enumerate() {
            if !(*q > 0.0 && *q < 1.0) {
                p.error(
                    format!("{base}.dogstatsd.histogramPercentiles[{i}]"),
                    format!("{q} is not in (0, 1): write 0.95 for the 95th percentile"),
                );
            }
        }
    }
    if let Some(aggregates) = c.aggregates {
        for (i, agg) in aggregates.iter().enumerate() {
            if !defaults::KNOWN_AGGREGATES.contains(&agg.as_str()) {
                p.error(
                    format!("{base}.dogstatsd.histogramAggregates[{i}]"),
                    format!(
                        "unknown aggregate {agg:?}: use {}",
                        defaults::KNOWN_AGGREGATES.join(", ")
                    ),
                );
            }
        }
    }
    for (i, mapping) in c.mappings.iter().enumerate() {
        let field = format!("{base}.dogstatsd.mappings[{i}]");
        if let Err(err) = regex::Regex::new(&mapping.pattern) {
            let first = err
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_owned();
            p.error(
                format!("{field}.match"),
                format!(
                    "{:?} is not a valid regular expression ({first}); escape dots as `\\.`",
                    mapping.pattern
                ),
            );
        }
        if mapping.name.trim().is_empty() {
            p.error(
                format!("{field}.name"),
                "is empty: give the metric's new name",
            );
        }
    }
    check_positive(p, &format!("{base}.processMetrics.interval"), c.interval);
}

fn check_positive(p: &mut Problems, field: &str, duration: Option<std::time::Duration>) {
    if duration.is_some_and(|d| d.is_zero()) {
        p.error(field, "must be longer than 0s");
    }
}

fn check_tag(p: &mut Problems, field: &str, tag: &str) {
    if tag.trim().is_empty()
        || tag.contains(',')
        || tag.contains('|')
        || tag.contains(char::is_whitespace)
    {
        p.error(
            field,
            format!(
                "{tag:?} is not a tag: write `key:value` or `value`, without spaces, commas or `|`"
            ),
        );
    }
}

fn check_env_name(p: &mut Problems, field: &str, name: &str) {
    if name.contains("://") || name.contains('@') {
        p.error(
            field,
            "looks like a URL or a credential, not the name of an environment variable: never write secrets in the manifest; set them in the dyno's environment (e.g. DATABASE_URL) and name the variable here",
        );
    } else if !valid_env_name(name) {
        p.error(field, format!("{name:?} is not an environment variable name: use letters, digits and `_`, e.g. DATABASE_URL"));
    }
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a process type name is valid (Procfile rules).
pub fn valid_process_type(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A field's manifest name and value.
type NamedField<'a> = (&'static str, &'a Option<String>);

fn check_conf_d(p: &mut Problems, spec: &ObservabilityConfigSpec, dynos: Option<&[String]>) {
    let Some(conf_d) = &spec.conf_d else {
        return;
    };
    if conf_d.path.trim().is_empty() {
        p.error(
            "spec.confD.path",
            "is empty: name the directory holding the Datadog check configs, e.g. datadog/conf.d",
        );
    }
    if let (Some(dyno), Some(dynos)) = (&conf_d.dyno, dynos) {
        if !dynos.iter().any(|d| d == dyno) {
            p.error(
                "spec.confD.dyno",
                format!("no dyno `{dyno}` runs in this formation ({}): pick one of them, or scale its process type up", dynos.join(", ")),
            );
        }
    }
}

fn check_integrations(p: &mut Problems, spec: &ObservabilityConfigSpec, dynos: Option<&[String]>) {
    let mut seen: BTreeMap<(IntegrationType, String), usize> = BTreeMap::new();
    for (i, integration) in spec.integrations.iter().enumerate() {
        let field = format!("spec.integrations[{i}]");
        let kind = integration.type_;
        let (own, foreign): (&[NamedField<'_>], &[NamedField<'_>]) = match kind {
            IntegrationType::Postgres | IntegrationType::Redis => (
                &[("urlFrom", &integration.url_from)],
                &[
                    ("serversFrom", &integration.servers_from),
                    ("usernameFrom", &integration.username_from),
                    ("passwordFrom", &integration.password_from),
                ],
            ),
            IntegrationType::Memcached => (
                &[
                    ("serversFrom", &integration.servers_from),
                    ("usernameFrom", &integration.username_from),
                    ("passwordFrom", &integration.password_from),
                ],
                &[("urlFrom", &integration.url_from)],
            ),
        };
        for (name, value) in own {
            if let Some(value) = value {
                check_env_name(p, &format!("{field}.{name}"), value);
            }
        }
        for (name, value) in foreign {
            if value.is_some() {
                p.error(
                    format!("{field}.{name}"),
                    format!("is not used by a {} check: remove it", kind.as_str()),
                );
            }
        }
        if kind == IntegrationType::Memcached && integration.tls_verify.is_some() {
            p.error(
                format!("{field}.tlsVerify"),
                "is not used by a memcached check: remove it",
            );
        }
        if kind != IntegrationType::Postgres && integration.relations.is_some() {
            p.error(
                format!("{field}.relations"),
                format!("is only for postgres, not {}: remove it", kind.as_str()),
            );
        }
        if kind == IntegrationType::Memcached
            && integration.username_from.is_some() != integration.password_from.is_some()
        {
            p.error(
                format!("{field}.passwordFrom"),
                "SASL needs both usernameFrom and passwordFrom, or neither",
            );
        }
        check_positive(
            p,
            &format!("{field}.interval"),
            integration.interval.map(|d| d.get()),
        );
        check_positive(
            p,
            &format!("{field}.timeout"),
            integration.timeout.map(|d| d.get()),
        );
        if let (Some(dyno), Some(dynos)) = (&integration.dyno, dynos) {
            if !dynos.iter().any(|d| d == dyno) {
                p.error(
                    format!("{field}.dyno"),
                    format!("no dyno `{dyno}` runs in this formation ({}): pick one of them, or scale its process type up", dynos.join(", ")),
                );
            }
        }
        let key = (kind, integration_source(integration).to_owned());
        if let Some(first) = seen.insert(key.clone(), i) {
            p.error(
                &field,
                format!("duplicates spec.integrations[{first}] ({} from {}): each service is checked once; remove one", kind.as_str(), key.1),
            );
        }
    }
}

/// The variable a check reads its target from, with the default applied.
pub fn integration_source(integration: &crate::observability::IntegrationSpec) -> &str {
    match integration.type_ {
        IntegrationType::Postgres => integration
            .url_from
            .as_deref()
            .unwrap_or(defaults::POSTGRES_URL_ENV),
        IntegrationType::Redis => integration
            .url_from
            .as_deref()
            .unwrap_or(defaults::REDIS_URL_ENV),
        IntegrationType::Memcached => integration
            .servers_from
            .as_deref()
            .unwrap_or(defaults::MEMCACHED_SERVERS_ENV),
    }
}

fn check_url(p: &mut Problems, field: &str, url: &str) {
    let ok =
        (url.starts_with("http://") || url.starts_with("https://")) && url.len() > "https://".len();
    if !ok {
        p.error(field, format!("{url:?} is not an http:// or https:// URL"));
    }
}

#[path = "validate/sinks.rs"]
mod sinks;
use sinks::check_sinks;
#[path = "validate/logs.rs"]
mod logs;
pub use logs::takes_logs;
#[path = "validate/console.rs"]
mod console;
#[path = "validate/drain.rs"]
mod drain;
#[path = "validate/otlp.rs"]
mod otlp;

/// The problems of the spec written as YAML `spec` under fields starting
/// with `prefix`: severity, field, message. For the rooms' table tests.
#[cfg(test)]
fn problems_under(spec: &str, prefix: &str) -> Vec<(Severity, String, String)> {
    let spec: ObservabilityConfigSpec =
        serde_yaml::from_str(spec).unwrap_or_else(|e| panic!("{e}"));
    validate(&spec, None, None)
        .into_iter()
        .filter(|p| p.field.starts_with(prefix))
        .map(|p| (p.severity, p.field, p.message))
        .collect()
}

#[cfg(test)]
#[path = "validate/tests.rs"]
mod tests;
