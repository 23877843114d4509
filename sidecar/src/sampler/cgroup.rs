//! The dyno's memory as its cgroup accounts it (v1 or v2), read from files under a root
//! directory so tests can point it at fixtures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::SampleError;

/// Limits at or above this mean "no limit" (v1 writes 2^63 rounded down to a page).
const UNLIMITED: u64 = 1 << 60;

/// Which cgroup interface the dyno's memory controller speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum CgroupVersion {
    /// `memory.usage_in_bytes`, `memory.stat`, `memory.limit_in_bytes`.
    V1,
    /// `memory.current`, `memory.stat`, `memory.max`, `memory.swap.current`.
    V2,
}

/// The memory cgroup of the dyno.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    /// v1 or v2.
    pub version: CgroupVersion,
    /// The directory holding the `memory.*` files.
    pub dir: PathBuf,
}

/// The dyno's memory, in bytes (pages for pgpgin/pgpgout), as Heroku's log-runtime-metrics names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DynoMemory {
    /// Anonymous memory (`rss` in v1's memory.stat, `anon` in v2's).
    pub rss: u64,
    /// Page cache (`cache` in v1, `file` in v2).
    pub cache: u64,
    /// Swap in use.
    pub swap: u64,
    /// Pages read in (v1 only; 0 on v2, which does not count them).
    pub pgpgin: u64,
    /// Pages written out (v1 only; 0 on v2).
    pub pgpgout: u64,
    /// The memory limit, `None` when unlimited.
    pub quota: Option<u64>,
}

impl DynoMemory {
    /// rss + cache + swap, as Heroku's `memory_total`.
    pub fn total(&self) -> u64 {
        self.rss
            .saturating_add(self.cache)
            .saturating_add(self.swap)
    }
}

impl Cgroup {
    /// Finds the memory cgroup of a process from its `/proc/<pid>/cgroup` text, under `root`
    /// (normally `/sys/fs/cgroup`). v1's memory controller wins over v2 on hybrid hosts.
    /// `None` when no memory controller is readable (not Linux, or a root cgroup on v2).
    pub fn detect(root: &Path, proc_cgroup: &str) -> Option<Cgroup> {
        let mut v1 = None;
        let mut v2 = None;
        for line in proc_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if controllers.split(',').any(|c| c == "memory") {
                v1 = Some(path.trim_start_matches('/'));
            } else if id == "0" && controllers.is_empty() {
                v2 = Some(path.trim_start_matches('/'));
            }
        }
        // Inside a container the path of /proc/self/cgroup may be the host's while the
        // mount shows only the container's subtree: try the full path, then the mount root.
        if let Some(path) = v1 {
            for mount in [root.join("memory"), root.join("memory,cpuset")] {
                for dir in [mount.join(path), mount.clone()] {
                    if dir.join("memory.usage_in_bytes").is_file() {
                        return Some(Cgroup {
                            version: CgroupVersion::V1,
                            dir,
                        });
                    }
                }
            }
        }
        if let Some(path) = v2 {
            for dir in [root.join(path), root.to_owned()] {
                if dir.join("memory.current").is_file() {
                    return Some(Cgroup {
                        version: CgroupVersion::V2,
                        dir,
                    });
                }
            }
        }
        None
    }

    /// Reads the cgroup's memory now.
    pub fn read(&self) -> Result<DynoMemory, SampleError> {
        let text = self.read_file("memory.stat")?;
        let stat = parse_stat(&text);
        let get = |key: &str| stat.get(key).copied().unwrap_or(0);
        match self.version {
            CgroupVersion::V1 => {
                // total_* include child cgroups (hierarchy), which is the dyno as a whole.
                let pick = |key: &str| {
                    stat.get(&*format!("total_{key}"))
                        .copied()
                        .unwrap_or_else(|| get(key))
                };
                let limit = parse_limit(&self.read_file("memory.limit_in_bytes")?);
                let hierarchical = stat
                    .get("hierarchical_memory_limit")
                    .copied()
                    .filter(|l| *l < UNLIMITED);
                Ok(DynoMemory {
                    rss: pick("rss"),
                    cache: pick("cache"),
                    swap: pick("swap"),
                    pgpgin: pick("pgpgin"),
                    pgpgout: pick("pgpgout"),
                    quota: match (limit, hierarchical) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    },
                })
            }
            CgroupVersion::V2 => {
                let swap = self
                    .read_file("memory.swap.current")
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0);
                Ok(DynoMemory {
                    rss: get("anon"),
                    cache: get("file"),
                    swap,
                    pgpgin: 0,
                    pgpgout: 0,
                    quota: parse_limit(&self.read_file("memory.max")?),
                })
            }
        }
    }

    fn read_file(&self, name: &str) -> Result<String, SampleError> {
        let path = self.dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| SampleError::Read { path, source })
    }
}

/// `key value` lines of a `memory.stat`.
pub fn parse_stat(text: &str) -> BTreeMap<&str, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key, value.trim().parse().ok()?))
        })
        .collect()
}

/// A limit file: a number of bytes, or `max` (v2) / a huge number (v1) for none.
pub fn parse_limit(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|limit| *limit < UNLIMITED)
}
