//! The docker compose simulation (`docker-compose.yml`): the images built with no
//! registry by `scripts/images.sh`, the shop's formation up as containers, then
//! what a person would check with `docker compose` — PID 1, the memory quota,
//! R14, live reload across containers, `stop` within the grace period — and
//! `down -v` at the end (also when a check panics).
//!
//! It needs a Docker engine and fails when there is none; `scripts/test.sh
//! --no-docker` runs every other test. It also needs swap on the host for R14
//! (`scripts/test.sh` enables a swap file when there is none).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dynoscope_tests::{bin, repo_root, wait_for};
use serde_json::Value;

const PROJECT: &str = "dynoscope-test";
const DYNOS: [&str; 3] = ["web.1", "web.2", "worker.1"];
const QUOTA: f64 = 512.0 * 1024.0 * 1024.0;

/// The formation of one test run, taken down with its volumes when dropped.
struct Formation {
    /// `docker compose` or `docker-compose`, whichever this machine has.
    compose: Vec<String>,
    /// The manifest directory the operator container watches: a copy of
    /// examples/shop/compose, so the test can edit it.
    manifests: tempfile::TempDir,
}

impl Formation {
    fn command(&self, args: &[&str]) -> Command {
        let root = repo_root();
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .arg("-p")
            .arg(PROJECT)
            .arg("-f")
            .arg(root.join("docker-compose.yml"))
            .args(args)
            .current_dir(&root)
            .env("DYNOSCOPE_MANIFESTS", self.manifests.path())
            // Any free host ports: the test reaches Prometheus and the console from inside the network.
            .env("DYNOSCOPE_PROMETHEUS_PORT", "0")
            .env("DYNOSCOPE_CONSOLE_PORT", "0")
            .env("DYNOSCOPE_ROUTER_PORT", "0")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .expect("cannot run docker compose")
    }

    /// Runs and returns stdout; panics with stderr when it fails.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`compose {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `compose exec -T <service> <args…>`: stdout when it succeeds.
    fn exec(&self, service: &str, args: &[&str]) -> Option<String> {
        let mut all = vec!["exec", "-T", service];
        all.extend_from_slice(args);
        let out = self.run(&all);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The dyno's sidecar `/status`, through `dynoscope-sidecar status --json` in its container.
    fn status(&self, dyno: &str) -> Option<Value> {
        let text = self.exec(dyno, &["dynoscope-sidecar", "status", "--json"])?;
        serde_json::from_str(&text).ok()
    }

    fn container(&self, service: &str) -> String {
        let id = self.ok(&["ps", "-q", service]).trim().to_owned();
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    fn logs(&self, service: &str) -> String {
        let out = self.run(&["logs", "--no-color", service]);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// The lines of the dyno's jsonl sink (its volume at /telemetry), parsed; read
    /// through a throwaway container so it works when the dyno is stopped too.
    fn jsonl(&self, dyno: &str) -> Vec<Value> {
        let volume = docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={PROJECT}"),
            "--filter",
            &format!("label=com.docker.compose.volume=telemetry-{dyno}"),
        ]);
        let volume = String::from_utf8_lossy(&volume.stdout).trim().to_owned();
        assert!(!volume.is_empty(), "no volume telemetry-{dyno}");
        let out = docker(&[
            "run",
            "--rm",
            "-v",
            &format!("{volume}:/telemetry:ro"),
            "--entrypoint",
            "cat",
            "dynoscope/base:bookworm",
            "/telemetry/shop.jsonl",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// A PromQL instant query, from inside the network (the load container has curl).
    fn prometheus(&self, query: &str) -> Vec<Value> {
        let Some(text) = self.exec(
            "load",
            &[
                "curl",
                "-s",
                "--max-time",
                "5",
                "http://prometheus:9090/api/v1/query",
                "--data-urlencode",
                &format!("query={query}"),
            ],
        ) else {
            return Vec::new();
        };
        serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }
}

impl Drop for Formation {
    fn drop(&mut self) {
        let _ = self
            .command(&["down", "-v", "--remove-orphans", "-t", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run docker")
}

fn started_at(container: &str) -> String {
    let out = docker(&["inspect", "-f", "{{.State.StartedAt}}", container]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `docker compose` when the plugin is installed, else `docker-compose`.
fn compose_command() -> Vec<String> {
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if plugin {
        return vec!["docker".into(), "compose".into()];
    }
    let v1 = Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        v1,
        "neither `docker compose` nor `docker-compose` runs: install one (Debian: apt-get install docker-compose), \
         or run the other tests with `scripts/test.sh --no-docker`"
    );
    vec!["docker-compose".into()]
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Items of a jsonl sink with this `kind` and `name` (`None`: any name).
fn items<'a>(lines: &'a [Value], kind: &str, name: Option<&str>) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["kind"] == kind && name.is_none_or(|n| l["name"] == n))
        .collect()
}

/// Checks that depend on parts of the sidecar other engineers are still wiring
/// (receivers, integration checks): every one is asserted, but the test goes on
/// to the other checks first and fails at the end with all of them listed.
#[derive(Default)]
struct Pending(Vec<String>);

impl Pending {
    fn check(&mut self, ok: bool, what: String) {
        if ok {
            eprintln!("ok: {what}");
        } else {
            eprintln!("FAILED: {what}");
            self.0.push(what);
        }
    }
}

#[test]
fn compose_formation_runs_reloads_and_stops_like_heroku() {
    let root = repo_root();
    let engine = docker(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        engine.status.success(),
        "no Docker engine answers (`docker info` failed: {}): this test runs the docker compose \
         simulation and needs one. Start Docker, or run every other test with `scripts/test.sh --no-docker`.",
        String::from_utf8_lossy(&engine.stderr).trim()
    );
    let compose = compose_command();

    // Images, with no registry: debootstrap base (cached), wheels (cached), and the
    // binaries this suite built (release ones take minutes to link on two cores).
    let started = Instant::now();
    let bins = bin("dynoscope-sidecar").parent().unwrap().to_owned();
    bin("dynoscope-operator");
    let images = Command::new(root.join("scripts/images.sh"))
        .arg("--bin-dir")
        .arg(&bins)
        .current_dir(&root)
        .status()
        .expect("cannot run scripts/images.sh");
    assert!(images.success(), "scripts/images.sh failed ({images})");
    eprintln!("images built in {:?}", started.elapsed());

    let manifests = tempfile::tempdir().unwrap();
    copy_dir(&root.join("examples/shop/compose"), manifests.path());
    let formation = Formation { compose, manifests };
    drop(
        formation
            .command(&["down", "-v", "--remove-orphans", "-t", "1"])
            .output(),
    );
    // A dyno that starts before the operator has rendered anything runs its app
    // with observability off…
    formation.ok(&["up", "-d", "--no-build", "--no-deps", "worker.1"]);
    let early = wait_for(Duration::from_secs(60), "worker.1's sidecar", || {
        formation.status("worker.1")
    });
    assert_eq!(early["config"]["observability"], "off", "{early:#}");
    assert_eq!(early["app"]["state"], "running", "{early:#}");
    let worker = formation.container("worker.1");
    let worker_started = started_at(&worker);
    formation.ok(&["up", "-d", "--no-build"]);
    let mut pending = Pending::default();

    // … and every dyno (that one too, without a restart) picks up the config the
    // operator renders into the shared volume.
    let mut hashes = std::collections::BTreeMap::new();
    for dyno in DYNOS {
        let status = wait_for(Duration::from_secs(90), &format!("{dyno}'s config"), || {
            formation
                .status(dyno)
                .filter(|s| s["config"]["observability"] == "on")
        });
        assert_eq!(status["config"]["dyno"], dyno, "{status:#}");
        hashes.insert(dyno, status["config"]["hash"].as_str().unwrap().to_owned());

        // The sidecar is PID 1 and the app its child.
        assert_eq!(
            status["pid"], 1,
            "{dyno}: the sidecar is not PID 1: {status:#}"
        );
        let app = status["app"]["pid"].as_u64().expect("app pid");
        let ppid = formation
            .exec(dyno, &["ps", "-o", "ppid=", "-p", &app.to_string()])
            .unwrap_or_default();
        assert_eq!(ppid.trim(), "1", "{dyno}: the app's parent");
        assert_eq!(status["app"]["state"], "running", "{status:#}");
    }
    let containers: Vec<(String, String)> = DYNOS
        .iter()
        .map(|d| {
            let id = formation.container(d);
            let at = started_at(&id);
            (id, at)
        })
        .collect();

    assert_eq!(containers[2].0, worker);
    assert_eq!(containers[2].1, worker_started, "worker.1 restarted");

    // The sampler reads the container's cgroup: the quota is mem_limit.
    for dyno in DYNOS {
        let quota = wait_for(Duration::from_secs(30), "a memory sample", || {
            formation.status(dyno)?["sampler"]["values"]["dyno.memory.quota"].as_f64()
        });
        assert_eq!(quota, QUOTA, "{dyno}: dyno.memory.quota");
    }

    // Telemetry reaches the backends: spans and DogStatsD metrics of the web dynos,
    // the worker's mapped metric, checks on exactly one dyno. These need the
    // sidecar's receivers and its integration checks wired into `run`.
    let deadline = Instant::now() + Duration::from_secs(45);
    let ready = |lines: &[Vec<Value>]| {
        !items(&lines[0], "span", None).is_empty()
            && !items(&lines[2], "point", Some("shop.jobs.perform")).is_empty()
            && !items(&lines[0], "point", Some("postgresql.connections")).is_empty()
    };
    let mut lines: Vec<Vec<Value>> = DYNOS.iter().map(|d| formation.jsonl(d)).collect();
    while !ready(&lines) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(3));
        lines = DYNOS.iter().map(|d| formation.jsonl(d)).collect();
    }
    for (dyno, lines) in DYNOS.iter().zip(&lines) {
        assert!(
            !items(lines, "point", Some("dyno.memory.quota")).is_empty(),
            "{dyno}: no dyno.memory.quota point in its jsonl sink ({} lines)",
            lines.len()
        );
    }
    for (i, dyno) in DYNOS.iter().enumerate().take(2) {
        let spans = items(&lines[i], "span", None);
        pending.check(
            spans.iter().any(|s| s["service"] == "shop"),
            format!(
                "{dyno}: spans of service shop in its jsonl sink ({} spans)",
                spans.len()
            ),
        );
        pending.check(
            !items(&lines[i], "point", Some("shop.requests")).is_empty(),
            format!("{dyno}: shop.requests (DogStatsD) in its jsonl sink"),
        );
    }
    let jobs = items(&lines[2], "point", Some("shop.jobs.perform"));
    pending.check(
        jobs.iter().any(|p| {
            p["tags"].as_array().is_some_and(|t| {
                t.iter()
                    .any(|t| t.as_str().is_some_and(|t| t.starts_with("job:")))
            })
        }),
        format!(
            "worker.1: the mapped metric shop.jobs.perform with a job: tag ({} points)",
            jobs.len()
        ),
    );
    pending.check(
        !formation
            .prometheus(r#"shop_jobs_perform_total{dyno="worker.1",job!=""}"#)
            .is_empty(),
        "Prometheus: shop_jobs_perform_total{dyno=\"worker.1\",job=…}".into(),
    );
    pending.check(
        !formation
            .prometheus(r#"shop_requests_total{dyno=~"web.1|web.2"}"#)
            .is_empty(),
        "Prometheus: shop_requests_total of the web dynos".into(),
    );
    let console = formation
        .exec(
            "load",
            &[
                "curl",
                "-s",
                "--max-time",
                "5",
                "http://console:5050/api/state",
            ],
        )
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .unwrap_or_default();
    pending.check(
        console["formation"].as_array().is_some_and(|f| {
            f.len() == 3
                && f.iter()
                    .all(|d| d["memory"].as_f64().is_some_and(|m| m > 0.0))
        }) && console["traces"]["latest"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "console: three dynos with memory and a trace at http://console:5050".into(),
    );
    let routed = formation
        .exec(
            "load",
            &[
                "curl",
                "-s",
                "-i",
                "--max-time",
                "5",
                "http://router:5000/routed",
            ],
        )
        .unwrap_or_default();
    // `docker compose logs` may lag the container's stdout a little.
    let routed_line = |logs: &str| {
        logs.lines().any(|l| {
            l.contains(r#"heroku[router]: at=info method=GET path="/routed" "#)
                && (l.contains(" dyno=web.1 ") || l.contains(" dyno=web.2 "))
                && l.contains(" status=200 ")
        })
    };
    let mut router_logs = String::new();
    for _ in 0..20 {
        router_logs = formation.logs("router");
        if routed_line(&router_logs) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    pending.check(
        routed.starts_with("HTTP/1.1 200")
            && routed.to_ascii_lowercase().contains("via: 1.1 vegur")
            && routed_line(&router_logs),
        format!("router: http://router:5000 answers through a web dyno and logs it: {routed:?}"),
    );
    // The router posts its lines to the drain service, as Logplex would; its
    // 10-second buckets reach its jsonl sink.
    let mut drained = false;
    for _ in 0..60 {
        drained = formation
            .exec("drain", &["cat", "/telemetry/shop.jsonl"])
            .unwrap_or_default()
            .lines()
            .any(|l| {
                l.contains(r#""name":"heroku.router.request""#) && l.contains(r#""dyno:web."#)
            });
        if drained {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    pending.check(
        drained,
        "drain: the router's lines become heroku.router.request in the drain's jsonl".into(),
    );
    pending.check(
        !formation
            .prometheus(r#"dyno_memory_quota{dyno="web.1"}"#)
            .is_empty(),
        "Prometheus: dyno_memory_quota{dyno=\"web.1\"} scraped from web.1's sidecar".into(),
    );
    for (check, metric) in [
        ("postgres", "postgresql.connections"),
        ("redis", "redis.net.clients"),
    ] {
        let running: Vec<&str> = DYNOS
            .iter()
            .zip(&lines)
            .filter(|(_, l)| !items(l, "point", Some(metric)).is_empty())
            .map(|(d, _)| *d)
            .collect();
        pending.check(
            running == ["web.1"],
            format!(
                "the {check} check runs on exactly one dyno, web.1 ({metric} from {running:?})"
            ),
        );
    }

    // Editing the manifest reloads every dyno in place: new config hash, same
    // container (StartedAt), same app process.
    let manifest = formation.manifests.path().join("observability.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let edited = text.replace(
        r#"tags: ["team:payments"]"#,
        r#"tags: ["team:payments", "compose:reloaded"]"#,
    );
    assert_ne!(
        text, edited,
        "the tags line of examples/shop/compose/observability.yaml moved"
    );
    let apps: Vec<Value> = DYNOS
        .iter()
        .map(|d| formation.status(d).unwrap()["app"]["pid"].clone())
        .collect();
    let temp = formation.manifests.path().join(".observability.yaml.tmp");
    std::fs::write(&temp, edited).unwrap();
    std::fs::rename(&temp, &manifest).unwrap();
    let edit = Instant::now();
    for (i, dyno) in DYNOS.iter().enumerate() {
        let status = wait_for(
            Duration::from_secs(30),
            &format!("{dyno} to reload"),
            || {
                formation
                    .status(dyno)
                    .filter(|s| s["config"]["hash"].as_str() != Some(hashes[dyno].as_str()))
            },
        );
        assert_eq!(status["last_reload"]["result"], "ok", "{status:#}");
        assert_eq!(status["app"]["pid"], apps[i], "{dyno}: the app restarted");
        assert_eq!(status["pid"], 1);
    }
    eprintln!("every dyno reloaded {:?} after the edit", edit.elapsed());
    for (dyno, (id, at)) in DYNOS.iter().zip(&containers) {
        assert_eq!(&started_at(id), at, "{dyno}'s container restarted");
    }

    // A memory overrun: web.2 allocates past its quota and swaps; the sampler logs
    // Heroku's R14 lines at its next sample (every 20 s).
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    assert!(
        swaps.lines().count() > 1,
        "the host has no swap (/proc/swaps is empty): without it a container cannot go past \
         its memory limit (the kernel kills it at the limit, like an R15), so R14 cannot be \
         shown. scripts/test.sh enables a swap file when it runs as root; or run \
         `fallocate -l 1G /swapfile && chmod 600 /swapfile && mkswap /swapfile && swapon /swapfile`."
    );
    let leak = formation.exec(
        "load",
        &[
            "curl",
            "-s",
            "--max-time",
            "120",
            "http://web.2:5000/leak?mb=640",
        ],
    );
    assert_eq!(leak.as_deref().map(str::trim), Some("200 /leak?mb=640"));
    let logs = wait_for(Duration::from_secs(60), "web.2's R14 lines", || {
        let logs = formation.logs("web.2");
        logs.contains("Error R14 (Memory quota exceeded)")
            .then_some(logs)
    });
    let process_running = regex::Regex::new(r"Process running mem=\d+MB\(1\d\d\.\d%\)").unwrap();
    assert!(process_running.is_match(&logs), "web.2's logs:\n{logs}");
    let total = formation.status("web.2").unwrap()["sampler"]["values"]["dyno.memory.total"]
        .as_f64()
        .unwrap();
    assert!(
        total > QUOTA,
        "dyno.memory.total {total} is not past the quota"
    );

    // `docker compose stop web.1`: SIGTERM to the sidecar, which passes it on to the
    // app, flushes its open buckets and exits with the app's status, in the grace period.
    let web1 = &containers[0].0;
    // Stop a few seconds into a bucket, so the open bucket surely holds requests.
    while !(2.0..7.0).contains(&(unix_now() % 10.0)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stop_at = unix_now();
    let stopping = Instant::now();
    formation.ok(&["stop", "web.1"]);
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "web.1 took {took:?} to stop"
    );
    let out = docker(&[
        "inspect",
        "-f",
        "{{.State.ExitCode}} {{.State.OOMKilled}}",
        web1,
    ]);
    let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // app.py does not trap SIGTERM: it dies of it, 128 + 15.
    assert_eq!(state, "143 false", "web.1's exit code and OOM flag");
    let logs = formation.logs("web.1");
    assert!(!logs.contains("did not flush"), "web.1's logs:\n{logs}");
    let lines = formation.jsonl("web.1");
    let last = items(&lines, "point", Some("shop.requests"))
        .iter()
        .filter_map(|p| p["timestamp"].as_f64())
        .fold(0.0, f64::max);
    // Without a flush at exit the newest bucket written would have closed before the stop.
    pending.check(
        last > stop_at - 10.0,
        format!(
            "web.1 flushed its open 10 s bucket when stopped (newest shop.requests bucket {last}, stop at {stop_at:.0})"
        ),
    );

    // `down -v` removes the containers and the volumes.
    formation.ok(&["down", "-v", "--remove-orphans", "-t", "5"]);
    let left = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={PROJECT}"),
    ]);
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "containers left"
    );
    let volumes = docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={PROJECT}"),
    ]);
    assert!(
        String::from_utf8_lossy(&volumes.stdout).trim().is_empty(),
        "volumes left"
    );
    eprintln!("compose test took {:?} in all", started.elapsed());

    assert!(
        pending.0.is_empty(),
        "checks that need the sidecar's receivers / integration checks failed:\n  {}",
        pending.0.join("\n  ")
    );
}
