//! Processes: the app's process tree (sysinfo), the sidecar's own memory and load
//! averages (`/proc`). The `/proc` readers take the proc root so tests can use fixtures.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate};

use super::SampleError;

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
    /// CPU time of the processes now in the tree, milliseconds (user + system).
    pub cpu_ms: u64,
    /// Number of processes.
    pub processes: u32,
}

/// The app's process tree, read with sysinfo.
///
/// sysinfo keeps per-process state between refreshes, so one `ProcessTree`
/// lives as long as the sampler. It has no per-process swap: that one figure
/// is read from `/proc/<pid>/status` (`VmSwap`) for the processes of the tree.
#[derive(Debug)]
pub struct ProcessTree {
    /// `None` when sysinfo cannot read this system's processes.
    system: Option<sysinfo::System>,
    /// `/proc`, for `VmSwap`.
    proc_root: PathBuf,
}

impl ProcessTree {
    /// A tree reader; `proc_root` is where `VmSwap` is read (normally `/proc`).
    pub fn new(proc_root: &Path) -> Self {
        ProcessTree {
            system: sysinfo::System::new().ok(),
            proc_root: proc_root.to_owned(),
        }
    }

    /// Sums the usage of every descendant of `root_pid` (not `root_pid` itself).
    pub fn descendants(&mut self, root_pid: u32) -> Result<TreeUsage, SampleError> {
        let Some(system) = self.system.as_mut() else {
            return Err(SampleError::Processes);
        };
        // Threads are not needed: their memory is their process's, and reading
        // every `/proc/<pid>/task` would cost a walk per process.
        system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing()
                .with_memory()
                .with_cpu()
                .without_tasks(),
        );
        let mut children: HashMap<Pid, Vec<&sysinfo::Process>> = HashMap::new();
        for process in system.processes().values() {
            if process.thread_kind().is_some() {
                continue;
            }
            if let Some(parent) = process.parent() {
                children.entry(parent).or_default().push(process);
            }
        }
        let mut usage = TreeUsage::default();
        let mut pending = vec![Pid::from_u32(root_pid)];
        while let Some(parent) = pending.pop() {
            for child in children.get(&parent).into_iter().flatten() {
                pending.push(child.pid());
                usage.processes += 1;
                usage.rss += child.memory();
                usage.cpu_ms += child.accumulated_cpu_time();
                // Processes come and go while we read: a vanished one adds no swap.
                let status = self.proc_root.join(child.pid().to_string()).join("status");
                if let Ok(text) = std::fs::read_to_string(status) {
                    usage.swap += status_bytes(&text, "VmSwap").unwrap_or(0);
                }
            }
        }
        Ok(usage)
    }
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
