//! A reload is a diff (issue 13), with the real sidecar binary: a tag-only
//! change rebuilds no sink, and a datadog sink rebuilt for its own config
//! hands what it buffered during an intake outage to its successor — every
//! DogStatsD point accepted before and after the reload reaches the intake.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dynoscope_tests::harness::{read, render, status_of, Sidecar};
use dynoscope_tests::intake::Intake;
use dynoscope_tests::servers::free_port;
use dynoscope_tests::wait_for;
use serde_json::Value;

const KEY: &str = "dd-test-key-0c4e81d2";
/// Points per phase, values 1..=N: each (name, value) pair is counted once.
const POINTS: u32 = 20;

struct Dyno {
    dir: tempfile::TempDir,
    admin: u16,
    statsd: u16,
    intake: Intake,
}

impl Dyno {
    fn config(&self, tag: &str, buffer_bytes: u64) -> String {
        render(&format!(
            "  tags: [\"team:{tag}\"]\n  admin: {{port: {}}}\n  apm: {{enabled: false}}\n  \
             dogstatsd: {{port: {}}}\n  processMetrics: {{enabled: false}}\n  sinks:\n  \
             - {{type: datadog, apiKey: {{fromEnv: DD_API_KEY}}, endpoint: \"{}\", bufferBytes: {buffer_bytes}}}\n  \
             - {{type: jsonl, path: {}}}\n",
            self.admin,
            self.statsd,
            self.intake.url,
            self.jsonl().display()
        ))
    }

    fn jsonl(&self) -> std::path::PathBuf {
        self.dir.path().join("telemetry.jsonl")
    }

    fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("dyno.yaml")
    }

    fn status(&self) -> Value {
        wait_for(Duration::from_secs(5), "/status", || status_of(self.admin))
    }

    /// The `/status` entry of the sink whose name starts with `kind`.
    fn sink(&self, kind: &str) -> Value {
        let status = self.status();
        status["sinks"]
            .as_array()
            .and_then(|s| {
                s.iter()
                    .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with(kind)))
            })
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} sink in {status}"))
    }

    /// Sends phase `name`'s counters, timestamped so that the aggregator
    /// passes them on within a second instead of at the end of a 10 s bucket.
    fn send(&self, name: &str) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for value in 1..=POINTS {
            let line = format!("{name}:{value}|c|#phase:{name}|T{now}");
            socket
                .send_to(line.as_bytes(), ("127.0.0.1", self.statsd))
                .unwrap();
        }
    }

    /// Waits until the jsonl sink wrote every point of phase `name`: the
    /// pipeline has handed them to every sink. Returns their lines.
    fn wait_written(&self, name: &str) -> Vec<Value> {
        wait_for(
            Duration::from_secs(15),
            &format!("the {name} points in the jsonl file"),
            || {
                let lines: Vec<Value> = read(&self.jsonl())
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter(|l| l["name"] == name)
                    .collect();
                (lines.len() == POINTS as usize).then_some(lines)
            },
        )
    }

    /// Rewrites the config as the operator does (temp file + rename) and
    /// waits for the sidecar to apply it.
    fn reload(&self, text: &str) {
        let before = self.status()["counters"]["pipeline"]["reconfigured"]
            .as_u64()
            .unwrap_or(0);
        let temp = self.config_path().with_extension("tmp");
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, self.config_path()).unwrap();
        wait_for(Duration::from_secs(10), "the reload", || {
            let now = self.status()["counters"]["pipeline"]["reconfigured"].as_u64()?;
            (now > before).then_some(())
        });
    }

    /// Waits until the intake accepted every point of `phases`; panics with
    /// what is missing.
    fn wait_delivered(&self, phases: &[&str]) {
        let want: BTreeSet<(String, u32)> = phases
            .iter()
            .flat_map(|p| (1..=POINTS).map(move |v| ((*p).to_owned(), v)))
            .collect();
        // Retries back off (up to 30 s between tries) during an outage.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let got = delivered_points(&self.intake);
            let missing: Vec<_> = want.difference(&got).collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} points never reached the intake, e.g. {:?}; datadog sink: {}",
                missing.len(),
                &missing[..missing.len().min(5)],
                self.sink("datadog")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let datadog = self.sink("datadog");
        assert_eq!(datadog["dropped"]["points"], 0, "{datadog}");
    }
}

/// The (metric, value) pairs of every series the intake accepted.
fn delivered_points(intake: &Intake) -> BTreeSet<(String, u32)> {
    let mut points = BTreeSet::new();
    for request in intake.accepted("/api/v2/series") {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            continue;
        };
        for series in body["series"].as_array().into_iter().flatten() {
            let name = series["metric"].as_str().unwrap_or_default().to_owned();
            for point in series["points"].as_array().into_iter().flatten() {
                if let Some(value) = point["value"].as_f64() {
                    points.insert((name.clone(), value as u32));
                }
            }
        }
    }
    points
}

/// The 5xx answers the datadog sink got so far.
fn errors_5xx(dyno: &Dyno) -> u64 {
    dyno.sink("datadog")["errors"]["status_5xx"]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until the datadog sink tried to send during the outage (more 5xx
/// than `before`) and holds data: a batch is in flight, retried with back-off.
fn wait_in_flight(dyno: &Dyno, before: u64) {
    wait_for(
        Duration::from_secs(15),
        "a batch retried in the outage",
        || {
            let sink = dyno.sink("datadog");
            let errors = sink["errors"]["status_5xx"].as_u64()?;
            (errors > before && sink["buffer_bytes"].as_u64()? > 0).then_some(())
        },
    );
}

fn start(dir: &Path, config: &Path) -> Sidecar {
    Sidecar::start(
        dir,
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
    )
}

#[test]
fn a_reload_rebuilds_only_changed_sinks_and_loses_nothing_buffered_during_an_outage() {
    let dyno = Dyno {
        dir: tempfile::tempdir().unwrap(),
        admin: free_port(),
        statsd: free_port(),
        intake: Intake::start(),
    };
    std::fs::write(dyno.config_path(), dyno.config("a", 8 << 20)).unwrap();
    let _sidecar = start(dyno.dir.path(), &dyno.config_path());
    wait_for(Duration::from_secs(10), "both sinks in /status", || {
        let status = status_of(dyno.admin)?;
        (status["counters"]["pipeline"]["sinks_built"].as_u64()? >= 2).then_some(())
    });
    let (datadog, jsonl) = (dyno.sink("datadog"), dyno.sink("jsonl"));
    assert_eq!(datadog["builds"], 1, "{datadog}");
    assert_eq!(jsonl["builds"], 1, "{jsonl}");

    // An outage; points are accepted and held.
    dyno.intake.set_status(503);
    let errors = errors_5xx(&dyno);
    dyno.send("reload.before");
    dyno.wait_written("reload.before");
    wait_in_flight(&dyno, errors);
    let before = dyno.status()["counters"]["pipeline"].clone();

    // Only the tags change: no sink is rebuilt, the new tags apply at once.
    dyno.reload(&dyno.config("b", 8 << 20));
    let (datadog_after, jsonl_after) = (dyno.sink("datadog"), dyno.sink("jsonl"));
    for (before, after) in [(&datadog, &datadog_after), (&jsonl, &jsonl_after)] {
        assert_eq!(before["started"], after["started"], "{after}");
        assert_eq!(after["builds"], 1, "{after}");
    }
    let pipeline = &dyno.status()["counters"]["pipeline"];
    assert_eq!(pipeline["sinks_built"], before["sinks_built"], "{pipeline}");
    assert_eq!(pipeline["sinks_retired"], 0, "{pipeline}");
    assert!(pipeline["sinks_kept"].as_u64() >= Some(2), "{pipeline}");
    dyno.send("reload.after");
    let lines = dyno.wait_written("reload.after");
    assert!(
        lines.iter().all(|l| l["tags"]
            .as_array()
            .is_some_and(|t| t.contains(&Value::from("team:b")))),
        "{lines:?}"
    );

    // Back: everything accepted before and after the reload arrives.
    dyno.intake.set_status(200);
    dyno.wait_delivered(&["reload.before", "reload.after"]);

    // Another outage, and now the datadog sink's own config changes: its
    // successor takes over what it holds. One batch is in flight (retried by
    // the old sink as it drains); what queued behind it is handed over.
    dyno.intake.set_status(503);
    let errors = errors_5xx(&dyno);
    dyno.send("reload.held");
    dyno.wait_written("reload.held");
    wait_in_flight(&dyno, errors);
    dyno.send("reload.queued");
    dyno.wait_written("reload.queued");
    // The jsonl sink wrote them, so the datadog sink's task has them too, or will in a moment.
    std::thread::sleep(Duration::from_millis(200));
    dyno.reload(&dyno.config("b", 4 << 20));
    let (datadog_new, jsonl_new) = (dyno.sink("datadog"), dyno.sink("jsonl"));
    assert_eq!(datadog_new["builds"], 2, "{datadog_new}");
    assert_eq!(datadog_new["buffer_capacity"], 4 << 20, "{datadog_new}");
    assert_eq!(jsonl_new["builds"], 1, "{jsonl_new}");
    assert_eq!(jsonl_new["started"], jsonl["started"], "{jsonl_new}");
    // The successor takes the backlog from its predecessor's task, just after the reload.
    wait_for(Duration::from_secs(5), "a hand-over", || {
        let handed = dyno.status()["counters"]["pipeline"]["handed_over"].as_u64()?;
        (handed > 0).then_some(())
    });
    dyno.send("reload.rebuilt");
    dyno.wait_written("reload.rebuilt");

    dyno.intake.set_status(200);
    dyno.wait_delivered(&[
        "reload.before",
        "reload.after",
        "reload.held",
        "reload.queued",
        "reload.rebuilt",
    ]);
}
