use super::*;
use crate::manifest::parse_documents;
use crate::observability::SinkSpec;
use crate::procfile::parse_formation;

fn resource(spec: &str) -> ObservabilityConfig {
    let text = format!(
        "apiVersion: dynoscope.dev/v1alpha1\nkind: ObservabilityConfig\nmetadata: {{name: shop, namespace: prod}}\nspec:\n{}",
        indent(spec)
    );
    parse_documents(&text, "test.yaml").unwrap().remove(0)
}

fn indent(text: &str) -> String {
    if text.trim().is_empty() {
        return "  {}\n".into();
    }
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn input(config: &ObservabilityConfig) -> RenderInput<'_> {
    RenderInput {
        config,
        procfile: None,
        formation: None,
        heroku_app_name: None,
    }
}

fn names(rendered: &Rendered) -> Vec<&str> {
    rendered.dynos.iter().map(|d| d.dyno.as_str()).collect()
}

#[test]
fn formation_from_spec() {
    let config = resource("formation:\n  worker: {quantity: 1}\n  web: {quantity: 2, command: python app.py}\n  clock: {}\n");
    let rendered = render(&input(&config)).unwrap();
    // web first, then alphabetical; clock defaults to 0.
    assert_eq!(names(&rendered), ["web.1", "web.2", "worker.1"]);
    assert_eq!(rendered.dynos[0].command.as_deref(), Some("python app.py"));
    assert_eq!(rendered.dynos[2].command, None);
    assert_eq!(rendered.dynos[2].dyno_type, "worker");
}

#[test]
fn formation_from_procfile_and_command_line() {
    let procfile =
        Procfile::parse("web: python app.py\nworker: python worker.py\nrelease: ./migrate\n")
            .unwrap();
    let config = resource("");
    let mut inp = input(&config);
    inp.procfile = Some(&procfile);
    let rendered = render(&inp).unwrap();
    // Defaults: one web, no others; release never runs as a dyno.
    assert_eq!(names(&rendered), ["web.1"]);
    assert_eq!(rendered.dynos[0].command.as_deref(), Some("python app.py"));

    let cli = parse_formation("web=2,worker=1").unwrap();
    inp.formation = Some(&cli);
    let rendered = render(&inp).unwrap();
    assert_eq!(names(&rendered), ["web.1", "web.2", "worker.1"]);
    assert_eq!(
        rendered.dynos[2].command.as_deref(),
        Some("python worker.py")
    );

    // The command line wins over the spec; the spec's command over the Procfile's.
    let config = resource("formation:\n  worker: {quantity: 5, command: ./other}\n");
    let mut inp = input(&config);
    inp.procfile = Some(&procfile);
    inp.formation = Some(&cli);
    let rendered = render(&inp).unwrap();
    assert_eq!(names(&rendered), ["web.1", "web.2", "worker.1"]);
    assert_eq!(rendered.dynos[2].command.as_deref(), Some("./other"));
}

#[test]
fn sizes_render_their_quota_in_any_case() {
    let config = resource(
        "formation:\n  web: {quantity: 1, size: Standard-1X}\n  worker: {quantity: 1, size: performance-m}\n  clock: {quantity: 1}\n",
    );
    let rendered = render(&input(&config)).unwrap();
    let sizes: Vec<_> = rendered
        .dynos
        .iter()
        .map(|d| {
            d.size
                .as_ref()
                .map(|s| (s.name.as_str(), s.memory_quota_bytes, s.memory_kill_bytes))
        })
        .collect();
    assert_eq!(
        sizes,
        [
            Some(("standard-1x", 512 << 20, 1024 << 20)),
            None,
            Some(("performance-m", 2560 << 20, 5120 << 20)),
        ]
    );
    // The cgroup stays the source unless `up` says otherwise.
    assert!(rendered
        .dynos
        .iter()
        .all(|d| d.process_metrics.memory_from == MemoryFrom::Cgroup));
    let yaml = rendered.dynos[0].to_yaml();
    assert!(
        yaml.contains("size:\n  name: standard-1x\n  memoryQuotaBytes: 536870912\n"),
        "{yaml}"
    );
    assert!(!yaml.contains("memoryFrom"), "{yaml}");

    let bad = resource("formation:\n  web: {size: huge}\n");
    let err = render(&input(&bad)).err().unwrap();
    assert_eq!(err.problems[0].field, "spec.formation.web.size");
}

#[test]
fn hostnames() {
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("", None, "shop.web.1"),
        ("app: my_shop.eu\n", None, "my-shop-eu.web.1"),
        ("", Some("heroku-shop"), "heroku-shop.web.1"),
        ("", Some(""), "shop.web.1"),
        ("app: _x\n", None, "x.web.1"),
        ("hostname: db-host-7\n", None, "db-host-7"),
        ("hostname: dyno\n", Some("h"), "h.web.1"),
    ];
    for (spec, heroku, want) in cases {
        let config = resource(spec);
        let mut inp = input(&config);
        inp.heroku_app_name = *heroku;
        let rendered = render(&inp).unwrap();
        assert_eq!(
            rendered.dynos[0].hostname, *want,
            "spec {spec:?} heroku {heroku:?}"
        );
        assert!(!rendered.dynos[0].hostname.starts_with('.'));
    }
}

#[test]
fn tags_are_complete_sorted_and_unique() {
    let config = resource(
        "service: shop-api\nenv: production\nversion: v42\ntags: [team:payments, env:production, zeta]\nformation: {web: {quantity: 1}, worker: {quantity: 1}}\noverrides:\n  worker: {tags: [queue:default]}\n",
    );
    let rendered = render(&input(&config)).unwrap();
    assert_eq!(
        rendered.dynos[0].tags,
        [
            "appname:shop",
            "dyno:web.1",
            "dynotype:web",
            "env:production",
            "service:shop-api",
            "team:payments",
            "version:v42",
            "zeta"
        ]
    );
    assert!(rendered.dynos[1].tags.contains(&"queue:default".to_owned()));
    assert!(!rendered.dynos[0].tags.contains(&"queue:default".to_owned()));
    // A version read from the environment is resolved by the sidecar, not tagged here.
    let config = resource("version: {fromEnv: HEROKU_RELEASE_VERSION}\n");
    let dyno = &render(&input(&config)).unwrap().dynos[0];
    assert!(dyno.tags.iter().all(|t| !t.starts_with("version:")));
    assert_eq!(
        dyno.version,
        Some(ValueSource::FromEnv("HEROKU_RELEASE_VERSION".into()))
    );
}

#[test]
fn overrides() {
    let config = resource(
        "formation: {web: {quantity: 1}, worker: {quantity: 1}}\napm: {port: 9126}\noverrides:\n  run: {enabled: false}\n  worker: {apm: {enabled: false}, processMetrics: {interval: 5s}, gracePeriod: 10s}\n",
    );
    let inp = input(&config);
    let rendered = render(&inp).unwrap();
    let (web, worker) = (&rendered.dynos[0], &rendered.dynos[1]);
    assert!(web.apm.enabled && web.apm.port == 9126);
    assert!(!worker.apm.enabled);
    // Fields the override does not set keep the spec's value.
    assert_eq!(worker.apm.port, 9126);
    assert_eq!(worker.process_metrics.interval.to_string(), "5s");
    assert_eq!(web.process_metrics.interval.to_string(), "20s");
    assert_eq!(worker.grace_period.to_string(), "10s");
    assert_eq!(web.grace_period.to_string(), "30s");
    // A one-off dyno outside the formation renders disabled.
    let (run, _) = render_dyno(&inp, "run.9157").unwrap();
    assert!(!run.enabled);
    assert_eq!(run.dyno_type, "run");
    assert_eq!(run.hostname, "shop.run.9157");
}

#[test]
fn each_integration_runs_on_exactly_one_dyno() {
    let config = resource(
        "formation: {web: {quantity: 2}, worker: {quantity: 2}}\noverrides: {web: {enabled: false}}\nintegrations:\n  - {type: postgres}\n  - {type: redis, urlFrom: REDIS_TLS_URL, dyno: worker.2}\n  - {type: memcached, usernameFrom: MC_USER, passwordFrom: MC_PASS}\n",
    );
    let rendered = render(&input(&config)).unwrap();
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for dyno in &rendered.dynos {
        for check in &dyno.integrations {
            owners
                .entry(check.name.clone())
                .or_default()
                .push(dyno.dyno.clone());
        }
    }
    // web dynos are disabled, so the default owner is the first worker.
    assert_eq!(owners["postgres"], ["worker.1"]);
    assert_eq!(owners["memcached"], ["worker.1"]);
    assert_eq!(owners["redis:REDIS_TLS_URL"], ["worker.2"]);
    let pg = &rendered.dynos[2].integrations[0];
    assert_eq!(pg.url_from.as_deref(), Some("DATABASE_URL"));
    assert_eq!(pg.interval.to_string(), "15s");
}

#[test]
fn conf_d_goes_to_one_dyno() {
    let owner = |spec: &str| -> Vec<(String, String)> {
        let config = resource(spec);
        render(&input(&config))
            .unwrap()
            .dynos
            .iter()
            .filter_map(|d| Some((d.dyno.clone(), d.conf_d.clone()?)))
            .collect()
    };
    let pair = |d: &str| vec![(d.to_owned(), "datadog/conf.d".to_owned())];
    let formation = "formation: {web: {quantity: 2}, worker: {quantity: 1}}\n";
    assert_eq!(
        owner(&format!("{formation}confD: {{path: datadog/conf.d}}\n")),
        pair("web.1")
    );
    assert_eq!(
        owner(&format!(
            "{formation}confD: {{path: datadog/conf.d, dyno: worker.1}}\n"
        )),
        pair("worker.1")
    );
    // Scaled away or disabled: the checks move to the first dyno that runs.
    assert_eq!(
        owner("formation: {web: {quantity: 0}, worker: {quantity: 1}}\nconfD: {path: datadog/conf.d}\n"),
        pair("worker.1")
    );
    assert_eq!(
        owner(&format!(
            "{formation}overrides: {{web: {{enabled: false}}}}\nconfD: {{path: datadog/conf.d}}\n"
        )),
        pair("worker.1")
    );
}

#[test]
fn secrets_stay_references() {
    let config = resource(
        "sinks:\n  - {type: datadog, apiKey: {fromEnv: DD_API_KEY}}\n  - {type: otlp, endpoint: 'http://c:4318', headers: {authorization: {secretKeyRef: {name: otlp, key: token}}}}\nintegrations: [{type: postgres}]\n",
    );
    let std_env_key = "DD_API_KEY";
    let rendered = render(&input(&config)).unwrap();
    let yaml = rendered.dynos[0].to_yaml();
    assert!(yaml.contains("fromEnv: DD_API_KEY"), "{yaml}");
    assert!(yaml.contains("secretKeyRef"), "{yaml}");
    assert!(yaml.contains("urlFrom: DATABASE_URL"), "{yaml}");
    // Rendering never reads the environment's secrets.
    assert!(std::env::var(std_env_key)
        .map(|v| !yaml.contains(&v) || v.is_empty())
        .unwrap_or(true));
    match &rendered.dynos[0].sinks[0] {
        SinkSpec::Datadog { site, .. } => assert_eq!(site.as_deref(), Some("datadoghq.com")),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn default_sink_is_stdout() {
    let config = resource("");
    let rendered = render(&input(&config)).unwrap();
    assert_eq!(
        rendered.dynos[0].sinks,
        [SinkSpec::Stdout { metrics: None }]
    );
}

#[test]
fn output_is_deterministic_and_hash_tracks_content() {
    let spec = "tags: [b, a, c]\nformation: {worker: {quantity: 2}, web: {quantity: 2}}\nintegrations: [{type: redis}, {type: postgres}]\n";
    let first: Vec<String> = render(&input(&resource(spec)))
        .unwrap()
        .dynos
        .iter()
        .map(DynoConfig::to_yaml)
        .collect();
    for _ in 0..5 {
        let again: Vec<String> = render(&input(&resource(spec)))
            .unwrap()
            .dynos
            .iter()
            .map(DynoConfig::to_yaml)
            .collect();
        assert_eq!(first, again);
    }
    let a = render(&input(&resource(spec))).unwrap();
    let b = render(&input(&resource(&spec.replace("[b, a, c]", "[b, a, d]")))).unwrap();
    assert_ne!(a.dynos[0].config_hash, b.dynos[0].config_hash);
    // Reading back checks the hash.
    let yaml = a.dynos[0].to_yaml();
    let back = DynoConfig::from_yaml(&yaml, "web.1.yaml").unwrap();
    assert_eq!(back, a.dynos[0]);
    let tampered = yaml.replace("tags:\n- a", "tags:\n- aa");
    let err = DynoConfig::from_yaml(&tampered, "web.1.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("configHash"), "{err}");
}

#[test]
fn invalid_specs_are_refused_with_every_problem() {
    let config = resource("apm: {port: 0}\ndogstatsd: {histogramPercentiles: [1.5]}\n");
    let err = render(&input(&config)).unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    assert!(fields.contains(&"spec.apm.port"), "{fields:?}");
    assert!(
        fields.contains(&"spec.dogstatsd.histogramPercentiles[0]"),
        "{fields:?}"
    );
}
