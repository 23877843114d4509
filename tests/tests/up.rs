//! `dynoscope-operator up`: a formation of shell dynos, each under the real sidecar.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dynoscope_tests::{bin, wait_for};

const MANIFEST: &str = "apiVersion: dynoscope.dev/v1alpha1
kind: ObservabilityConfig
metadata: {name: demo}
spec:
  formation: {web: {quantity: 2}, worker: {quantity: 1}}
  gracePeriod: 3s
  processMetrics: {interval: 1s, logLines: false}
";

/// Lines `up` printed, with when they arrived.
type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

fn collect(stream: impl std::io::Read + Send + 'static) -> Lines {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().unwrap().push((Instant::now(), line));
        }
    });
    lines
}

fn has(lines: &Lines, needle: &str) -> bool {
    lines
        .lock()
        .unwrap()
        .iter()
        .any(|(_, l)| l.contains(needle))
}

#[test]
fn formation_starts_prefixes_restarts_and_stops() {
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("Procfile"),
        "web: echo \"DYNO=$DYNO PORT=$PORT\"; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done\n\
         worker: echo \"DYNO=$DYNO PORT=$PORT\"; exit 3\n\
         release: echo never\n",
    )
    .unwrap();
    std::fs::write(app.path().join("observability.yaml"), MANIFEST).unwrap();
    let mut up = Command::new(bin("dynoscope-operator"))
        .arg("up")
        .arg(app.path())
        .args([
            "--port",
            "15000",
            "--agent-port",
            "25000",
            "--backoff",
            "200ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = collect(up.stdout.take().unwrap());
    let errors = collect(up.stderr.take().unwrap());

    // Each dyno gets DYNO and foreman's PORT, and its lines are prefixed `HH:MM:SS name | `.
    wait_for(Duration::from_secs(20), "every dyno's first line", || {
        let all = [
            "| DYNO=web.1 PORT=15000",
            "| DYNO=web.2 PORT=15001",
            "| DYNO=worker.1 PORT=15100",
        ];
        all.iter().all(|l| has(&lines, l)).then_some(())
    });
    let prefixed =
        regex::Regex::new(r"^\d\d:\d\d:\d\d web\.2 +\| DYNO=web\.2 PORT=15001$").unwrap();
    assert!(lines
        .lock()
        .unwrap()
        .iter()
        .any(|(_, l)| prefixed.is_match(l)));
    assert!(!has(&lines, "never"), "release must not run as a dyno");

    // The crashing worker restarts with a growing back-off: 0, 1, 2, 3, 9 units of 200 ms.
    wait_for(Duration::from_secs(30), "six worker starts", || {
        let starts = starts_of(&lines, "heroku[worker.1]");
        (starts.len() >= 6).then_some(())
    });
    let starts = starts_of(&lines, "heroku[worker.1]");
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[4] >= Duration::from_millis(1600),
        "the 5th restart waited only {:?}: {gaps:?}",
        gaps[4]
    );
    assert!(gaps[0] < gaps[4], "{gaps:?}");
    assert!(has(
        &lines,
        "heroku[worker.1] | Process exited with status 3"
    ));
    assert!(has(
        &lines,
        "heroku[worker.1] | State changed from up to crashed"
    ));

    // `status` lists every dyno.
    let status = Command::new(bin("dynoscope-operator"))
        .arg("status")
        .arg(app.path())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{table}");
    for dyno in ["web.1", "web.2", "worker.1"] {
        assert!(
            table.lines().any(|l| l.starts_with(dyno)),
            "{dyno} missing from:\n{table}"
        );
    }
    let web_pids: Vec<i32> = table
        .lines()
        .filter(|l| l.starts_with("web."))
        .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
        .collect();

    // SIGTERM: every dyno gets TERM, the web apps exit cleanly, `up` exits 0.
    let stop = Instant::now();
    nix_kill(up.id(), "TERM");
    let code = up.wait().unwrap();
    assert!(
        code.success(),
        "up exited with {code:?}; stderr: {:?}",
        errors.lock().unwrap()
    );
    assert!(
        stop.elapsed() < Duration::from_secs(3 + 5),
        "stopping took {:?}",
        stop.elapsed()
    );
    assert!(
        has(&lines, "web.1") && has(&lines, "| bye"),
        "the web dynos did not see TERM"
    );
    assert!(has(&lines, "dynoscope") && has(&lines, "all dynos stopped"));
    for pid in web_pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "sidecar {pid} still runs"
        );
    }
}

fn starts_of(lines: &Lines, source: &str) -> Vec<Instant> {
    let needle = format!("{source} | Starting process");
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, l)| l.contains(&needle))
        .map(|(t, _)| *t)
        .collect()
}

fn nix_kill(pid: u32, signal: &str) {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}
