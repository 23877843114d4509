use super::*;
use crate::manifest::parse_documents;

pub(super) fn spec(yaml: &str) -> ObservabilityConfigSpec {
    let text = format!("apiVersion: dynoscope.dev/v1alpha1\nkind: ObservabilityConfig\nmetadata: {{name: shop}}\nspec: {yaml}\n");
    parse_documents(&text, "t.yaml").unwrap().remove(0).spec
}

fn types(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// (spec, field that must be named, words the message must contain, severity)
const CASES: &[(&str, &str, &str, Severity)] = &[
    // Ports in range.
    (
        "{apm: {port: 70000}}",
        "spec.apm.port",
        "1-65535",
        Severity::Error,
    ),
    (
        "{dogstatsd: {port: 0}}",
        "spec.dogstatsd.port",
        "1-65535",
        Severity::Error,
    ),
    (
        "{admin: {port: -1}}",
        "spec.admin.port",
        "0 to turn /status off",
        Severity::Error,
    ),
    (
        "{overrides: {web: {apm: {port: 99999}}}}",
        "spec.overrides.web.apm.port",
        "1-65535",
        Severity::Error,
    ),
    // Ports not clashing.
    (
        "{apm: {port: 8127}}",
        "spec.apm.port",
        "already used by spec.admin.port",
        Severity::Error,
    ),
    (
        "{sinks: [{type: prometheus, listen: '127.0.0.1:8126'}]}",
        "spec.sinks[0].listen",
        "already used by spec.apm.port",
        Severity::Error,
    ),
    (
        "{overrides: {web: {apm: {port: 8127}}}}",
        "spec.overrides.web.apm.port",
        "already used",
        Severity::Error,
    ),
    // Percentiles in (0, 1).
    (
        "{dogstatsd: {histogramPercentiles: [0.5, 95]}}",
        "spec.dogstatsd.histogramPercentiles[1]",
        "not in (0, 1)",
        Severity::Error,
    ),
    (
        "{dogstatsd: {histogramPercentiles: [0]}}",
        "spec.dogstatsd.histogramPercentiles[0]",
        "not in (0, 1)",
        Severity::Error,
    ),
    (
        "{dogstatsd: {histogramAggregates: [p99]}}",
        "spec.dogstatsd.histogramAggregates[0]",
        "unknown aggregate",
        Severity::Error,
    ),
    // Sizes from Heroku's table, the table listed.
    (
        "{formation: {web: {size: standard-3x}}}",
        "spec.formation.web.size",
        "unknown dyno size `standard-3x`: use one of eco, basic, standard-1x, standard-2x",
        Severity::Error,
    ),
    // Quantity >= 0.
    (
        "{formation: {web: {quantity: -1}}}",
        "spec.formation.web.quantity",
        "0 or more",
        Severity::Error,
    ),
    // Overrides naming types that do not exist.
    (
        "{overrides: {wrker: {enabled: false}}}",
        "spec.overrides.wrker",
        "no process type `wrker`",
        Severity::Warning,
    ),
    // Duplicate integrations.
    (
        "{integrations: [{type: postgres}, {type: postgres, urlFrom: DATABASE_URL}]}",
        "spec.integrations[1]",
        "duplicates spec.integrations[0]",
        Severity::Error,
    ),
    // Mapping regexes compile.
    (
        "{dogstatsd: {mappings: [{match: 'jobs\\.(.*', name: jobs}]}}",
        "spec.dogstatsd.mappings[0].match",
        "not a valid regular expression",
        Severity::Error,
    ),
    // Literal secrets where a reference is required.
    (
        "{sinks: [{type: datadog, apiKey: abcdef0123456789}]}",
        "spec.sinks[0].apiKey",
        "literal secret",
        Severity::Error,
    ),
    (
        "{integrations: [{type: postgres, urlFrom: 'postgres://u:hunter2@db/x'}]}",
        "spec.integrations[0].urlFrom",
        "never write secrets",
        Severity::Error,
    ),
    (
        "{sinks: [{type: otlp, endpoint: 'http://c:4318', headers: {Authorization: 'Bearer x'}}]}",
        "spec.sinks[0].headers.Authorization",
        "literal secret",
        Severity::Error,
    ),
    // Fields of another integration type.
    (
        "{integrations: [{type: redis, serversFrom: X}]}",
        "spec.integrations[0].serversFrom",
        "not used by a redis check",
        Severity::Error,
    ),
    (
        "{integrations: [{type: memcached, usernameFrom: U}]}",
        "spec.integrations[0].passwordFrom",
        "both usernameFrom and passwordFrom",
        Severity::Error,
    ),
    // Others.
    (
        "{tags: ['team payments']}",
        "spec.tags[0]",
        "not a tag",
        Severity::Error,
    ),
    (
        "{processMetrics: {interval: 0s}}",
        "spec.processMetrics.interval",
        "longer than 0s",
        Severity::Error,
    ),
    (
        "{sinks: [{type: datadog, apiKey: {fromEnv: K}, site: 'https://x'}]}",
        "spec.sinks[0].site",
        "not a Datadog site",
        Severity::Error,
    ),
    (
        "{sinks: [{type: otlp, endpoint: 'collector:4318'}]}",
        "spec.sinks[0].endpoint",
        "http://",
        Severity::Error,
    ),
    (
        "{sinks: [{type: jsonl, path: ''}]}",
        "spec.sinks[0].path",
        "empty",
        Severity::Error,
    ),
    // The jsonl sink's bounds.
    (
        "{sinks: [{type: jsonl, path: /tmp/t.jsonl, maxBytes: 0}]}",
        "spec.sinks[0].maxBytes",
        "is 0: give the size in bytes",
        Severity::Error,
    ),
    (
        "{sinks: [{type: jsonl, path: /tmp/t.jsonl, maxFiles: 0}]}",
        "spec.sinks[0].maxFiles",
        "keep 1 to 1000 rotated files",
        Severity::Error,
    ),
    (
        "{sinks: [{type: jsonl, path: /tmp/t.jsonl, maxFiles: 100000}]}",
        "spec.sinks[0].maxFiles",
        "keep 1 to 1000 rotated files",
        Severity::Error,
    ),
    (
        "{sinks: [{type: jsonl, path: /tmp/t.jsonl, bufferBytes: 0}]}",
        "spec.sinks[0].bufferBytes",
        "at least 65536 bytes",
        Severity::Error,
    ),
    (
        "{sinks: [{type: datadog, apiKey: {fromEnv: K}, bufferBytes: 0}]}",
        "spec.sinks[0].bufferBytes",
        "at least 65536 bytes",
        Severity::Error,
    ),
];

#[test]
fn every_rule_names_its_field() {
    for (yaml, field, words, severity) in CASES {
        let problems = validate(&spec(yaml), Some(&types(&["web", "worker"])), None);
        let found = problems.iter().find(|p| p.field == *field);
        let Some(problem) = found else {
            panic!("{yaml}: no problem for {field}; got {problems:?}");
        };
        assert!(problem.message.contains(words), "{yaml}: {problem}");
        assert_eq!(problem.severity, *severity, "{yaml}: {problem}");
    }
}

#[test]
fn jsonl_rotation_and_buffer_fields_are_read() {
    let yaml = "{sinks: [{type: jsonl, path: /tmp/t.jsonl, maxBytes: 1048576, maxFiles: 3, bufferBytes: 65536}]}";
    let spec = spec(yaml);
    assert_eq!(
        spec.sinks,
        [SinkSpec::Jsonl {
            path: "/tmp/t.jsonl".into(),
            max_bytes: Some(1_048_576),
            max_files: Some(3),
            buffer_bytes: Some(65_536),
        }]
    );
    let problems = validate(&spec, None, None);
    assert!(problems.is_empty(), "{problems:?}");
}

/// A field of another sink type cannot reach `validate` (a `SinkSpec` has
/// no room for it): reading the manifest refuses it, naming the sink, the
/// field and the types it belongs to.
#[test]
fn fields_of_another_sink_type_are_refused_when_read() {
    let cases = [
        (
            "{sinks: [{type: stdout}, {type: datadog, apiKey: {fromEnv: K}, maxBytes: 10}]}",
            "spec.sinks[1]: `maxBytes` is not a field of datadog sinks (only of jsonl): remove it",
        ),
        (
            "{sinks: [{type: prometheus, maxFiles: 2}]}",
            "spec.sinks[0]: `maxFiles` is not a field of prometheus sinks (only of jsonl)",
        ),
        (
            "{sinks: [{type: otlp, endpoint: 'http://c:4318', bufferBytes: 65536}]}",
            "spec.sinks[0]: `bufferBytes` is not a field of otlp sinks (only of datadog, jsonl)",
        ),
        (
            "{sinks: [{type: jsonl, path: /tmp/t.jsonl, site: datadoghq.eu}]}",
            "spec.sinks[0]: `site` is not a field of jsonl sinks (only of datadog)",
        ),
        (
            "{sinks: [{type: jsonl, maxBytes: 10}]}",
            "spec.sinks[0]: missing field `path`: a jsonl sink needs it",
        ),
        (
            "{sinks: [{type: jsonl, path: /tmp/t.jsonl, maxBytes: ten}]}",
            "spec.sinks[0].maxBytes: invalid type",
        ),
        (
            "{sinks: [{type: jsonl, path: /tmp/t.jsonl, maxbytes: 10}]}",
            "spec.sinks[0].maxbytes: unknown field `maxbytes`",
        ),
    ];
    for (yaml, want) in cases {
        let text = format!("apiVersion: dynoscope.dev/v1alpha1\nkind: ObservabilityConfig\nmetadata: {{name: shop}}\nspec: {yaml}\n");
        let err = match parse_documents(&text, "t.yaml") {
            Ok(configs) => panic!("{yaml}: read as {:?}", configs[0].spec.sinks),
            Err(err) => err.to_string(),
        };
        assert!(err.contains(want), "{yaml}: want {want:?} in {err}");
    }
}

#[test]
fn secrets_never_appear_in_messages() {
    for yaml in [
        "{sinks: [{type: datadog, apiKey: abcdef0123456789}]}",
        "{integrations: [{type: postgres, urlFrom: 'postgres://u:hunter2@db/x'}]}",
    ] {
        for problem in validate(&spec(yaml), None, None) {
            let text = problem.to_string();
            assert!(
                !text.contains("abcdef0123456789") && !text.contains("hunter2"),
                "{text}"
            );
        }
    }
}

#[test]
fn integration_dyno_must_exist() {
    let dynos = types(&["web.1", "web.2"]);
    let problems = validate(
        &spec("{integrations: [{type: redis, dyno: worker.1}]}"),
        None,
        Some(&dynos),
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].field, "spec.integrations[0].dyno");
    assert!(problems[0].message.contains("web.1, web.2"));
}

#[test]
fn conf_d_needs_a_path_and_an_existing_dyno() {
    let dynos = types(&["web.1", "web.2"]);
    let problems = validate(
        &spec("{confD: {path: ' ', dyno: worker.1}}"),
        None,
        Some(&dynos),
    );
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        ["spec.confD.path", "spec.confD.dyno"],
        "{problems:?}"
    );
    assert!(problems[0].message.contains("datadog/conf.d"));
    assert!(problems[1].message.contains("web.1, web.2"));
    assert!(validate(&spec("{confD: {path: datadog/conf.d}}"), None, Some(&dynos)).is_empty());
}

#[test]
fn a_good_spec_has_no_problems() {
    let yaml = "{app: shop, env: production, version: {fromEnv: HEROKU_RELEASE_VERSION}, tags: ['team:payments'], \
        formation: {web: {quantity: 2}, worker: {quantity: 1}}, \
        dogstatsd: {histogramPercentiles: [0.95, 0.99], mappings: [{match: 'sidekiq\\.jobs\\.(.*)\\.perform', name: sidekiq.jobs.perform, tags: {worker: '$1'}}]}, \
        integrations: [{type: postgres}, {type: redis}, {type: memcached, usernameFrom: U, passwordFrom: P}], \
        sinks: [{type: datadog, apiKey: {fromEnv: DD_API_KEY}}, {type: prometheus}, {type: stdout}], \
        overrides: {run: {enabled: false}, worker: {apm: {enabled: false}}}}";
    let problems = validate(&spec(yaml), Some(&types(&["web", "worker"])), None);
    assert!(problems.is_empty(), "{problems:?}");
}
