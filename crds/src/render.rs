//! The renderer: (ObservabilityConfig, formation) → one [`DynoConfig`] per dyno.
//!
//! A pure function shared by the operator (file and Kubernetes modes) and the
//! sidecar (which renders its own config on Heroku). Same input, byte-identical
//! output: process types are ordered `web` first then alphabetically, tags are
//! sorted and de-duplicated, and maps are `BTreeMap`s.

use std::collections::{BTreeMap, BTreeSet};

use crate::defaults;
use crate::dyno::{
    ApmConfig, DogStatsdConfig, DynoConfig, IntegrationConfig, MemoryFrom, ProcessMetricsConfig,
    SizeConfig, SCHEMA_VERSION,
};
use crate::observability::{IntegrationSpec, ObservabilityConfig, OverrideSpec, SinkSpec};
use crate::procfile::Procfile;
use crate::validate::{self, has_errors, Problem};
use crate::value::ValueSource;

/// Everything the renderer reads.
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a> {
    /// The resource.
    pub config: &'a ObservabilityConfig,
    /// The app's Procfile, when there is one.
    pub procfile: Option<&'a Procfile>,
    /// Quantities from the command line (`--formation web=2`), over the spec's.
    pub formation: Option<&'a BTreeMap<String, u32>>,
    /// `HEROKU_APP_NAME` of the environment, when set.
    pub heroku_app_name: Option<&'a str>,
}

/// One process type of the resolved formation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessType {
    /// e.g. `web`.
    pub name: String,
    /// How many dynos run.
    pub quantity: u32,
    /// Its command, from the spec or the Procfile.
    pub command: Option<String>,
}

/// The rendered dynos of one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The resolved app name (also the output directory's name).
    pub app: String,
    /// The resolved formation, `web` first then alphabetical.
    pub formation: Vec<ProcessType>,
    /// One config per dyno, in formation order.
    pub dynos: Vec<DynoConfig>,
    /// Problems that did not stop rendering.
    pub warnings: Vec<Problem>,
}

/// Why a resource could not be rendered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct RenderError {
    /// Every problem found, errors and warnings.
    pub problems: Vec<Problem>,
}

/// The app's name: `spec.app`, else `HEROKU_APP_NAME`, else `metadata.name`.
pub fn app_name(config: &ObservabilityConfig, heroku_app_name: Option<&str>) -> String {
    let from_meta = config.metadata.name.as_deref().unwrap_or("app");
    config
        .spec
        .app
        .as_deref()
        .or(heroku_app_name.filter(|name| !name.trim().is_empty()))
        .unwrap_or(from_meta)
        .to_owned()
}

/// The app name as the Datadog buildpack puts it in host names: anything but
/// letters, digits and `-` becomes `-`, and leading dashes go.
pub fn sanitize_app_name(app: &str) -> String {
    let replaced: String = app
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    replaced.trim_start_matches('-').to_owned()
}

/// Orders process types: `web` first, then alphabetically.
fn type_order(a: &str, b: &str) -> std::cmp::Ordering {
    (a != "web", a).cmp(&(b != "web", b))
}

/// Resolves the formation: types of the Procfile and the spec, quantities from
/// the command line, else the spec, else 1 for `web` and 0 for the others.
/// `release` never runs as a dyno; with no type known at all, there is one `web`.
pub fn resolve_formation(input: &RenderInput<'_>) -> Vec<ProcessType> {
    let spec = &input.config.spec;
    let mut names: BTreeSet<&str> = spec.formation.keys().map(String::as_str).collect();
    if let Some(procfile) = input.procfile {
        names.extend(procfile.entries.iter().map(|(name, _)| name.as_str()));
    }
    if let Some(cli) = input.formation {
        names.extend(cli.keys().map(String::as_str));
    }
    // With no Procfile and no formation, the app is a web app (as a
    // buildpack's default `web` process).
    if names.is_empty() {
        names.insert("web");
    }
    let mut types: Vec<ProcessType> = names
        .into_iter()
        .filter(|name| *name != "release")
        .map(|name| {
            let process = spec.formation.get(name);
            let default = if name == "web" {
                defaults::WEB_QUANTITY
            } else {
                defaults::OTHER_QUANTITY
            };
            let quantity = input
                .formation
                .and_then(|cli| cli.get(name).copied())
                .or_else(|| {
                    process
                        .and_then(|p| p.quantity)
                        .map(|q| u32::try_from(q).unwrap_or(0))
                })
                .unwrap_or(default);
            let command = process.and_then(|p| p.command.clone()).or_else(|| {
                input
                    .procfile
                    .and_then(|p| p.command(name))
                    .map(str::to_owned)
            });
            ProcessType {
                name: name.to_owned(),
                quantity,
                command,
            }
        })
        .collect();
    types.sort_by(|a, b| type_order(&a.name, &b.name));
    types
}

fn dyno_names(formation: &[ProcessType]) -> Vec<String> {
    formation
        .iter()
        .flat_map(|t| (1..=t.quantity).map(move |i| format!("{}.{i}", t.name)))
        .collect()
}

/// Renders every dyno of the formation.
pub fn render(input: &RenderInput<'_>) -> Result<Rendered, RenderError> {
    let formation = resolve_formation(input);
    let dynos = dyno_names(&formation);
    let warnings = check(input, &formation, &dynos)?;
    let assignment = assign_integrations(input, &dynos);
    let configs = dynos
        .iter()
        .map(|dyno| build(input, &formation, &dynos, dyno, &assignment))
        .collect();
    Ok(Rendered {
        app: app_name(input.config, input.heroku_app_name),
        formation,
        dynos: configs,
        warnings,
    })
}

/// Renders one dyno, which need not be part of the formation (e.g. a one-off `run.9157`).
/// It runs the integration checks assigned to it in the formation, if any.
pub fn render_dyno(
    input: &RenderInput<'_>,
    dyno: &str,
) -> Result<(DynoConfig, Vec<Problem>), RenderError> {
    let formation = resolve_formation(input);
    let dynos = dyno_names(&formation);
    let warnings = check(input, &formation, &dynos)?;
    let assignment = assign_integrations(input, &dynos);
    Ok((
        build(input, &formation, &dynos, dyno, &assignment),
        warnings,
    ))
}

fn check(
    input: &RenderInput<'_>,
    formation: &[ProcessType],
    dynos: &[String],
) -> Result<Vec<Problem>, RenderError> {
    let types: Vec<String> = formation.iter().map(|t| t.name.clone()).collect();
    let mut problems = validate::validate(&input.config.spec, Some(&types), Some(dynos));
    let spec = &input.config.spec;
    let unassigned = spec.integrations.iter().any(|i| i.dyno.is_none())
        || spec.conf_d.as_ref().is_some_and(|c| c.dyno.is_none());
    if unassigned && first_enabled(input, dynos).is_none() {
        problems.push(Problem {
            severity: validate::Severity::Warning,
            field: "spec.integrations".into(),
            message: "no dyno with observability enabled runs, so no integration check runs: scale a process type up".into(),
        });
    }
    if has_errors(&problems) {
        Err(RenderError { problems })
    } else {
        Ok(problems)
    }
}

fn override_for<'a>(input: &RenderInput<'a>, dyno_type: &str) -> Option<&'a OverrideSpec> {
    input.config.spec.overrides.get(dyno_type)
}

fn enabled(input: &RenderInput<'_>, dyno_type: &str) -> bool {
    override_for(input, dyno_type)
        .and_then(|o| o.enabled)
        .unwrap_or(true)
}

fn first_enabled<'d>(input: &RenderInput<'_>, dynos: &'d [String]) -> Option<&'d String> {
    dynos.iter().find(|d| enabled(input, dyno_type(d)))
}

/// The process type of a dyno name: `web` of `web.1`, `run` of `run.9157`.
pub fn dyno_type(dyno: &str) -> &str {
    dyno.split_once('.').map_or(dyno, |(t, _)| t)
}

/// Which dyno runs each integration (by index in the spec).
fn assign_integrations(input: &RenderInput<'_>, dynos: &[String]) -> Vec<Option<String>> {
    let default = first_enabled(input, dynos);
    input
        .config
        .spec
        .integrations
        .iter()
        .map(|i| i.dyno.clone().or_else(|| default.cloned()))
        .collect()
}

fn build(
    input: &RenderInput<'_>,
    formation: &[ProcessType],
    all_dynos: &[String],
    dyno: &str,
    assignment: &[Option<String>],
) -> DynoConfig {
    let spec = &input.config.spec;
    let kind = dyno_type(dyno);
    let over = override_for(input, kind);
    let app = app_name(input.config, input.heroku_app_name);
    let service = spec.service.clone().unwrap_or_else(|| app.clone());

    let mut tags: BTreeSet<String> = BTreeSet::new();
    tags.insert(format!("dyno:{dyno}"));
    tags.insert(format!("dynotype:{kind}"));
    tags.insert(format!("appname:{app}"));
    tags.insert(format!("service:{service}"));
    if let Some(env) = &spec.env {
        tags.insert(format!("env:{env}"));
    }
    if let Some(ValueSource::Literal(version)) = &spec.version {
        tags.insert(format!("version:{version}"));
    }
    tags.extend(spec.tags.iter().cloned());
    tags.extend(over.iter().flat_map(|o| o.tags.iter().cloned()));

    let hostname = match spec.hostname.as_deref() {
        None | Some("dyno") => format!("{}.{dyno}", sanitize_app_name(&app)),
        Some(literal) => literal.to_owned(),
    };

    let apm = merge(spec.apm.as_ref(), over.and_then(|o| o.apm.as_ref()));
    let dsd = merge(
        spec.dogstatsd.as_ref(),
        over.and_then(|o| o.dogstatsd.as_ref()),
    );
    let pm = merge(
        spec.process_metrics.as_ref(),
        over.and_then(|o| o.process_metrics.as_ref()),
    );
    let port = |value: Option<i64>, default: u16| {
        value.and_then(|p| u16::try_from(p).ok()).unwrap_or(default)
    };

    let integrations = spec
        .integrations
        .iter()
        .zip(assignment)
        .filter(|(_, assigned)| assigned.as_deref() == Some(dyno))
        .map(|(i, _)| integration_config(i))
        .collect();

    let conf_d = spec
        .conf_d
        .as_ref()
        .filter(|c| {
            let owner = c.dyno.as_ref().or_else(|| first_enabled(input, all_dynos));
            owner.is_some_and(|o| o == dyno)
        })
        .map(|c| c.path.clone());

    let logs =
        crate::logs::LogsSpec::merged(spec.logs.as_ref(), over.and_then(|o| o.logs.as_ref()))
            .render(&service);

    let sinks = if spec.sinks.is_empty() {
        vec![SinkSpec::Stdout { metrics: None }]
    } else {
        spec.sinks.iter().map(sink_with_defaults).collect()
    };

    DynoConfig {
        schema_version: SCHEMA_VERSION,
        source: format!(
            "{}/{}",
            input
                .config
                .metadata
                .namespace
                .as_deref()
                .unwrap_or("default"),
            input.config.metadata.name.as_deref().unwrap_or_default()
        ),
        app,
        dyno: dyno.to_owned(),
        dyno_type: kind.to_owned(),
        enabled: over.and_then(|o| o.enabled).unwrap_or(true),
        command: formation
            .iter()
            .find(|t| t.name == kind)
            .and_then(|t| t.command.clone()),
        hostname,
        service,
        env: spec.env.clone(),
        version: spec.version.clone(),
        tags: tags.into_iter().collect(),
        grace_period: over
            .and_then(|o| o.grace_period)
            .or(spec.grace_period)
            .unwrap_or(defaults::GRACE_PERIOD),
        admin_port: port(
            spec.admin.as_ref().and_then(|a| a.port),
            defaults::ADMIN_PORT,
        ),
        apm: ApmConfig {
            enabled: apm.enabled.unwrap_or(true),
            port: port(apm.port, defaults::APM_PORT),
            socket: apm.socket,
            keep_rejected: apm.keep_rejected.unwrap_or(false),
        },
        dogstatsd: DogStatsdConfig {
            enabled: dsd.enabled.unwrap_or(true),
            port: port(dsd.port, defaults::DOGSTATSD_PORT),
            socket: dsd.socket,
            histogram_percentiles: dsd
                .histogram_percentiles
                .unwrap_or_else(|| defaults::HISTOGRAM_PERCENTILES.to_vec()),
            histogram_aggregates: dsd.histogram_aggregates.unwrap_or_else(|| {
                defaults::HISTOGRAM_AGGREGATES
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect()
            }),
            mappings: if dsd.mappings.is_empty() {
                spec.dogstatsd
                    .as_ref()
                    .map(|d| d.mappings.clone())
                    .unwrap_or_default()
            } else {
                dsd.mappings
            },
        },
        otlp: crate::otlp::OtlpSpec::render(spec.otlp.as_ref()),
        drain: crate::drain::DrainSpec::render(spec.drain.as_ref()),
        process_metrics: ProcessMetricsConfig {
            enabled: pm.enabled.unwrap_or(true),
            interval: pm.interval.unwrap_or(defaults::SAMPLE_INTERVAL),
            log_lines: pm.log_lines.unwrap_or(true),
            memory_from: MemoryFrom::Cgroup,
        },
        size: spec
            .formation
            .get(kind)
            .and_then(|p| p.size.as_deref())
            .and_then(|name| crate::size::parse(name).ok())
            .map(SizeConfig::of),
        integrations,
        conf_d,
        logs,
        sinks,
        config_hash: String::new(),
    }
    .seal()
}

/// Field-by-field merge of a component and its override: the override's set fields win.
trait Merge: Clone + Default {
    fn merge_from(&mut self, over: &Self);
}

fn merge<T: Merge>(base: Option<&T>, over: Option<&T>) -> T {
    let mut merged = base.cloned().unwrap_or_default();
    if let Some(over) = over {
        merged.merge_from(over);
    }
    merged
}

macro_rules! impl_merge {
    ($ty:ty { $($field:ident),* } keep { $($vec:ident),* }) => {
        impl Merge for $ty {
            fn merge_from(&mut self, over: &Self) {
                $(if over.$field.is_some() { self.$field.clone_from(&over.$field); })*
                $(if !over.$vec.is_empty() { self.$vec.clone_from(&over.$vec); })*
            }
        }
    };
}

impl_merge!(crate::observability::ApmSpec { enabled, port, socket, keep_rejected } keep {});
impl_merge!(crate::observability::DogStatsdSpec { enabled, port, socket, histogram_percentiles, histogram_aggregates } keep { mappings });
impl_merge!(crate::observability::ProcessMetricsSpec { enabled, interval, log_lines } keep {});

fn integration_config(spec: &IntegrationSpec) -> IntegrationConfig {
    let source = validate::integration_source(spec);
    let default_source = match spec.type_ {
        crate::observability::IntegrationType::Postgres => defaults::POSTGRES_URL_ENV,
        crate::observability::IntegrationType::Redis => defaults::REDIS_URL_ENV,
        crate::observability::IntegrationType::Memcached => defaults::MEMCACHED_SERVERS_ENV,
    };
    let name = if source == default_source {
        spec.type_.as_str().to_owned()
    } else {
        format!("{}:{source}", spec.type_.as_str())
    };
    let is_memcached = spec.type_ == crate::observability::IntegrationType::Memcached;
    IntegrationConfig {
        url_from: (!is_memcached).then(|| source.to_owned()),
        servers_from: is_memcached.then(|| source.to_owned()),
        username_from: spec.username_from.clone(),
        password_from: spec.password_from.clone(),
        relations: spec.relations.unwrap_or(false),
        tls_verify: spec.tls_verify.unwrap_or(false),
        interval: spec.interval.unwrap_or(defaults::CHECK_INTERVAL),
        timeout: spec.timeout.unwrap_or(defaults::CHECK_TIMEOUT),
        ..IntegrationConfig::new(name, spec.type_)
    }
}

fn sink_with_defaults(sink: &SinkSpec) -> SinkSpec {
    match sink.clone() {
        SinkSpec::Datadog {
            site,
            api_key,
            endpoint,
            buffer_bytes,
            buffer,
        } => SinkSpec::Datadog {
            site: Some(site.unwrap_or_else(|| defaults::DATADOG_SITE.to_owned())),
            api_key,
            endpoint,
            // `buffer.memoryBytes` replaces `bufferBytes`: the default fills only the one in use.
            buffer_bytes: match &buffer {
                Some(b) if b.memory_bytes.is_some() => buffer_bytes,
                _ => Some(buffer_bytes.unwrap_or(defaults::SINK_BUFFER_BYTES as i64)),
            },
            buffer,
        },
        SinkSpec::Prometheus {
            listen,
            remote_write,
        } => SinkSpec::Prometheus {
            listen: Some(listen.unwrap_or_else(|| defaults::PROMETHEUS_LISTEN.to_owned())),
            remote_write,
        },
        other => other,
    }
}

#[cfg(test)]
#[path = "render/tests.rs"]
mod tests;
