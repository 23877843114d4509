#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `dynoscope-sidecar drain`, the real process, fed Logplex bodies in the
//! captured format (../shared/HEROKU.md §1–3): several frames a body, both
//! header spellings and both methods, a retried Frame-Id (counted once), bad
//! credentials (401), a malformed frame among good ones (the good ones
//! count), a body over the limit (413) → the `heroku.*` points, sketches,
//! events and log records in jsonl, with exact values and tags.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use dynoscope_tests::harness::{read, render, status_of, Sidecar};
use dynoscope_tests::intake::request;
use dynoscope_tests::servers::free_port;
use dynoscope_tests::wait_for;
use nix::sys::signal::Signal;
use serde_json::Value;

/// One octet-counted frame of an RFC 5424 line without structured data.
fn frame(pri: u8, time: &str, app: &str, proc_id: &str, message: &str) -> String {
    let line = format!("<{pri}>1 {time} host {app} {proc_id} - {message}\n");
    format!("{} {line}", line.len())
}

fn jsonl_of(path: &Path, kind: &str) -> Vec<Value> {
    read(path)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["kind"] == kind)
        .collect()
}

fn has_tags(item: &Value, tags: &[&str]) -> bool {
    let have: Vec<&str> = item["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    tags.iter().all(|t| have.contains(t))
}

/// Σ value × interval of the count points named `name` with `tags`: the count itself.
fn total(points: &[Value], name: &str, tags: &[&str]) -> f64 {
    points
        .iter()
        .filter(|p| p["name"] == name && has_tags(p, tags))
        .map(|p| {
            let value = p["value"].as_f64().unwrap();
            match p["type"].as_str() {
                Some("rate") => value * p["interval"].as_f64().unwrap(),
                _ => value,
            }
        })
        .sum()
}

fn gauge(points: &[Value], name: &str, tags: &[&str]) -> Value {
    points
        .iter()
        .find(|p| p["name"] == name && has_tags(p, tags))
        .cloned()
        .unwrap_or_else(|| panic!("no {name} {tags:?} among {points:#?}"))
}

/// A running `dynoscope-sidecar drain` on a config rendered from `spec`
/// (its `sinks` a jsonl file appended here), with `env`.
struct Drain {
    process: Sidecar,
    port: u16,
    admin: u16,
    jsonl: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drain {
    fn start(spec: &str, env: &[(&str, &str)]) -> Drain {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("out.jsonl");
        let (port, admin) = (free_port(), free_port());
        let config = dir.path().join("drain.yaml");
        let sinks = format!("  sinks:\n  - {{type: jsonl, path: {}}}\n", jsonl.display());
        std::fs::write(&config, render(&format!("{spec}{sinks}"))).unwrap();
        let process = Sidecar::start(
            dir.path(),
            &[
                "drain",
                "--config",
                config.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin-port",
                &admin.to_string(),
            ],
            env,
        );
        wait_for(Duration::from_secs(10), "the drain's /status", || {
            status_of(admin)
        });
        Drain {
            process,
            port,
            admin,
            jsonl,
            _dir: dir,
        }
    }

    /// SIGTERM: the drain flushes its buckets and sinks and exits 0.
    fn stop(&mut self) {
        self.process.signal(Signal::SIGTERM);
        assert_eq!(
            self.process.wait(Duration::from_secs(10)),
            0,
            "{}",
            self.process.stderr()
        );
    }
}

#[test]
fn logplex_bodies_become_heroku_metrics_events_and_records() {
    let mut drain = Drain::start(
        "  env: production\n  drain:\n    basicAuth: {username: heroku, password: {fromEnv: DRAIN_PASSWORD}}\n    \
         tokens: [{fromEnv: DRAIN_TOKEN}]\n    routes: ['/orders/:id']\n    maxBodyBytes: 64Ki\n",
        &[("DRAIN_PASSWORD", "s3cret"), ("DRAIN_TOKEN", "d.fc6b856b")],
    );
    let (port, admin, jsonl) = (drain.port, drain.admin, drain.jsonl.clone());

    let t = "2024-05-01T10:00:00.250000+00:00";
    let router = |dyno: &str, path: &str, service: u32| {
        frame(
            158,
            t,
            "heroku",
            "router",
            &format!(
                "at=info method=GET path=\"{path}\" host=shop.herokuapp.com request_id=r-{service} \
                 fwd=\"10.0.0.1\" dyno={dyno} connect=1ms service={service}ms status=200 bytes=1000 protocol=https"
            ),
        )
    };
    let body = [
        router("web.1", "/orders/1?x=1", 20),
        router("web.2", "/orders/2", 40),
        frame(158, t, "heroku", "router", "at=error code=H12 desc=\"Request timeout\" method=POST path=\"/cart\" host=shop.herokuapp.com request_id=r-x fwd=\"10.0.0.1\" dyno=web.1 connect=0ms service=30001ms status=503 bytes=0 protocol=https"),
        // Not a frame: counted, and the frames after it are kept.
        "this is not a frame\n".to_owned(),
        frame(134, t, "heroku", "web.1", "source=web.1 dyno=heroku.1.d97d0ea7 sample#memory_total=530.00MB sample#memory_rss=520.10MB sample#memory_cache=9.9MB sample#memory_swap=0.00MB sample#memory_pgpgin=348836pages sample#memory_pgpgout=343403pages sample#memory_quota=512.00MB"),
        frame(134, t, "heroku", "web.1", "source=web.1 dyno=heroku.1.d97d0ea7 sample#load_avg_1m=2.46 sample#load_avg_5m=1.06 sample#load_avg_15m=0.99"),
        frame(134, t, "heroku", "web.1", "Process running mem=530M(103.5%)"),
        frame(134, t, "heroku", "web.1", "Error R14 (Memory quota exceeded)"),
        frame(134, t, "heroku", "worker.1", "State changed from up to crashed"),
        frame(134, t, "app", "heroku-postgres", "source=DATABASE addon=postgresql-opaque-12345 sample#db_size=147391814791bytes sample#active-connections=41 sample#memory-total=31328356kB sample#index-cache-hit-rate=0.99625"),
        frame(134, t, "app", "heroku-redis", "source=REDIS addon=redis-metric-98068 sample#active-connections=404 sample#memory-redis=343477584bytes sample#hit-rate=0.7"),
        frame(134, t, "heroku", "api", "Release v42 created by dev@example.com"),
        frame(190, t, "app", "web.1", "ERROR payment failed [dd.service=shop dd.env=production dd.version=v42 dd.trace_id=1234 dd.span_id=5678]"),
    ]
    .concat();
    let count = "12";
    let basic = "Basic aGVyb2t1OnMzY3JldA=="; // heroku:s3cret
    let path = "/logs?ddtags=team:pay,region:eu&service=shop";
    let logplex = |auth: (&'static str, &'static str), frame_id: &'static str| {
        vec![
            ("Content-Type", "application/logplex-1"),
            ("Logplex-Msg-Count", count),
            ("Logplex-Frame-Id", frame_id),
            ("User-Agent", "Logplex/v49"),
            auth,
        ]
    };

    // Bad credentials: 401, nothing taken.
    let wrong = request(
        port,
        "POST",
        path,
        &logplex(("Authorization", "Basic aGVyb2t1Om5vcGU="), "F0"),
        body.as_bytes(),
    );
    assert_eq!(wrong.map(|r| r.0), Some(401));
    let none = request(
        port,
        "POST",
        path,
        &[("Content-Type", "application/logplex-1")],
        body.as_bytes(),
    );
    assert_eq!(none.map(|r| r.0), Some(401));

    // The batch, then Logplex's retry of it with the same Frame-Id — the
    // older spelling (`PUT`, `x-logplex-*`, a drain token): 200, counted once.
    let first = request(
        port,
        "POST",
        path,
        &logplex(("Authorization", basic), "09C557EAFCFB6CF2740EE62F62971098"),
        body.as_bytes(),
    );
    assert_eq!(first.map(|r| r.0), Some(200));
    let retry = request(
        port,
        "PUT",
        path,
        &[
            ("content-type", "application/x-logplex-1"),
            ("x-logplex-msg-count", count),
            ("x-logplex-frame-id", "09C557EAFCFB6CF2740EE62F62971098"),
            ("logplex-drain-token", "d.fc6b856b"),
        ],
        body.as_bytes(),
    );
    assert_eq!(retry.map(|r| r.0), Some(200));

    // Over maxBodyBytes: 413, which Logplex drops rather than retries.
    let huge = frame(190, t, "app", "web.1", &"x".repeat(70 << 10));
    let too_large = request(
        port,
        "POST",
        "/logs",
        &logplex(("Authorization", basic), "F2"),
        huge.as_bytes(),
    );
    assert_eq!(too_large.map(|r| r.0), Some(413));

    let status = status_of(admin).unwrap();
    let drain_counters = &status["counters"]["drain"];
    assert_eq!(drain_counters["duplicate_frames"], 1, "{drain_counters:#}");
    assert_eq!(drain_counters["messages"], 12, "{drain_counters:#}");
    assert_eq!(
        drain_counters["malformed_frames"]["no_length"], 1,
        "{drain_counters:#}"
    );
    assert_eq!(
        drain_counters["refused"]["unauthorized"], 2,
        "{drain_counters:#}"
    );
    assert_eq!(
        drain_counters["refused"]["too_large"], 1,
        "{drain_counters:#}"
    );
    assert_eq!(drain_counters["lines"]["router"], 3, "{drain_counters:#}");
    assert_eq!(
        drain_counters["msg_count_mismatch"], 0,
        "{drain_counters:#}"
    );

    // SIGTERM flushes the open buckets and the pipeline, and exits 0.
    drain.stop();

    let points = jsonl_of(&jsonl, "point");
    let base = ["team:pay", "region:eu", "env:production"];
    assert!(
        points
            .iter()
            .all(|p| !has_tags(p, &["dyno:web.1", "dynotype:web"])
                || p["tags"].to_string().matches("dyno:").count() == 1),
        "the drain's own dyno tag is not added to the lines' dynos: {points:#?}"
    );
    assert!(
        points.iter().all(|p| has_tags(p, &base)),
        "every point has the URL's ddtags and the env: {points:#?}"
    );
    // Router: 3 requests, not 6 (the retry was counted once).
    assert_eq!(total(&points, "heroku.router.request", &[]), 3.0);
    assert_eq!(
        total(
            &points,
            "heroku.router.request",
            &[
                "dyno:web.1",
                "dynotype:web",
                "method:GET",
                "status:200",
                "status_class:2xx",
                "protocol:https",
                "path:/orders/:id"
            ]
        ),
        1.0
    );
    assert_eq!(
        total(&points, "heroku.router.request", &["status_class:5xx"]),
        1.0
    );
    assert!(
        points
            .iter()
            .filter(|p| p["name"] == "heroku.router.request")
            .all(|p| !p["tags"].to_string().contains("path:/cart")),
        "no raw paths"
    );
    assert_eq!(
        total(&points, "heroku.router.error", &["code:H12", "dyno:web.1"]),
        1.0
    );
    assert_eq!(total(&points, "heroku.router.bytes", &[]), 2000.0);
    let service: Vec<Value> = jsonl_of(&jsonl, "sketch")
        .into_iter()
        .filter(|s| s["name"] == "heroku.router.service")
        .collect();
    let counted: u64 = service.iter().map(|s| s["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 3, "{service:#?}");
    assert_eq!(
        service
            .iter()
            .map(|s| s["max"].as_f64().unwrap())
            .fold(0.0, f64::max),
        30001.0
    );

    // Runtime metrics: bytes (MB = MiB) with the line's own time; pages as they are.
    let quota = gauge(
        &points,
        "heroku.dyno.memory.quota",
        &["dyno:web.1", "dynotype:web"],
    );
    assert_eq!(quota["value"], 512.0 * 1024.0 * 1024.0);
    assert_eq!(quota["timestamp"], 1_714_557_600);
    assert_eq!(
        gauge(&points, "heroku.dyno.memory.total", &["dyno:web.1"])["value"],
        530.0 * 1048576.0
    );
    assert_eq!(
        gauge(&points, "heroku.dyno.memory.pgpgin", &["dyno:web.1"])["value"],
        348836.0
    );
    assert_eq!(
        gauge(&points, "heroku.dyno.load.15m", &["dyno:web.1"])["value"],
        0.99
    );
    assert_eq!(
        total(&points, "heroku.dyno.error", &["code:R14", "dyno:web.1"]),
        1.0
    );
    assert_eq!(
        total(
            &points,
            "heroku.dyno.error",
            &["code:crashed", "dyno:worker.1", "dynotype:worker"]
        ),
        1.0
    );

    // Add-ons: units converted, `-` in keys as `_`, tagged source and addon.
    let pg = ["source:DATABASE", "addon:postgresql-opaque-12345"];
    assert_eq!(
        gauge(&points, "heroku.postgres.db_size", &pg)["value"],
        147_391_814_791.0
    );
    assert_eq!(
        gauge(&points, "heroku.postgres.memory_total", &pg)["value"],
        31_328_356.0 * 1024.0
    );
    assert_eq!(
        gauge(&points, "heroku.postgres.active_connections", &pg)["value"],
        41.0
    );
    assert_eq!(
        gauge(&points, "heroku.redis.memory_redis", &["source:REDIS"])["value"],
        343_477_584.0
    );

    // Events: the H12, the R14, the crash, the release.
    let events = jsonl_of(&jsonl, "event");
    let titles: BTreeMap<String, Value> = events
        .iter()
        .map(|e| (e["title"].as_str().unwrap().to_owned(), e.clone()))
        .collect();
    assert!(
        titles.contains_key("Heroku router H12 (Request timeout)"),
        "{titles:#?}"
    );
    assert!(
        titles.contains_key("Error R14 (Memory quota exceeded) on web.1"),
        "{titles:#?}"
    );
    assert!(titles.contains_key("worker.1 crashed"), "{titles:#?}");
    let release = &titles["Release v42 created by dev@example.com"];
    assert!(
        has_tags(release, &["kind:release", "release:v42"]),
        "{release:#}"
    );
    assert_eq!(
        events.len(),
        4,
        "each once, the retry not counted: {events:#?}"
    );

    // The app's line: a record with its dyno, status and trace (default `logs: app`).
    let logs = jsonl_of(&jsonl, "log");
    assert_eq!(logs.len(), 1, "{logs:#?}");
    let log = &logs[0];
    assert_eq!(log["status"], "error", "{log:#}");
    assert_eq!(log["dd"]["trace_id"], "1234", "{log:#}");
    assert_eq!(log["service"], "shop", "{log:#}");
    let ddtags: Vec<&str> = log["ddtags"].as_str().unwrap().split(',').collect();
    for tag in ["dyno:web.1", "dynotype:web", "team:pay", "env:production"] {
        assert!(ddtags.contains(&tag), "{tag} in {ddtags:?}");
    }
}

/// The README's drain example, as written: its manifest (with a jsonl sink
/// in place of the datadog one) run by `drain --manifest`, and its `curl`
/// lines posting a frame.
#[test]
fn the_readme_example_runs() {
    let readme = read(&dynoscope_tests::repo_root().join("README.md"));
    let section = readme
        .split("\n## Heroku's log drains")
        .nth(1)
        .unwrap_or_else(|| panic!("README.md has no drain section"));
    let block = |fence: &str, nth: usize| {
        section
            .split(fence)
            .nth(nth)
            .and_then(|rest| rest.split("\n```").next())
            .unwrap_or_else(|| panic!("the drain section has no {fence} block {nth}"))
            .to_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("out.jsonl");
    let manifest = block("```yaml\n", 1).replace(
        "    - {type: datadog, apiKey: {fromEnv: DD_API_KEY}}",
        &format!("    - {{type: jsonl, path: {}}}", jsonl.display()),
    );
    assert!(manifest.contains("type: jsonl"), "{manifest}");
    std::fs::write(dir.path().join("observability.yaml"), &manifest).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut drain = Sidecar::start(
        dir.path(),
        &[
            "drain",
            "--manifest",
            "observability.yaml",
            "--listen",
            &listen,
            "--admin-port",
            "0",
        ],
        &[("DRAIN_PASSWORD", "s3cret"), ("DRAIN_TOKEN", "d.1")],
    );
    // The example's `line=` and `printf … | curl …` lines, to our port.
    let script: String = block("```sh\n", 2)
        .lines()
        .skip_while(|l| !l.starts_with("line="))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("127.0.0.1:8130", &listen);
    wait_for(Duration::from_secs(10), "the drain to listen", || {
        std::net::TcpStream::connect(&listen).ok()
    });
    let ran = std::process::Command::new("bash")
        .args([
            "-euo",
            "pipefail",
            "-c",
            &format!("{script}\necho \" status=$?\""),
        ])
        .output()
        .unwrap_or_else(|e| panic!("bash: {e}"));
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    drain.signal(Signal::SIGTERM);
    assert_eq!(drain.wait(Duration::from_secs(10)), 0, "{}", drain.stderr());
    let points = jsonl_of(&jsonl, "point");
    assert_eq!(
        total(
            &points,
            "heroku.router.request",
            &["dyno:web.1", "env:production"]
        ),
        1.0,
        "{points:#?}\n{}",
        drain.stderr()
    );
}

/// Heroku Fir's telemetry drains post OTLP/HTTP (`heroku telemetry:add URL
/// --headers '{"Authorization":"Bearer …"}'`): the same drain takes it on
/// `/v1/*` behind the same credentials, into the same sinks.
#[test]
fn fir_telemetry_drains_post_otlp_with_the_drains_token() {
    let mut drain = Drain::start(
        "  drain: {tokens: [{fromEnv: DRAIN_TOKEN}]}\n",
        &[("DRAIN_TOKEN", "t0ken")],
    );
    let (port, jsonl) = (drain.port, drain.jsonl.clone());
    let logs = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},"scopeLogs":[{"scope":{},"logRecords":[{"timeUnixNano":"1714557600000000000","severityText":"ERROR","severityNumber":17,"body":{"stringValue":"payment failed"},"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}]}"#;
    let metrics = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},"scopeMetrics":[{"scope":{},"metrics":[{"name":"fir.queue.depth","gauge":{"dataPoints":[{"timeUnixNano":"1714557600000000000","asDouble":42.5}]}}]}]}]}"#;
    let json = ("Content-Type", "application/json");
    let without = request(port, "POST", "/v1/logs", &[json], logs.as_bytes());
    assert_eq!(without.map(|r| r.0), Some(401));
    let bearer = ("Authorization", "Bearer t0ken");
    for (path, body) in [("/v1/logs", logs), ("/v1/metrics", metrics)] {
        let answer = request(port, "POST", path, &[json, bearer], body.as_bytes());
        assert_eq!(
            answer.as_ref().map(|r| r.0),
            Some(200),
            "{path}: {answer:?}"
        );
    }
    drain.stop();
    let records = jsonl_of(&jsonl, "log");
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["message"], "payment failed");
    assert_eq!(records[0]["status"], "error");
    assert_eq!(
        records[0]["dd"]["trace_id"],
        "5b8efff798038103d269b633813fc60c"
    );
    let depth = gauge(&jsonl_of(&jsonl, "point"), "fir.queue.depth", &[]);
    assert_eq!(depth["value"], 42.5);
}
