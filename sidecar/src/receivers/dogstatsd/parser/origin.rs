//! The origin fields of a DogStatsD message (protocol 1.2–1.6).
//! # Origin fields (protocol 1.2–1.6)
//!
//! What the Agent does with them, and what dynoscope does:
//!
//! - `c:` — the sender's container. `c:ci-<id>` (1.4) and the older bare
//!   `c:<id>` (1.2) name the container id; `c:in-<inode>` (1.4) names the
//!   inode of the sender's cgroup, which the Agent maps to a container id.
//!   The Agent uses the container for *origin detection*: it adds that
//!   container's tags (image, pod, `kube_*`, …, from its tagger) to the
//!   message, and keeps origins apart in the aggregation context.
//! - `e:` — external data (1.5), `it-<bool>,cn-<container name>,pu-<pod uid>`,
//!   injected by Datadog's Kubernetes admission controller when the client
//!   cannot see its own container id; resolved by the Agent like `c:`.
//! - `card:` — `none`, `low`, `orchestrator` or `high` (1.6): how many of
//!   the origin's tags the Agent adds, overriding its
//!   `dogstatsd_tag_cardinality`. Other values are ignored.
//!
//! A dyno has one app and no container tagger, so there is nothing to
//! enrich: the fields are parsed, kept on events and service checks as
//! their [`Origin`](crate::telemetry::Origin) (shown by the jsonl sink), and
//! never glued to a message or a tag.

/// The origin fields of a message (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin<'a> {
    /// `c:ci-<id>`, or the deprecated bare `c:<id>`.
    pub container_id: Option<&'a str>,
    /// `c:in-<inode>`: the inode of the sender's cgroup.
    pub cgroup_inode: Option<u64>,
    /// `e:` external data, as sent.
    pub external_data: Option<&'a str>,
    /// `card:`, one of `none`, `low`, `orchestrator`, `high`.
    pub cardinality: Option<&'a str>,
}

impl<'a> Origin<'a> {
    /// Reads `field` into `self` when it is an origin field; false otherwise.
    /// A malformed value (an inode that is not a number, an unknown
    /// cardinality) is ignored as the Agent ignores it.
    pub(super) fn read(&mut self, field: &'a str) -> bool {
        if let Some(container) = field.strip_prefix("c:") {
            if let Some(inode) = container.strip_prefix("in-") {
                self.cgroup_inode = inode.parse().ok();
            } else {
                let id = container.strip_prefix("ci-").unwrap_or(container);
                self.container_id = (!id.is_empty()).then_some(id);
            }
        } else if let Some(external) = field.strip_prefix("e:") {
            self.external_data = (!external.is_empty()).then_some(external);
        } else if let Some(card) = field.strip_prefix("card:") {
            self.cardinality =
                matches!(card, "none" | "low" | "orchestrator" | "high").then_some(card);
        } else {
            return false;
        }
        true
    }

    /// The origin as the pipeline carries it; `None` when no field was sent.
    pub fn to_telemetry(&self) -> Option<crate::telemetry::Origin> {
        if *self == Origin::default() {
            return None;
        }
        Some(crate::telemetry::Origin {
            container_id: self.container_id.map(str::to_owned),
            cgroup_inode: self.cgroup_inode,
            external_data: self.external_data.map(str::to_owned),
            cardinality: self.cardinality.map(str::to_owned),
        })
    }
}
