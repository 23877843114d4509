//! The Helm chart and the Kubernetes examples, without `helm` or a cluster.
//!
//! `helm` cannot be installed here, so the chart's templates are rendered by
//! [`template`], a small engine for the subset of Go templates the chart
//! uses: `{{ .Values.a.b }}`, `.Release.Name/Namespace/Service`,
//! `.Chart.Name/Version/AppVersion`, string literals, pipelines with
//! `quote`, `default`, `toYaml`, `nindent`, `indent`, `not`, `or`, `and`,
//! `{{ if }} / {{ else }} / {{ end }}`, `{{- -}}` whitespace trimming and
//! `{{/* comments */}}`. Anything else fails the test, so a template that
//! grows past this subset is noticed. Every rendered document must
//! deserialise into its `k8s-openapi` type and serialise back unchanged
//! (which catches misspelt fields, as those types ignore unknown ones).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dynoscope_operator::kube::{RbacScope, RBAC_RULES};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_yaml::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    repo().join("charts/dynoscope")
}

/// A tiny Go-template engine for the chart's subset.
mod template {
    use serde_yaml::{Mapping, Value};

    #[derive(Debug)]
    enum Node {
        Text(String),
        Action(String),
        If(String, Vec<Node>, Vec<Node>),
    }

    /// Splits into text and actions, applying `{{-` / `-}}` trimming.
    fn lex(source: &str) -> Vec<(bool, String)> {
        let mut pieces: Vec<(bool, String)> = Vec::new();
        let mut rest = source;
        let mut trim_next = false;
        while let Some(start) = rest.find("{{") {
            let mut text = rest[..start].to_owned();
            if trim_next {
                text = text.trim_start().to_owned();
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").expect("unclosed {{");
            let mut inner = &after[..end];
            if let Some(stripped) = inner.strip_prefix('-') {
                text = text.trim_end().to_owned();
                inner = stripped;
            }
            trim_next = false;
            if let Some(stripped) = inner.strip_suffix('-') {
                trim_next = true;
                inner = stripped;
            }
            pieces.push((false, text));
            pieces.push((true, inner.trim().to_owned()));
            rest = &after[end + 2..];
        }
        let text = if trim_next { rest.trim_start() } else { rest };
        pieces.push((false, text.to_owned()));
        pieces
    }

    fn parse(
        pieces: &mut std::iter::Peekable<std::vec::IntoIter<(bool, String)>>,
    ) -> (Vec<Node>, Option<String>) {
        let mut nodes = Vec::new();
        while let Some((is_action, text)) = pieces.next() {
            if !is_action {
                nodes.push(Node::Text(text));
                continue;
            }
            if text.starts_with("/*") {
                assert!(text.ends_with("*/"), "bad comment {text}");
                continue;
            }
            if let Some(condition) = text.strip_prefix("if ") {
                let (then, stop) = parse(pieces);
                let otherwise = if stop.as_deref() == Some("else") {
                    let (otherwise, stop) = parse(pieces);
                    assert_eq!(stop.as_deref(), Some("end"), "if without end");
                    otherwise
                } else {
                    assert_eq!(stop.as_deref(), Some("end"), "if without end");
                    Vec::new()
                };
                nodes.push(Node::If(condition.trim().to_owned(), then, otherwise));
            } else if text == "else" || text == "end" {
                return (nodes, Some(text));
            } else {
                nodes.push(Node::Action(text));
            }
        }
        (nodes, None)
    }

    /// Splits a command into words, keeping string literals whole.
    fn words(command: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut chars = command.trim().chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
            } else if c == '"' {
                chars.next();
                let mut literal = String::from("\"");
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    literal.push(c);
                }
                words.push(literal);
            } else {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                words.push(word);
            }
        }
        words
    }

    fn lookup(root: &Value, path: &str) -> Value {
        let mut current = root;
        for key in path.trim_start_matches('.').split('.') {
            match current.get(key) {
                Some(next) => current = next,
                None => return Value::Null,
            }
        }
        current.clone()
    }

    fn term(root: &Value, word: &str) -> Value {
        if let Some(literal) = word.strip_prefix('"') {
            Value::String(literal.to_owned())
        } else if word.starts_with('.') {
            lookup(root, word)
        } else if let Ok(n) = word.parse::<i64>() {
            Value::Number(n.into())
        } else {
            panic!("unsupported term `{word}`")
        }
    }

    /// Go's truth: false, 0, "", null and empty collections are false.
    pub fn truthy(value: &Value) -> bool {
        match value {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            Value::Sequence(s) => !s.is_empty(),
            Value::Mapping(m) => !m.is_empty(),
            Value::Tagged(_) => true,
        }
    }

    fn text(value: &Value) -> String {
        match value {
            Value::Null => "<no value>".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            other => panic!("cannot print {other:?} without toYaml"),
        }
    }

    fn call(function: &str, args: &[Value]) -> Value {
        let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Null);
        match function {
            "quote" => Value::String(format!("{:?}", text(&arg(0)))),
            // `default D V`: V unless it is empty.
            "default" => {
                if truthy(&arg(1)) {
                    arg(1)
                } else {
                    arg(0)
                }
            }
            "not" => Value::Bool(!truthy(&arg(0))),
            "or" => args
                .iter()
                .find(|a| truthy(a))
                .cloned()
                .unwrap_or(arg(args.len().saturating_sub(1))),
            "and" => args
                .iter()
                .find(|a| !truthy(a))
                .cloned()
                .unwrap_or(arg(args.len().saturating_sub(1))),
            "toYaml" => Value::String(
                serde_yaml::to_string(&arg(0))
                    .unwrap()
                    .trim_end()
                    .to_owned(),
            ),
            "nindent" | "indent" => {
                let width = arg(0).as_u64().expect("indent width") as usize;
                let pad = " ".repeat(width);
                let body = text(&arg(1))
                    .lines()
                    .map(|line| format!("{pad}{line}"))
                    .collect::<Vec<_>>()
                    .join("\n");
                Value::String(if function == "nindent" {
                    format!("\n{body}")
                } else {
                    body
                })
            }
            other => panic!("unsupported function `{other}`"),
        }
    }

    fn pipeline(root: &Value, source: &str) -> Value {
        let mut previous: Option<Value> = None;
        for command in source.split('|') {
            let words = words(command);
            let (head, rest) = words.split_first().expect("empty command");
            let value = if head.starts_with('.') || head.starts_with('"') {
                assert!(
                    rest.is_empty() && previous.is_none(),
                    "cannot call a value: {source}"
                );
                term(root, head)
            } else {
                let mut args: Vec<Value> = rest.iter().map(|w| term(root, w)).collect();
                args.extend(previous.take());
                call(head, &args)
            };
            previous = Some(value);
        }
        previous.unwrap_or(Value::Null)
    }

    fn run(nodes: &[Node], root: &Value, out: &mut String) {
        for node in nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Action(action) => out.push_str(&text(&pipeline(root, action))),
                Node::If(condition, then, otherwise) => {
                    let branch = if truthy(&pipeline(root, condition)) {
                        then
                    } else {
                        otherwise
                    };
                    run(branch, root, out);
                }
            }
        }
    }

    /// Renders `source` with `.Values`, `.Release` and `.Chart` from `root`.
    pub fn render(source: &str, root: &Value) -> String {
        let mut pieces = lex(source).into_iter().peekable();
        let (nodes, stop) = parse(&mut pieces);
        assert!(stop.is_none(), "unexpected {stop:?}");
        let mut out = String::new();
        run(&nodes, root, &mut out);
        out
    }

    /// The root object of a release: values, release and chart metadata.
    pub fn root(values: Value, name: &str, namespace: &str, chart: &Value) -> Value {
        let mut chart_meta = Mapping::new();
        for (key, field) in [
            ("Name", "name"),
            ("Version", "version"),
            ("AppVersion", "appVersion"),
        ] {
            chart_meta.insert(key.into(), chart[field].clone());
        }
        let mut release = Mapping::new();
        release.insert("Name".into(), name.into());
        release.insert("Namespace".into(), namespace.into());
        release.insert("Service".into(), "Helm".into());
        let mut root = Mapping::new();
        root.insert("Values".into(), values);
        root.insert("Release".into(), Value::Mapping(release));
        root.insert("Chart".into(), Value::Mapping(chart_meta));
        Value::Mapping(root)
    }
}

fn read_yaml(path: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn default_values() -> Value {
    read_yaml(&chart().join("values.yaml"))
}

/// Deep-merges `over` into `base`, as `helm --set` does.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Mapping(base), Value::Mapping(over)) => {
            for (key, value) in over {
                match base.get_mut(key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (slot, value) => *slot = value.clone(),
    }
}

/// Every non-empty document of every template, rendered for release `dynoscope` in `ops`.
fn render_chart(overrides: &str) -> Vec<Value> {
    let chart_meta = read_yaml(&chart().join("Chart.yaml"));
    let mut values = default_values();
    merge(&mut values, &serde_yaml::from_str(overrides).unwrap());
    let root = template::root(values, "dynoscope", "ops", &chart_meta);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(chart().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty());
    let mut documents = Vec::new();
    for path in paths {
        let rendered = template::render(&std::fs::read_to_string(&path).unwrap(), &root);
        for document in serde_yaml::Deserializer::from_str(&rendered) {
            let value = <Value as serde::Deserialize>::deserialize(document)
                .unwrap_or_else(|e| panic!("{}: {e}\n{rendered}", path.display()));
            if !value.is_null() {
                documents.push(value);
            }
        }
    }
    documents
}

/// Deserialises into `T` and back; the round trip must lose nothing.
fn check_type<T: serde::de::DeserializeOwned + serde::Serialize>(document: &Value) -> T {
    let typed: T = serde_yaml::from_value(document.clone())
        .unwrap_or_else(|e| panic!("{e}\n{}", serde_yaml::to_string(document).unwrap()));
    let back = serde_yaml::to_value(&typed).unwrap();
    let want: serde_json::Value = serde_yaml::from_value(document.clone()).unwrap();
    let got: serde_json::Value = serde_yaml::from_value(back).unwrap();
    assert_eq!(
        got, want,
        "a field did not survive the round trip through its type"
    );
    typed
}

fn kind(document: &Value) -> &str {
    document["kind"].as_str().unwrap_or_default()
}

fn check_documents(documents: &[Value]) {
    for document in documents {
        match kind(document) {
            "Deployment" => drop(check_type::<Deployment>(document)),
            "ServiceAccount" => drop(check_type::<ServiceAccount>(document)),
            "ClusterRole" => drop(check_type::<ClusterRole>(document)),
            "ClusterRoleBinding" => drop(check_type::<ClusterRoleBinding>(document)),
            "Role" => drop(check_type::<Role>(document)),
            "RoleBinding" => drop(check_type::<RoleBinding>(document)),
            "Service" => drop(check_type::<Service>(document)),
            other => panic!("unexpected kind {other:?} in the chart"),
        }
    }
}

fn kinds(documents: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = documents.iter().map(|d| kind(d).to_owned()).collect();
    kinds.sort();
    kinds
}

#[test]
fn every_template_renders_into_its_kubernetes_type_with_default_values() {
    let documents = render_chart("{}");
    assert_eq!(
        kinds(&documents),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    check_documents(&documents);
    let deployment: Deployment =
        check_type(documents.iter().find(|d| kind(d) == "Deployment").unwrap());
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2), "two replicas by default");
    let pod = spec.template.spec.unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("dynoscope-operator")
    );
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("ghcr.io/dynoscope/dynoscope:0.1.0")
    );
    let args = container.args.clone().unwrap();
    assert_eq!(
        args,
        [
            "kube",
            "--metrics-addr=0.0.0.0:8080",
            "--leader-election=true",
            "--lease-duration-seconds=15"
        ]
    );
    // The arguments parse with the operator's own command line.
    let mut argv = vec!["dynoscope-operator".to_owned()];
    argv.extend(args);
    let cli = <dynoscope_operator::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
    assert!(
        matches!(cli.command, dynoscope_operator::cli::Command::Kube(ref o) if o.leader_election)
    );
    let resources = container.resources.as_ref().unwrap();
    assert!(resources.limits.as_ref().unwrap().contains_key("memory"));
    let probes = [&container.liveness_probe, &container.readiness_probe];
    let paths: Vec<_> = probes
        .iter()
        .map(|p| {
            p.as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .clone()
                .unwrap()
        })
        .collect();
    assert_eq!(paths, ["/healthz", "/readyz"]);
    let service: Service = check_type(documents.iter().find(|d| kind(d) == "Service").unwrap());
    assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 8080);
}

#[test]
fn the_drain_is_off_by_default_and_runs_the_sidecars_drain_when_enabled() {
    let default = render_chart("{}");
    assert!(
        default.iter().all(|d| !d["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .ends_with("-drain")),
        "no drain unless enabled"
    );
    let documents = render_chart(
        "{drain: {enabled: true, configMap: shop, secretName: drain-secrets, port: 9000}}",
    );
    check_documents(&documents);
    let named = |kind_name: &str| {
        documents
            .iter()
            .find(|d| {
                kind(d) == kind_name
                    && d["metadata"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .ends_with("-drain")
            })
            .unwrap_or_else(|| panic!("no drain {kind_name}"))
    };
    let deployment: Deployment = check_type(named("Deployment"));
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let container = &pod.containers[0];
    assert_eq!(
        container.command.as_deref(),
        Some(&["dynoscope-sidecar".to_owned()][..])
    );
    assert_eq!(
        container.args.clone().unwrap(),
        [
            "drain",
            "--config=/etc/dynoscope/web.1.yaml",
            "--listen=0.0.0.0:9000"
        ]
    );
    let env_from = container.env_from.clone().unwrap();
    assert_eq!(
        env_from[0].secret_ref.as_ref().unwrap().name,
        "drain-secrets",
        "credentials come from a Secret, never from values"
    );
    let volume = &pod.volumes.unwrap()[0];
    assert_eq!(volume.config_map.as_ref().unwrap().name, "shop");
    let service: Service = check_type(named("Service"));
    assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 9000);
}

#[test]
fn namespaced_mode_renders_roles_instead_of_cluster_roles() {
    let documents = render_chart("{rbac: {namespaced: true}, watchNamespace: shop, leaderElection: {enabled: false}, replicas: 1}");
    assert_eq!(
        kinds(&documents),
        [
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    check_documents(&documents);
    let role: Role = check_type(documents.iter().find(|d| kind(d) == "Role").unwrap());
    assert_eq!(role.metadata.namespace.as_deref(), Some("shop"));
    let deployment: Deployment =
        check_type(documents.iter().find(|d| kind(d) == "Deployment").unwrap());
    let args = deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.contains(&"--namespace=shop".to_owned()), "{args:?}");
    assert!(
        args.contains(&"--leader-election=false".to_owned()),
        "{args:?}"
    );
    // Namespaced without a namespace: the release's.
    let documents = render_chart("{rbac: {namespaced: true}}");
    let role: Role = check_type(
        documents
            .iter()
            .find(|d| kind(d) == "Role" && d["metadata"]["name"] == "dynoscope-operator")
            .unwrap(),
    );
    assert_eq!(role.metadata.namespace.as_deref(), Some("ops"));
}

fn rules_of(rules: &[PolicyRule]) -> BTreeSet<(String, String, Vec<String>)> {
    let mut set = BTreeSet::new();
    for rule in rules {
        for group in rule.api_groups.clone().unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                let mut verbs = rule.verbs.clone();
                verbs.sort();
                assert!(
                    set.insert((group.clone(), resource, verbs)),
                    "duplicate rule"
                );
            }
        }
    }
    set
}

fn wanted_rules(scope: RbacScope) -> BTreeSet<(String, String, Vec<String>)> {
    RBAC_RULES
        .iter()
        .filter(|r| r.scope == scope)
        .map(|r| {
            (
                r.api_group.to_owned(),
                r.resource.to_owned(),
                r.verbs.iter().map(|v| (*v).to_owned()).collect(),
            )
        })
        .collect()
}

#[test]
fn rbac_grants_exactly_the_verbs_the_controller_uses() {
    let documents = render_chart("{}");
    let cluster_role: ClusterRole =
        check_type(documents.iter().find(|d| kind(d) == "ClusterRole").unwrap());
    assert_eq!(
        rules_of(&cluster_role.rules.unwrap()),
        wanted_rules(RbacScope::Watched)
    );
    let lease_role: Role = check_type(documents.iter().find(|d| kind(d) == "Role").unwrap());
    assert_eq!(lease_role.metadata.namespace.as_deref(), Some("ops"));
    assert_eq!(
        rules_of(&lease_role.rules.unwrap()),
        wanted_rules(RbacScope::OperatorNamespace)
    );
    // The namespaced Role grants the same as the ClusterRole.
    let documents = render_chart("{rbac: {namespaced: true}, leaderElection: {enabled: false}}");
    let role: Role = check_type(documents.iter().find(|d| kind(d) == "Role").unwrap());
    assert_eq!(
        rules_of(&role.rules.unwrap()),
        wanted_rules(RbacScope::Watched)
    );
    // Bindings point at the roles and the chart's service account.
    for document in render_chart("{}")
        .iter()
        .filter(|d| kind(d).ends_with("Binding"))
    {
        assert_eq!(document["subjects"][0]["name"], "dynoscope-operator");
        assert_eq!(document["subjects"][0]["namespace"], "ops");
        assert_eq!(document["roleRef"]["name"], document["metadata"]["name"]);
    }
    // RBAC_RULES are sorted, so the chart README's table and the roles read alike.
    for rule in RBAC_RULES {
        let mut sorted = rule.verbs.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, rule.verbs, "{}", rule.resource);
    }
}

#[test]
fn chart_readme_lists_every_rbac_rule() {
    let readme = std::fs::read_to_string(chart().join("README.md")).unwrap();
    for rule in RBAC_RULES {
        let group = if rule.api_group.is_empty() {
            "\"\" (core)"
        } else {
            rule.api_group
        };
        let row = format!(
            "| `{group}` | `{}` | {} |",
            rule.resource,
            rule.verbs.join(", ")
        );
        assert!(
            readme.contains(&row),
            "charts/dynoscope/README.md lacks the row\n{row}"
        );
    }
}

#[test]
fn chart_crd_equals_the_generated_crd() {
    let chart_crd = std::fs::read_to_string(chart().join("crds/observabilityconfig.yaml")).unwrap();
    assert!(
        chart_crd == dynoscope_crds::crd_yaml(),
        "charts/dynoscope/crds/observabilityconfig.yaml is stale: cp crds/observabilityconfig.yaml charts/dynoscope/crds/"
    );
    let crd: CustomResourceDefinition = check_type(&serde_yaml::from_str(&chart_crd).unwrap());
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("observabilityconfigs.dynoscope.dev")
    );
    let version = &crd.spec.versions[0];
    assert!(
        version.subresources.as_ref().unwrap().status.is_some(),
        "status subresource"
    );
}

#[test]
fn values_match_their_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json")).unwrap())
            .unwrap();
    let validator = jsonschema::draft7::new(&schema).unwrap();
    let values: serde_json::Value = serde_yaml::from_value(default_values()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&values)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    for bad in [
        serde_json::json!({"replicas": "two"}),
        serde_json::json!({"leaderElection": {"enabled": "yes"}}),
        serde_json::json!({"metrics": {"port": 70000}}),
        serde_json::json!({"watchNamespace": "Not_A_Namespace"}),
        serde_json::json!({"replica": 2}),
    ] {
        let mut values = values.clone();
        for (key, value) in bad.as_object().unwrap() {
            values[key] = value.clone();
        }
        assert!(!validator.is_valid(&values), "accepted {bad}");
    }
}

fn example_documents() -> Vec<(PathBuf, Value)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(repo().join("examples/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    let mut documents = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = <Value as serde::Deserialize>::deserialize(document).unwrap();
            if !value.is_null() {
                documents.push((path.clone(), value));
            }
        }
    }
    documents
}

#[test]
fn kubernetes_examples_are_valid_and_wired_to_the_configmap() {
    let documents = example_documents();
    let config = documents
        .iter()
        .find(|(_, d)| kind(d) == "ObservabilityConfig")
        .map(|(_, d)| {
            serde_yaml::from_value::<dynoscope_crds::ObservabilityConfig>(d.clone()).unwrap()
        })
        .expect("an ObservabilityConfig example");
    let rendered = dynoscope_crds::render::render(&dynoscope_crds::render::RenderInput {
        config: &config,
        procfile: None,
        formation: None,
        heroku_app_name: None,
    })
    .unwrap();
    // Every Secret reference of the resource reaches the sidecar as the env var it reads.
    let secret_envs: BTreeSet<String> = rendered
        .dynos
        .iter()
        .flat_map(|d| d.sinks.iter())
        .filter_map(|s| match s {
            dynoscope_crds::observability::SinkSpec::Datadog { api_key, .. } => {
                api_key.env_name().map(|n| n.into_owned())
            }
            _ => None,
        })
        .collect();
    assert!(!secret_envs.is_empty());
    let mut replicas_by_type = std::collections::BTreeMap::new();
    for (path, document) in &documents {
        let pod = match kind(document) {
            "ObservabilityConfig" => continue,
            "Service" => {
                check_type::<Service>(document);
                continue;
            }
            "StatefulSet" => {
                let set: StatefulSet = check_type(document);
                let spec = set.spec.unwrap();
                replicas_by_type.insert(
                    spec.template
                        .metadata
                        .as_ref()
                        .unwrap()
                        .labels
                        .as_ref()
                        .unwrap()["dynotype"]
                        .clone(),
                    spec.replicas.unwrap(),
                );
                spec.template.spec.unwrap()
            }
            "Deployment" => {
                let deployment: Deployment = check_type(document);
                let spec = deployment.spec.unwrap();
                replicas_by_type.insert(
                    spec.template
                        .metadata
                        .as_ref()
                        .unwrap()
                        .labels
                        .as_ref()
                        .unwrap()["dynotype"]
                        .clone(),
                    spec.replicas.unwrap(),
                );
                spec.template.spec.unwrap()
            }
            other => panic!("{}: unexpected kind {other}", path.display()),
        };
        let volume = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.config_map.is_some())
            .expect("a ConfigMap volume");
        assert_eq!(
            volume.config_map.as_ref().unwrap().name,
            config.metadata.name.clone().unwrap(),
            "{}: the ConfigMap is named after the resource",
            path.display()
        );
        let container = &pod.containers[0];
        let mount = container
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == volume.name)
            .unwrap();
        assert!(
            mount.sub_path.is_none(),
            "{}: subPath mounts never update",
            path.display()
        );
        let envs: BTreeSet<String> = container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.name.clone())
            .collect();
        for name in &secret_envs {
            assert!(
                envs.contains(name),
                "{}: the sidecar needs {name}",
                path.display()
            );
        }
        let command = [
            container.command.clone().unwrap_or_default(),
            container.args.clone().unwrap_or_default(),
        ]
        .concat()
        .join(" ");
        assert!(
            command.contains("dynoscope-sidecar") && command.contains("/etc/dynoscope/"),
            "{command}"
        );
    }
    // The workloads run exactly the formation's dynos.
    let formation: std::collections::BTreeMap<String, i32> = rendered
        .formation
        .iter()
        .map(|t| (t.name.clone(), t.quantity as i32))
        .collect();
    assert_eq!(replicas_by_type, formation);
}

#[test]
fn the_template_engine_follows_go_semantics() {
    let root = template::root(
        serde_yaml::from_str("{a: {b: x, empty: '', on: true, n: 3, map: {k: v}}}").unwrap(),
        "rel",
        "ns",
        &serde_yaml::from_str("{name: c, version: 1.0.0, appVersion: '2'}").unwrap(),
    );
    let cases = [
        ("{{ .Values.a.b }}", "x"),
        ("{{ .Values.a.b | quote }}", "\"x\""),
        ("{{ .Values.a.empty | default .Chart.AppVersion }}", "2"),
        ("{{ .Values.a.b | default \"y\" }}", "x"),
        (
            "[{{- if .Values.a.on }} yes {{- else }} no {{- end }}]",
            "[ yes]",
        ),
        (
            "[{{- if .Values.a.on -}} yes {{- else -}} no {{- end -}}]",
            "[yes]",
        ),
        ("{{ if not .Values.a.on }}yes{{ else }}no{{ end }}", "no"),
        ("{{ if or .Values.a.empty .Values.a.n }}yes{{ end }}", "yes"),
        ("{{ if and .Values.a.empty .Values.a.n }}yes{{ end }}", ""),
        ("a:{{- toYaml .Values.a.map | nindent 2 }}", "a:\n  k: v"),
        (
            "{{/* a comment */}}{{ .Release.Name }}/{{ .Release.Namespace }}",
            "rel/ns",
        ),
        ("x\n  {{- .Values.a.n -}}  \ny", "x3y"),
    ];
    for (source, want) in cases {
        assert_eq!(template::render(source, &root), want, "{source}");
    }
}
