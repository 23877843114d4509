//! The redis check: `INFO` (and `SLOWLOG LEN`) over a minimal RESP client,
//! named as Datadog's `redisdb` integration names it.
//!
//! The client speaks just enough RESP2 for `AUTH`, `SELECT`, `INFO` and
//! `SLOWLOG LEN`; a real client library would bring a connection pool and a
//! dozen features this check does not use.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::emit::{Counters, Emitter};
use super::net::{self, Stream};
use super::url::RedisTarget;
use super::CheckError;
use crate::telemetry::Point;

/// Datadog's name for the can-connect service check.
pub const SERVICE_CHECK: &str = "redis.can_connect";

/// The largest reply accepted; `INFO` is a few kilobytes.
const MAX_BULK: usize = 16 * 1024 * 1024;

/// `INFO` fields reported as they are.
const GAUGES: [(&str, &str); 14] = [
    ("connected_clients", "redis.net.clients"),
    ("blocked_clients", "redis.clients.blocked"),
    ("used_memory", "redis.mem.used"),
    ("used_memory_rss", "redis.mem.rss"),
    ("used_memory_peak", "redis.mem.peak"),
    ("used_memory_lua", "redis.mem.lua"),
    ("maxmemory", "redis.mem.maxmemory"),
    ("mem_fragmentation_ratio", "redis.mem.fragmentation_ratio"),
    (
        "instantaneous_ops_per_sec",
        "redis.net.instantaneous_ops_per_sec",
    ),
    (
        "rdb_changes_since_last_save",
        "redis.rdb.changes_since_last",
    ),
    ("connected_slaves", "redis.net.slaves"),
    ("master_repl_offset", "redis.replication.master_repl_offset"),
    (
        "master_last_io_seconds_ago",
        "redis.replication.last_io_seconds_ago",
    ),
    ("uptime_in_seconds", "redis.uptime"),
];

/// `INFO` fields that are running totals, reported per second.
const RATES: [(&str, &str); 8] = [
    ("keyspace_hits", "redis.stats.keyspace_hits"),
    ("keyspace_misses", "redis.stats.keyspace_misses"),
    ("evicted_keys", "redis.keys.evicted"),
    ("expired_keys", "redis.keys.expired"),
    ("total_commands_processed", "redis.net.commands"),
    ("rejected_connections", "redis.net.rejected"),
    ("used_cpu_sys", "redis.cpu.sys"),
    ("used_cpu_user", "redis.cpu.user"),
];

/// One Redis: its target, its connection (kept between runs) and previous totals.
#[derive(Debug)]
pub struct Redis {
    target: RedisTarget,
    /// `tlsVerify` for `rediss://`.
    verify: bool,
    /// The open connection; `None` after an error, reopened by the next run.
    connection: Option<Connection>,
    counters: Counters,
}

impl Redis {
    /// A check of `target`, not yet connected.
    pub fn new(target: RedisTarget, verify: bool) -> Self {
        Redis {
            target,
            verify,
            connection: None,
            counters: Counters::default(),
        }
    }

    /// `redis_host:`, `redis_port:`: the instance tags of Datadog's redisdb
    /// check, which names no database on the instance (each keyspace's
    /// points carry `redis_db:db<N>` instead).
    pub fn tags(&self) -> Vec<String> {
        vec![
            format!("redis_host:{}", self.target.host),
            format!("redis_port:{}", self.target.port),
        ]
    }

    /// Closes the connection.
    pub fn reset(&mut self) {
        self.connection = None;
    }

    /// Connects if needed and reads `INFO`.
    pub async fn run(&mut self, points: &mut Vec<Point>) -> Result<(), CheckError> {
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => Connection::open(&self.target, self.verify).await?,
        };
        let started = Instant::now();
        let info = match connection.command(&[b"INFO"]).await? {
            Reply::Bulk(Some(text)) => String::from_utf8_lossy(&text).into_owned(),
            Reply::Error(error) => return Err(CheckError::Query(format!("INFO: {error}"))),
            other => return Err(CheckError::Protocol(format!("INFO answered {other:?}"))),
        };
        let latency = started.elapsed();
        // Managed services may rename or forbid SLOWLOG; the check goes on without it.
        let slowlog = match connection.command(&[b"SLOWLOG", b"LEN"]).await? {
            Reply::Integer(length) => Some(length),
            _ => None,
        };
        self.connection = Some(connection);

        let fields = parse_info(&info);
        let tags = self.tags();
        let mut emit = Emitter::new(&mut self.counters, tags);
        if let Some(role) = fields.get("role") {
            emit.add_tag(format!("redis_role:{role}"));
        }
        emit.gauge("redis.info.latency_ms", latency.as_secs_f64() * 1000.0, &[]);
        let number = |key: &str| fields.get(key).and_then(|value| value.parse::<f64>().ok());
        for (key, name) in GAUGES {
            if let Some(value) = number(key) {
                emit.gauge(name, value, &[]);
            }
        }
        for (key, name) in RATES {
            if let Some(total) = number(key) {
                emit.rate(name, total, &[]);
            }
        }
        if let (Some(hits), Some(misses)) = (number("keyspace_hits"), number("keyspace_misses")) {
            if hits + misses > 0.0 {
                emit.gauge(
                    "redis.stats.keyspace_hit_ratio",
                    hits / (hits + misses),
                    &[],
                );
            }
        }
        for (db, stats) in keyspace(&fields) {
            let tag = [format!("redis_db:{db}")];
            if let Some(keys) = stats.get("keys") {
                emit.gauge("redis.keys", *keys, &tag);
            }
            if let Some(expires) = stats.get("expires") {
                emit.gauge("redis.expires", *expires, &tag);
            }
        }
        let master_offset = number("master_repl_offset");
        for (replica, stats) in replicas(&fields) {
            if let (Some(master), Some(offset)) = (master_offset, stats.get("offset")) {
                let tag = [format!("slave_id:{replica}")];
                emit.gauge("redis.replication.delay", (master - offset).max(0.0), &tag);
            }
        }
        if let Some(length) = slowlog {
            emit.gauge("redis.slowlog.length", length as f64, &[]);
        }
        points.append(&mut emit.points);
        self.counters.end_run();
        Ok(())
    }
}

/// `key:value` lines of `INFO`, sections and comments skipped.
pub fn parse_info(info: &str) -> HashMap<&str, &str> {
    info.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.trim_end().split_once(':'))
        .collect()
}

/// `db0:keys=1,expires=0,avg_ttl=0` → (`db0`, {keys: 1, expires: 0, avg_ttl: 0}).
fn keyspace<'a>(fields: &HashMap<&'a str, &'a str>) -> Vec<(&'a str, HashMap<&'a str, f64>)> {
    let mut dbs: Vec<_> = fields
        .iter()
        .filter(|(key, _)| {
            key.strip_prefix("db")
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .map(|(key, value)| (*key, pairs(value)))
        .collect();
    dbs.sort_by(|a, b| a.0.cmp(b.0));
    dbs
}

/// `slave0:ip=10.0.0.2,port=6379,state=online,offset=1234,lag=0` lines of a master.
fn replicas<'a>(fields: &HashMap<&'a str, &'a str>) -> Vec<(&'a str, HashMap<&'a str, f64>)> {
    fields
        .iter()
        .filter(|(key, _)| {
            key.strip_prefix("slave")
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .map(|(key, value)| (*key, pairs(value)))
        .collect()
}

fn pairs(value: &str) -> HashMap<&str, f64> {
    value
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .filter_map(|(key, value)| value.parse().ok().map(|value| (key, value)))
        .collect()
}

/// A RESP2 reply.
#[derive(Debug, PartialEq)]
enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// A connection, authenticated and on the right database.
struct Connection {
    stream: Stream,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

impl Connection {
    async fn open(target: &RedisTarget, verify: bool) -> Result<Self, CheckError> {
        let stream = net::connect(&target.host, target.port, target.tls, verify).await?;
        let mut connection = Connection { stream };
        let refused = |reason: String| CheckError::Connect {
            address: net::address(&target.host, target.port),
            reason,
        };
        if let Some(password) = &target.password {
            let password = password.expose().as_bytes();
            let mut reply = match &target.username {
                Some(user) => {
                    connection
                        .command(&[b"AUTH", user.as_bytes(), password])
                        .await?
                }
                None => connection.command(&[b"AUTH", password]).await?,
            };
            // Redis before 6 has no users, and old Heroku URLs carry a dummy user (`h:`).
            if target.username.is_some() && matches!(reply, Reply::Error(_)) {
                let first = reply;
                reply = connection.command(&[b"AUTH", password]).await?;
                if matches!(reply, Reply::Error(_)) {
                    reply = first;
                }
            }
            if let Reply::Error(error) = reply {
                return Err(refused(format!("AUTH failed: {error}")));
            }
        }
        if target.db != 0 {
            let db = target.db.to_string();
            if let Reply::Error(error) = connection.command(&[b"SELECT", db.as_bytes()]).await? {
                return Err(refused(format!("SELECT {db} failed: {error}")));
            }
        }
        Ok(connection)
    }

    async fn command(&mut self, args: &[&[u8]]) -> Result<Reply, CheckError> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&request).await.map_err(lost)?;
        self.stream.flush().await.map_err(lost)?;
        read_reply(&mut self.stream).await
    }
}

fn lost(error: std::io::Error) -> CheckError {
    CheckError::Query(format!("connection lost: {error}"))
}

fn read_reply(
    stream: &mut Stream,
) -> Pin<Box<dyn Future<Output = Result<Reply, CheckError>> + Send + '_>> {
    Box::pin(async move {
        let mut line = Vec::new();
        let read = stream.read_until(b'\n', &mut line).await.map_err(lost)?;
        if read == 0 {
            return Err(CheckError::Query(
                "connection closed by the server".to_owned(),
            ));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let (kind, rest) = text.split_at(text.len().min(1));
        let length = || {
            rest.parse::<i64>()
                .map_err(|_| CheckError::Protocol(format!("bad length in {kind}{rest}")))
        };
        match kind {
            "+" => Ok(Reply::Simple(rest.to_owned())),
            "-" => Ok(Reply::Error(rest.to_owned())),
            ":" => Ok(Reply::Integer(length()?)),
            "$" => {
                let length = length()?;
                if length < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let length = usize::try_from(length).unwrap_or(usize::MAX);
                if length > MAX_BULK {
                    return Err(CheckError::Protocol(format!("a reply of {length} bytes")));
                }
                let mut data = vec![0; length + 2];
                stream.read_exact(&mut data).await.map_err(lost)?;
                data.truncate(length);
                Ok(Reply::Bulk(Some(data)))
            }
            "*" => {
                let length = length()?;
                if length < 0 {
                    return Ok(Reply::Array(None));
                }
                let mut items = Vec::new();
                for _ in 0..length.min(1024) {
                    items.push(read_reply(stream).await?);
                }
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(CheckError::Protocol(format!(
                "a line starting with {kind:?}"
            ))),
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const INFO: &str = "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:42\r\n\r\n# Clients\r\nconnected_clients:3\r\n# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=10.0.0.2,port=6379,state=online,offset=90,lag=0\r\nmaster_repl_offset:100\r\n# Keyspace\r\ndb0:keys=12,expires=2,avg_ttl=0\r\ndb2:keys=1,expires=0,avg_ttl=0\r\n";

    #[test]
    fn info_fields_keyspace_and_replicas() {
        let fields = parse_info(INFO);
        assert_eq!(fields["connected_clients"], "3");
        assert_eq!(fields["role"], "master");
        assert!(!fields.contains_key("# Server"));
        let dbs = keyspace(&fields);
        assert_eq!(dbs.len(), 2);
        assert_eq!(dbs[0].0, "db0");
        assert_eq!(dbs[0].1["keys"], 12.0);
        assert_eq!(dbs[1].1["expires"], 0.0);
        let replicas = replicas(&fields);
        assert_eq!(replicas.len(), 1);
        assert_eq!(replicas[0].1["offset"], 90.0);
    }

    #[tokio::test]
    async fn replies_of_every_kind() {
        let input: &[u8] = b"+OK\r\n-ERR no\r\n:7\r\n$5\r\nhello\r\n$-1\r\n*2\r\n:1\r\n$1\r\nx\r\n";
        let io: Box<dyn net::Io> = Box::new(tokio::io::join(input, tokio::io::sink()));
        let mut stream = tokio::io::BufReader::new(io);
        let expected = [
            Reply::Simple("OK".into()),
            Reply::Error("ERR no".into()),
            Reply::Integer(7),
            Reply::Bulk(Some(b"hello".to_vec())),
            Reply::Bulk(None),
            Reply::Array(Some(vec![
                Reply::Integer(1),
                Reply::Bulk(Some(b"x".to_vec())),
            ])),
        ];
        for reply in expected {
            assert_eq!(read_reply(&mut stream).await.unwrap(), reply);
        }
        assert!(read_reply(&mut stream).await.is_err(), "end of stream");
    }
}
