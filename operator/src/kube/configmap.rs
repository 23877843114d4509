//! The ConfigMap an ObservabilityConfig owns: a pure function from a resource
//! and its render to the object the controller server-side applies.
//!
//! One ConfigMap per resource, named after it, one key per dyno
//! (`web.1.yaml`), a `dynoscope.dev/config-hash-<dyno>` annotation per dyno so
//! users can roll pods on a change if they want to, and a controller owner
//! reference so the garbage collector deletes it with its resource.

use std::collections::BTreeMap;

use dynoscope_crds::render::{sanitize_app_name, Rendered};
use dynoscope_crds::ObservabilityConfig;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

/// Label naming who manages the ConfigMap (the controller only watches ConfigMaps carrying it).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "dynoscope";
/// Label carrying the app's name, e.g. for `kubectl get cm -l dynoscope.dev/app=shop`.
pub const APP_LABEL: &str = "dynoscope.dev/app";
/// Prefix of the per-dyno hash annotations: `dynoscope.dev/config-hash-web.1`.
pub const HASH_ANNOTATION_PREFIX: &str = "dynoscope.dev/config-hash-";

/// Why a ConfigMap cannot be built for a resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesiredError {
    /// Resources read from the API server always have these; one built by hand may not.
    #[error("the resource has no {0}, so no owner reference can point at it")]
    MissingMetadata(&'static str),
}

/// The ConfigMap key of a dyno: `web.1.yaml`.
pub fn key(dyno: &str) -> String {
    format!("{dyno}.yaml")
}

/// The hash annotation of a dyno: `dynoscope.dev/config-hash-web.1`.
pub fn hash_annotation(dyno: &str) -> String {
    format!("{HASH_ANNOTATION_PREFIX}{dyno}")
}

/// `app` as a label value: at most 63 characters of letters, digits, `-`, `_`
/// and `.`, starting and ending with a letter or digit.
pub fn label_value(app: &str) -> String {
    let sanitized = sanitize_app_name(app);
    let truncated: String = sanitized.chars().take(63).collect();
    truncated
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// The ConfigMap to apply for `config`, rendered as `rendered`.
pub fn desired(
    config: &ObservabilityConfig,
    rendered: &Rendered,
) -> Result<ConfigMap, DesiredError> {
    let name = config
        .metadata
        .name
        .clone()
        .ok_or(DesiredError::MissingMetadata("metadata.name"))?;
    let namespace = config
        .metadata
        .namespace
        .clone()
        .ok_or(DesiredError::MissingMetadata("metadata.namespace"))?;
    let owner = config
        .controller_owner_ref(&())
        .ok_or(DesiredError::MissingMetadata("metadata.uid"))?;
    let labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (APP_LABEL.to_owned(), label_value(&rendered.app)),
    ]);
    let annotations = rendered
        .dynos
        .iter()
        .map(|d| (hash_annotation(&d.dyno), d.config_hash.clone()))
        .collect();
    let data = rendered
        .dynos
        .iter()
        .map(|d| (key(&d.dyno), d.to_yaml()))
        .collect();
    Ok(ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynoscope_crds::render::{render, RenderInput};

    fn resource(yaml: &str) -> ObservabilityConfig {
        let mut config: ObservabilityConfig = serde_yaml::from_str(yaml).unwrap();
        config.metadata.uid = Some("0b7f-uid".into());
        config
    }

    fn rendered(config: &ObservabilityConfig) -> Rendered {
        render(&RenderInput {
            config,
            procfile: None,
            formation: None,
            heroku_app_name: None,
        })
        .unwrap()
    }

    const SHOP: &str = "
apiVersion: dynoscope.dev/v1alpha1
kind: ObservabilityConfig
metadata: {name: shop, namespace: prod}
spec:
  formation: {web: {quantity: 2}, worker: {quantity: 1}}
  sinks:
    - {type: datadog, apiKey: {secretKeyRef: {name: datadog, key: api-key}}}
";

    #[test]
    fn one_key_and_one_hash_annotation_per_dyno() {
        let cases: [(&str, &[&str]); 3] = [
            (SHOP, &["web.1", "web.2", "worker.1"]),
            (
                "{apiVersion: dynoscope.dev/v1alpha1, kind: ObservabilityConfig, metadata: {name: tiny, namespace: a}, spec: {}}",
                &["web.1"],
            ),
            (
                "{apiVersion: dynoscope.dev/v1alpha1, kind: ObservabilityConfig, metadata: {name: jobs, namespace: a}, spec: {formation: {web: {quantity: 0}, worker: {quantity: 3}}}}",
                &["worker.1", "worker.2", "worker.3"],
            ),
        ];
        for (yaml, dynos) in cases {
            let config = resource(yaml);
            let rendered = rendered(&config);
            let cm = desired(&config, &rendered).unwrap();
            let data = cm.data.as_ref().unwrap();
            let keys: Vec<&str> = data.keys().map(String::as_str).collect();
            let want: Vec<String> = dynos.iter().map(|d| key(d)).collect();
            assert_eq!(keys, want, "{yaml}");
            let annotations = cm.metadata.annotations.as_ref().unwrap();
            assert_eq!(annotations.len(), dynos.len());
            for dyno in &rendered.dynos {
                assert_eq!(annotations[&hash_annotation(&dyno.dyno)], dyno.config_hash);
                // The sidecar reads back exactly what the renderer produced.
                let back =
                    dynoscope_crds::DynoConfig::from_yaml(&data[&key(&dyno.dyno)], "cm").unwrap();
                assert_eq!(&back, dyno);
            }
        }
    }

    #[test]
    fn named_after_the_resource_owned_by_it_and_labelled() {
        let config = resource(SHOP);
        let cm = desired(&config, &rendered(&config)).unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("shop"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("prod"));
        let owner = &cm.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.uid.as_str(),
                owner.controller,
            ),
            (
                "dynoscope.dev/v1alpha1",
                "ObservabilityConfig",
                "shop",
                "0b7f-uid",
                Some(true)
            )
        );
        let labels = cm.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[MANAGED_BY_LABEL], "dynoscope");
        assert_eq!(labels[APP_LABEL], "shop");
        // Server-side apply needs apiVersion and kind in the body.
        let json = serde_json::to_value(&cm).unwrap();
        assert_eq!(json["apiVersion"], "v1");
        assert_eq!(json["kind"], "ConfigMap");
    }

    #[test]
    fn secrets_stay_references() {
        let config = resource(SHOP);
        let cm = desired(&config, &rendered(&config)).unwrap();
        let web = &cm.data.as_ref().unwrap()["web.1.yaml"];
        assert!(web.contains("secretKeyRef"), "{web}");
        assert!(
            web.contains("name: datadog") && web.contains("key: api-key"),
            "{web}"
        );
    }

    #[test]
    fn refuses_a_resource_without_uid() {
        let mut config = resource(SHOP);
        let rendered = rendered(&config);
        config.metadata.uid = None;
        assert_eq!(
            desired(&config, &rendered),
            Err(DesiredError::MissingMetadata("metadata.uid"))
        );
    }

    #[test]
    fn label_values_are_valid() {
        let long = "a".repeat(80);
        let cases = [
            ("shop", "shop"),
            ("my shop!", "my-shop"),
            ("--x--", "x"),
            (long.as_str(), &long[..63]),
            ("", ""),
        ];
        for (app, want) in cases {
            assert_eq!(label_value(app), want, "{app:?}");
        }
    }
}
