//! `/status` end to end: the real sidecar with a jsonl sink, a passing Redis
//! check and a failing Postgres check, read by `dynoscope-sidecar status`;
//! and the admin port closing connections that idle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dynoscope_crds::sidecar_status::{CheckState, SidecarStatus};
use dynoscope_tests::harness::{render, sidecar_status, Sidecar};
use dynoscope_tests::servers::{free_port, Redis, RedisOptions};
use dynoscope_tests::{bin, wait_for};

const PATIENCE: Duration = Duration::from_secs(20);

/// `dynoscope-sidecar status --admin 127.0.0.1:<admin> [extra]`'s output.
fn status_command(admin: u16, extra: &[&str]) -> String {
    let out = Command::new(bin("dynoscope-sidecar"))
        .args(["status", "--admin", &format!("127.0.0.1:{admin}")])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn write_config(dir: &Path, spec: &str) -> String {
    let path = dir.join("web.1.yaml");
    std::fs::write(&path, render(spec)).unwrap();
    path.display().to_string()
}

#[test]
fn the_status_command_lists_each_receiver_sink_and_check_with_their_counters() {
    let redis = Redis::start(RedisOptions::default());
    let closed = free_port();
    let (admin, statsd) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("telemetry.jsonl");
    let config = write_config(
        dir.path(),
        &format!(
            "  admin: {{port: {admin}}}\n  apm: {{enabled: false}}\n  dogstatsd: {{port: {statsd}}}\n  \
             processMetrics: {{enabled: false}}\n  \
             integrations:\n  - {{type: redis, urlFrom: REDIS_URL, interval: 1s}}\n  \
             - {{type: postgres, urlFrom: DATABASE_URL, interval: 1s}}\n  \
             sinks: [{{type: jsonl, path: {}}}]\n",
            jsonl.display()
        ),
    );
    let database_url = format!("postgres://app@127.0.0.1:{closed}/app");
    let _sidecar = Sidecar::start(
        dir.path(),
        &["run", "--config", &config, "--", "sleep", "60"],
        &[
            ("REDIS_URL", &redis.url(0)),
            ("DATABASE_URL", &database_url),
        ],
    );
    wait_for(PATIENCE, "the dogstatsd receiver", || {
        sidecar_status(admin).filter(|s| s.receivers.contains_key("dogstatsd"))
    });
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for line in ["shop.orders:1|c", "shop.orders:x|c"] {
        udp.send_to(line.as_bytes(), ("127.0.0.1", statsd)).unwrap();
    }

    // Both checks have run, and the sink has written the Redis points.
    let status = wait_for(PATIENCE, "both checks run and points written", || {
        let status = sidecar_status(admin)?;
        let state = |kind: &str| {
            status
                .checks
                .iter()
                .find(|c| c.kind == kind)
                .map(|c| c.state())
        };
        let written = status
            .sinks
            .iter()
            .any(|s| s.kind == "jsonl" && s.sent.points > 0);
        let parsed = status.receivers["dogstatsd"].errors.get("bad_value") == Some(&1);
        (state("redis") == Some(CheckState::Ok)
            && state("postgres") == Some(CheckState::Failing)
            && written
            && parsed)
            .then_some(status)
    });

    let text = status_command(admin, &[]);
    println!("{text}");
    let sink = status.sinks.iter().find(|s| s.kind == "jsonl").unwrap();
    let sink_title = format!("jsonl {}", jsonl.display());
    assert_eq!(sink.name, sink_title);
    for want in [
        format!(
            "Sinks\n=====\n\n  {sink_title}\n  {}\n    Sent: ",
            "-".repeat(sink_title.len())
        ),
        "    Errors: none\n    Dropped: none\n    Rejected: none\n    Buffer: ".to_owned(),
        format!("  dogstatsd\n  ---------\n    Listening: udp 127.0.0.1:{statsd}\n"),
        "    Errors: bad_value 1\n".to_owned(),
        format!(
            "  redis\n  -----\n    Type: redis\n    Instance: redis://127.0.0.1:{}",
            redis.port
        ),
        "    Status: OK\n".to_owned(),
        "  postgres\n  --------\n    Type: postgres\n    Instance: ".to_owned(),
        "    Status: FAILING (".to_owned(),
        format!("    Last error: cannot connect to 127.0.0.1:{closed}"),
        "Config\n======\n  Source: file ".to_owned(),
        "  Observability: on\n".to_owned(),
        "App\n===\n".to_owned(),
        "  Command: sleep 60\n".to_owned(),
    ] {
        assert!(text.contains(&want), "want\n{want}\nin\n{text}");
    }
    // The sink's line carries its counters, as the model has them (they only grow).
    let sent_line = text
        .lines()
        .skip_while(|l| !l.contains(&sink_title))
        .find(|l| l.trim_start().starts_with("Sent: "))
        .unwrap();
    let points: u64 = sent_line
        .trim_start()
        .trim_start_matches("Sent: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(points >= sink.sent.points, "{sent_line}");
    let redis_runs = text
        .lines()
        .skip_while(|l| !l.starts_with("  redis"))
        .find(|l| l.trim_start().starts_with("Runs: "))
        .unwrap();
    assert!(!redis_runs.contains("Runs: 0,"), "{redis_runs}");

    // `--json` is the same model.
    let json: SidecarStatus = serde_json::from_str(&status_command(admin, &["--json"])).unwrap();
    assert_eq!(json.checks.len(), 2);
    assert!(json.sinks.iter().any(|s| s.name == sink_title));
}

#[test]
fn the_admin_port_closes_idle_and_slow_connections() {
    let admin = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "  admin: {{port: {admin}}}\n  apm: {{enabled: false}}\n  dogstatsd: {{enabled: false}}\n  \
             processMetrics: {{enabled: false}}\n  sinks: [{{type: jsonl, path: out.jsonl}}]\n"
        ),
    );
    let _sidecar = Sidecar::start(
        dir.path(),
        &["run", "--config", &config, "--", "sleep", "60"],
        &[("DYNOSCOPE_IDLE_TIMEOUT_MS", "300")],
    );
    wait_for(PATIENCE, "/status", || sidecar_status(admin));

    // Idle connections, and one that stops half-way through its request.
    let mut open: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", admin)).unwrap())
        .collect();
    std::io::Write::write_all(&mut open[0], b"GET /status HTTP/1.1\r\nHo").unwrap();
    let start = Instant::now();
    for stream in &mut open {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut said = Vec::new();
        let read = stream.read_to_end(&mut said);
        assert!(read.is_ok(), "still open after 5 s: {read:?}");
        assert!(
            !String::from_utf8_lossy(&said).contains("200 OK"),
            "answered a partial request"
        );
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    // … and the endpoint still answers.
    assert!(sidecar_status(admin).is_some());
}
