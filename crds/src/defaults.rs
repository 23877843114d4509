//! The one home of every default; the field docs in [`crate::observability`] repeat these values.

use crate::duration::HumanDuration;

/// Trace receiver TCP port, as the Datadog Agent's.
pub const APM_PORT: u16 = 8126;
/// DogStatsD UDP port, as the Datadog Agent's.
pub const DOGSTATSD_PORT: u16 = 8125;
/// Loopback admin port serving `/status`.
pub const ADMIN_PORT: u16 = 8127;
/// Address of the Prometheus scrape endpoint.
pub const PROMETHEUS_LISTEN: &str = "127.0.0.1:9464";
/// Datadog site.
pub const DATADOG_SITE: &str = "datadoghq.com";
/// Per-sink buffer before the oldest data is dropped.
pub const SINK_BUFFER_BYTES: u64 = 8 * 1024 * 1024;
/// Size past which a jsonl sink rotates its file: 100 MiB.
pub const JSONL_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// Rotated files a jsonl sink keeps (`path.1` … `path.5`).
pub const JSONL_MAX_FILES: u32 = 5;
/// Most rotated files a jsonl sink may keep (each rotation renames them all).
pub const JSONL_MAX_FILES_LIMIT: u32 = 1000;
/// Heroku's time between SIGTERM and SIGKILL.
pub const GRACE_PERIOD: HumanDuration = HumanDuration::from_secs(30);
/// Heroku's log-runtime-metrics period.
pub const SAMPLE_INTERVAL: HumanDuration = HumanDuration::from_secs(20);
/// Time between runs of an integration check.
pub const CHECK_INTERVAL: HumanDuration = HumanDuration::from_secs(15);
/// Time one run of an integration check may take.
pub const CHECK_TIMEOUT: HumanDuration = HumanDuration::from_secs(5);
/// Percentiles of histograms and timers, as the Datadog Agent's.
pub const HISTOGRAM_PERCENTILES: &[f64] = &[0.95];
/// Aggregates of histograms and timers, as the Datadog Agent's.
pub const HISTOGRAM_AGGREGATES: &[&str] = &["max", "median", "avg", "count"];
/// Aggregates a user may ask for.
pub const KNOWN_AGGREGATES: &[&str] = &["max", "min", "median", "avg", "sum", "count"];
/// Environment variable of the Postgres URL, as Heroku Postgres sets it.
pub const POSTGRES_URL_ENV: &str = "DATABASE_URL";
/// Environment variable of the Redis URL, as Heroku Redis sets it.
pub const REDIS_URL_ENV: &str = "REDIS_URL";
/// Environment variable of the Memcached server list, as Memcached Cloud sets it.
pub const MEMCACHED_SERVERS_ENV: &str = "MEMCACHEDCLOUD_SERVERS";
/// A dyno's size under `up` when neither the manifest nor `--size` sets one: Heroku's
/// standard-1X (512 MB, as eco and basic), so R14 shows locally as it would there.
pub const LOCAL_DYNO_SIZE: &str = "standard-1x";
/// Quantity of the `web` process type when neither the spec nor the command line sets it.
pub const WEB_QUANTITY: u32 = 1;
/// Quantity of other process types when neither the spec nor the command line sets it.
pub const OTHER_QUANTITY: u32 = 0;
