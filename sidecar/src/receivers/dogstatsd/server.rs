//! The DogStatsD sockets: UDP on `127.0.0.1:<port>` and, optionally, a unix
//! datagram socket; datagrams → [`parser`] → [`Aggregator`] → the pipeline.
//!
//! One task owns the sockets and the aggregator, so aggregation needs no
//! lock. Closed 10 s buckets are flushed every second; events and service
//! checks go to the pipeline as they arrive. At shutdown the task reads what
//! the kernel still holds, then flushes every bucket, the open one included,
//! so nothing accepted is lost.
//!
//! Bad input never stops the receiver: a line that does not parse is counted
//! by kind in [`DogStatsdStats::parse_errors`] and the first of each kind is
//! logged; a panic while handling a datagram is contained and counted.
//!
//! Kernel drops: the UDP socket asks for an 8 MiB receive buffer (the
//! kernel caps it at `net.core.rmem_max` unless the sidecar may force it);
//! what it got is in `/status`, and so are the datagrams the kernel dropped
//! since the sidecar started (`RcvbufErrors` of `/proc/net/snmp`).

use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dynoscope_crds::DynoConfig;
use tokio::net::{UdpSocket, UnixDatagram};
use tokio::sync::watch;

use super::parser::{self, Message};
use crate::clock::unix_now;
use crate::pipeline::{self, PipelineHandle};
use crate::receivers::dogstatsd::aggregate::{Aggregator, AggregatorConfig, Inserted};
use crate::stats::{DogStatsdStats, Stats};
use crate::status::StatusBoard;
use crate::telemetry::Telemetry;

/// The receive buffer asked of the kernel for the UDP socket.
pub const RECEIVE_BUFFER_BYTES: usize = 8 << 20;
/// The largest datagram read; longer ones are truncated by the kernel.
const DATAGRAM_BYTES: usize = 65_536;
/// Datagrams read in one go after a wake-up, before other work gets a turn.
const BURST: usize = 64;
/// How often closed buckets are flushed.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Where the receiver listens; derived from the config with [`Endpoint::of`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// UDP port on 127.0.0.1; `None` when DogStatsD is off.
    pub port: Option<u16>,
    /// Unix datagram socket path.
    pub socket: Option<PathBuf>,
}

impl Endpoint {
    /// The config's endpoint; nothing when observability or DogStatsD is off.
    pub fn of(config: Option<&DynoConfig>) -> Self {
        match config {
            Some(c) if c.enabled && c.dogstatsd.enabled => Endpoint {
                port: Some(c.dogstatsd.port),
                socket: c.dogstatsd.socket.as_ref().map(PathBuf::from),
            },
            _ => Endpoint::default(),
        }
    }
}

/// The bound sockets and the aggregator, ready to [`run`](Receiver::run).
#[derive(Debug)]
pub struct Receiver {
    endpoint: Endpoint,
    udp: Option<UdpSocket>,
    uds: Option<UnixDatagram>,
    aggregator: Aggregator,
    pipe: PipelineHandle,
    stats: Arc<Stats>,
    status: Arc<StatusBoard>,
    /// `RcvbufErrors` when the sidecar started.
    kernel_drops_baseline: Option<u64>,
}

impl Receiver {
    /// Binds the config's sockets. A socket that cannot be bound is reported
    /// (the app runs anyway) and retried at the next config change.
    pub fn bind(
        config: Option<&DynoConfig>,
        pipe: PipelineHandle,
        stats: Arc<Stats>,
        status: Arc<StatusBoard>,
    ) -> Self {
        let aggregator = Aggregator::new(aggregator_config(config)).unwrap_or_else(|err| {
            tracing::error!("dogstatsd mappings ignored: {err}");
            Aggregator::without_mappings(aggregator_config(config))
        });
        let mut receiver = Receiver {
            endpoint: Endpoint::default(),
            udp: None,
            uds: None,
            aggregator,
            pipe,
            stats,
            status,
            kernel_drops_baseline: kernel_drops(Path::new("/proc/net/snmp")),
        };
        receiver.rebind(Endpoint::of(config));
        receiver
    }

    /// Where the receiver listens now.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// Binds what `endpoint` asks for and is not bound yet, and lets go of the rest.
    fn rebind(&mut self, endpoint: Endpoint) {
        if endpoint.port != self.endpoint.port {
            self.udp = None;
            if let Some(port) = endpoint.port {
                match bind_udp(port) {
                    Ok((socket, granted)) => {
                        tracing::info!(
                            "dogstatsd on udp 127.0.0.1:{port} (receive buffer {} KiB)",
                            granted / 1024
                        );
                        self.stats
                            .dogstatsd
                            .receive_buffer_bytes
                            .set(granted as u64);
                        self.udp = Some(socket);
                    }
                    Err(err) => tracing::error!(
                        "cannot receive DogStatsD on udp 127.0.0.1:{port}: {err}; \
                         set dogstatsd.port to a free port"
                    ),
                }
            }
        }
        if endpoint.socket != self.endpoint.socket {
            self.uds = None;
            if let Some(path) = &endpoint.socket {
                match bind_uds(path) {
                    Ok(socket) => {
                        tracing::info!("dogstatsd on unix socket {}", path.display());
                        self.uds = Some(socket);
                    }
                    Err(err) => tracing::error!(
                        "cannot receive DogStatsD on unix socket {}: {err}; \
                         check that its directory exists and is writable",
                        path.display()
                    ),
                }
            }
        }
        self.endpoint = endpoint;
        self.status.set_receiver(
            "dogstatsd",
            serde_json::json!({
                "udp": self.udp_addr().map(|a| a.to_string()),
                "socket": self.uds.as_ref().and(self.endpoint.socket.as_ref()),
            }),
        );
    }

    /// Receives until `shutdown` turns true, following config changes; then
    /// drains the sockets and flushes every bucket to the pipeline.
    pub async fn run(
        mut self,
        mut config: watch::Receiver<Option<Arc<DynoConfig>>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut udp_buf = vec![0u8; DATAGRAM_BYTES];
        let mut uds_buf = vec![0u8; DATAGRAM_BYTES];
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut following = true;
        loop {
            tokio::select! {
                biased;
                () = stopped(&mut shutdown) => break,
                n = recv_udp(self.udp.as_ref(), &mut udp_buf) => {
                    self.received(n, &udp_buf);
                    self.burst(&mut udp_buf);
                }
                n = recv_uds(self.uds.as_ref(), &mut uds_buf) => self.received(n, &uds_buf),
                _ = tick.tick() => self.flush(false),
                changed = config.changed(), if following => {
                    if changed.is_err() {
                        // The config's owner is gone: the sidecar is stopping.
                        following = false;
                        continue;
                    }
                    let next = config.borrow_and_update().clone();
                    self.reconfigure(next.as_deref());
                }
            }
        }
        self.drain(&mut udp_buf, &mut uds_buf);
        self.flush(true);
        if let Some(path) = self.uds.as_ref().and(self.endpoint.socket.as_ref()) {
            let _ = std::fs::remove_file(path);
        }
    }

    fn reconfigure(&mut self, config: Option<&DynoConfig>) {
        if let Err(err) = self.aggregator.reconfigure(aggregator_config(config)) {
            tracing::error!("dogstatsd mappings not applied, the previous ones stay: {err}");
        }
        let endpoint = Endpoint::of(config);
        if endpoint != self.endpoint {
            if self.endpoint.port.is_some() && endpoint.port.is_some() {
                tracing::warn!(
                    "dogstatsd moves to port {:?}; the app keeps sending to the \
                     DD_DOGSTATSD_PORT it started with until the dyno restarts",
                    endpoint.port
                );
            }
            self.rebind(endpoint);
        }
    }

    /// Reads what else is already queued on the UDP socket, up to [`BURST`] datagrams.
    fn burst(&mut self, buf: &mut [u8]) {
        for _ in 0..BURST {
            let Some(socket) = &self.udp else { return };
            match socket.try_recv(buf) {
                Ok(n) => self.handle(&buf[..n]),
                Err(_) => return,
            }
        }
    }

    /// Reads everything the kernel still holds, for shutdown.
    fn drain(&mut self, udp_buf: &mut [u8], uds_buf: &mut [u8]) {
        while let Some(Ok(n)) = self.udp.as_ref().map(|s| s.try_recv(udp_buf)) {
            self.handle(&udp_buf[..n]);
        }
        while let Some(Ok(n)) = self.uds.as_ref().map(|s| s.try_recv(uds_buf)) {
            self.handle(&uds_buf[..n]);
        }
    }

    fn received(&mut self, n: io::Result<usize>, buf: &[u8]) {
        match n {
            Ok(n) => self.handle(&buf[..n]),
            // ICMP errors and the like surface here; the socket stays usable.
            Err(err) => tracing::debug!("dogstatsd receive error: {err}"),
        }
    }

    /// One datagram; a panic inside is contained and counted.
    fn handle(&mut self, datagram: &[u8]) {
        let result = catch_unwind(AssertUnwindSafe(|| {
            handle_datagram(
                datagram,
                unix_now(),
                &mut self.aggregator,
                &self.pipe,
                &self.stats.dogstatsd,
            );
        }));
        if let Err(panic) = result {
            self.stats.dogstatsd.panics.inc();
            tracing::error!(
                "dogstatsd: a datagram of {} bytes made the receiver panic ({}); it was skipped",
                datagram.len(),
                pipeline::panic_message(panic.as_ref())
            );
        }
    }

    /// Sends the closed buckets (every bucket when `all`) to the pipeline.
    fn flush(&mut self, all: bool) {
        let result = catch_unwind(AssertUnwindSafe(|| {
            if all {
                self.aggregator.flush_all()
            } else {
                self.aggregator.flush(unix_now())
            }
        }));
        let flushed = match result {
            Ok(flushed) => flushed,
            Err(panic) => {
                self.stats.dogstatsd.panics.inc();
                tracing::error!(
                    "dogstatsd: the aggregator panicked while flushing ({})",
                    pipeline::panic_message(panic.as_ref())
                );
                Default::default()
            }
        };
        let stats = &self.stats.dogstatsd;
        stats.points_flushed.add(flushed.len() as u64);
        let counters = self.aggregator.stats();
        stats.contexts.set(counters.contexts as u64);
        stats.context_overflow.set(counters.context_overflow);
        stats.context_bytes.set(counters.bytes as u64);
        stats
            .timestamped_overflow
            .set(counters.timestamped_overflow);
        stats.mapped.set(counters.mapped);
        if let (Some(base), Some(now)) = (
            self.kernel_drops_baseline,
            kernel_drops(Path::new("/proc/net/snmp")),
        ) {
            stats.kernel_drops.set(now.saturating_sub(base));
        }
        if !flushed.points.is_empty() {
            self.pipe.send(Telemetry::Points(flushed.points));
        }
        if !flushed.sketches.is_empty() {
            self.pipe.send(Telemetry::Sketches(flushed.sketches));
        }
    }
}

/// Parses one datagram into the aggregator (metrics) and the pipeline (events, service checks).
pub fn handle_datagram(
    datagram: &[u8],
    now: i64,
    aggregator: &mut Aggregator,
    pipe: &PipelineHandle,
    stats: &DogStatsdStats,
) {
    stats.datagrams.inc();
    stats.bytes.add(datagram.len() as u64);
    for line in parser::lines(datagram) {
        match parser::parse_line(line) {
            Ok(Message::Metric(metric)) => {
                stats.metrics.inc();
                // Overflows are counted by the aggregator, copied at each flush.
                let _: Inserted = aggregator.insert(&metric, now);
            }
            Ok(Message::Event(event)) => {
                stats.events.inc();
                pipe.send(Telemetry::Event(event.to_telemetry(now)));
            }
            Ok(Message::ServiceCheck(check)) => {
                stats.service_checks.inc();
                pipe.send(Telemetry::ServiceCheck(check.to_telemetry(now)));
            }
            Err(err) => {
                if stats.parse_errors.inc(err.as_str()) {
                    let shown = &line[..line.len().min(120)];
                    tracing::warn!(
                        "dogstatsd: dropped a line the client sent: {err}: {:?}; further \
                         {} errors are only counted (dynoscope-sidecar status)",
                        String::from_utf8_lossy(shown),
                        err.as_str()
                    );
                }
            }
        }
    }
}

fn aggregator_config(config: Option<&DynoConfig>) -> AggregatorConfig {
    config.map_or_else(AggregatorConfig::default, |c| {
        AggregatorConfig::from_dogstatsd(&c.dogstatsd)
    })
}

async fn recv_udp(socket: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<usize> {
    match socket {
        Some(socket) => socket.recv(buf).await,
        None => std::future::pending().await,
    }
}

async fn recv_uds(socket: Option<&UnixDatagram>, buf: &mut [u8]) -> io::Result<usize> {
    match socket {
        Some(socket) => socket.recv(buf).await,
        None => std::future::pending().await,
    }
}

/// A non-blocking UDP socket on 127.0.0.1:`port` with a large receive
/// buffer; returns it with the buffer size the kernel granted.
/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn bind_udp(port: u16) -> io::Result<(UdpSocket, usize)> {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    let socket = std::net::UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.set_nonblocking(true)?;
    // Forcing past rmem_max needs CAP_NET_ADMIN; without it, ask within the cap.
    if setsockopt(&socket, sockopt::RcvBufForce, &RECEIVE_BUFFER_BYTES).is_err() {
        let _ = setsockopt(&socket, sockopt::RcvBuf, &RECEIVE_BUFFER_BYTES);
    }
    let granted = getsockopt(&socket, sockopt::RcvBuf).unwrap_or(0);
    Ok((UdpSocket::from_std(socket)?, granted))
}

/// A unix datagram socket at `path`, replacing a stale one a previous run left.
fn bind_uds(path: &Path) -> io::Result<UnixDatagram> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    UnixDatagram::bind(path)
}

/// `RcvbufErrors` of the `Udp:` lines of `/proc/net/snmp`.
pub fn kernel_drops(snmp: &Path) -> Option<u64> {
    parse_rcvbuf_errors(&std::fs::read_to_string(snmp).ok()?)
}

fn parse_rcvbuf_errors(text: &str) -> Option<u64> {
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let header = udp.next()?;
    let values = udp.next()?;
    let column = header
        .split_whitespace()
        .position(|h| h == "RcvbufErrors")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcvbuf_errors_are_read_from_the_udp_lines_of_snmp() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
            Udp: 100 2 7 50 5 0\n\
            UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
            UdpLite: 0 0 0 0 0 0\n";
        assert_eq!(parse_rcvbuf_errors(snmp), Some(5));
        assert_eq!(parse_rcvbuf_errors("Ip: 1\n"), None);
    }

    #[test]
    fn the_endpoint_is_empty_when_dogstatsd_is_off() {
        assert_eq!(Endpoint::of(None), Endpoint::default());
    }
}
