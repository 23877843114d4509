//! Processes as `/proc` shows them: the app's process tree, the sidecar's own memory,
//! load averages. Every reader takes the proc root so tests can use fixtures.

use std::collections::BTreeMap;
use std::path::Path;

use super::SampleError;

/// The fields of `/proc/<pid>/stat` the sampler uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id.
    pub pid: u32,
    /// Parent's process id.
    pub ppid: u32,
    /// utime + stime + cutime + cstime, in clock ticks.
    pub cpu_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The command name sits in parentheses and may hold spaces
/// and parentheses itself, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let (head, tail) = text.rsplit_once(')')?;
    let pid = head.split_once(' ')?.0.trim().parse().ok()?;
    // tail: " S ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ..."
    let fields: Vec<&str> = tail.split_whitespace().collect();
    let number = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok());
    Some(ProcStat {
        pid,
        ppid: u32::try_from(number(1)?).ok()?,
        cpu_ticks: number(11)? + number(12)? + number(13)? + number(14)?,
    })
}

/// A `Key:   123 kB` line of `/proc/<pid>/status`, in bytes.
pub fn status_bytes(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// What the processes below a root use together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TreeUsage {
    /// Resident memory, bytes.
    pub rss: u64,
    /// Swapped-out memory, bytes.
    pub swap: u64,
    /// CPU time, clock ticks (children that were waited for included).
    pub cpu_ticks: u64,
    /// Number of processes.
    pub processes: u32,
}

/// Sums the usage of every descendant of `root_pid` (not `root_pid` itself).
pub fn descendants(proc_root: &Path, root_pid: u32) -> Result<TreeUsage, SampleError> {
    let entries = std::fs::read_dir(proc_root).map_err(|source| SampleError::Read {
        path: proc_root.to_owned(),
        source,
    })?;
    let mut children: BTreeMap<u32, Vec<ProcStat>> = BTreeMap::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // Processes come and go while we read: a vanished one is simply skipped.
        let Ok(text) = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")) else {
            continue;
        };
        if let Some(stat) = parse_stat(&text) {
            children.entry(stat.ppid).or_default().push(stat);
        }
    }
    let mut usage = TreeUsage::default();
    let mut pending = vec![root_pid];
    while let Some(parent) = pending.pop() {
        for child in children.get(&parent).into_iter().flatten() {
            pending.push(child.pid);
            usage.processes += 1;
            usage.cpu_ticks += child.cpu_ticks;
            if let Ok(status) =
                std::fs::read_to_string(proc_root.join(child.pid.to_string()).join("status"))
            {
                usage.rss += status_bytes(&status, "VmRSS").unwrap_or(0);
                usage.swap += status_bytes(&status, "VmSwap").unwrap_or(0);
            }
        }
    }
    Ok(usage)
}

/// Resident memory of one process (`self` for the sidecar), bytes.
pub fn rss(proc_root: &Path, pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(proc_root.join(pid).join("status")).ok()?;
    status_bytes(&status, "VmRSS")
}

/// Load averages over 1, 5 and 15 minutes.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LoadAvg {
    /// Over 1 minute.
    pub one: f64,
    /// Over 5 minutes.
    pub five: f64,
    /// Over 15 minutes.
    pub fifteen: f64,
}

/// Parses `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<LoadAvg> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some(LoadAvg {
        one: fields.next()??,
        five: fields.next()??,
        fifteen: fields.next()??,
    })
}

/// The machine's memory (`MemTotal` of `/proc/meminfo`), the quota when the cgroup has none.
pub fn mem_total(proc_root: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(proc_root.join("meminfo")).ok()?;
    status_bytes(&text, "MemTotal")
}
