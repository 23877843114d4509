//! `dynoscope-operator status`: every dyno of a running `up`, with what its sidecar reports.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use dynoscope_crds::sidecar_status::{self, ReloadResult, SidecarStatus};

use crate::up::state::UpState;

/// Why there is nothing to show.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No `up` ran here.
    #[error("no formation state in {0}: is `dynoscope-operator up` running for this app?")]
    NoState(String),
}

/// The table `status` prints.
pub fn render(state_dir: &Path) -> Result<String, StatusError> {
    let path = state_dir.join("up.json");
    let state: UpState = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .ok_or_else(|| StatusError::NoState(state_dir.display().to_string()))?;
    let alive = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(state.pid).unwrap_or(0)),
        None,
    )
    .is_ok();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "up (pid {}): {}",
        state.pid,
        if alive {
            if state.stopping {
                "stopping"
            } else {
                "running"
            }
        } else {
            "not running (last known state)"
        }
    );
    let _ = writeln!(
        out,
        "{:<10} {:<8} {:>7} {:>8} {:<16} {:>18} {:>8} {:>9} {:<}",
        "DYNO",
        "STATE",
        "PID",
        "RESTARTS",
        "CONFIG",
        "MEMORY (RSS/QUOTA)",
        "SPANS",
        "METRICS",
        "LAST RELOAD"
    );
    for dyno in &state.dynos {
        let status = if alive && dyno.pid.is_some() {
            fetch_status(dyno.admin_port)
        } else {
            None
        };
        let sample = |name: &str| {
            status
                .as_ref()
                .and_then(|s| s.sampler.as_ref()?.values.get(name).copied())
        };
        // Dynos under `up` share the laptop's cgroup: the dyno's own memory is its
        // app's process tree plus its sidecar, against its size's quota.
        let own =
            sample("app.memory.rss").map(|app| app + sample("sidecar.memory.rss").unwrap_or(0.0));
        let memory = match (
            own.or_else(|| sample("dyno.memory.rss")),
            sample("dyno.memory.quota"),
        ) {
            (Some(rss), Some(quota)) if quota > 0.0 => format!("{}/{}", mib(rss), mib(quota)),
            (Some(rss), _) => format!("{}/-", mib(rss)),
            _ => "-".to_owned(),
        };
        let counter = |group: &str, name: &str| {
            status
                .as_ref()
                .and_then(|s| s.counters.get(group, name))
                .map_or("-".to_owned(), |n| n.to_string())
        };
        let reload = status
            .as_ref()
            .map_or("-".to_owned(), |s| match &s.last_reload {
                Some(r) if r.result == ReloadResult::Error => {
                    format!("error: {}", r.error.as_deref().unwrap_or_default())
                }
                Some(_) => "ok".to_owned(),
                None => "none yet".to_owned(),
            });
        let hash = status
            .as_ref()
            .and_then(|s| s.config.hash.clone())
            .unwrap_or_else(|| dyno.config_hash.clone());
        let _ = writeln!(
            out,
            "{:<10} {:<8} {:>7} {:>8} {:<16} {:>18} {:>8} {:>9} {}",
            dyno.name,
            dyno.state,
            dyno.pid.map_or("-".to_owned(), |p| p.to_string()),
            dyno.restarts,
            hash,
            memory,
            counter("traces", "spans"),
            counter("dogstatsd", "metrics"),
            reload
        );
    }
    Ok(out)
}

fn mib(bytes: f64) -> String {
    format!("{:.1}MB", bytes / 1024.0 / 1024.0)
}

/// GET /status from a sidecar's loopback admin port; `None` when it does not answer.
pub fn fetch_status(port: u16) -> Option<SidecarStatus> {
    if port == 0 {
        return None;
    }
    sidecar_status::fetch(&format!("127.0.0.1:{port}"), Duration::from_secs(2)).ok()
}
