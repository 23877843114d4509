//! The dynoscope API: what users declare and what each dyno runs.
//!
//! # Layout
//!
//! - [`observability`]: the `ObservabilityConfig` custom resource
//!   (`dynoscope.dev/v1alpha1`), as users write it; optional fields stay optional.
//! - [`otlp`]: `spec.otlp`, the OTLP receiver, and its part of a DynoConfig.
//! - [`drain`]: `spec.drain`, the Logplex drain endpoint, and its part of a DynoConfig.
//! - [`sink`]: `spec.sinks` entries, read through one flat schema.
//! - [`manifest`]: reads manifests (YAML, several documents a file) into
//!   resources, refusing unknown fields with their path.
//! - [`validate`]: semantic checks the schema cannot express; each
//!   [`validate::Problem`] names its field and what to do.
//! - [`procfile`]: Procfiles and `web=2,worker=1` formations.
//! - [`size`]: Heroku's dyno sizes and their memory (`formation.<type>.size`, `up --size`).
//! - [`render`]: the one renderer, a pure function from a resource and a
//!   formation to one [`dyno::DynoConfig`] per dyno; defaults come from [`defaults`].
//! - [`logs`]: `spec.logs` and the logs part of a DynoConfig.
//! - [`dyno`]: `DynoConfig`, the operator → sidecar contract, with its hash and schema.
//! - [`value`], [`duration`], [`buffer`]: secret references, `20s`-style
//!   durations, sink buffers with `8Mi`-style sizes.
//! - [`sidecar_status`]: the sidecar's `/status` document (the sidecar → people
//!   and operator contract) and the one client that reads it.
//! - [`console`]: what a sidecar's `console` sink posts to the operator's console.
//!
//! Data flows manifest text → [`manifest`] → [`render`] (which runs
//! [`validate`]) → `DynoConfig` YAML, which the sidecar reads back with
//! [`dyno::DynoConfig::from_yaml`].

pub mod buffer;
pub mod console;
pub mod defaults;
pub mod drain;
pub mod duration;
pub mod dyno;
pub mod logs;
pub mod manifest;
pub mod observability;
pub mod otlp;
pub mod procfile;
pub mod render;
pub mod sidecar_status;
pub mod sink;
pub mod size;
pub mod validate;
pub mod value;

pub use dyno::DynoConfig;
pub use observability::{ObservabilityConfig, ObservabilityConfigSpec, ObservabilityConfigStatus};

/// The CRD of `ObservabilityConfig` as YAML, as `crdgen` prints it and
/// `crds/observabilityconfig.yaml` holds it.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&ObservabilityConfig::crd()).unwrap_or_default()
}
