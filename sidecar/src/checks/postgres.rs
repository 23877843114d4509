//! The postgres check: `pg_stat_database` for the app's database, connections,
//! size and, optionally, the largest tables — named as Datadog's `postgres`
//! integration names them.

use tokio_postgres::{Client, NoTls};

use super::emit::{Counters, Emitter};
use super::url::{PostgresTarget, SslMode};
use super::{tls, CheckError};
use crate::telemetry::Point;

/// Datadog's name for the can-connect service check.
pub const SERVICE_CHECK: &str = "postgres.can_connect";

/// The tags of `postgres.can_connect` from an instance's tags: the Agent's
/// postgres check tags its service check `host:`, `port:`, `db:` where its
/// metrics carry `server:`.
pub fn service_check_tags(mut tags: Vec<String>) -> Vec<String> {
    for tag in &mut tags {
        if let Some(host) = tag.strip_prefix("server:") {
            *tag = format!("host:{host}");
        }
    }
    tags.sort_unstable();
    tags
}

/// How many tables `relations: true` reports, largest first.
const RELATIONS_LIMIT: i64 = 20;

/// `pg_stat_database` of the connected database, and the connection count of all of them.
const DATABASE_STATS: &str =
    "SELECT numbackends::float8, xact_commit::float8, xact_rollback::float8, \
     blks_read::float8, blks_hit::float8, tup_returned::float8, tup_fetched::float8, \
     tup_inserted::float8, tup_updated::float8, tup_deleted::float8, conflicts::float8, \
     temp_bytes::float8, deadlocks::float8, pg_database_size(datname)::float8, \
     (SELECT sum(numbackends) FROM pg_stat_database)::float8, \
     current_setting('max_connections')::float8, current_setting('server_version') \
     FROM pg_stat_database WHERE datname = current_database()";

/// Sessions of the connected database by state (`active`, `idle`, `idle in transaction`…).
const CONNECTIONS_BY_STATE: &str = "SELECT coalesce(state, 'unknown'), count(*)::float8 \
     FROM pg_stat_activity WHERE datname = current_database() GROUP BY 1";

/// The largest tables; `$1` is the limit.
const RELATIONS: &str = "SELECT schemaname::text, relname::text, \
     pg_total_relation_size(relid)::float8, coalesce(seq_scan, 0)::float8, \
     coalesce(idx_scan, 0)::float8, n_live_tup::float8, n_dead_tup::float8 \
     FROM pg_stat_user_tables ORDER BY pg_total_relation_size(relid) DESC, relname LIMIT $1";

/// `pg_stat_database` columns that are running totals → Datadog's rate names.
const RATES: [(usize, &str); 12] = [
    (1, "postgresql.commits"),
    (2, "postgresql.rollbacks"),
    (3, "postgresql.disk_read"),
    (4, "postgresql.buffer_hit"),
    (5, "postgresql.rows_returned"),
    (6, "postgresql.rows_fetched"),
    (7, "postgresql.rows_inserted"),
    (8, "postgresql.rows_updated"),
    (9, "postgresql.rows_deleted"),
    (10, "postgresql.conflicts"),
    (11, "postgresql.temp_bytes"),
    (12, "postgresql.deadlocks"),
];

/// One database: its target, its connection (kept between runs) and previous totals.
#[derive(Debug)]
pub struct Postgres {
    target: PostgresTarget,
    /// `tlsVerify`: check the certificate even with `sslmode=require`.
    verify: bool,
    /// `relations`: also report the largest tables.
    relations: bool,
    /// The open session; `None` after an error, reopened by the next run.
    client: Option<Connected>,
    counters: Counters,
}

/// A session and the task driving its socket (aborted with it).
#[derive(Debug)]
struct Connected {
    client: Client,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Postgres {
    /// A check of `target`, not yet connected.
    pub fn new(target: PostgresTarget, verify: bool, relations: bool) -> Self {
        Postgres {
            target,
            verify,
            relations,
            client: None,
            counters: Counters::default(),
        }
    }

    /// `server:`, `port:`, `db:` — the tags of the points, as the Agent's
    /// postgres check adds its generic `server:` tag to its metrics; its
    /// `postgres.can_connect` says `host:` instead ([`service_check_tags`]).
    pub fn tags(&self) -> Vec<String> {
        vec![
            format!("server:{}", self.target.host),
            format!("port:{}", self.target.port),
            format!("db:{}", self.target.database),
        ]
    }

    /// Closes the session.
    pub fn reset(&mut self) {
        self.client = None;
    }

    /// Connects if needed and reads the statistics.
    pub async fn run(&mut self, points: &mut Vec<Point>) -> Result<(), CheckError> {
        let client = match self.client.take() {
            Some(connected) if !connected.client.is_closed() => connected,
            _ => self.connect().await?,
        };
        let result = self.collect(&client.client, points).await;
        if result.is_ok() {
            self.client = Some(client);
        }
        result
    }

    async fn connect(&self) -> Result<Connected, CheckError> {
        let target = &self.target;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&target.host)
            .port(target.port)
            .user(&target.user)
            .dbname(&target.database)
            .application_name(&target.application_name);
        if let Some(password) = &target.password {
            config.password(password.expose());
        }
        let connect_error = |reason: String| CheckError::Connect {
            address: format!("{}:{}", target.host, target.port),
            reason,
        };
        let (client, driver) = match target.ssl_mode {
            SslMode::Disable => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                let (client, connection) = config
                    .connect(NoTls)
                    .await
                    .map_err(|error| connect_error(describe(&error)))?;
                (client, tokio::spawn(drive(connection)))
            }
            mode => {
                config.ssl_mode(if mode == SslMode::Prefer {
                    tokio_postgres::config::SslMode::Prefer
                } else {
                    tokio_postgres::config::SslMode::Require
                });
                let verify = self.verify || mode == SslMode::Verify;
                let tls_config =
                    tls::client_config(verify).map_err(|error| connect_error(error.to_string()))?;
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new((*tls_config).clone());
                let (client, connection) = config
                    .connect(tls)
                    .await
                    .map_err(|error| connect_error(describe(&error)))?;
                (client, tokio::spawn(drive(connection)))
            }
        };
        Ok(Connected { client, driver })
    }

    async fn collect(
        &mut self,
        client: &Client,
        points: &mut Vec<Point>,
    ) -> Result<(), CheckError> {
        let row = client
            .query_one(DATABASE_STATS, &[])
            .await
            .map_err(|error| {
                CheckError::Query(format!("reading pg_stat_database: {}", describe(&error)))
            })?;
        let by_state = client
            .query(CONNECTIONS_BY_STATE, &[])
            .await
            .map_err(|error| {
                CheckError::Query(format!("reading pg_stat_activity: {}", describe(&error)))
            })?;
        let relations = if self.relations {
            client
                .query(RELATIONS, &[&RELATIONS_LIMIT])
                .await
                .map_err(|error| {
                    CheckError::Query(format!("reading pg_stat_user_tables: {}", describe(&error)))
                })?
        } else {
            Vec::new()
        };

        let tags = self.tags();
        let mut emit = Emitter::new(&mut self.counters, tags);
        let float = |index: usize| row.try_get::<_, Option<f64>>(index).ok().flatten();
        let version: String = row.try_get(16).unwrap_or_default();
        // "15.18 (Debian 15.18-0+deb12u1)" → "15.18"
        if let Some(version) = version.split_whitespace().next() {
            emit.add_tag(format!("postgresql_version:{version}"));
        }
        if let Some(connections) = float(0) {
            emit.gauge("postgresql.connections", connections, &[]);
        }
        if let (Some(all), Some(max)) = (float(14), float(15)) {
            emit.gauge("postgresql.max_connections", max, &[]);
            if max > 0.0 {
                emit.gauge("postgresql.percent_usage_connections", all / max, &[]);
            }
        }
        for (index, name) in RATES {
            if let Some(total) = float(index) {
                emit.rate(name, total, &[]);
            }
        }
        if let (Some(read), Some(hit)) = (float(3), float(4)) {
            if read + hit > 0.0 {
                emit.gauge("postgresql.buffer_hit_ratio", hit / (read + hit), &[]);
            }
        }
        if let Some(size) = float(13) {
            emit.gauge("postgresql.database_size", size, &[]);
        }
        for row in &by_state {
            let state: String = row.try_get(0).unwrap_or_default();
            let count: f64 = row.try_get(1).unwrap_or_default();
            let tag = format!("state:{}", state.replace(' ', "_"));
            emit.gauge("postgresql.connections_by_state", count, &[tag]);
        }
        for row in &relations {
            let schema: String = row.try_get(0).unwrap_or_default();
            let table: String = row.try_get(1).unwrap_or_default();
            let tags = [format!("schema:{schema}"), format!("table:{table}")];
            let value = |index: usize| row.try_get::<_, Option<f64>>(index).ok().flatten();
            if let Some(size) = value(2) {
                emit.gauge("postgresql.total_size", size, &tags);
            }
            if let Some(scans) = value(3) {
                emit.rate("postgresql.seq_scans", scans, &tags);
            }
            if let Some(scans) = value(4) {
                emit.rate("postgresql.index_scans", scans, &tags);
            }
            if let Some(rows) = value(5) {
                emit.gauge("postgresql.live_rows", rows, &tags);
            }
            if let Some(rows) = value(6) {
                emit.gauge("postgresql.dead_rows", rows, &tags);
            }
        }
        points.append(&mut emit.points);
        self.counters.end_run();
        Ok(())
    }
}

async fn drive(connection: impl std::future::Future<Output = Result<(), tokio_postgres::Error>>) {
    // Errors surface on the client's next query as a closed connection.
    let _ = connection.await;
}

/// The server's message (`FATAL: password authentication failed for user "app"`) or the client's.
fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    if text.contains("certificate") {
        text.push_str(" (set tlsVerify: false for self-signed certificates such as Heroku's)");
    }
    text
}
