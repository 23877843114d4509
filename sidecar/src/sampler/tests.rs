use std::fs;
use std::path::Path;

use super::cgroup::{parse_limit, Cgroup, CgroupVersion, DynoMemory};
use super::log_lines;
use super::procs::{self, LoadAvg};
use super::*;

/// The two log-runtime-metrics lines of PROTOCOLS.md, section 4.
const HEROKU_LOAD: &str = "source=web.1 dyno=heroku.2808254.d97d0ea7-cf3d-411b-b453-d2943a50b456 sample#load_avg_1m=2.46 sample#load_avg_5m=1.06 sample#load_avg_15m=0.99";
const HEROKU_MEMORY: &str = "source=web.1 dyno=heroku.2808254.d97d0ea7-cf3d-411b-b453-d2943a50b456 sample#memory_total=180.43MB sample#memory_rss=180.05MB sample#memory_cache=0.38MB sample#memory_swap=0.00MB sample#memory_pgpgin=84329pages sample#memory_pgpgout=38140pages sample#memory_quota=512.00MB";

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    }
    fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

const V1_STAT: &str = "cache 10002432\nrss 3108864\nswap 0\npgpgin 17888\npgpgout 14725\n\
    hierarchical_memory_limit 9223372036854771712\ntotal_cache 20004864\ntotal_rss 6217728\n\
    total_swap 4096\ntotal_pgpgin 35776\ntotal_pgpgout 29450\n";

#[test]
fn cgroup_v1_reads_totals_and_the_limit() {
    let root = tempdir();
    let dir = root.path().join("memory/process_api/abc");
    write(&dir.join("memory.usage_in_bytes"), "26222592\n");
    write(&dir.join("memory.stat"), V1_STAT);
    write(&dir.join("memory.limit_in_bytes"), "536870912\n");
    let proc_cgroup = "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n";
    let cgroup = Cgroup::detect(root.path(), proc_cgroup).unwrap_or_else(|| panic!("found"));
    assert_eq!(
        cgroup,
        Cgroup {
            version: CgroupVersion::V1,
            dir: dir.clone()
        }
    );
    let memory = cgroup.read().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        memory,
        DynoMemory {
            rss: 6217728,
            cache: 20004864,
            swap: 4096,
            pgpgin: 35776,
            pgpgout: 29450,
            quota: Some(536870912)
        }
    );
    assert_eq!(memory.total(), 6217728 + 20004864 + 4096);

    // Unlimited: v1 writes 2^63 rounded down to a page.
    write(&dir.join("memory.limit_in_bytes"), "9223372036854771712\n");
    assert_eq!(cgroup.read().map(|m| m.quota).ok(), Some(None));
}

#[test]
fn cgroup_v1_in_a_container_falls_back_to_the_mount_root() {
    let root = tempdir();
    let dir = root.path().join("memory");
    write(&dir.join("memory.usage_in_bytes"), "1\n");
    write(&dir.join("memory.stat"), "cache 1\nrss 2\n");
    write(&dir.join("memory.limit_in_bytes"), "1073741824\n");
    let cgroup = Cgroup::detect(root.path(), "5:memory:/docker/0123abcd\n")
        .unwrap_or_else(|| panic!("found"));
    assert_eq!(cgroup.dir, dir);
    let memory = cgroup.read().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (memory.rss, memory.cache, memory.swap, memory.quota),
        (2, 1, 0, Some(1 << 30))
    );
}

#[test]
fn cgroup_v2_reads_anon_file_swap_and_max() {
    let root = tempdir();
    let dir = root.path().join("system.slice/dyno-web.1.scope");
    write(&dir.join("memory.current"), "190000000\n");
    write(
        &dir.join("memory.stat"),
        "anon 188796109\nfile 398459\nkernel 1000\nshmem 0\npgfault 123\n",
    );
    write(&dir.join("memory.max"), "536870912\n");
    write(&dir.join("memory.swap.current"), "0\n");
    let cgroup = Cgroup::detect(root.path(), "0::/system.slice/dyno-web.1.scope\n")
        .unwrap_or_else(|| panic!("found"));
    assert_eq!(cgroup.version, CgroupVersion::V2);
    let memory = cgroup.read().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        memory,
        DynoMemory {
            rss: 188796109,
            cache: 398459,
            swap: 0,
            pgpgin: 0,
            pgpgout: 0,
            quota: Some(536870912)
        }
    );
    write(&dir.join("memory.max"), "max\n");
    write(&dir.join("memory.swap.current"), "8192\n");
    let memory = cgroup.read().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((memory.quota, memory.swap), (None, 8192));
}

#[test]
fn no_memory_controller_means_no_cgroup() {
    let root = tempdir();
    assert_eq!(Cgroup::detect(root.path(), "0::/\n"), None);
    assert_eq!(Cgroup::detect(root.path(), ""), None);
    assert_eq!(parse_limit("max"), None);
    assert_eq!(parse_limit("garbage"), None);
}

#[test]
fn heroku_sample_lines_parse() {
    let load = log_lines::parse(HEROKU_LOAD).unwrap_or_else(|| panic!("parses"));
    assert_eq!(load.source, "web.1");
    assert_eq!(
        load.dyno,
        "heroku.2808254.d97d0ea7-cf3d-411b-b453-d2943a50b456"
    );
    assert_eq!(
        load.samples[0],
        ("load_avg_1m".to_owned(), 2.46, String::new())
    );
    let memory = log_lines::parse(HEROKU_MEMORY).unwrap_or_else(|| panic!("parses"));
    let names: Vec<&str> = memory.samples.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "memory_total",
            "memory_rss",
            "memory_cache",
            "memory_swap",
            "memory_pgpgin",
            "memory_pgpgout",
            "memory_quota"
        ]
    );
    assert_eq!(
        memory.samples[4],
        ("memory_pgpgin".to_owned(), 84329.0, "pages".to_owned())
    );
    assert_eq!(
        memory.samples[6],
        ("memory_quota".to_owned(), 512.0, "MB".to_owned())
    );
    assert!(log_lines::parse("at=info method=GET").is_none());
}

#[test]
fn heroku_lines_are_reproduced_byte_for_byte() {
    // Values read back from Heroku's own lines, printed again by our formatter.
    let memory = log_lines::parse(HEROKU_MEMORY).unwrap_or_else(|| panic!("parses"));
    let value = |name: &str| {
        memory
            .samples
            .iter()
            .find(|(n, _, _)| n == name)
            .map_or(0.0, |(_, v, _)| *v)
    };
    let bytes = |mb: f64| (mb * 1024.0 * 1024.0).round() as u64;
    let dyno = DynoMemory {
        rss: bytes(value("memory_rss")),
        cache: bytes(value("memory_cache")),
        swap: bytes(value("memory_swap")),
        pgpgin: value("memory_pgpgin") as u64,
        pgpgout: value("memory_pgpgout") as u64,
        quota: Some(bytes(value("memory_quota"))),
    };
    let id = "heroku.2808254.d97d0ea7-cf3d-411b-b453-d2943a50b456";
    assert_eq!(
        log_lines::memory_line("web.1", id, &dyno, 512 << 20),
        HEROKU_MEMORY
    );
    let load = LoadAvg {
        one: 2.46,
        five: 1.06,
        fifteen: 0.99,
    };
    assert_eq!(log_lines::load_line("web.1", id, &load), HEROKU_LOAD);
}

#[test]
fn r14_lines_appear_only_over_quota() {
    let quota = 1000 << 20;
    assert_eq!(log_lines::r14_lines(quota, quota), None);
    let over = log_lines::r14_lines(1028 << 20, quota).unwrap_or_else(|| panic!("over quota"));
    assert_eq!(
        over,
        [
            "Process running mem=1028MB(102.8%)".to_owned(),
            "Error R14 (Memory quota exceeded)".to_owned()
        ]
    );
    assert_eq!(log_lines::r14_lines(5, 0), None);
}

#[test]
fn dyno_ids_look_like_herokus_and_are_stable() {
    let id = log_lines::dyno_id("shop", "web.1", None);
    assert_eq!(id, log_lines::dyno_id("shop", "web.1", None));
    assert_ne!(id, log_lines::dyno_id("shop", "web.2", None));
    let parts: Vec<&str> = id.split('.').collect();
    assert_eq!(parts[0], "heroku");
    assert!(parts[1].chars().all(|c| c.is_ascii_digit()), "{id}");
    assert_eq!(parts[2].len(), 36, "{id}");
    assert_eq!(
        log_lines::dyno_id(
            "shop",
            "web.1",
            Some("d97d0ea7-cf3d-411b-b453-d2943a50b456")
        )
        .rsplit_once('.')
        .map(|p| p.1),
        Some("d97d0ea7-cf3d-411b-b453-d2943a50b456")
    );
}

#[test]
fn process_tree_sums_every_live_descendant_and_nothing_else() {
    use std::os::unix::process::CommandExt as _;
    // A real tree below this test process: a shell, two children that hold
    // memory, and (outside the tree) a process that is not ours.
    let mut app = std::process::Command::new("sh")
        .args(["-c", "sleep 30 & sleep 30 & wait"])
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tree = procs::ProcessTree::new(std::path::Path::new("/proc"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let usage = loop {
        let usage = tree
            .descendants(std::process::id())
            .unwrap_or_else(|e| panic!("{e}"));
        if usage.processes >= 3 || std::time::Instant::now() > deadline {
            break usage;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let group = nix::unistd::Pid::from_raw(i32::try_from(app.id()).unwrap_or(i32::MAX));
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let _ = app.wait();
    assert_eq!(usage.processes, 3, "sh and its two sleeps: {usage:?}");
    // Each is at least a few hundred kB resident; the whole machine would be far more.
    assert!(usage.rss > 3 * 100 * 1024, "{usage:?}");
    assert!(usage.rss < 64 * 1024 * 1024, "{usage:?}");
    // A pid with no children has an empty tree.
    let none = tree
        .descendants(u32::MAX - 1)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(none, procs::TreeUsage::default());
}

#[test]
fn loadavg_and_meminfo_parse() {
    assert_eq!(
        procs::parse_loadavg("2.46 1.06 0.99 2/345 6789\n"),
        Some(LoadAvg {
            one: 2.46,
            five: 1.06,
            fifteen: 0.99
        })
    );
    assert_eq!(procs::parse_loadavg("x"), None);
    let root = tempdir();
    write(
        &root.path().join("meminfo"),
        "MemTotal:       24683496 kB\nMemFree: 1 kB\n",
    );
    assert_eq!(procs::mem_total(root.path()), Some(24683496 * 1024));
}

#[test]
fn a_sample_becomes_the_documented_gauges() {
    let mut sampler = Sampler::new(Path::new("/proc"), Path::new("/sys/fs/cgroup"));
    let sample = sampler.sample(&Budget::default());
    assert!(sample.sidecar_rss > 0, "{sample:?}");
    let names: Vec<String> = points(&sample).into_iter().map(|p| p.name).collect();
    for want in [
        "dyno.memory.rss",
        "dyno.memory.cache",
        "dyno.memory.swap",
        "dyno.memory.total",
        "dyno.load_avg.1m",
        "dyno.load_avg.5m",
        "dyno.load_avg.15m",
        "app.memory.rss",
        "app.memory.swap",
        "app.cpu",
        "app.processes",
        "sidecar.memory.rss",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
}

/// A child of this test process (its own group) holding `mb` MB resident, and the
/// group to kill when done.
fn resident_child(mb: u32) -> std::process::Child {
    use std::io::BufRead as _;
    use std::os::unix::process::CommandExt as _;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            &format!("import sys,time\nx = b'\\x01' * ({mb} << 20)\nprint('ready', flush=True)\ntime.sleep(60)"),
        ])
        .stdout(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("piped"));
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(line.trim(), "ready");
    child
}

fn kill_group(child: &mut std::process::Child) {
    let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
}

#[test]
fn under_up_the_dyno_is_the_sidecar_plus_the_app_tree_against_its_size() {
    const MB: u64 = 1 << 20;
    let mut app = resident_child(48);
    let mut sampler = Sampler::new(Path::new("/proc"), Path::new("/sys/fs/cgroup"));
    let budget = Budget {
        from: MemoryFrom::ProcessTree,
        quota: Some(512 * MB),
        kill: Some(1024 * MB),
    };
    let sample = sampler.sample(&budget);
    kill_group(&mut app);
    // Never the host's cgroup: the tree (python) plus this process (the "sidecar").
    assert_eq!(sample.source, MemorySource::Processes, "{sample:?}");
    assert!(sample.app.rss >= 48 * MB, "{sample:?}");
    assert!(sample.sidecar_rss > 0, "{sample:?}");
    assert_eq!(sample.dyno.rss, sample.app.rss + sample.sidecar_rss);
    assert_eq!(sample.dyno.cache, 0);
    assert_eq!(sample.quota, 512 * MB);
    // 48 MB of app, a test binary and an interpreter: far below the host's memory.
    assert!(sample.dyno.total() < 512 * MB, "{sample:?}");
    let gauges = points(&sample);
    let quota = gauges.iter().find(|p| p.name == "dyno.memory.quota");
    assert_eq!(quota.map(|p| p.value), Some((512 * MB) as f64));
    let line = log_lines::memory_line("web.1", "d", &sample.dyno, sample.quota);
    assert!(line.ends_with(" sample#memory_quota=512.00MB"), "{line}");

    // Under a tiny size the same tree is over quota, then past R15.
    let tiny = Budget {
        from: MemoryFrom::ProcessTree,
        quota: Some(16 * MB),
        kill: Some(32 * MB),
    };
    assert!(log_lines::r14_lines(sample.dyno.total(), 16 * MB).is_some());
    assert!(tiny.must_kill(sample.dyno.total()));
    // Where the cgroup is the source, the sidecar never kills: the platform does.
    let cgroup = Budget {
        from: MemoryFrom::Cgroup,
        ..tiny
    };
    assert!(!cgroup.must_kill(sample.dyno.total()));
    assert!(!budget.must_kill(sample.dyno.total()));
}

#[test]
fn without_a_size_up_still_measures_the_tree_against_the_machine() {
    let mut sampler = Sampler::new(Path::new("/proc"), Path::new("/sys/fs/cgroup"));
    let sample = sampler.sample(&Budget {
        from: MemoryFrom::ProcessTree,
        quota: None,
        kill: None,
    });
    assert_eq!(sample.source, MemorySource::Processes);
    assert_eq!(Some(sample.quota), procs::mem_total(Path::new("/proc")));
    assert!(!Budget::default().must_kill(u64::MAX));
}

#[test]
fn r15_kills_the_apps_process_group() {
    use std::os::unix::process::ExitStatusExt as _;
    let mut app = resident_child(1);
    let stats = crate::stats::Stats::default();
    kill_app(Some(app.id()), 2 << 30, &stats);
    let status = app.wait().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert_eq!(stats.sampler.killed.get(), 1);
    // No app (it never started): nothing to kill, nothing counted.
    kill_app(None, 2 << 30, &stats);
    assert_eq!(stats.sampler.killed.get(), 1);
}

#[test]
fn r15_lines_are_herokus() {
    assert_eq!(
        log_lines::r15_lines(1080 << 20, 512 << 20),
        [
            "Process running mem=1080MB(210.9%)".to_owned(),
            "Error R15 (Memory quota vastly exceeded)".to_owned(),
            "Stopping process with SIGKILL".to_owned(),
        ]
    );
}
