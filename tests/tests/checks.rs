//! The integration checks against real PostgreSQL, Redis and Memcached servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dynoscope_crds::duration::HumanDuration;
use dynoscope_crds::dyno::IntegrationConfig;
use dynoscope_crds::observability::IntegrationType;
use dynoscope_sidecar::checks::{self, ChecksHandle, Options};
use dynoscope_sidecar::telemetry::{MetricType, Point, ServiceCheck, Telemetry};
use dynoscope_tests::servers::{Memcached, Postgres, Redis, RedisOptions, PG_PASSWORD};
use tokio::sync::mpsc;

/// Checks in these tests run every 300 ms.
const INTERVAL: Duration = Duration::from_millis(300);
/// How long a test waits for something a check should report.
const PATIENCE: Duration = Duration::from_secs(20);

fn config(name: &str, type_: IntegrationType) -> IntegrationConfig {
    IntegrationConfig {
        interval: HumanDuration(INTERVAL),
        timeout: HumanDuration(Duration::from_secs(3)),
        ..IntegrationConfig::new(name, type_)
    }
}

fn with_url(name: &str, type_: IntegrationType, variable: &str) -> IntegrationConfig {
    IntegrationConfig {
        url_from: Some(variable.to_owned()),
        ..config(name, type_)
    }
}

/// What the checks sent, received in order.
struct Collector {
    rx: mpsc::UnboundedReceiver<Telemetry>,
}

fn start(configs: &[IntegrationConfig], env: &[(&str, String)]) -> (ChecksHandle, Collector) {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect();
    let (tx, rx) = mpsc::unbounded_channel();
    let options = Options {
        max_backoff: Duration::from_secs(1),
    };
    let handle = checks::spawn_with(
        options,
        configs,
        move |name| env.get(name).cloned(),
        move |telemetry| {
            let _ = tx.send(telemetry);
        },
    );
    (handle, Collector { rx })
}

impl Collector {
    /// Receives until `found` returns `Some`, or fails the test naming `what`.
    async fn until<T>(&mut self, what: &str, mut found: impl FnMut(&Telemetry) -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(telemetry)) => {
                    if let Some(value) = found(&telemetry) {
                        return value;
                    }
                }
                Ok(None) => panic!("the checks stopped before {what}"),
                Err(_) => panic!("timed out after {PATIENCE:?} waiting for {what}"),
            }
        }
    }

    /// The next batch of points that contains `name` (with `tag`, if given).
    async fn point(&mut self, name: &str, tag: Option<&str>) -> Point {
        self.until(
            &format!("a point {name} {tag:?}"),
            |telemetry| match telemetry {
                Telemetry::Points(points) => points
                    .iter()
                    .find(|p| {
                        p.name == name && tag.is_none_or(|tag| p.tags.iter().any(|t| t == tag))
                    })
                    .cloned(),
                _ => None,
            },
        )
        .await
    }

    /// The next batch of points, whole, that contains `name`.
    async fn batch(&mut self, name: &str) -> Vec<Point> {
        self.until(
            &format!("a batch with {name}"),
            |telemetry| match telemetry {
                Telemetry::Points(points) if points.iter().any(|p| p.name == name) => {
                    Some(points.clone())
                }
                _ => None,
            },
        )
        .await
    }

    /// The next service check `name` with `status`.
    async fn service_check(&mut self, name: &str, status: u8) -> ServiceCheck {
        self.until(
            &format!("{name} with status {status}"),
            |telemetry| match telemetry {
                Telemetry::ServiceCheck(check) if check.name == name && check.status == status => {
                    Some(check.clone())
                }
                _ => None,
            },
        )
        .await
    }

    /// Drops what was received so far.
    fn drain(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }
}

fn value(points: &[Point], name: &str) -> f64 {
    points
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no {name} in {points:#?}"))
        .value
}

fn has_tag(point: &Point, tag: &str) -> bool {
    point.tags.iter().any(|t| t == tag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_metrics_move_with_load() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE items (id serial PRIMARY KEY, name text)");
    let mut check = with_url("postgres", IntegrationType::Postgres, "DATABASE_URL");
    check.relations = true;
    let (handle, mut seen) = start(&[check], &[("DATABASE_URL", pg.url("disable"))]);

    let ok = seen.service_check("postgres.can_connect", 0).await;
    let port = format!("port:{}", pg.port);
    // As the Agent's postgres check: `host:` on the service check, `server:` on the metrics.
    assert!(
        ok.tags.contains(&"host:127.0.0.1".to_owned()),
        "{:?}",
        ok.tags
    );
    assert!(
        !ok.tags.iter().any(|t| t.starts_with("server:")),
        "{:?}",
        ok.tags
    );
    assert!(ok.tags.contains(&port) && ok.tags.contains(&"db:app".to_owned()));

    // The second run has rates; the table is empty and nothing inserts.
    let before = seen.batch("postgresql.rows_inserted").await;
    let inserted_before = value(&before, "postgresql.rows_inserted");
    assert!(
        before
            .iter()
            .all(|p| has_tag(p, "server:127.0.0.1") && has_tag(p, "db:app")),
        "{before:?}"
    );
    assert_eq!(inserted_before, 0.0, "nothing inserted yet");
    assert_eq!(value(&before, "postgresql.max_connections"), 50.0);
    let connections = value(&before, "postgresql.connections");
    assert!((1.0..50.0).contains(&connections), "{connections}");
    let usage = value(&before, "postgresql.percent_usage_connections");
    assert!(usage > 0.0 && usage <= 1.0, "{usage}");
    let size = value(&before, "postgresql.database_size");
    assert!(size > 1_000_000.0, "database size {size}");
    let hit_ratio = value(&before, "postgresql.buffer_hit_ratio");
    assert!(hit_ratio > 0.5 && hit_ratio <= 1.0, "{hit_ratio}");
    for name in [
        "postgresql.commits",
        "postgresql.rollbacks",
        "postgresql.buffer_hit",
        "postgresql.disk_read",
        "postgresql.rows_returned",
        "postgresql.rows_fetched",
        "postgresql.rows_updated",
        "postgresql.rows_deleted",
        "postgresql.deadlocks",
        "postgresql.temp_bytes",
        "postgresql.conflicts",
    ] {
        let point = before.iter().find(|p| p.name == name).unwrap();
        assert_eq!(point.metric_type, MetricType::Rate, "{name}");
        assert!(point.value >= 0.0, "{name}");
    }
    let gauge = before
        .iter()
        .find(|p| p.name == "postgresql.connections")
        .unwrap();
    assert_eq!(gauge.metric_type, MetricType::Gauge);
    assert!(
        gauge
            .tags
            .iter()
            .any(|t| t.starts_with("postgresql_version:1")),
        "{:?}",
        gauge.tags
    );
    assert!(before
        .iter()
        .any(|p| p.name == "postgresql.connections_by_state" && has_tag(p, "state:active")));
    let table = before
        .iter()
        .find(|p| p.name == "postgresql.total_size" && has_tag(p, "table:items"))
        .expect("relations: the items table's size");
    assert!(table.value > 0.0);

    pg.psql("INSERT INTO items (name) SELECT 'item ' || n FROM generate_series(1, 1000) n");
    let inserted = seen
        .until("rows_inserted to move", |telemetry| match telemetry {
            Telemetry::Points(points) => points
                .iter()
                .find(|p| p.name == "postgresql.rows_inserted" && p.value > 0.0)
                .map(|p| p.value),
            _ => None,
        })
        .await;
    // 1000 rows between two runs 300 ms apart.
    assert!(inserted > 500.0, "rows_inserted {inserted}/s");
    eprintln!(
        "postgresql.rows_inserted: {inserted_before}/s before, {inserted:.0}/s after 1000 inserts"
    );

    pg.psql("SELECT count(*) FROM items WHERE name LIKE 'item 1%'");
    let scans = seen
        .point("postgresql.seq_scans", Some("table:items"))
        .await;
    assert_eq!(scans.metric_type, MetricType::Rate);
    let status = handle.status();
    assert_eq!(status.len(), 1);
    assert!(status[0].runs >= 3 && status[0].failures == 0, "{status:?}");
    assert_eq!(status[0].kind, "postgres");
    let target = status[0].target.as_deref().unwrap();
    assert!(
        target.contains(":***@127.0.0.1") && !target.contains(PG_PASSWORD),
        "{target}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls() {
    let pg = Postgres::start();
    let verified = IntegrationConfig {
        tls_verify: true,
        ..with_url(
            "postgres:VERIFIED",
            IntegrationType::Postgres,
            "VERIFIED_URL",
        )
    };
    let (handle, mut seen) = start(
        &[
            with_url("postgres", IntegrationType::Postgres, "DATABASE_URL"),
            verified,
        ],
        &[
            ("DATABASE_URL", pg.url("require")),
            ("VERIFIED_URL", pg.url("require")),
        ],
    );
    seen.point("postgresql.connections", None).await;
    let tls = pg.psql("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.application_name = 'dynoscope'");
    assert_eq!(tls.trim(), "1", "the check's session uses TLS");
    let refused = seen.service_check("postgres.can_connect", 2).await;
    let message = refused.message.unwrap();
    assert!(message.contains("certificate"), "{message}");
    assert!(message.contains("tlsVerify: false"), "{message}");
    let status = handle.status();
    assert!(
        status
            .iter()
            .any(|s| s.name == "postgres" && s.failures == 0),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wrong_password_is_critical_without_the_password() {
    let pg = Postgres::start();
    let wrong = "Wr0ngSecretPw";
    let url = pg.url("disable").replace(PG_PASSWORD, wrong);
    let (handle, mut seen) = start(
        &[with_url(
            "postgres",
            IntegrationType::Postgres,
            "DATABASE_URL",
        )],
        &[("DATABASE_URL", url)],
    );
    let critical = seen.service_check("postgres.can_connect", 2).await;
    let message = critical.message.unwrap();
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    assert!(!message.contains(wrong), "{message}");
    assert!(critical.tags.contains(&"db:app".to_owned()));
    let status = &handle.status()[0];
    let error = status.last_error.as_deref().unwrap();
    assert!(error.contains("password authentication failed") && !error.contains(wrong));
    assert!(!status.target.as_deref().unwrap().contains(wrong));
    assert!(!format!("{handle:?}").contains(wrong));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_run_is_critical_then_ok_again() {
    let mut pg = Postgres::start();
    let (handle, mut seen) = start(
        &[with_url(
            "postgres",
            IntegrationType::Postgres,
            "DATABASE_URL",
        )],
        &[("DATABASE_URL", pg.url("disable"))],
    );
    seen.service_check("postgres.can_connect", 0).await;
    pg.stop();
    let critical = seen.service_check("postgres.can_connect", 2).await;
    eprintln!("while stopped: {:?}", critical.message);
    pg.resume();
    let started = Instant::now();
    seen.service_check("postgres.can_connect", 0).await;
    eprintln!("OK again {:?} after the restart", started.elapsed());
    seen.point("postgresql.connections", None).await;
    let status = &handle.status()[0];
    assert!(
        status.failures >= 1 && status.consecutive_failures == 0,
        "{status:?}"
    );
    assert!(status.last_error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_metrics_move_with_load() {
    let password = "redis-Pa55word";
    let redis = Redis::start(RedisOptions {
        password: Some(password.to_owned()),
        tls: false,
    });
    redis.cli(2, "SET a 1\nSET b 2\nSET c 3\nEXPIRE c 600\n");
    let (_handle, mut seen) = start(
        &[with_url("redis", IntegrationType::Redis, "REDIS_URL")],
        &[("REDIS_URL", redis.url(2))],
    );
    let ok = seen.service_check("redis.can_connect", 0).await;
    assert!(ok.tags.contains(&format!("redis_port:{}", redis.port)));
    assert!(ok.tags.contains(&"redis_host:127.0.0.1".to_owned()));
    // As Datadog's redisdb check: no database on the instance, only per keyspace.
    assert!(
        !ok.tags.iter().any(|t| t.starts_with("db:")),
        "{:?}",
        ok.tags
    );

    let before = seen.batch("redis.stats.keyspace_hits").await;
    let keys = before
        .iter()
        .find(|p| p.name == "redis.keys" && has_tag(p, "redis_db:db2"))
        .expect("keys of db2");
    assert_eq!(keys.value, 3.0);
    let expires = before
        .iter()
        .find(|p| p.name == "redis.expires" && has_tag(p, "redis_db:db2"))
        .unwrap();
    assert_eq!(expires.value, 1.0);
    for name in [
        "redis.mem.used",
        "redis.mem.rss",
        "redis.mem.peak",
        "redis.uptime",
    ] {
        assert!(value(&before, name) >= 0.0, "{name}");
    }
    assert!(value(&before, "redis.mem.used") > 100_000.0);
    assert!(value(&before, "redis.mem.fragmentation_ratio") > 0.0);
    assert!(value(&before, "redis.net.clients") >= 1.0);
    assert_eq!(value(&before, "redis.clients.blocked"), 0.0);
    let latency = value(&before, "redis.info.latency_ms");
    assert!(latency > 0.0 && latency < 1000.0, "{latency}");
    assert!(before.iter().all(|p| has_tag(p, "redis_role:master")));
    assert!(value(&before, "redis.replication.master_repl_offset") >= 0.0);
    assert!(value(&before, "redis.slowlog.length") >= 0.0);
    let hits_before = value(&before, "redis.stats.keyspace_hits");
    assert_eq!(hits_before, 0.0);
    for name in [
        "redis.keys.evicted",
        "redis.keys.expired",
        "redis.stats.keyspace_misses",
    ] {
        let point = before.iter().find(|p| p.name == name).unwrap();
        assert_eq!(point.metric_type, MetricType::Rate, "{name}");
    }

    redis.cli(2, &"GET a\n".repeat(100));
    let hits = seen
        .until("keyspace_hits to move", |telemetry| match telemetry {
            Telemetry::Points(points) => points
                .iter()
                .find(|p| p.name == "redis.stats.keyspace_hits" && p.value > 0.0)
                .map(|p| p.value),
            _ => None,
        })
        .await;
    assert!(hits > 50.0, "{hits} hits/s");
    eprintln!("redis.stats.keyspace_hits: {hits_before}/s before, {hits:.0}/s after 100 GETs");
    let ratio = seen.point("redis.stats.keyspace_hit_ratio", None).await;
    assert!(ratio.value > 0.9, "{}", ratio.value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wrong_password_is_critical_without_the_password() {
    let redis = Redis::start(RedisOptions {
        password: Some("right-Pa55word".to_owned()),
        tls: false,
    });
    let wrong = "Wr0ngSecretPw";
    let (handle, mut seen) = start(
        &[with_url("redis", IntegrationType::Redis, "REDIS_URL")],
        &[(
            "REDIS_URL",
            format!("redis://:{wrong}@127.0.0.1:{}", redis.port),
        )],
    );
    let critical = seen.service_check("redis.can_connect", 2).await;
    let message = critical.message.unwrap();
    assert!(
        message.contains("AUTH failed") && message.contains("WRONGPASS"),
        "{message}"
    );
    assert!(!message.contains(wrong), "{message}");
    let status = &handle.status()[0];
    assert!(!status.last_error.as_deref().unwrap().contains(wrong));
    assert_eq!(
        status.target.as_deref(),
        Some(format!("redis://:***@127.0.0.1:{}/0", redis.port).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls() {
    let redis = Redis::start(RedisOptions {
        password: Some("tls-Pa55word".to_owned()),
        tls: true,
    });
    let tls_port = redis.tls_port.unwrap();
    let url = format!("rediss://:tls-Pa55word@127.0.0.1:{tls_port}/0");
    let verified = IntegrationConfig {
        tls_verify: true,
        ..with_url("redis:VERIFIED", IntegrationType::Redis, "VERIFIED_URL")
    };
    let (_handle, mut seen) = start(
        &[
            with_url("redis", IntegrationType::Redis, "REDIS_TLS_URL"),
            verified,
        ],
        &[("REDIS_TLS_URL", url.clone()), ("VERIFIED_URL", url)],
    );
    let ok = seen.service_check("redis.can_connect", 0).await;
    assert!(ok.tags.contains(&format!("redis_port:{tls_port}")));
    let clients = seen.point("redis.net.clients", None).await;
    assert!(clients.value >= 1.0);
    let refused = seen.service_check("redis.can_connect", 2).await;
    let message = refused.message.unwrap();
    assert!(message.contains("certificate"), "{message}");
    assert!(message.contains("tlsVerify: false"), "{message}");
    assert!(!message.contains("tls-Pa55word"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_is_critical_then_ok_again() {
    let mut redis = Redis::start(RedisOptions::default());
    let (_handle, mut seen) = start(
        &[with_url("redis", IntegrationType::Redis, "REDIS_URL")],
        &[("REDIS_URL", redis.url(0))],
    );
    seen.service_check("redis.can_connect", 0).await;
    redis.stop();
    let critical = seen.service_check("redis.can_connect", 2).await;
    eprintln!("while stopped: {:?}", critical.message);
    redis.resume();
    seen.service_check("redis.can_connect", 0).await;
    seen.point("redis.mem.used", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_metrics_move_with_load() {
    let memcached = Memcached::start(None);
    let reply = memcached.send("set greeting 0 0 5\r\nhello\r\n");
    assert!(reply.starts_with("STORED"), "{reply}");
    let (_handle, mut seen) = start(
        &[config("memcached", IntegrationType::Memcached)],
        &[(
            "MEMCACHEDCLOUD_SERVERS",
            format!("127.0.0.1:{}", memcached.port),
        )],
    );
    let url = format!("url:127.0.0.1:{}", memcached.port);
    let ok = seen.service_check("memcache.can_connect", 0).await;
    assert_eq!(ok.tags, std::slice::from_ref(&url));

    let before = seen.batch("memcache.get_hits").await;
    assert!(before.iter().all(|p| p.tags == [url.clone()]));
    assert_eq!(value(&before, "memcache.curr_items"), 1.0);
    assert_eq!(
        value(&before, "memcache.limit_maxbytes"),
        16.0 * 1024.0 * 1024.0
    );
    assert!(value(&before, "memcache.bytes") > 0.0);
    assert!(value(&before, "memcache.curr_connections") >= 1.0);
    assert!(value(&before, "memcache.uptime") >= 0.0);
    assert_eq!(value(&before, "memcache.evictions"), 0.0);
    let hits_before = value(&before, "memcache.get_hits");
    assert_eq!(hits_before, 0.0);

    memcached.send(&"get greeting\r\n".repeat(100));
    let after = seen
        .until("get_hits to move", |telemetry| match telemetry {
            Telemetry::Points(points)
                if points
                    .iter()
                    .any(|p| p.name == "memcache.get_hits" && p.value > 0.0) =>
            {
                Some(points.clone())
            }
            _ => None,
        })
        .await;
    let hits = value(&after, "memcache.get_hits");
    let gets = value(&after, "memcache.cmd_get");
    assert!(hits > 50.0 && gets >= hits, "{hits} hits/s, {gets} gets/s");
    assert_eq!(value(&after, "memcache.get_misses"), 0.0);
    eprintln!("memcache.get_hits: {hits_before}/s before, {hits:.0}/s after 100 gets");
    assert_eq!(value(&after, "memcache.get_hit_percent"), 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_with_sasl() {
    let memcached = Memcached::start(Some(("shop", "mc-Pa55word")));
    let servers = format!("127.0.0.1:{}", memcached.port);
    let good = IntegrationConfig {
        username_from: Some("MEMCACHEDCLOUD_USERNAME".to_owned()),
        password_from: Some("MEMCACHEDCLOUD_PASSWORD".to_owned()),
        ..config("memcached", IntegrationType::Memcached)
    };
    let bad = IntegrationConfig {
        name: "memcached:WRONG".to_owned(),
        password_from: Some("WRONG_PASSWORD".to_owned()),
        ..good.clone()
    };
    let (handle, mut seen) = start(
        &[good, bad],
        &[
            ("MEMCACHEDCLOUD_SERVERS", servers),
            ("MEMCACHEDCLOUD_USERNAME", "shop".to_owned()),
            ("MEMCACHEDCLOUD_PASSWORD", "mc-Pa55word".to_owned()),
            ("WRONG_PASSWORD", "Wr0ngSecretPw".to_owned()),
        ],
    );
    let items = seen.point("memcache.curr_items", None).await;
    assert_eq!(items.value, 0.0);
    seen.service_check("memcache.can_connect", 0).await;
    let critical = seen.service_check("memcache.can_connect", 2).await;
    let message = critical.message.unwrap();
    assert!(message.contains("SASL authentication failed"), "{message}");
    assert!(!message.contains("Wr0ngSecretPw"), "{message}");
    let status = handle.status();
    assert!(
        status
            .iter()
            .any(|s| s.name == "memcached" && s.failures == 0),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_stopped_mid_run_is_critical_then_ok_again() {
    let mut memcached = Memcached::start(None);
    let (_handle, mut seen) = start(
        &[config("memcached", IntegrationType::Memcached)],
        &[(
            "MEMCACHEDCLOUD_SERVERS",
            format!("127.0.0.1:{}", memcached.port),
        )],
    );
    seen.service_check("memcache.can_connect", 0).await;
    memcached.stop();
    let critical = seen.service_check("memcache.can_connect", 2).await;
    assert!(critical.message.unwrap().contains("cannot connect"));
    memcached.resume();
    seen.service_check("memcache.can_connect", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_adds_and_removes_checks() {
    let redis = Redis::start(RedisOptions::default());
    let memcached = Memcached::start(None);
    let redis_check = with_url("redis", IntegrationType::Redis, "REDIS_URL");
    let memcached_check = config("memcached", IntegrationType::Memcached);
    let (handle, mut seen) = start(
        std::slice::from_ref(&redis_check),
        &[
            ("REDIS_URL", redis.url(0)),
            (
                "MEMCACHEDCLOUD_SERVERS",
                format!("127.0.0.1:{}", memcached.port),
            ),
            // A port that is not a number: the URL does not parse.
            ("BAD_URL", "postgres://app@127.0.0.1:port/app".to_owned()),
        ],
    );
    seen.service_check("redis.can_connect", 0).await;
    let runs_before = handle.status()[0].runs;

    let report = handle.reconfigure(&[redis_check.clone(), memcached_check.clone()]);
    assert_eq!(report.added, ["memcached"]);
    assert_eq!(report.unchanged, ["redis"]);
    seen.service_check("memcache.can_connect", 0).await;
    seen.point("memcache.curr_connections", None).await;
    // Redis was not restarted: its run count keeps growing from where it was.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = handle.status();
        let redis_status = status.iter().find(|s| s.name == "redis").unwrap();
        if redis_status.runs > runs_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "redis stopped running: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A changed interval restarts just that check; removing redis stops it.
    let slower = IntegrationConfig {
        interval: HumanDuration(Duration::from_millis(400)),
        ..memcached_check
    };
    let report = handle.reconfigure(std::slice::from_ref(&slower));
    assert_eq!(report.removed, ["redis"]);
    assert_eq!(report.restarted, ["memcached"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    seen.drain();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut kinds = Vec::new();
    while let Ok(telemetry) = seen.rx.try_recv() {
        if let Telemetry::ServiceCheck(check) = telemetry {
            kinds.push(check.name);
        }
    }
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| k == "memcache.can_connect"),
        "{kinds:?}"
    );
    assert_eq!(handle.status().len(), 1);

    // A check whose variable is unset reports why, naming the variable.
    handle.reconfigure(&[with_url(
        "postgres",
        IntegrationType::Postgres,
        "MISSING_URL",
    )]);
    let critical = seen.service_check("postgres.can_connect", 2).await;
    assert_eq!(
        critical.message.as_deref(),
        Some("MISSING_URL is not set: the postgres check reads its URL from it")
    );
    assert!(
        critical.tags.contains(&"url_from:MISSING_URL".to_owned()),
        "{:?}",
        critical.tags
    );

    // One whose URL does not parse still says which instance it is.
    handle.reconfigure(&[with_url("postgres", IntegrationType::Postgres, "BAD_URL")]);
    let critical = seen
        .until(
            "the critical check of BAD_URL",
            |telemetry| match telemetry {
                Telemetry::ServiceCheck(check)
                    if check
                        .message
                        .as_deref()
                        .is_some_and(|m| m.contains("BAD_URL")) =>
                {
                    Some(check.clone())
                }
                _ => None,
            },
        )
        .await;
    assert_eq!(critical.status, 2);
    assert!(
        critical
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("BAD_URL is not a valid postgres URL")),
        "{critical:?}"
    );
    assert!(
        critical.tags.contains(&"url_from:BAD_URL".to_owned()),
        "{:?}",
        critical.tags
    );
}

/// `run --config` of a DynoConfig whose dyno reads `datadog/conf.d`, in the
/// Datadog Agent's layout, with the password from `%%env_…%%`.
#[test]
fn a_datadog_conf_d_directory_runs_its_checks_and_follows_edits() {
    use dynoscope_tests::harness::{self, Sidecar};
    use dynoscope_tests::wait_for;

    let pg = Postgres::start();
    let redis = Redis::start(RedisOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let conf_d = dir.path().join("datadog/conf.d");
    std::fs::create_dir_all(conf_d.join("postgres.d")).unwrap();
    std::fs::write(
        conf_d.join("postgres.d/conf.yaml"),
        format!(
            "init_config:\ninstances:\n  - host: 127.0.0.1\n    port: {}\n    username: app\n    password: '%%env_PG_PASS%%'\n    dbname: app\n    ssl: false\n    min_collection_interval: 1\n    tags: ['role:primary']\n",
            pg.port
        ),
    )
    .unwrap();
    let admin = dynoscope_tests::servers::free_port();
    let spec = format!(
        "  admin: {{port: {admin}}}\n  apm: {{enabled: false}}\n  dogstatsd: {{enabled: false}}\n  processMetrics: {{enabled: false}}\n  confD: {{path: datadog/conf.d}}\n  sinks: [{{type: jsonl, path: telemetry.jsonl}}]\n"
    );
    std::fs::write(dir.path().join("web.1.yaml"), harness::render(&spec)).unwrap();
    let sidecar = Sidecar::start(
        dir.path(),
        &["run", "--config", "web.1.yaml", "--", "sleep", "60"],
        &[("PG_PASS", PG_PASSWORD)],
    );
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.path().join("telemetry.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let has = |v: &serde_json::Value, tag: &str| {
        v["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == tag))
    };
    let check_of = |name: &str, status: u64| {
        let name = name.to_owned();
        move |v: &serde_json::Value| {
            v["kind"] == "service_check" && v["name"] == name.as_str() && v["status"] == status
        }
    };

    // The instance runs, with its own tags next to the dyno's.
    wait_for(PATIENCE, "postgres points tagged role:primary", || {
        lines()
            .iter()
            .any(|v| {
                v["kind"] == "point"
                    && v["name"] == "postgresql.connections"
                    && has(v, "role:primary")
                    && has(v, "dyno:web.1")
            })
            .then_some(())
    });
    assert!(lines()
        .iter()
        .any(|v| check_of("postgres.can_connect", 0)(v) && has(v, "role:primary")));

    // A check added to the directory starts within the poll; nothing restarts.
    let app_pid = harness::status_of(admin).unwrap()["app"]["pid"].clone();
    assert!(app_pid.is_u64(), "{app_pid}");
    std::fs::write(
        conf_d.join("redisdb.yaml"),
        format!(
            "instances:\n  - {{host: 127.0.0.1, port: {}, min_collection_interval: 1}}\n",
            redis.port
        ),
    )
    .unwrap();
    wait_for(PATIENCE, "redis points after the edit", || {
        lines()
            .iter()
            .any(|v| v["kind"] == "point" && v["name"] == "redis.net.clients")
            .then_some(())
    });

    // A wrong password in the file restarts that check, which then reports
    // CRITICAL without the password; the old one is never logged.
    std::fs::write(
        conf_d.join("postgres.d/conf.yaml"),
        format!(
            "instances:\n  - {{host: 127.0.0.1, port: {}, username: app, password: not-the-Pa55word, dbname: app, ssl: false, min_collection_interval: 1}}\n",
            pg.port
        ),
    )
    .unwrap();
    let critical = wait_for(PATIENCE, "postgres CRITICAL after the edit", || {
        lines()
            .into_iter()
            .find(|v| check_of("postgres.can_connect", 2)(v))
    });
    let message = critical["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    let status = harness::status_of(admin).unwrap();
    assert_eq!(status["app"]["pid"], app_pid, "the app restarted");
    let everything = format!(
        "{}{}{status}",
        harness::read(&sidecar.stderr),
        harness::read(&sidecar.stdout)
    );
    for secret in ["not-the-Pa55word", PG_PASSWORD] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }

    // A file that breaks is reported by name, and keeps nothing running from it.
    std::fs::write(
        conf_d.join("redisdb.yaml"),
        "instances: [{host: 127.0.0.1, port: x}]\n",
    )
    .unwrap();
    wait_for(PATIENCE, "the problem logged", || {
        harness::read(&sidecar.stderr)
            .contains("redisdb.yaml instances[0]: field `port` must be a whole number")
            .then_some(())
    });
}
