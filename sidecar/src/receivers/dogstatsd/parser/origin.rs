//! The origin fields of a DogStatsD message (protocol 1.2–1.6): what the
//! Agent does with each, and what dynoscope does.
//!
//! - `c:` — the sender's container. `c:ci-<id>` (1.4) and the older bare
//!   `c:<id>` (1.2) name the container id; `c:in-<inode>` (1.4) names the
//!   inode of the sender's cgroup, which the Agent maps to a container id.
//!   The Agent uses the container for *origin detection*: its tagger adds
//!   that container's tags (image, pod, `kube_*`, …) to the sample, event or
//!   check.
//! - `e:` — external data (1.5), `it-<bool>,cn-<container name>,pu-<pod uid>`,
//!   injected by Datadog's Kubernetes admission controller when the client
//!   cannot see its own container id; resolved by the Agent like `c:`.
//! - `card:` — `none`, `low`, `orchestrator` or `high` (1.6): how many of
//!   the origin's tags the Agent adds, overriding its
//!   `dogstatsd_tag_cardinality`. Other values are ignored.
//!
//! Aggregation: the Agent's context key is the name, the host and the tags
//! *after* that enrichment, so samples of two containers with the same name
//! and tags are two contexts (origin-aware aggregation), unless the origins
//! bring equal tags (`card:none` brings none).
//!
//! A dyno has one app and no container tagger, so there is nothing to
//! enrich: the fields are parsed and never glued to a message or a tag;
//! events and service checks keep them as their
//! [`Origin`](crate::telemetry::Origin); metric samples keep them in their
//! aggregation context — the origin itself stands in for the tags it would
//! bring, so two origins are always two contexts (at worst one context more
//! than the Agent, for origins whose tags would be equal) — and the points and
//! sketches of the context carry it. The jsonl sink shows it (`origin`);
//! the Datadog sink sends no field for it, as the Agent sends none (only the
//! tags it brings, and here there are none). Its bytes count against the
//! aggregator's byte budget like the name and tags.

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

    /// Whether no origin field was sent.
    pub fn is_empty(&self) -> bool {
        *self == Origin::default()
    }

    /// Whether `kept` (the origin of an aggregation context) is this one.
    pub fn matches(&self, kept: Option<&crate::telemetry::Origin>) -> bool {
        match kept {
            None => self.is_empty(),
            Some(kept) => {
                self.container_id == kept.container_id.as_deref()
                    && self.cgroup_inode == kept.cgroup_inode
                    && self.external_data == kept.external_data.as_deref()
                    && self.cardinality == kept.cardinality.as_deref()
            }
        }
    }

    /// Feeds the fields to an aggregation context's hash; nothing when none
    /// was sent, so the usual line pays nothing for it.
    pub fn hash_into(&self, h: &mut impl std::hash::Hasher) {
        if self.is_empty() {
            return;
        }
        for field in [self.container_id, self.external_data, self.cardinality] {
            h.write(field.unwrap_or_default().as_bytes());
            h.write_u8(0xfe);
        }
        h.write_u64(self.cgroup_inode.unwrap_or_default());
    }

    /// The origin as the pipeline carries it; `None` when no field was sent.
    pub fn to_telemetry(&self) -> Option<crate::telemetry::Origin> {
        if self.is_empty() {
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
