//! Kubernetes mode against a mock API server (kube-rs's tower-test pattern):
//! each request the code makes — method, path with its query (the field
//! manager), body — is asserted in order, then answered.

use std::sync::Arc;
use std::time::Duration;

use dynoscope_crds::render::{render, RenderInput};
use dynoscope_crds::{ObservabilityConfig, ObservabilityConfigStatus};
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::Client;
use serde_json::{json, Value};
use tower_test::mock::{self, Handle};

use super::configmap;
use super::controller::{self, error_policy, reconcile, status_patch, Context};
use super::metrics::Metrics;
use crate::status::{self, Outcome};

mod election;

const NOW: &str = "2025-06-01T12:00:00Z";
const CONFIGMAP: &str =
    "/api/v1/namespaces/prod/configmaps/shop?&force=true&fieldManager=dynoscope-operator";
const STATUS: &str = "/apis/dynoscope.dev/v1alpha1/namespaces/prod/observabilityconfigs/shop/status?&force=true&fieldManager=dynoscope-operator";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/prod/events?";

/// The API server side of a mock client.
struct ApiServer(Handle<Request<Body>, Response<Body>>);

fn mock_client() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer(handle))
}

impl ApiServer {
    /// Asserts the next request's method and path, answers `answer(body)` with
    /// `status`, and returns the request's body.
    async fn expect(
        &mut self,
        method: Method,
        path: &str,
        status: StatusCode,
        answer: impl FnOnce(&Value) -> Value,
    ) -> Value {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"))
            .expect("the client hung up");
        assert_eq!(
            (request.method(), request.uri().to_string().as_str()),
            (&method, path),
            "unexpected request"
        );
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let reply = answer(&body);
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
        body
    }

    /// Asserts that no request comes within a short while.
    async fn expect_nothing(&mut self) {
        let next = tokio::time::timeout(Duration::from_millis(200), self.0.next_request()).await;
        if let Ok(Some((request, _))) = next {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

/// A `Status` error body as the API server sends it.
fn api_error(code: u16, reason: &str, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
           "reason": reason, "message": message, "code": code})
}

fn context(client: Client) -> Arc<Context> {
    let mut ctx = Context::new(
        client,
        Arc::new(Metrics::default()),
        Some("operator-0".into()),
    );
    ctx.now = || NOW.to_owned();
    Arc::new(ctx)
}

fn resource(spec: &str, generation: i64) -> ObservabilityConfig {
    let yaml = format!(
        "apiVersion: dynoscope.dev/v1alpha1\nkind: ObservabilityConfig\n\
         metadata: {{name: shop, namespace: prod, uid: 4c1d-uid, generation: {generation}, resourceVersion: '100'}}\n\
         spec: {spec}\n"
    );
    serde_yaml::from_str(&yaml).unwrap()
}

const SPEC_V1: &str = "{formation: {web: {quantity: 2}, worker: {quantity: 1}}, integrations: [{type: postgres}], sinks: [{type: datadog, apiKey: {secretKeyRef: {name: datadog, key: api-key}}}]}";
const SPEC_V2: &str = "{formation: {web: {quantity: 3}, worker: {quantity: 1}}, env: production, integrations: [{type: postgres}], sinks: [{type: datadog, apiKey: {secretKeyRef: {name: datadog, key: api-key}}}]}";
// A literal API key is refused: secrets must be references.
const SPEC_INVALID: &str =
    "{formation: {web: {quantity: 2}}, sinks: [{type: datadog, apiKey: 'abc123'}]}";

fn rendered_status(
    config: &ObservabilityConfig,
    previous: Option<&ObservabilityConfigStatus>,
) -> ObservabilityConfigStatus {
    let rendered = render(&RenderInput {
        config,
        procfile: None,
        formation: None,
        heroku_app_name: None,
    })
    .unwrap();
    status::next_status(
        previous,
        config.metadata.generation.unwrap(),
        &Outcome::Rendered(&rendered),
        NOW,
    )
}

fn desired_configmap(config: &ObservabilityConfig) -> Value {
    let rendered = render(&RenderInput {
        config,
        procfile: None,
        formation: None,
        heroku_app_name: None,
    })
    .unwrap();
    serde_json::to_value(configmap::desired(config, &rendered).unwrap()).unwrap()
}

/// The object as the API server returns it after the status apply.
fn with_status(config: &ObservabilityConfig, patch: &Value) -> Value {
    let mut object = serde_json::to_value(config).unwrap();
    object["status"] = patch["status"].clone();
    object
}

fn event_fields(body: &Value) -> (String, String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        s(&body["type"]),
        s(&body["reason"]),
        s(&body["regarding"]["kind"]),
        s(&body["regarding"]["name"]),
    )
}

#[tokio::test]
async fn create_applies_the_configmap_then_status_ready_and_an_event() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let obj = resource(SPEC_V1, 1);
    let want_cm = desired_configmap(&obj);
    let want_status = rendered_status(&obj, None);
    let api = async {
        let cm = server
            .expect(Method::PATCH, CONFIGMAP, StatusCode::OK, Clone::clone)
            .await;
        assert_eq!(cm, want_cm);
        let keys: Vec<&String> = cm["data"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["web.1.yaml", "web.2.yaml", "worker.1.yaml"]);
        assert_eq!(
            cm["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "dynoscope"
        );
        assert_eq!(cm["metadata"]["labels"]["dynoscope.dev/app"], "shop");
        assert_eq!(cm["metadata"]["ownerReferences"][0]["uid"], "4c1d-uid");
        for dyno in &want_status.dynos {
            assert_eq!(
                cm["metadata"]["annotations"][format!("dynoscope.dev/config-hash-{}", dyno.name)],
                dyno.config_hash.as_str()
            );
        }
        // The secret stays a reference: the operator never reads Secrets.
        assert!(cm["data"]["web.1.yaml"]
            .as_str()
            .unwrap()
            .contains("secretKeyRef"));

        let patch = server
            .expect(Method::PATCH, STATUS, StatusCode::OK, |p| {
                with_status(&obj, p)
            })
            .await;
        assert_eq!(patch, status_patch(&want_status));
        assert_eq!(patch["status"]["observedGeneration"], 1);
        assert_eq!(patch["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(patch["status"]["conditions"][0]["status"], "True");
        assert_eq!(patch["status"]["dynos"].as_array().unwrap().len(), 3);

        let event = server
            .expect(Method::POST, EVENTS, StatusCode::CREATED, Clone::clone)
            .await;
        assert_eq!(
            event_fields(&event),
            (
                "Normal".into(),
                "Rendered".into(),
                "ObservabilityConfig".into(),
                "shop".into()
            )
        );
        server.expect_nothing().await;
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(obj.clone()), ctx.clone()), api);
    assert_eq!(action.unwrap(), Action::requeue(controller::RESYNC));
    assert_eq!(ctx.metrics.reconciliations(), 1);
}

#[tokio::test]
async fn an_unchanged_resource_only_reapplies_its_configmap() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let mut obj = resource(SPEC_V1, 1);
    obj.status = Some(rendered_status(&obj, None));
    let want_cm = desired_configmap(&obj);
    let api = async {
        let cm = server
            .expect(Method::PATCH, CONFIGMAP, StatusCode::OK, Clone::clone)
            .await;
        assert_eq!(cm, want_cm);
        server.expect_nothing().await;
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(obj.clone()), ctx), api);
    assert_eq!(action.unwrap(), Action::requeue(controller::RESYNC));
}

#[tokio::test]
async fn a_spec_change_updates_hashes_and_observed_generation() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let old = resource(SPEC_V1, 1);
    let old_status = rendered_status(&old, None);
    let mut obj = resource(SPEC_V2, 2);
    obj.status = Some(old_status.clone());
    let want_status = rendered_status(&obj, Some(&old_status));
    let api = async {
        let cm = server
            .expect(Method::PATCH, CONFIGMAP, StatusCode::OK, Clone::clone)
            .await;
        let keys: Vec<&String> = cm["data"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["web.1.yaml", "web.2.yaml", "web.3.yaml", "worker.1.yaml"]
        );
        // Every hash changed (the env tag is new), and web.3 is new.
        for dyno in &want_status.dynos {
            let annotation =
                &cm["metadata"]["annotations"][format!("dynoscope.dev/config-hash-{}", dyno.name)];
            assert_eq!(annotation, dyno.config_hash.as_str());
            assert!(old_status
                .dynos
                .iter()
                .all(|d| d.config_hash != dyno.config_hash));
        }
        assert!(cm["data"]["web.3.yaml"]
            .as_str()
            .unwrap()
            .contains("env:production"));

        let patch = server
            .expect(Method::PATCH, STATUS, StatusCode::OK, |p| {
                with_status(&obj, p)
            })
            .await;
        assert_eq!(patch, status_patch(&want_status));
        assert_eq!(patch["status"]["observedGeneration"], 2);
        let event = server
            .expect(Method::POST, EVENTS, StatusCode::CREATED, Clone::clone)
            .await;
        assert_eq!(event_fields(&event).1, "Rendered");
        assert!(event["note"].as_str().unwrap().contains("web.3"), "{event}");
        server.expect_nothing().await;
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(obj.clone()), ctx), api);
    assert_eq!(action.unwrap(), Action::requeue(controller::RESYNC));
}

#[tokio::test]
async fn an_invalid_spec_sets_invalid_spec_and_a_warning_and_leaves_the_configmap() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let good = resource(SPEC_V1, 1);
    let good_status = rendered_status(&good, None);
    let mut obj = resource(SPEC_INVALID, 2);
    obj.status = Some(good_status.clone());
    let api = async {
        // First request is the status: no ConfigMap write at all.
        let patch = server
            .expect(Method::PATCH, STATUS, StatusCode::OK, |p| {
                with_status(&obj, p)
            })
            .await;
        let status: ObservabilityConfigStatus =
            serde_json::from_value(patch["status"].clone()).unwrap();
        assert_eq!(status.observed_generation, Some(2));
        let ready = status::condition(&status, status::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidSpec")
        );
        let invalid = status::condition(&status, status::INVALID_SPEC).unwrap();
        assert_eq!(invalid.status, "True");
        assert!(
            invalid.message.contains("spec.sinks[0].apiKey"),
            "{}",
            invalid.message
        );
        // The last good dynos (and their hashes) stay listed: their ConfigMap is untouched.
        assert_eq!(status.dynos, good_status.dynos);

        let event = server
            .expect(Method::POST, EVENTS, StatusCode::CREATED, Clone::clone)
            .await;
        assert_eq!(
            event_fields(&event),
            (
                "Warning".into(),
                "InvalidSpec".into(),
                "ObservabilityConfig".into(),
                "shop".into()
            )
        );
        assert!(
            event["note"]
                .as_str()
                .unwrap()
                .contains("spec.sinks[0].apiKey"),
            "{event}"
        );
        server.expect_nothing().await;
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(obj.clone()), ctx.clone()), api);
    // Only a new spec can fix it: no requeue, no crash.
    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(ctx.metrics.failures("invalid_spec"), 1);
}

#[tokio::test]
async fn an_invalid_spec_already_reported_is_not_reported_again() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let mut obj = resource(SPEC_INVALID, 2);
    let dynoscope_crds::render::RenderError { problems } = render(&RenderInput {
        config: &obj,
        procfile: None,
        formation: None,
        heroku_app_name: None,
    })
    .unwrap_err();
    obj.status = Some(status::next_status(
        None,
        2,
        &Outcome::Invalid(&problems),
        NOW,
    ));
    let (action, ()) = tokio::join!(reconcile(Arc::new(obj), ctx), server.expect_nothing());
    assert_eq!(action.unwrap(), Action::await_change());
}

#[tokio::test]
async fn a_resource_being_deleted_is_left_to_the_garbage_collector() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let mut obj = resource(SPEC_V1, 1);
    obj.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        Timestamp::from_second(1_750_000_000).unwrap(),
    ));
    let (action, ()) = tokio::join!(
        reconcile(Arc::new(obj.clone()), ctx),
        server.expect_nothing()
    );
    assert_eq!(action.unwrap(), Action::await_change());
    // What deletes the ConfigMap is its controller owner reference.
    let cm = desired_configmap(&resource(SPEC_V1, 1));
    let owner = &cm["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "ObservabilityConfig");
    assert_eq!(owner["controller"], true);
    // No blockOwnerDeletion: it would need update on observabilityconfigs/finalizers.
    assert!(owner.get("blockOwnerDeletion").is_none(), "{owner}");
}

#[tokio::test]
async fn a_resource_deleted_during_reconcile_is_not_an_error() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let obj = resource(SPEC_V1, 1);
    let api = async {
        server
            .expect(Method::PATCH, CONFIGMAP, StatusCode::OK, Clone::clone)
            .await;
        server
            .expect(Method::PATCH, STATUS, StatusCode::NOT_FOUND, |_| {
                api_error(
                    404,
                    "NotFound",
                    "observabilityconfigs.dynoscope.dev \"shop\" not found",
                )
            })
            .await;
        server.expect_nothing().await;
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(obj), ctx.clone()), api);
    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(ctx.metrics.failures("status_patch"), 0);
}

#[tokio::test]
async fn an_api_error_is_reported_degraded_and_requeued_with_backoff() {
    let (client, mut server) = mock_client();
    let ctx = context(client);
    let obj = Arc::new(resource(SPEC_V1, 1));
    let api = async {
        server
            .expect(
                Method::PATCH,
                CONFIGMAP,
                StatusCode::INTERNAL_SERVER_ERROR,
                |_| api_error(500, "InternalError", "etcdserver: request timed out"),
            )
            .await;
        let patch = server
            .expect(Method::PATCH, STATUS, StatusCode::OK, |p| {
                with_status(&obj, p)
            })
            .await;
        let status: ObservabilityConfigStatus =
            serde_json::from_value(patch["status"].clone()).unwrap();
        let degraded = status::condition(&status, status::DEGRADED).unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "ApplyFailed")
        );
        assert!(
            degraded.message.contains("etcdserver: request timed out"),
            "{}",
            degraded.message
        );
        assert_eq!(
            status::condition(&status, status::READY).unwrap().status,
            "False"
        );
        server.expect_nothing().await;
    };
    let (result, ()) = tokio::join!(reconcile(obj.clone(), ctx.clone()), api);
    let err = result.unwrap_err();
    assert!(
        matches!(err, controller::Error::ApplyConfigMap { .. }),
        "{err}"
    );
    assert_eq!(ctx.metrics.failures("configmap_apply"), 1);
    // The controller calls error_policy with the error: requeue, later each time.
    assert_eq!(
        error_policy(obj.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        error_policy(obj.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
}
