//! The memcached check: `stats` of every server of the list, named as
//! Datadog's `mcache` integration names it.
//!
//! Without credentials it speaks the text protocol. With credentials (Memcached
//! Cloud, MemCachier) it speaks the binary protocol, as those services
//! require: SASL `PLAIN` authentication, then the binary `STAT` command. A
//! new connection per run keeps the check stateless between servers.

use std::collections::HashMap;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::emit::{Counters, Emitter};
use super::net::{self, Stream};
use super::url::{MemcachedTarget, Secret};
use super::CheckError;
use crate::telemetry::Point;

/// Datadog's name for the can-connect service check.
pub const SERVICE_CHECK: &str = "memcache.can_connect";

/// The largest binary response body accepted; a stat is a few bytes.
const MAX_BODY: usize = 1024 * 1024;

/// `stats` fields reported as they are.
const GAUGES: [(&str, &str); 6] = [
    ("curr_connections", "memcache.curr_connections"),
    ("bytes", "memcache.bytes"),
    ("limit_maxbytes", "memcache.limit_maxbytes"),
    ("curr_items", "memcache.curr_items"),
    ("threads", "memcache.threads"),
    ("uptime", "memcache.uptime"),
];

/// `stats` fields that are running totals, reported per second.
const RATES: [(&str, &str); 12] = [
    ("get_hits", "memcache.get_hits"),
    ("get_misses", "memcache.get_misses"),
    ("cmd_get", "memcache.cmd_get"),
    ("cmd_set", "memcache.cmd_set"),
    ("cmd_flush", "memcache.cmd_flush"),
    ("evictions", "memcache.evictions"),
    ("delete_hits", "memcache.delete_hits"),
    ("delete_misses", "memcache.delete_misses"),
    ("total_connections", "memcache.total_connections"),
    ("total_items", "memcache.total_items"),
    ("bytes_read", "memcache.bytes_read_rate"),
    ("bytes_written", "memcache.bytes_written_rate"),
];

/// The servers of one list, with previous totals.
#[derive(Debug)]
pub struct Memcached {
    target: MemcachedTarget,
    counters: Counters,
}

impl Memcached {
    /// A check of every server of `target`.
    pub fn new(target: MemcachedTarget) -> Self {
        Memcached {
            target,
            counters: Counters::default(),
        }
    }

    /// One `url:host:port` tag set per server.
    pub fn instances(&self) -> Vec<Vec<String>> {
        self.target
            .servers
            .iter()
            .map(|(host, port)| vec![format!("url:{}", net::address(host, *port))])
            .collect()
    }

    /// Reads `stats` of each server; one result per server.
    pub async fn run(&mut self, points: &mut Vec<Point>) -> Vec<Result<(), CheckError>> {
        let mut results = Vec::new();
        let instances = self.instances();
        for ((host, port), tags) in self.target.servers.iter().zip(instances) {
            let credentials = match (&self.target.username, &self.target.password) {
                (Some(user), Some(password)) => Some((user.as_str(), password)),
                _ => None,
            };
            let result = match stats(host, *port, credentials).await {
                Ok(stats) => {
                    let mut emit = Emitter::new(&mut self.counters, tags);
                    report(&stats, &mut emit);
                    points.append(&mut emit.points);
                    Ok(())
                }
                Err(error) => Err(error),
            };
            results.push(result);
        }
        self.counters.end_run();
        results
    }
}

fn report(stats: &HashMap<String, String>, emit: &mut Emitter<'_>) {
    let number = |key: &str| stats.get(key).and_then(|value| value.parse::<f64>().ok());
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
    if let (Some(hits), Some(gets)) = (number("get_hits"), number("cmd_get")) {
        if gets > 0.0 {
            emit.gauge("memcache.get_hit_percent", 100.0 * hits / gets, &[]);
        }
    }
    if let (Some(bytes), Some(limit)) = (number("bytes"), number("limit_maxbytes")) {
        if limit > 0.0 {
            emit.gauge("memcache.fill_percent", 100.0 * bytes / limit, &[]);
        }
    }
}

/// Connects to one server and reads its `stats`.
async fn stats(
    host: &str,
    port: u16,
    credentials: Option<(&str, &Secret)>,
) -> Result<HashMap<String, String>, CheckError> {
    let mut stream = net::connect(host, port, false, false).await?;
    match credentials {
        None => text_stats(&mut stream).await,
        Some((user, password)) => {
            authenticate(&mut stream, user, password)
                .await
                .map_err(|error| CheckError::Connect {
                    address: net::address(host, port),
                    reason: error.to_string(),
                })?;
            binary_stats(&mut stream).await
        }
    }
}

async fn text_stats(stream: &mut Stream) -> Result<HashMap<String, String>, CheckError> {
    stream.write_all(b"stats\r\n").await.map_err(lost)?;
    stream.flush().await.map_err(lost)?;
    let mut stats = HashMap::new();
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await.map_err(lost)? == 0 {
            return Err(CheckError::Query(
                "the server closed the connection (does it require SASL? set usernameFrom and passwordFrom)".to_owned(),
            ));
        }
        let line = line.trim_end();
        if line == "END" {
            return Ok(stats);
        }
        match line
            .strip_prefix("STAT ")
            .and_then(|rest| rest.split_once(' '))
        {
            Some((key, value)) => {
                stats.insert(key.to_owned(), value.to_owned());
            }
            None => return Err(CheckError::Query(format!("stats: {line}"))),
        }
    }
}

/// Binary protocol opcodes.
const OP_STAT: u8 = 0x10;
const OP_SASL_AUTH: u8 = 0x21;

/// Why SASL authentication did not succeed.
#[derive(Debug, thiserror::Error)]
enum AuthError {
    /// The connection failed while authenticating.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The reply could not be read.
    #[error("{0}")]
    Reply(#[from] CheckError),
    /// The server refused the credentials.
    #[error("SASL authentication failed: wrong username or password; check the variables the check's usernameFrom and passwordFrom name")]
    Refused,
    /// The server was started without SASL.
    #[error("the server does not support SASL (started without -S?); remove usernameFrom and passwordFrom from the check")]
    NoSasl,
    /// Any other status.
    #[error("SASL authentication failed with status {0:#06x}")]
    Status(u16),
}

/// SASL `PLAIN` over the binary protocol.
async fn authenticate(stream: &mut Stream, user: &str, password: &Secret) -> Result<(), AuthError> {
    let mut value = Vec::with_capacity(user.len() + password.expose().len() + 2);
    value.push(0);
    value.extend_from_slice(user.as_bytes());
    value.push(0);
    value.extend_from_slice(password.expose().as_bytes());
    stream
        .write_all(&request(OP_SASL_AUTH, b"PLAIN", &value))
        .await?;
    stream.flush().await?;
    let response = read_response(stream).await?;
    match response.status {
        0 => Ok(()),
        0x20 => Err(AuthError::Refused),
        0x81 => Err(AuthError::NoSasl),
        status => Err(AuthError::Status(status)),
    }
}

async fn binary_stats(stream: &mut Stream) -> Result<HashMap<String, String>, CheckError> {
    stream
        .write_all(&request(OP_STAT, b"", b""))
        .await
        .map_err(lost)?;
    stream.flush().await.map_err(lost)?;
    let mut stats = HashMap::new();
    loop {
        let response = read_response(stream).await?;
        if response.status != 0 {
            return Err(CheckError::Query(format!(
                "STAT failed with status {:#06x}",
                response.status
            )));
        }
        if response.key.is_empty() {
            return Ok(stats);
        }
        stats.insert(
            String::from_utf8_lossy(&response.key).into_owned(),
            String::from_utf8_lossy(&response.value).into_owned(),
        );
    }
}

/// A binary-protocol request without extras.
fn request(opcode: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(24 + key.len() + value.len());
    packet.push(0x80);
    packet.push(opcode);
    packet.extend_from_slice(&(key.len() as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0, 0]); // extras length, data type, vbucket
    packet.extend_from_slice(&((key.len() + value.len()) as u32).to_be_bytes());
    packet.extend_from_slice(&[0; 12]); // opaque, cas
    packet.extend_from_slice(key);
    packet.extend_from_slice(value);
    packet
}

/// A binary-protocol response.
#[derive(Debug)]
struct Response {
    status: u16,
    key: Vec<u8>,
    value: Vec<u8>,
}

async fn read_response(stream: &mut Stream) -> Result<Response, CheckError> {
    let mut header = [0u8; 24];
    stream.read_exact(&mut header).await.map_err(lost)?;
    if header[0] != 0x81 {
        return Err(CheckError::Protocol(format!(
            "binary response with magic {:#04x}",
            header[0]
        )));
    }
    let key_length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let extras_length = usize::from(header[4]);
    let status = u16::from_be_bytes([header[6], header[7]]);
    let body_length = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if body_length > MAX_BODY || key_length + extras_length > body_length {
        return Err(CheckError::Protocol(format!(
            "binary response of {body_length} bytes"
        )));
    }
    let mut body = vec![0; body_length];
    stream.read_exact(&mut body).await.map_err(lost)?;
    let value = body.split_off(extras_length + key_length);
    let key = body.split_off(extras_length);
    Ok(Response { status, key, value })
}

fn lost(error: std::io::Error) -> CheckError {
    CheckError::Query(format!("connection lost: {error}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn stream(input: &'static [u8]) -> Stream {
        let io: Box<dyn net::Io> = Box::new(tokio::io::join(input, tokio::io::sink()));
        tokio::io::BufReader::new(io)
    }

    #[tokio::test]
    async fn text_stats_are_parsed() {
        let mut s = stream(b"STAT pid 1\r\nSTAT get_hits 10\r\nEND\r\n");
        let stats = text_stats(&mut s).await.unwrap();
        assert_eq!(stats["get_hits"], "10");
        let mut s = stream(b"ERROR\r\n");
        assert!(text_stats(&mut s).await.is_err());
    }

    #[tokio::test]
    async fn binary_stats_are_parsed() {
        // "pid" = "7", then the empty terminator.
        const INPUT: &[u8] = &[
            0x81, 0x10, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'p',
            b'i', b'd', b'7', 0x81, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0,
        ];
        let mut s = stream(INPUT);
        let stats = binary_stats(&mut s).await.unwrap();
        assert_eq!(stats.len(), 1);
        assert_eq!(stats["pid"], "7");
    }

    #[test]
    fn requests_have_the_binary_header() {
        let packet = request(OP_SASL_AUTH, b"PLAIN", b"\0u\0p");
        assert_eq!(packet.len(), 24 + 5 + 4);
        assert_eq!(&packet[..4], &[0x80, 0x21, 0, 5]);
        assert_eq!(&packet[8..12], &9u32.to_be_bytes());
    }
}
