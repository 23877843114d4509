//! Datadog fidelity (issue 14), with the real sidecar binary fed over
//! DogStatsD UDP: a distribution reaches Datadog as the Agent's sketch, OTLP
//! gets monotonic counts and exponential histograms, and a scrape of the
//! Prometheus sink passes `promtool check metrics`. Every payload is decoded
//! here, independently of the code that wrote it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use dynoscope_tests::harness::{decode_with_python, python, render, status_of, Sidecar};
use dynoscope_tests::intake::{get, Intake};
use dynoscope_tests::servers::free_port;
use dynoscope_tests::wait_for;
use serde_json::Value;

const KEY: &str = "dd-test-key-5a1e7c90";
/// Values of the distribution: 0.731, 1.462, … 7310.
const VALUES: usize = 10_000;

/// Decodes `SketchPayload` bodies with a decoder generated at test time from
/// `tests/proto/agent_payload.proto` (DataDog/agent-payload's schema; its
/// origin and license are in the file) by `protoc` (Debian's
/// `protobuf-compiler`) and Python's `protobuf`: nothing of the sidecar's
/// own encoder. Prints one object per sketch.
const DECODE_SKETCHES: &str = r#"
import json, os, subprocess, sys, tempfile
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
proto_dir = "PROTO_DIR"
with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "set.pb")
    try:
        subprocess.run(["protoc", "--proto_path", proto_dir, "--descriptor_set_out", out,
                        "agent_payload.proto"], check=True)
    except FileNotFoundError:
        sys.exit("protoc is missing: install Debian's protobuf-compiler (scripts/test.sh does)")
    files = descriptor_pb2.FileDescriptorSet.FromString(open(out, "rb").read())
pool = descriptor_pool.DescriptorPool()
for f in files.file:
    pool.Add(f)
SketchPayload = message_factory.GetMessageClass(
    pool.FindMessageTypeByName("datadog.agentpayload.SketchPayload"))
sketches = []
for path in sys.argv[1:]:
    payload = SketchPayload.FromString(open(path, "rb").read())
    for s in payload.sketches:
        origin = s.metadata.origin
        sketches.append({
            "metric": s.metric, "host": s.host, "tags": list(s.tags),
            "distributions": len(s.distributions),
            "origin": [origin.origin_product, origin.origin_category, origin.origin_service]
                      if s.HasField("metadata") and s.metadata.HasField("origin") else None,
            "dogsketches": [{"ts": d.ts, "cnt": d.cnt, "min": d.min, "max": d.max, "avg": d.avg,
                             "sum": d.sum, "k": list(d.k), "n": list(d.n)}
                            for d in s.dogsketches]})
print(json.dumps(sketches))
"#;

/// The sketches of recorded bodies, decoded by [`DECODE_SKETCHES`].
fn decode_sketches(bodies: &[&[u8]]) -> Vec<Value> {
    let proto_dir = dynoscope_tests::repo_root().join("tests/proto");
    let script = DECODE_SKETCHES.replace("PROTO_DIR", &proto_dir.display().to_string());
    serde_json::from_value(decode_with_python(&script, bodies)).unwrap()
}

fn values() -> Vec<f64> {
    (1..=VALUES).map(|i| i as f64 * 0.731).collect()
}

/// The Agent's key of `v > 0`, from the formula in PROTOCOLS.md §5:
/// round half to even of `ln v / ln γ` (γ = 1 + 2/128), plus 1338.
fn agent_key(v: f64) -> i32 {
    let x = v.ln() / (2.0f64 / 128.0).ln_1p();
    let floor = x.floor();
    let rounded = match x - floor {
        d if d < 0.5 => floor,
        d if d > 0.5 => floor + 1.0,
        _ if floor % 2.0 == 0.0 => floor,
        _ => floor + 1.0,
    };
    rounded as i32 + 1338
}

/// A dyno whose sidecar receives DogStatsD on `statsd` and has `sinks`.
struct Dyno {
    _dir: tempfile::TempDir,
    statsd: u16,
    admin: u16,
    _sidecar: Sidecar,
}

impl Dyno {
    fn start(sinks: &str) -> Dyno {
        let dir = tempfile::tempdir().unwrap();
        let (statsd, admin) = (free_port(), free_port());
        let spec = format!(
            "  admin: {{port: {admin}}}\n  apm: {{enabled: false}}\n  dogstatsd: {{port: {statsd}}}\n  \
             processMetrics: {{enabled: false}}\n  sinks:\n{sinks}"
        );
        let config = dir.path().join("dyno.yaml");
        std::fs::write(&config, render(&spec)).unwrap();
        let sidecar = Sidecar::start(
            dir.path(),
            &[
                "run",
                "--config",
                config.to_str().unwrap(),
                "--",
                "sh",
                "-c",
                "sleep 600",
            ],
            &[("DD_API_KEY", KEY)],
        );
        wait_for(Duration::from_secs(10), "the sidecar's /status", || {
            status_of(admin)
        });
        Dyno {
            _dir: dir,
            statsd,
            admin,
            _sidecar: sidecar,
        }
    }

    /// Sends `lines` in datagrams of up to 1400 bytes, then waits until the
    /// receiver parsed every line (UDP may drop; the test must not guess).
    fn send(&self, lines: &[String]) {
        let before = self.parsed();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut datagram = String::new();
        for line in lines {
            if !datagram.is_empty() && datagram.len() + line.len() + 1 > 1400 {
                socket
                    .send_to(datagram.as_bytes(), ("127.0.0.1", self.statsd))
                    .unwrap();
                datagram.clear();
                // Paced, so the kernel's receive buffer never overflows.
                std::thread::sleep(Duration::from_micros(200));
            }
            datagram.push_str(line);
            datagram.push('\n');
        }
        socket
            .send_to(datagram.as_bytes(), ("127.0.0.1", self.statsd))
            .unwrap();
        let want = before + lines.len() as u64;
        wait_for(Duration::from_secs(10), "every line parsed", || {
            (self.parsed() >= want).then_some(())
        });
    }

    fn parsed(&self) -> u64 {
        status_of(self.admin)
            .and_then(|s| s["counters"]["dogstatsd"]["metrics"].as_u64())
            .unwrap_or(0)
    }
}

/// The distribution's values as DogStatsD lines, 100 values a line (protocol 1.1).
fn distribution_lines(name: &str) -> Vec<String> {
    values()
        .chunks(100)
        .map(|chunk| {
            let values: Vec<String> = chunk.iter().map(f64::to_string).collect();
            format!("{name}:{}|d|#route:cart", values.join(":"))
        })
        .collect()
}

#[test]
fn a_distribution_reaches_datadog_as_the_agents_sketch_with_its_keys_and_quantiles() {
    let intake = Intake::start();
    let dyno = Dyno::start(&format!(
        "  - {{type: datadog, apiKey: {{fromEnv: DD_API_KEY}}, endpoint: \"{}\"}}\n",
        intake.url
    ));
    dyno.send(&distribution_lines("shop.payload"));

    // The 10 s bucket closes, then the batch goes out: the values may straddle
    // two buckets, and Datadog merges sketches by key, so the test does too.
    let sketches = wait_for(Duration::from_secs(25), "every value in sketches", || {
        let requests = intake.accepted("/api/beta/sketches");
        let bodies: Vec<&[u8]> = requests.iter().map(|r| r.body.as_slice()).collect();
        let sketches: Vec<Value> = decode_sketches(&bodies)
            .into_iter()
            .filter(|s| s["metric"] == "shop.payload")
            .collect();
        let count: i64 = sketches
            .iter()
            .flat_map(|s| s["dogsketches"].as_array().unwrap())
            .map(|d| d["cnt"].as_i64().unwrap())
            .sum();
        (count == VALUES as i64).then_some((sketches, requests))
    });
    let (sketches, requests) = sketches;
    for request in &requests {
        assert_eq!(
            request.header("content-type"),
            Some("application/x-protobuf")
        );
    }
    let mut merged: BTreeMap<i32, u64> = BTreeMap::new();
    let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
    let numbers = |v: &Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_i64().unwrap())
            .collect()
    };
    for sketch in &sketches {
        assert_eq!(sketch["host"], "shop.web.1");
        assert_eq!(sketch["distributions"], 0, "only dogsketches");
        // What the Agent writes: product 10 (Agent), category 10 (DogStatsD), service 0.
        assert_eq!(sketch["origin"], serde_json::json!([10, 10, 0]), "{sketch}");
        let tags = sketch["tags"].as_array().unwrap();
        for tag in ["route:cart", "dyno:web.1", "dynotype:web"] {
            assert!(tags.iter().any(|t| t == tag), "{tag}: {tags:?}");
        }
        let dogsketches = sketch["dogsketches"].as_array().unwrap();
        assert_eq!(dogsketches.len(), 1, "one bucket a sketch");
        for d in dogsketches {
            let (k, n) = (numbers(&d["k"]), numbers(&d["n"]));
            let cnt = d["cnt"].as_i64().unwrap();
            let [d_min, d_max, d_avg, d_sum] =
                ["min", "max", "avg", "sum"].map(|f| d[f].as_f64().unwrap());
            assert_eq!(d["ts"].as_i64().unwrap() % 10, 0, "the bucket's start");
            assert_eq!(k.len(), n.len());
            assert_eq!(n.iter().sum::<i64>(), cnt);
            assert!((d_avg - d_sum / cnt as f64).abs() < 1e-9 * d_avg);
            assert!(k.windows(2).all(|w| w[0] <= w[1]), "keys sorted");
            (min, max, sum) = (min.min(d_min), max.max(d_max), sum + d_sum);
            for (k, n) in k.iter().zip(&n) {
                *merged.entry(*k as i32).or_default() += *n as u64;
            }
        }
    }
    let values = values();
    assert_eq!((min, max), (values[0], values[VALUES - 1]));
    let exact_sum: f64 = values.iter().sum();
    assert!(
        (sum - exact_sum).abs() < 1e-6 * exact_sum,
        "{sum} vs {exact_sum}"
    );

    // Keys: exactly the reference table of the formula.
    let mut reference: BTreeMap<i32, u64> = BTreeMap::new();
    for v in &values {
        *reference.entry(agent_key(*v)).or_default() += 1;
    }
    assert_eq!(merged, reference);
    assert_eq!(agent_key(1.0), 1338);

    // Quantiles read from the decoded bins: within 1/128 of the exact ones.
    let gamma: f64 = 1.0 + 2.0 / 128.0;
    for q in [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
        let rank = q * (VALUES - 1) as f64;
        let mut seen = 0;
        let key = merged
            .iter()
            .find_map(|(k, n)| {
                seen += n;
                (seen as f64 > rank).then_some(*k)
            })
            .unwrap();
        let estimate = gamma.powi(key - 1338);
        let exact = values[rank.floor() as usize];
        let error = (estimate - exact).abs() / exact;
        assert!(
            error <= 1.0 / 128.0,
            "q={q}: {estimate} vs {exact} ({error})"
        );
    }
}

/// Decodes an OTLP metrics request with the official opentelemetry-proto package.
const DECODE_OTLP_METRICS: &str = r#"
import json, sys
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
out = []
for path in sys.argv[1:]:
    req = ExportMetricsServiceRequest()
    req.ParseFromString(open(path, "rb").read())
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                d = getattr(m, kind)
                for p in d.data_points:
                    item = {"name": m.name, "kind": kind,
                            "temporality": getattr(d, "aggregation_temporality", None),
                            "monotonic": getattr(d, "is_monotonic", None)}
                    if kind == "exponential_histogram":
                        item.update({"count": p.count, "sum": p.sum, "min": p.min, "max": p.max,
                                     "scale": p.scale, "zero_count": p.zero_count,
                                     "offset": p.positive.offset, "buckets": list(p.positive.bucket_counts)})
                    else:
                        item["value"] = p.as_double
                    out.append(item)
print(json.dumps(out))
"#;

#[test]
fn otlp_gets_monotonic_delta_counts_and_exponential_histograms() {
    let intake = Intake::start();
    let dyno = Dyno::start(&format!(
        "  - {{type: otlp, endpoint: \"{}\"}}\n",
        intake.url
    ));
    let mut lines: Vec<String> = (0..7).map(|_| "shop.orders:1|c".to_owned()).collect();
    lines.extend(distribution_lines("shop.payload"));
    dyno.send(&lines);

    let decode = |requests: &[dynoscope_tests::intake::Recorded]| -> Vec<Value> {
        let bodies: Vec<&[u8]> = requests.iter().map(|r| r.body.as_ref()).collect();
        serde_json::from_value(decode_with_python(DECODE_OTLP_METRICS, &bodies)).unwrap()
    };
    let metrics = wait_for(
        Duration::from_secs(25),
        "the counts and the histogram",
        || {
            let metrics = decode(&intake.accepted("/v1/metrics"));
            let count: f64 = metrics
                .iter()
                .filter(|m| m["name"] == "shop.orders")
                .filter_map(|m| m["value"].as_f64())
                .sum();
            let values: u64 = metrics
                .iter()
                .filter(|m| m["name"] == "shop.payload")
                .filter_map(|m| m["count"].as_u64())
                .sum();
            (count >= 7.0 && values == VALUES as u64).then_some(metrics)
        },
    );
    let orders: Vec<&Value> = metrics
        .iter()
        .filter(|m| m["name"] == "shop.orders")
        .collect();
    for m in &orders {
        assert_eq!(m["kind"], "sum", "{m}");
        assert_eq!(m["monotonic"], true, "{m}");
        assert_eq!(m["temporality"], 1, "delta: {m}");
    }
    let total: f64 = orders.iter().filter_map(|m| m["value"].as_f64()).sum();
    assert_eq!(total, 7.0, "7 increments export 7, not a rate: {orders:?}");

    let histograms: Vec<&Value> = metrics
        .iter()
        .filter(|m| m["name"] == "shop.payload")
        .collect();
    let values = values();
    let mut sum = 0.0;
    for h in &histograms {
        assert_eq!(h["kind"], "exponential_histogram", "{h}");
        assert_eq!(h["temporality"], 1, "delta: {h}");
        assert_eq!(h["scale"], 6);
        assert_eq!(h["zero_count"], 0);
        let buckets: u64 = h["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .sum();
        assert_eq!(Some(buckets), h["count"].as_u64());
        // Each bucket (base^i, base^(i+1)] must hold values near its bounds.
        let base = 2f64.powf(1.0 / 64.0);
        let offset = h["offset"].as_i64().unwrap() as i32;
        let lowest = base.powi(offset);
        assert!(
            lowest <= h["min"].as_f64().unwrap() * (1.0 + 1.0 / 128.0),
            "{h}"
        );
        sum += h["sum"].as_f64().unwrap();
    }
    let exact: f64 = values.iter().sum();
    assert!((sum - exact).abs() < 1e-6 * exact);
}

#[test]
fn promtool_check_metrics_passes_on_a_scrape_of_every_metric_type() {
    let promtool = Command::new("promtool").arg("--version").output();
    assert!(
        promtool.is_ok_and(|o| o.status.success()),
        "promtool is missing: install Debian's prometheus package (apt-get install prometheus)"
    );
    let port = free_port();
    let dyno = Dyno::start(&format!(
        "  - {{type: prometheus, listen: \"127.0.0.1:{port}\"}}\n"
    ));
    let mut lines: Vec<String> = vec![
        "shop.orders:1|c|#route:cart".into(),
        "shop.cart.size:3|g".into(),
        "shop.visitors:alice|s".into(),
        "shop.latency:12|h".into(),
        "shop.render:3|ms".into(),
        "shop.jobs:2|c|T1700000000".into(),
    ];
    lines.extend(distribution_lines("shop.payload"));
    dyno.send(&lines);
    let text = wait_for(Duration::from_secs(25), "the summary in a scrape", || {
        let (_, text) = get(port, "/metrics")?;
        (text.contains("# TYPE shop_payload summary") && text.contains("shop_latency"))
            .then_some(text)
    });
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.is_empty(),
        "promtool check metrics said:\n{said}\non:\n{text}"
    );
    for family in ["shop_orders_total", "shop_cart_size", "shop_payload"] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family}:\n{text}"
        );
    }
    assert!(text.contains("shop_payload_count{"), "{text}");
}

/// datadog-py 0.56 as it runs in a container (its container id given, as it
/// would read it from its cgroup, and a cardinality), and a second client
/// with origin detection off, both counting the same metric.
const TWO_ORIGINS: &str = r#"
import sys
from datadog import DogStatsd
port = int(sys.argv[1])
inside = DogStatsd(host="127.0.0.1", port=port, container_id="ci-abc", cardinality="low",
                   disable_buffering=True, disable_telemetry=True)
plain = DogStatsd(host="127.0.0.1", port=port, origin_detection_enabled=False,
                  disable_buffering=True, disable_telemetry=True)
for _ in range(3):
    inside.increment("shop.hits", tags=["route:cart"])
plain.increment("shop.hits", tags=["route:cart"])
inside.distribution("shop.latency", 5, tags=["route:cart"])
"#;

#[test]
fn a_metrics_origin_keeps_its_own_context_and_reaches_jsonl_on_points_and_sketches() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("telemetry.jsonl");
    let dyno = Dyno::start(&format!("  - {{type: jsonl, path: {}}}\n", jsonl.display()));
    let status = Command::new(python())
        .args(["-c", TWO_ORIGINS, &dyno.statsd.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let of_name = |lines: &[Value], name: &str| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| l["name"] == name)
            .cloned()
            .collect()
    };
    let lines = wait_for(Duration::from_secs(30), "the points and the sketch", || {
        let text = std::fs::read_to_string(&jsonl).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (of_name(&lines, "shop.hits").len() == 2 && of_name(&lines, "shop.latency").len() == 1)
            .then_some(lines)
    });
    let origin = serde_json::json!({"container_id": "abc", "cardinality": "low"});
    let hits = of_name(&lines, "shop.hits");
    // The same name and tags from two origins are two contexts (rates over 10 s).
    let from = |o: &Value| hits.iter().find(|h| &h["origin"] == o).cloned();
    assert_eq!(
        from(&origin).map(|h| h["value"].clone()),
        Some(0.3.into()),
        "{hits:?}"
    );
    assert_eq!(
        from(&Value::Null).map(|h| h["value"].clone()),
        Some(0.1.into()),
        "{hits:?}"
    );
    let sketch = &of_name(&lines, "shop.latency")[0];
    assert_eq!(sketch["kind"], "sketch");
    assert_eq!(sketch["origin"], origin, "{sketch}");
    for line in hits.iter().chain([sketch]) {
        let tags = line["tags"].as_array().unwrap();
        assert!(
            tags.iter().all(|t| !t.as_str().unwrap().starts_with("c:")),
            "{line}"
        );
    }
}
