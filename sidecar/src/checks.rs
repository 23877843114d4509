//! Integration checks: the app's Postgres, Redis and Memcached, polled by the
//! one dyno the operator assigned them to.
//!
//! # Layout
//!
//! - [`url`]: `DATABASE_URL`, `REDIS_URL`, `MEMCACHEDCLOUD_*` → a [`url::Target`]
//!   (pure; errors name the variable, never the password).
//! - `postgres`, `redis`, `memcached`: one run of each check — connect (kept
//!   between runs where the protocol allows), read the server's statistics,
//!   turn them into points named as Datadog's integrations name them.
//! - `emit`: gauges as read, running totals as per-second rates (the
//!   previous total is kept between runs).
//! - `net`, `tls`: sockets, and rustls for `rediss://` and `sslmode=require`.
//! - `scheduler`: one task per check — interval, timeout, back-off, panics
//!   isolated, status; [`ChecksHandle::reconfigure`] for hot reload.
//!
//! Each run emits one [`Telemetry::Points`] batch and, per instance (a
//! database, a Redis, each Memcached server), a `can_connect` service check:
//! OK, or CRITICAL with the reason (tagged `url_from:<VARIABLE>` or
//! `servers_from:<VARIABLE>` when the variable is unset or does not parse,
//! as there is no server to name). Tags are the instance's, as Datadog's
//! integrations write them — `server:`/`port:`/`db:` for postgres (the
//! postgres check's "generic" `server:` tag), `redis_host:`/`redis_port:`
//! for redis (and `redis_db:db<N>` per keyspace), `url:` for memcached — and
//! never a `host:` tag: `host` is reserved in Datadog, which would read it
//! as the host name and so move the points off the dyno. The pipeline adds
//! the dyno's tags.
//!
//! [`Telemetry::Points`]: crate::telemetry::Telemetry::Points

pub mod confd;
mod emit;
mod memcached;
mod net;
mod postgres;
mod redis;
mod scheduler;
mod tls;
pub mod url;

use std::time::Duration;

use dynoscope_crds::dyno::IntegrationConfig;

pub use scheduler::{spawn, spawn_with, CheckStatus, ChecksHandle, Options, Reconfigured};

use crate::telemetry::Point;
use url::{Target, TargetError};

/// Why a run of a check failed; the text goes into the CRITICAL service check and `/status`.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The variables do not describe a server.
    #[error(transparent)]
    Config(#[from] TargetError),
    /// No connection (refused, DNS, TLS handshake, authentication).
    #[error("cannot connect to {address}: {reason}")]
    Connect {
        /// `host:port`.
        address: String,
        /// What the client or the server said.
        reason: String,
    },
    /// Connected, but a query or command failed.
    #[error("{0}")]
    Query(String),
    /// The server answered something this client does not understand.
    #[error("unexpected reply: {0}")]
    Protocol(String),
    /// The whole run took longer than the check's timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A bug: the run panicked. The check starts afresh next time.
    #[error("the check panicked: {0}")]
    Panicked(String),
}

/// One check, connected or not, with what it remembers between runs.
#[derive(Debug)]
enum Check {
    Postgres(postgres::Postgres),
    Redis(redis::Redis),
    Memcached(memcached::Memcached),
}

impl Check {
    fn new(target: Target, config: &IntegrationConfig) -> Check {
        match target {
            Target::Postgres(target) => Check::Postgres(postgres::Postgres::new(
                target,
                config.tls_verify,
                config.relations,
            )),
            Target::Redis(target) => Check::Redis(redis::Redis::new(target, config.tls_verify)),
            Target::Memcached(target) => Check::Memcached(memcached::Memcached::new(target)),
        }
    }

    /// The service check's name, as Datadog's integration names it.
    fn service_check(&self) -> &'static str {
        match self {
            Check::Postgres(_) => postgres::SERVICE_CHECK,
            Check::Redis(_) => redis::SERVICE_CHECK,
            Check::Memcached(_) => memcached::SERVICE_CHECK,
        }
    }

    /// The tags of each instance, in the order [`Check::run`] reports them.
    fn instances(&self) -> Vec<Vec<String>> {
        match self {
            Check::Postgres(check) => vec![check.tags()],
            Check::Redis(check) => vec![check.tags()],
            Check::Memcached(check) => check.instances(),
        }
    }

    /// One run: points into `points`, one result per instance.
    async fn run(&mut self, points: &mut Vec<Point>) -> Vec<Result<(), CheckError>> {
        match self {
            Check::Postgres(check) => vec![check.run(points).await],
            Check::Redis(check) => vec![check.run(points).await],
            Check::Memcached(check) => check.run(points).await,
        }
    }

    /// Drops connections after a timeout: a cancelled exchange leaves them mid-reply.
    fn reset(&mut self) {
        match self {
            Check::Postgres(check) => check.reset(),
            Check::Redis(check) => check.reset(),
            Check::Memcached(_) => {}
        }
    }
}

/// The service check name of a type, for failures before a target exists.
/// The tags of an instance whose target could not be resolved (the variable
/// is unset, or its URL does not parse): with no host, port or database to
/// name, the variable it reads is what tells this instance from another of
/// the same type, so its CRITICAL service check can be told apart and
/// monitored.
fn unresolved_tags(config: &IntegrationConfig) -> Vec<String> {
    use dynoscope_crds::observability::IntegrationType;
    match config.type_ {
        IntegrationType::Postgres => {
            let variable = config.url_from.as_deref().unwrap_or("DATABASE_URL");
            vec![format!("url_from:{variable}")]
        }
        IntegrationType::Redis => {
            let variable = config.url_from.as_deref().unwrap_or("REDIS_URL");
            vec![format!("url_from:{variable}")]
        }
        IntegrationType::Memcached => {
            let variable = config
                .servers_from
                .as_deref()
                .unwrap_or("MEMCACHEDCLOUD_SERVERS");
            vec![format!("servers_from:{variable}")]
        }
    }
}

/// The tags of a check's service check, from its instance's tags, as the
/// Agent's check of that type tags it.
fn service_check_tags(config: &IntegrationConfig, tags: Vec<String>) -> Vec<String> {
    use dynoscope_crds::observability::IntegrationType;
    match config.type_ {
        IntegrationType::Postgres => postgres::service_check_tags(tags),
        IntegrationType::Redis | IntegrationType::Memcached => tags,
    }
}

fn service_check_of(config: &IntegrationConfig) -> &'static str {
    use dynoscope_crds::observability::IntegrationType;
    match config.type_ {
        IntegrationType::Postgres => postgres::SERVICE_CHECK,
        IntegrationType::Redis => redis::SERVICE_CHECK,
        IntegrationType::Memcached => memcached::SERVICE_CHECK,
    }
}
