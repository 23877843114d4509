//! End-to-end tests of `dynoscope-sidecar run`: the real binary supervising real
//! processes, real signals, real files being swapped under it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dynoscope_crds::sidecar_status::{AppState, Observability, ReloadResult, SidecarStatus};
use dynoscope_tests::harness::{read, render, sidecar_status, status_of, Sidecar};
use dynoscope_tests::servers::free_port;
use dynoscope_tests::{bin, wait_for};
use nix::sys::signal::Signal;
use serde_json::Value;

/// A spec with no receivers (other tests may hold their ports) and the given admin port.
fn quiet_spec(admin_port: u16, extra: &str) -> String {
    format!(
        "  admin: {{port: {admin_port}}}\n  apm: {{enabled: false}}\n  dogstatsd: {{enabled: false}}\n{extra}"
    )
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Writes `text` to a temp file beside `path` and renames it over `path`, as the operator does.
fn write_atomically(path: &Path, text: &str) {
    let temp = path.with_extension("tmp");
    write(&temp, text);
    std::fs::rename(&temp, path).unwrap_or_else(|e| panic!("{e}"));
}

/// Whether a process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    let stat = read(Path::new(&format!("/proc/{pid}/stat")));
    match stat.rsplit_once(')') {
        Some((_, rest)) => !rest.trim_start().starts_with('Z'),
        None => false,
    }
}

fn ppid(pid: i32) -> Option<i32> {
    let stat = read(Path::new(&format!("/proc/{pid}/stat")));
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn pid_in(path: &Path) -> Option<i32> {
    read(path).trim().parse().ok()
}

fn run_to_exit(dir: &Path, script: &str) -> i32 {
    let mut sidecar = Sidecar::start(
        dir,
        &["run", "--admin-port", "0", "--", "sh", "-c", script],
        &[],
    );
    sidecar.wait(Duration::from_secs(10))
}

#[test]
fn exit_codes_pass_through() {
    let dir = tempdir();
    assert_eq!(run_to_exit(dir.path(), "exit 0"), 0);
    assert_eq!(run_to_exit(dir.path(), "exit 3"), 3);
    assert_eq!(run_to_exit(dir.path(), "kill -TERM $$"), 128 + 15);
    assert_eq!(run_to_exit(dir.path(), "kill -KILL $$"), 128 + 9);
    let mut missing = Sidecar::start(
        dir.path(),
        &["run", "--admin-port", "0", "--", "/no/such/program"],
        &[],
    );
    assert_eq!(missing.wait(Duration::from_secs(10)), 127);
    assert!(
        missing.stderr().contains("/no/such/program"),
        "{}",
        missing.stderr()
    );
}

#[test]
fn sigterm_gives_a_trapping_app_its_time_and_it_exits_cleanly() {
    let dir = tempdir();
    let script = "trap 'sleep 1; exit 0' TERM; touch ready; while :; do sleep 0.05; done";
    let mut sidecar = Sidecar::start(
        dir.path(),
        &[
            "run",
            "--admin-port",
            "0",
            "--grace-period",
            "5s",
            "--",
            "sh",
            "-c",
            script,
        ],
        &[],
    );
    wait_for(Duration::from_secs(5), "the app to set its trap", || {
        dir.path().join("ready").exists().then_some(())
    });
    let start = Instant::now();
    sidecar.signal(Signal::SIGTERM);
    assert_eq!(
        sidecar.wait(Duration::from_secs(5)),
        0,
        "{}",
        sidecar.stderr()
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn an_app_ignoring_sigterm_and_its_grandchildren_are_killed_after_the_grace_period() {
    let dir = tempdir();
    let script =
        "trap '' TERM; sleep 60 & echo $! > gc1; sleep 60 & echo $! > gc2; touch ready; wait; wait";
    let mut sidecar = Sidecar::start(
        dir.path(),
        &[
            "run",
            "--admin-port",
            "0",
            "--grace-period",
            "1500ms",
            "--",
            "sh",
            "-c",
            script,
        ],
        &[],
    );
    wait_for(Duration::from_secs(5), "the app to start", || {
        dir.path().join("ready").exists().then_some(())
    });
    let grandchildren = [
        pid_in(&dir.path().join("gc1")),
        pid_in(&dir.path().join("gc2")),
    ];
    let grandchildren: Vec<i32> = grandchildren.into_iter().flatten().collect();
    assert_eq!(grandchildren.len(), 2);
    assert!(grandchildren.iter().all(|pid| alive(*pid)));

    let start = Instant::now();
    sidecar.signal(Signal::SIGTERM);
    // Heroku also sends the app its own TERM: a second one must not shorten the grace period.
    std::thread::sleep(Duration::from_millis(300));
    sidecar.signal(Signal::SIGTERM);
    assert_eq!(
        sidecar.wait(Duration::from_secs(6)),
        128 + 9,
        "{}",
        sidecar.stderr()
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "{took:?}"
    );
    wait_for(
        Duration::from_secs(2),
        "the grandchildren to be gone",
        || grandchildren.iter().all(|pid| !alive(*pid)).then_some(()),
    );
}

#[test]
fn orphaned_zombies_are_reaped_by_the_sidecar() {
    let dir = tempdir();
    let port = free_port();
    let port_text = port.to_string();
    // The subshell starts a short sleep and exits: the sleep is orphaned and re-parented
    // to the nearest subreaper, which must be the sidecar, which must reap it.
    let script = "(sleep 0.5 & echo $! > orphan); touch ready; sleep 30";
    let sidecar = Sidecar::start(
        dir.path(),
        &["run", "--admin-port", &port_text, "--", "sh", "-c", script],
        &[],
    );
    let orphan = wait_for(Duration::from_secs(5), "the orphan's pid", || {
        pid_in(&dir.path().join("orphan"))
    });
    let parent = wait_for(
        Duration::from_secs(2),
        "the orphan to be re-parented",
        || ppid(orphan).filter(|p| *p == sidecar.pid() || !alive(orphan)),
    );
    assert_eq!(parent, sidecar.pid(), "the orphan went to the sidecar");
    wait_for(
        Duration::from_secs(3),
        "the orphan to be reaped, not left a zombie",
        || (!Path::new(&format!("/proc/{orphan}")).exists()).then_some(()),
    );
    let reaped = wait_for(Duration::from_secs(3), "/status", || status_of(port))["counters"]
        ["supervisor"]["reaped"]
        .as_u64()
        .unwrap_or_default();
    assert!(reaped >= 1, "reaped {reaped}");
}

#[test]
fn app_memory_is_sampled_and_printed_as_heroku_does() {
    let dir = tempdir();
    let jsonl = dir.path().join("telemetry.jsonl");
    let config = dir.path().join("dyno.yaml");
    let spec = quiet_spec(
        0,
        &format!(
            "  processMetrics: {{interval: 200ms, logLines: true}}\n  sinks: [{{type: jsonl, path: {}}}, {{type: stdout}}]\n",
            jsonl.display()
        ),
    );
    write(&config, &render(&spec));
    let app = "b = bytearray(100 * 2**20)\nb[::4096] = b'\\x01' * len(range(0, len(b), 4096))\n\
        open('ready', 'w').close()\nimport time\ntime.sleep(30)\n";
    let config_arg = config.display().to_string();
    let sidecar = Sidecar::start(
        dir.path(),
        &[
            "run",
            "--config",
            &config_arg,
            "--",
            "python3",
            "-S",
            "-I",
            "-c",
            app,
        ],
        &[],
    );
    wait_for(Duration::from_secs(10), "the app to allocate", || {
        dir.path().join("ready").exists().then_some(())
    });
    let mib = 1024.0 * 1024.0;
    let rss_points = || -> Vec<Value> {
        read(&jsonl)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|v| v["name"] == "app.memory.rss")
            .collect()
    };
    // Samples taken during the allocation do not count: only those after `ready`.
    let before = rss_points().len();
    let rss = wait_for(
        Duration::from_secs(5),
        "app.memory.rss after the allocation",
        || {
            let point = rss_points().into_iter().nth(before)?;
            Some((point["value"].as_f64()?, point))
        },
    );
    let (value, point) = rss;
    assert!(
        (85.0 * mib..=115.0 * mib).contains(&value),
        "app.memory.rss = {:.1} MiB",
        value / mib
    );
    assert_eq!(point["kind"], "point");
    assert_eq!(point["type"], "gauge");
    assert_eq!(point["host"], "shop.web.1");
    let tags: Vec<&str> = point["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tags.contains(&"dyno:web.1") && tags.contains(&"service:shop"),
        "{tags:?}"
    );

    // stdout: Heroku's two log-runtime-metrics lines and the l2met lines of the stdout sink.
    let stdout = read(&sidecar.stdout);
    let memory_line = stdout
        .lines()
        .find(|l| l.contains("sample#memory_total="))
        .unwrap_or_else(|| panic!("no memory line in:\n{stdout}"));
    let words: Vec<&str> = memory_line.split(' ').collect();
    assert_eq!(words[0], "source=web.1");
    assert!(words[1].starts_with("dyno=heroku."), "{memory_line}");
    let names: Vec<&str> = words[2..]
        .iter()
        .filter_map(|w| w.split_once('=').map(|p| p.0))
        .collect();
    assert_eq!(
        names,
        [
            "sample#memory_total",
            "sample#memory_rss",
            "sample#memory_cache",
            "sample#memory_swap",
            "sample#memory_pgpgin",
            "sample#memory_pgpgout",
            "sample#memory_quota"
        ]
    );
    assert!(
        words[2].ends_with("MB") && words[6].ends_with("pages"),
        "{memory_line}"
    );
    assert!(stdout
        .lines()
        .any(|l| l.starts_with("source=web.1 dyno=heroku.") && l.contains(" sample#load_avg_1m=")));
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("source=web.1 sample#app.memory.rss=")),
        "{stdout}"
    );
}

/// Starts a sidecar on a config file and returns it, its admin port and the first hash.
fn start_on_config(dir: &Path, tag: &str) -> (Sidecar, u16, PathBuf) {
    let port = free_port();
    let config = dir.join("dyno.yaml");
    write(
        &config,
        &render(&quiet_spec(port, &format!("  tags: ['team:{tag}']\n"))),
    );
    let config_arg = config.display().to_string();
    let sidecar = Sidecar::start(
        dir,
        &["run", "--config", &config_arg, "--", "sleep", "30"],
        &[],
    );
    (sidecar, port, config)
}

fn hash_of(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("configHash: "))
        .map(|h| h.trim().trim_matches('\'').to_owned())
        .unwrap_or_default()
}

fn wait_for_hash(port: u16, hash: &str, within: Duration) -> SidecarStatus {
    wait_for(within, &format!("/status to show config {hash}"), || {
        sidecar_status(port).filter(|s| s.config.hash.as_deref() == Some(hash))
    })
}

#[test]
fn a_changed_config_is_applied_without_restarting_the_app() {
    let dir = tempdir();
    let (_sidecar, port, config) = start_on_config(dir.path(), "a");
    let first = wait_for_hash(port, &hash_of(&read(&config)), Duration::from_secs(5));
    let app_pid = first.app.pid;
    assert!(app_pid.is_some(), "{first:?}");

    // The operator's way: a temp file renamed over the config.
    let second = render(&quiet_spec(port, "  tags: ['team:b']\n"));
    write_atomically(&config, &second);
    let status = wait_for_hash(port, &hash_of(&second), Duration::from_secs(1));
    assert_eq!(status.app.pid, app_pid, "same app process");
    let reload = status.last_reload.unwrap_or_default();
    assert_eq!(reload.result, ReloadResult::Ok);
    assert_eq!(reload.changed, ["tags"]);

    // An editor's way: the file rewritten in place.
    let third = render(&quiet_spec(port, "  tags: ['team:c']\n"));
    write(&config, &third);
    let status = wait_for_hash(port, &hash_of(&third), Duration::from_secs(1));
    assert_eq!(status.app.pid, app_pid);
    assert!(
        status.counters.get("reloads", "ok") >= Some(2),
        "{status:?}"
    );

    // A broken config: the old one stays and the error is reported.
    write_atomically(
        &config,
        &third.replace("schemaVersion: 1", "schemaVersion: [1"),
    );
    let status = wait_for(Duration::from_secs(1), "the reload error", || {
        sidecar_status(port).filter(|s| {
            s.last_reload
                .as_ref()
                .is_some_and(|r| r.result == ReloadResult::Error)
        })
    });
    assert_eq!(status.config.hash, Some(hash_of(&third)));
    let error = status.last_reload.as_ref().and_then(|r| r.error.as_deref());
    assert!(error.is_some_and(|e| e.contains("dyno.yaml")), "{status:?}");
    assert!(status.counters.get("reloads", "failed") >= Some(1));
    assert_eq!(status.app.pid, app_pid);
    assert_eq!(status.app.state, AppState::Running);

    // `dynoscope-sidecar status` prints the same for people.
    let output = Command::new(bin("dynoscope-sidecar"))
        .args(["status", "--admin", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    for want in [
        "Config\n======",
        &format!("  Hash: {}", hash_of(&third)),
        "  Last reload: error",
        "App\n===",
        "  State: running",
    ] {
        assert!(text.contains(want), "want {want:?} in:\n{text}");
    }
}

#[test]
fn a_kubernetes_configmap_symlink_swap_is_followed() {
    let dir = tempdir();
    let port = free_port();
    let first = render(&quiet_spec(port, "  tags: ['team:a']\n"));
    let second = render(&quiet_spec(port, "  tags: ['team:b']\n"));
    // The layout kubelet writes: dyno.yaml -> ..data/dyno.yaml, ..data -> ..<timestamp>.
    let mount = dir.path().join("config");
    std::fs::create_dir_all(mount.join("..2024_01")).unwrap_or_else(|e| panic!("{e}"));
    write(&mount.join("..2024_01/dyno.yaml"), &first);
    let link = |target: &str, name: &str| {
        std::os::unix::fs::symlink(target, mount.join(name)).unwrap_or_else(|e| panic!("{e}"))
    };
    link("..2024_01", "..data");
    link("..data/dyno.yaml", "dyno.yaml");
    let config_arg = mount.join("dyno.yaml").display().to_string();
    let _sidecar = Sidecar::start(
        dir.path(),
        &["run", "--config", &config_arg, "--", "sleep", "30"],
        &[],
    );
    wait_for_hash(port, &hash_of(&first), Duration::from_secs(5));

    std::fs::create_dir_all(mount.join("..2024_02")).unwrap_or_else(|e| panic!("{e}"));
    write(&mount.join("..2024_02/dyno.yaml"), &second);
    link("..2024_02", "..data_tmp");
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_dir_all(mount.join("..2024_01")).unwrap_or_else(|e| panic!("{e}"));
    wait_for_hash(port, &hash_of(&second), Duration::from_secs(1));
}

#[test]
fn a_config_deleted_then_restored_unchanged_clears_the_error_and_says_so_once() {
    let dir = tempdir();
    let (sidecar, port, config) = start_on_config(dir.path(), "a");
    let text = read(&config);
    let hash = hash_of(&text);
    wait_for_hash(port, &hash, Duration::from_secs(5));

    std::fs::remove_file(&config).unwrap_or_else(|e| panic!("{e}"));
    let status = wait_for(Duration::from_secs(5), "the read error", || {
        status_of(port).filter(|s| s["last_reload"]["result"] == "error")
    });
    assert_eq!(status["config"]["hash"], hash, "the running config stays");

    write_atomically(&config, &text);
    let status = wait_for(Duration::from_secs(5), "the error to clear", || {
        status_of(port).filter(|s| s["last_reload"]["result"] == "ok")
    });
    assert_eq!(status["config"]["hash"], hash);
    assert!(status["last_reload"]["error"].is_null(), "{status}");
    let recovered = format!("config {hash} readable again");
    wait_for(Duration::from_secs(2), "the recovery in the log", || {
        sidecar.stderr().contains(&recovered).then_some(())
    });
    // Once: later polls of the same file say nothing more.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        sidecar.stderr().matches(&recovered).count(),
        1,
        "{}",
        sidecar.stderr()
    );
}

#[test]
fn an_invalid_config_at_boot_still_runs_the_app_and_a_fixed_one_is_applied() {
    let dir = tempdir();
    let port = free_port();
    let config = dir.path().join("dyno.yaml");
    write(&config, "schemaVersion: 1\nthis is not a DynoConfig\n");
    let config_arg = config.display().to_string();
    let port_arg = port.to_string();
    let sidecar = Sidecar::start(
        dir.path(),
        &[
            "run",
            "--config",
            &config_arg,
            "--admin-port",
            &port_arg,
            "--",
            "sh",
            "-c",
            "touch ran; sleep 30",
        ],
        &[],
    );
    wait_for(Duration::from_secs(5), "the app to run", || {
        dir.path().join("ran").exists().then_some(())
    });
    let status = wait_for(Duration::from_secs(5), "/status", || status_of(port));
    assert_eq!(status["config"]["observability"], "off");
    assert_eq!(status["last_reload"]["result"], "error");
    let stderr = sidecar.stderr();
    assert!(
        stderr.contains("dyno.yaml") && stderr.contains("the app runs anyway"),
        "{stderr}"
    );

    let valid = render(&quiet_spec(port, ""));
    write_atomically(&config, &valid);
    let status = wait_for_hash(port, &hash_of(&valid), Duration::from_secs(2));
    assert_eq!(status.config.observability, Observability::On);

    // A missing config file: the same, the app runs.
    let missing = dir.path().join("missing.yaml").display().to_string();
    let mut sidecar = Sidecar::start(
        dir.path(),
        &[
            "run",
            "--config",
            &missing,
            "--admin-port",
            "0",
            "--",
            "sh",
            "-c",
            "exit 4",
        ],
        &[],
    );
    assert_eq!(sidecar.wait(Duration::from_secs(5)), 4);
    assert!(
        sidecar.stderr().contains("missing.yaml"),
        "{}",
        sidecar.stderr()
    );
}

#[test]
fn the_app_gets_unified_service_tagging_variables_unless_set() {
    let dir = tempdir();
    let (apm, dsd) = (free_port(), free_port());
    let config = dir.path().join("dyno.yaml");
    let spec = format!(
        "  admin: {{port: 0}}\n  env: staging\n  version: {{fromEnv: MY_RELEASE}}\n  apm: {{port: {apm}}}\n  dogstatsd: {{port: {dsd}}}\n  tags: ['team:a']\n"
    );
    write(&config, &render(&spec));
    let config_arg = config.display().to_string();
    let mut sidecar = Sidecar::start(
        dir.path(),
        &[
            "run",
            "--config",
            &config_arg,
            "--",
            "sh",
            "-c",
            "env > app.env",
        ],
        &[("MY_RELEASE", "v42"), ("DD_ENV", "mine")],
    );
    assert_eq!(
        sidecar.wait(Duration::from_secs(5)),
        0,
        "{}",
        sidecar.stderr()
    );
    let env = read(&dir.path().join("app.env"));
    for want in [
        "DD_SERVICE=shop".to_owned(),
        "DD_ENV=mine".to_owned(),
        "DD_VERSION=v42".to_owned(),
        "DD_TAGS=appname:shop,dyno:web.1,dynotype:web,team:a".to_owned(),
        "DD_AGENT_HOST=127.0.0.1".to_owned(),
        format!("DD_TRACE_AGENT_PORT={apm}"),
        format!("DD_DOGSTATSD_PORT={dsd}"),
    ] {
        assert!(env.lines().any(|l| l == want), "want {want} in:\n{env}");
    }
}

#[test]
fn a_manifest_is_rendered_for_dyno_and_re_rendered_when_it_changes() {
    let dir = tempdir();
    let port = free_port();
    let manifest = dir.path().join("observability.yaml");
    let text = |tag: &str| {
        format!(
            "apiVersion: dynoscope.dev/v1alpha1\nkind: ObservabilityConfig\nmetadata: {{name: shop}}\nspec:\n{}",
            quiet_spec(port, &format!("  tags: ['team:{tag}']\n"))
        )
    };
    write(&manifest, &text("a"));
    write(
        &dir.path().join("Procfile"),
        "web: sleep 30\nworker: sleep 30\n",
    );
    let manifest_arg = manifest.display().to_string();
    let _sidecar = Sidecar::start(
        dir.path(),
        &["run", "--manifest", &manifest_arg, "--", "sleep", "30"],
        &[("DYNO", "worker.1")],
    );
    let first = wait_for(Duration::from_secs(5), "/status with a config", || {
        status_of(port).filter(|s| s["config"]["hash"].is_string())
    });
    assert_eq!(first["config"]["dyno"], "worker.1");
    assert!(
        first["config"]["source"]
            .as_str()
            .is_some_and(|s| s.contains("Procfile")),
        "{first}"
    );
    write_atomically(&manifest, &text("b"));
    let changed = wait_for(Duration::from_secs(1), "the re-rendered config", || {
        status_of(port).filter(|s| s["config"]["hash"] != first["config"]["hash"])
    });
    assert_eq!(
        changed["last_reload"]["changed"],
        serde_json::json!(["tags"])
    );
    assert_eq!(changed["app"]["pid"], first["app"]["pid"]);
}
