//! `reconcile` and `error_policy`: one ObservabilityConfig → its ConfigMap,
//! its status and, when something needs a person, an Event.
//!
//! Both writes are server-side applies by [`FIELD_MANAGER`], so what the
//! operator stops sending (a dyno scaled away) is removed, and other field
//! managers' additions are left alone. The status is [`crate::status`]'s, the
//! same as file mode writes to `status.yaml`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dynoscope_crds::render::{self, RenderInput};
use dynoscope_crds::{ObservabilityConfig, ObservabilityConfigStatus};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};

use crate::kube::configmap::{self, DesiredError};
use crate::kube::metrics::Metrics;
use crate::status::{self, Outcome};

/// The field manager of every write, as `kubectl get --show-managed-fields` shows it.
pub const FIELD_MANAGER: &str = "dynoscope-operator";

/// How often a resource that reconciled well is reconciled again anyway, to
/// repair drift that no watch event announced.
pub const RESYNC: Duration = Duration::from_secs(300);

/// First retry delay after a failed reconcile; doubles on each failure in a row.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);

/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Events are refused above 1 kB of note.
const EVENT_NOTE_LIMIT: usize = 1000;

/// Why a reconcile failed; `error_policy` retries it with back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ConfigMap could not be applied.
    #[error("cannot apply ConfigMap {namespace}/{name}: {source}")]
    ApplyConfigMap {
        /// Its namespace.
        namespace: String,
        /// Its name (the resource's).
        name: String,
        /// What the API server said.
        source: kube::Error,
    },
    /// The status subresource could not be written.
    #[error("cannot write the status of {namespace}/{name}: {source}; check that the CRD has the status subresource and the operator may patch observabilityconfigs/status")]
    PatchStatus {
        /// The resource's namespace.
        namespace: String,
        /// The resource's name.
        name: String,
        /// What the API server said.
        source: kube::Error,
    },
    /// The object lacks metadata every object from the API server has.
    #[error(transparent)]
    Desired(#[from] DesiredError),
}

impl Error {
    /// The `reason` label of the failure counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::ApplyConfigMap { .. } => "configmap_apply",
            Error::PatchStatus { .. } => "status_patch",
            Error::Desired(_) => "incomplete_object",
        }
    }
}

/// Consecutive failures per resource, for exponential back-off.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Counts a failure of `key` and returns the delay before the next try.
    pub fn failed(&self, key: &str) -> Duration {
        let attempt = self
            .failures
            .lock()
            .map(|mut failures| {
                let n = failures.entry(key.to_owned()).or_default();
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1);
        backoff_delay(attempt)
    }

    /// Forgets the failures of `key` after it reconciled well.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }
}

/// The delay before try `attempt + 1`: 5 s, 10 s, 20 s, … up to 5 min.
pub fn backoff_delay(attempt: u32) -> Duration {
    dynoscope_backoff::Backoff::new(BACKOFF_BASE, BACKOFF_MAX).delay(attempt.saturating_sub(1))
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events on the resources.
    pub recorder: Recorder,
    /// The operator's counters.
    pub metrics: Arc<Metrics>,
    /// Failures in a row per resource.
    pub backoff: Backoff,
    /// The clock of condition transition times (a fixed one in tests).
    pub now: fn() -> String,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("metrics", &self.metrics)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context whose Events name `instance` (the pod) as their reporter.
    pub fn new(client: Client, metrics: Arc<Metrics>, instance: Option<String>) -> Self {
        let reporter = kube::runtime::events::Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            backoff: Backoff::default(),
            now: status::now_rfc3339,
        }
    }
}

/// What a reconcile concluded, for the log and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    /// The ConfigMap and the status are up to date.
    Applied,
    /// The spec was refused; status and an Event say why.
    Invalid,
    /// The resource is being deleted; the garbage collector removes the ConfigMap.
    Deleting,
}

/// Brings one resource's ConfigMap and status in line with its spec.
pub async fn reconcile(obj: Arc<ObservabilityConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&obj, &ctx).await;
    let failure = match &result {
        Ok(Done::Invalid) => Some("invalid_spec"),
        Ok(_) => None,
        Err(err) => Some(err.reason()),
    };
    ctx.metrics.reconciled(started.elapsed(), failure);
    match result? {
        Done::Applied => {
            ctx.backoff.succeeded(&key(&obj));
            Ok(Action::requeue(RESYNC))
        }
        // Only a new spec can fix it, and a new spec triggers a reconcile.
        Done::Invalid => {
            ctx.backoff.succeeded(&key(&obj));
            Ok(Action::await_change())
        }
        Done::Deleting => Ok(Action::await_change()),
    }
}

/// Retries a failed reconcile after a delay that doubles with each failure in a row.
pub fn error_policy(obj: Arc<ObservabilityConfig>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&key(&obj));
    tracing::warn!(resource = %key(&obj), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn key(obj: &ObservabilityConfig) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

async fn reconcile_inner(obj: &ObservabilityConfig, ctx: &Context) -> Result<Done, Error> {
    // The ConfigMap's owner reference lets the garbage collector delete it;
    // there is nothing of ours to clean up, hence no finalizer.
    if obj.metadata.deletion_timestamp.is_some() {
        return Ok(Done::Deleting);
    }
    let namespace = obj
        .namespace()
        .ok_or(DesiredError::MissingMetadata("metadata.namespace"))?;
    let name = obj.name_any();
    let generation = obj.metadata.generation.unwrap_or(0);
    let previous = obj.status.as_ref();
    // In a cluster the formation is the spec's: there is no Procfile, and
    // no `HEROKU_APP_NAME` (the app name is `spec.app` or the resource's name).
    let input = RenderInput {
        config: obj,
        procfile: None,
        formation: None,
        heroku_app_name: None,
    };
    let now = (ctx.now)();
    let rendered = match render::render(&input) {
        Ok(rendered) => rendered,
        Err(err) => {
            let next =
                status::next_status(previous, generation, &Outcome::Invalid(&err.problems), &now);
            if previous != Some(&next) {
                if !patch_status(ctx, &namespace, &name, &next).await? {
                    return Ok(Done::Deleting);
                }
                let note = err
                    .problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                publish(
                    ctx,
                    obj,
                    EventType::Warning,
                    "InvalidSpec",
                    "Validate",
                    note,
                )
                .await;
            }
            tracing::info!(resource = %key(obj), problems = err.problems.len(), "spec refused; the ConfigMap is left as it was");
            return Ok(Done::Invalid);
        }
    };
    let desired = configmap::desired(obj, &rendered)?;
    let configmaps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    if let Err(source) = configmaps
        .patch(&name, &apply, &Patch::Apply(&desired))
        .await
    {
        let message = source.to_string();
        let next = status::next_status(previous, generation, &Outcome::ApplyFailed(&message), &now);
        if previous != Some(&next) {
            // Best effort: the API server that refused the ConfigMap may refuse this too.
            if let Err(err) = patch_status(ctx, &namespace, &name, &next).await {
                tracing::warn!(error = %err, "cannot report the failed apply in the status");
            }
        }
        return Err(Error::ApplyConfigMap {
            namespace,
            name,
            source,
        });
    }
    let next = status::next_status(previous, generation, &Outcome::Rendered(&rendered), &now);
    if previous != Some(&next) {
        if !patch_status(ctx, &namespace, &name, &next).await? {
            return Ok(Done::Deleting);
        }
        let hashes_changed = previous.is_none_or(|p| p.dynos != next.dynos);
        if hashes_changed {
            let note = status::condition(&next, status::READY)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            publish(ctx, obj, EventType::Normal, "Rendered", "Render", note).await;
        }
    }
    Ok(Done::Applied)
}

/// The body of the status apply: only the status, owned by [`FIELD_MANAGER`].
pub fn status_patch(status: &ObservabilityConfigStatus) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": ObservabilityConfig::api_version(&()),
        "kind": ObservabilityConfig::kind(&()),
        "status": status,
    })
}

/// Applies the status; `Ok(false)` when the resource was deleted meanwhile
/// (its ConfigMap, if just applied, goes with it through the owner reference).
async fn patch_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    status: &ObservabilityConfigStatus,
) -> Result<bool, Error> {
    let api: Api<ObservabilityConfig> = Api::namespaced(ctx.client.clone(), namespace);
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch_status(name, &apply, &Patch::Apply(status_patch(status)))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
        Err(source) => Err(Error::PatchStatus {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        }),
    }
}

/// Publishes an Event on the resource; a refused Event is logged, never fatal.
async fn publish(
    ctx: &Context,
    obj: &ObservabilityConfig,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let note = truncate(note, EVENT_NOTE_LIMIT);
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(resource = %key(obj), error = %err, "cannot publish an Event; check the operator may create events.k8s.io events");
    }
}

fn truncate(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut cut = limit.saturating_sub(3);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let cases = [(1, 5), (2, 10), (3, 20), (6, 160), (7, 300), (40, 300)];
        for (attempt, seconds) in cases {
            assert_eq!(
                backoff_delay(attempt),
                Duration::from_secs(seconds),
                "{attempt}"
            );
        }
        let backoff = Backoff::default();
        assert_eq!(backoff.failed("a/x"), Duration::from_secs(5));
        assert_eq!(backoff.failed("a/x"), Duration::from_secs(10));
        assert_eq!(backoff.failed("a/y"), Duration::from_secs(5));
        backoff.succeeded("a/x");
        assert_eq!(backoff.failed("a/x"), Duration::from_secs(5));
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("short".into(), 10), "short");
        let long = "é".repeat(600);
        let cut = truncate(long, EVENT_NOTE_LIMIT);
        assert!(
            cut.len() <= EVENT_NOTE_LIMIT && cut.ends_with("..."),
            "{}",
            cut.len()
        );
    }
}
