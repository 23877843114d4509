//! The dynoscope operator: reconciles ObservabilityConfig resources into one
//! DynoConfig per dyno.
//!
//! # Layout
//!
//! - [`cli`]: the command line; each subcommand calls one module below.
//! - [`source`]: the manifest directory (file mode's source) and Procfiles.
//! - [`files`]: file mode's reconcile: manifests → `OUT/<app>/<dyno>.yaml` +
//!   `status.yaml`, touching only what changed.
//! - [`status`]: conditions, observedGeneration and per-dyno hashes, shared by
//!   every target.
//! - [`watch`]: re-runs the reconcile on every change of the directory, debounced.
//! - [`apply`]: `apply` / `delete` into a manifest directory, as kubectl answers.
//! - [`up`]: the local dyno manager (`heroku local` with a sidecar per dyno).
//! - [`router`]: Heroku's router in front of the web dynos (`up`, and alone
//!   for compose): request headers, H codes, router lines, a Logplex drain.
//! - [`console`]: the local console `up` serves: the formation, APM stats,
//!   traces, checks and sinks in a browser, fed by each dyno's `console` sink.
//! - [`fs`]: atomic writes, and removing what an interrupted one left.
//! - [`signals`]: SIGINT/SIGTERM for the long-running commands (`watch`, `up`).
//! - [`kube`]: Kubernetes mode, a kube-rs controller: ObservabilityConfig →
//!   one ConfigMap per resource, status and Events, with leader election.
//!
//! The renderer itself is `dynoscope_crds::render`, shared with the sidecar,
//! which renders its own config on Heroku. Data flows manifest files →
//! [`source`] → `render` → [`files`] (writes) → [`status`].

pub mod apply;
pub mod cli;
pub mod console;
pub mod files;
pub mod fs;
pub mod kube;
pub mod router;
pub mod signals;
pub mod source;
pub mod status;
pub mod up;
pub mod watch;
