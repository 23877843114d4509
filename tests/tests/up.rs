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

/// A running `up`; a failing test must not leave its formation running (the
/// next run would find the ports taken), so drop stops it as a user would.
struct Up(std::process::Child);

impl std::ops::Deref for Up {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Up {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        nix_kill(self.0.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `up` as `command` says, collecting its stdout and stderr.
fn start_up(command: &mut Command) -> (Up, Lines, Lines) {
    let mut up = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(Up)
        .unwrap();
    let lines = collect(up.stdout.take().unwrap());
    let errors = collect(up.stderr.take().unwrap());
    (up, lines, errors)
}

/// SIGTERM to `up`, which must stop every dyno and exit 0.
fn stop_up(up: &mut Up, errors: &Lines) {
    nix_kill(up.id(), "TERM");
    let code = up.wait().unwrap();
    assert!(
        code.success(),
        "up exited with {code:?}; stderr: {:?}",
        errors.lock().unwrap()
    );
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
    // A relative app directory, as `scripts/up.sh` passes `examples/shop`.
    let (mut up, lines, errors) = start_up(
        Command::new(bin("dynoscope-operator"))
            .current_dir(app.path().parent().unwrap())
            .arg("up")
            .arg(app.path().file_name().unwrap())
            .args([
                "--port",
                "15000",
                "--agent-port",
                "25000",
                "--backoff",
                "200ms",
            ]),
    );

    // Each dyno gets DYNO and foreman's PORT one up from the router's (15000),
    // and its lines are prefixed `HH:MM:SS name | `.
    wait_for(Duration::from_secs(20), "every dyno's first line", || {
        let all = [
            "| DYNO=web.1 PORT=15001",
            "| DYNO=web.2 PORT=15002",
            "| DYNO=worker.1 PORT=15101",
        ];
        all.iter().all(|l| has(&lines, l)).then_some(())
    });
    let prefixed =
        regex::Regex::new(r"^\d\d:\d\d:\d\d web\.2 +\| DYNO=web\.2 PORT=15002$").unwrap();
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
    // Every sidecar found its config: none runs with observability off.
    for output in [&lines, &errors] {
        assert!(
            !has(output, "observability is off") && !has(output, "cannot watch"),
            "{:?}",
            output.lock().unwrap()
        );
    }
    stop_up(&mut up, &errors);
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
    // `heroku[web.1]` is padded to the longest prefix: `heroku[web.1]    | …`.
    let source = format!("{source} ");
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, l)| l.contains(&source) && l.contains("| Starting process"))
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

/// The `status` table's rows, by dyno: the whitespace-separated columns.
fn status_rows(app: &std::path::Path) -> Vec<Vec<String>> {
    let output = Command::new(bin("dynoscope-operator"))
        .arg("status")
        .arg(app)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn the_shop_runs_under_up_with_traces_mapped_metrics_memory_and_a_live_tag_change() {
    let app = tempfile::tempdir().unwrap();
    let (jsonl, manifest) = dynoscope_tests::shop::copy(app.path(), "1s");
    let manifest_path = app.path().join("observability.yaml");
    let path = dynoscope_tests::shop::path_with_python();
    let (mut up, lines, errors) = start_up(
        Command::new(bin("dynoscope-operator"))
            .arg("up")
            .arg(app.path())
            .args([
                "--port",
                "16000",
                "--agent-port",
                "27000",
                "--backoff",
                "200ms",
            ])
            .env("PATH", path),
    );
    let read = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&jsonl)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let tagged = |v: &serde_json::Value, tag: &str| {
        v["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == tag))
    };

    // Spans from both web dynos, and the worker's jobs under their mapped name.
    wait_for(
        Duration::from_secs(90),
        "spans of web.1 and web.2 and worker.1's mapped jobs",
        || {
            let items = read();
            let spans_of = |dyno: &str| {
                items.iter().any(|i| {
                    i["kind"] == "span" && i["service"] == "shop" && i["meta"]["dyno"] == dyno
                })
            };
            let jobs = items.iter().any(|i| {
                i["name"] == "shop.jobs.perform"
                    && tagged(i, "dyno:worker.1")
                    && i["tags"].as_array().is_some_and(|t| {
                        t.iter()
                            .any(|t| t.as_str().is_some_and(|t| t.starts_with("job:")))
                    })
            });
            (spans_of("web.1") && spans_of("web.2") && jobs).then_some(())
        },
    );
    // Log records: the web dynos' lines carry their request's trace (ddtrace's
    // injection, DD_LOGS_INJECTION set by the sidecar), the worker's JSON fields stay.
    wait_for(
        Duration::from_secs(60),
        "a web log record correlated with a span, and a worker's JSON record",
        || {
            let items = read();
            let trace_ids: Vec<String> = items
                .iter()
                .filter(|i| i["kind"] == "span")
                .map(|i| {
                    let high = i["meta"]["_dd.p.tid"].as_str().unwrap_or("0");
                    let high = u128::from_str_radix(high, 16).unwrap_or(0);
                    let low = u128::from(i["trace_id"].as_u64().unwrap_or(0));
                    format!("{:032x}", (high << 64) | low)
                })
                .collect();
            let correlated = items.iter().any(|i| {
                i["kind"] == "log"
                    && i["service"] == "shop"
                    && i["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("served /"))
                    && i["dd"]["trace_id"]
                        .as_str()
                        .is_some_and(|id| trace_ids.iter().any(|t| t == id))
            });
            let job = items.iter().any(|i| {
                i["kind"] == "log"
                    && i["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("performed "))
                    && i["job"].is_string()
                    && i["ddtags"]
                        .as_str()
                        .is_some_and(|t| t.split(',').any(|t| t == "dyno:worker.1"))
            });
            (correlated && job).then_some(())
        },
    );
    assert!(
        !read().iter().any(|i| i["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("shop.jobs.")
                && n.ends_with(".perform")
                && n != "shop.jobs.perform")),
        "an unmapped job metric reached the sink"
    );

    // `status`: every dyno up, with memory figures and telemetry counts.
    let rows = wait_for(
        Duration::from_secs(30),
        "memory of every dyno in status",
        || {
            let rows = status_rows(app.path());
            let ready =
                rows.len() == 3 && rows.iter().all(|r| r.len() >= 8 && r[5].contains("MB/"));
            ready.then_some(rows)
        },
    );
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["web.1", "web.2", "worker.1"]);
    for row in &rows {
        assert_eq!(row[1], "up", "{row:?}");
        assert!(row[5].ends_with("MB") || row[5].ends_with("/-"), "{row:?}");
    }
    let web_spans: u64 = rows[0][6].parse().unwrap();
    let worker_metrics: u64 = rows[2][7].parse().unwrap();
    assert!(web_spans > 0 && worker_metrics > 0, "{rows:?}");
    let pids: Vec<String> = rows.iter().map(|r| r[2].clone()).collect();

    // A tag added to the manifest reaches new points of every dyno; nobody restarts.
    std::fs::write(
        &manifest_path,
        manifest.replace(
            r#"tags: ["team:payments"]"#,
            r#"tags: ["team:payments", "release:blue"]"#,
        ),
    )
    .unwrap();
    wait_for(
        Duration::from_secs(60),
        "points tagged release:blue from every dyno",
        || {
            let items = read();
            ["web.1", "web.2", "worker.1"]
                .iter()
                .all(|dyno| {
                    items.iter().any(|i| {
                        i["kind"] == "point"
                            && tagged(i, "release:blue")
                            && tagged(i, &format!("dyno:{dyno}"))
                    })
                })
                .then_some(())
        },
    );
    let after: Vec<String> = status_rows(app.path())
        .iter()
        .map(|r| r[2].clone())
        .collect();
    assert_eq!(pids, after, "a dyno restarted on a tag change");
    assert!(!has(&lines, "State changed from up to crashed"));

    stop_up(&mut up, &errors);
}

/// `GET /leak?mb=<mb>` to the shop on `port`, from a thread of its own (not awaited).
fn leak(port: u16, mb: u32) {
    std::thread::spawn(move || dynoscope_tests::intake::get(port, &format!("/leak?mb={mb}")));
}

/// Whether one line holds both `a` and `b`.
fn has_line(lines: &Lines, a: &str, b: &str) -> bool {
    lines
        .lock()
        .unwrap()
        .iter()
        .any(|(_, l)| l.contains(a) && l.contains(b))
}

/// Waits up to `seconds` for `check`; on time out, fails showing what `up` printed.
fn wait_lines<T>(
    lines: &Lines,
    seconds: u64,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            let shown: Vec<String> = lines
                .lock()
                .unwrap()
                .iter()
                .map(|(_, l)| l.clone())
                .collect();
            panic!(
                "timed out after {seconds}s waiting for {what}; up printed:\n{}",
                shown.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The README's `size:` example (section "Dyno sizes"): its `formation:` lines.
fn readme_sizes_formation() -> String {
    let readme = std::fs::read_to_string(dynoscope_tests::repo_root().join("README.md")).unwrap();
    let section = readme
        .split("\n### Dyno sizes\n")
        .nth(1)
        .expect("README.md has a Dyno sizes section");
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the Dyno sizes section has a yaml example");
    let formation = yaml
        .split_once("  formation:\n")
        .map(|(_, rest)| rest)
        .expect("the example sets spec.formation");
    let lines: Vec<&str> = formation
        .lines()
        .take_while(|l| l.starts_with("    "))
        .collect();
    format!("  formation:\n{}\n", lines.join("\n"))
}

/// The memory line of `dyno` (`sample#memory_total=… sample#memory_quota=…`), parsed:
/// (total MB, quota MB) of each such line `up` printed, in order.
fn memory_samples(lines: &Lines, dyno: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{dyno} ");
    let mb = |line: &str, key: &str| -> Option<f64> {
        let value = line.split(&format!("sample#{key}=")).nth(1)?;
        value.split("MB").next()?.parse().ok()
    };
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, l)| l.contains(&prefix) && l.contains(&format!("| source={dyno} ")))
        .filter_map(|(_, l)| Some((mb(l, "memory_total")?, mb(l, "memory_quota")?)))
        .collect()
}

#[test]
fn sizes_under_up_give_each_dyno_its_quota_r14_and_r15() {
    let app = tempfile::tempdir().unwrap();
    let (_, manifest) = dynoscope_tests::shop::copy(app.path(), "1s");
    let shipped = "  formation:\n    web: {quantity: 2}\n    worker: {quantity: 1}\n";
    assert!(manifest.contains(shipped), "the shop's formation changed");
    let sized = manifest.replace(shipped, &readme_sizes_formation());
    assert!(sized.contains("size: standard-1x"), "{sized}");
    std::fs::write(app.path().join("observability.yaml"), &sized).unwrap();
    let (mut up, lines, errors) = start_up(
        Command::new(bin("dynoscope-operator"))
            .arg("up")
            .arg(app.path())
            // Agent ports: web 29500, worker 30500 (clear of the other tests' blocks).
            .args(["--port", "17000", "--agent-port", "29500"])
            .args(["--backoff", "200ms", "--no-console"])
            .env("PATH", dynoscope_tests::shop::path_with_python()),
    );

    // Each dyno's runtime line: its own tree, against its size (README: web
    // standard-1x, worker Standard-2X), not the machine's memory.
    let (web, worker) = wait_for(
        Duration::from_secs(60),
        "memory lines of web.1 and worker.1",
        || {
            let web = memory_samples(&lines, "web.1").last().copied()?;
            let worker = memory_samples(&lines, "worker.1").last().copied()?;
            Some((web, worker))
        },
    );
    assert_eq!(web.1, 512.0, "web.1's quota: {web:?}");
    assert_eq!(worker.1, 1024.0, "worker.1's quota: {worker:?}");
    assert!(web.0 > 5.0 && web.0 < 400.0, "web.1's total: {web:?}");
    assert!(has(&lines, "sample#memory_quota=512.00MB"));
    assert!(!has(&lines, "Error R14"), "R14 before any leak");

    // `status` shows the same quota.
    let row = wait_for(Duration::from_secs(60), "web.1's memory in status", || {
        status_rows(app.path())
            .into_iter()
            .find(|r| r[0] == "web.1" && r.len() >= 6 && r[5].ends_with("/512.0MB"))
    });
    assert_eq!(row[1], "up", "{row:?}");

    // 600 MB more on a 512 MB dyno: R14, as Heroku prints it, and the line says so.
    wait_for(
        Duration::from_secs(60),
        "web.1 answering on 17001 (the router has 17000)",
        || dynoscope_tests::intake::get(17001, "/").map(|_| ()),
    );
    // Writing 600 MB can outlast the client's 5 s timeout on a loaded machine: the
    // request is sent aside, and the dyno's lines are the proof.
    leak(17001, 600);
    wait_for(Duration::from_secs(30), "R14 on web.1", || {
        has_line(&lines, "web.1 ", "| Error R14 (Memory quota exceeded)").then_some(())
    });
    let r14 = regex::Regex::new(r"web\.1 +\| Process running mem=(\d+)MB\((\d+\.\d)%\)$").unwrap();
    let percent: f64 = lines
        .lock()
        .unwrap()
        .iter()
        .find_map(|(_, l)| Some(r14.captures(l)?[2].parse().unwrap()))
        .expect("a `Process running mem=…MB(…%)` line");
    // Over the quota, not yet twice it (the 600 MB may still be being written).
    assert!(percent > 100.0 && percent < 200.0, "{percent}");
    // The first R14 may come while the 600 MB are still being written.
    let over = wait_lines(&lines, 30, "a memory line of web.1 over 600 MB", || {
        memory_samples(&lines, "web.1")
            .into_iter()
            .find(|(total, _)| *total > 600.0)
    });
    assert_eq!(over.1, 512.0, "{over:?}");
    assert!(
        !has_line(&lines, "worker.1 ", "Error R14"),
        "only web.1 leaked"
    );

    // 500 MB more: past twice the quota, R15, and the dyno is killed and restarts.
    leak(17001, 500);
    wait_lines(&lines, 60, "R15 and a restart of web.1", || {
        let restarted = starts_of(&lines, "heroku[web.1]").len() >= 2;
        let r15 = has_line(
            &lines,
            "web.1 ",
            "| Error R15 (Memory quota vastly exceeded)",
        );
        (r15 && restarted).then_some(())
    });
    assert!(has_line(
        &lines,
        "web.1 ",
        "| Stopping process with SIGKILL"
    ));
    assert!(has_line(
        &lines,
        "heroku[web.1] ",
        "| Process exited with status 137"
    ));
    assert!(has_line(
        &lines,
        "heroku[web.1] ",
        "| State changed from up to crashed"
    ));

    stop_up(&mut up, &errors);
}
