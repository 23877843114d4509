//! `dynoscope-operator status`: every dyno of a running `up`, with what its sidecar reports.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

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
                .and_then(|s| s["sampler"]["values"][name].as_f64())
        };
        // Dynos under `up` share the laptop's cgroup, so its figures are the
        // machine's: the dyno's own is its app's process tree plus its sidecar.
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
                .and_then(|s| s["counters"][group][name].as_u64())
                .map_or("-".to_owned(), |n| n.to_string())
        };
        let reload = status.as_ref().map_or("-".to_owned(), |s| {
            let reload = &s["last_reload"];
            match reload["result"].as_str() {
                Some("error") => format!("error: {}", reload["error"].as_str().unwrap_or_default()),
                Some(result) => result.to_owned(),
                None => "none yet".to_owned(),
            }
        });
        let hash = status
            .as_ref()
            .and_then(|s| s["config"]["hash"].as_str().map(str::to_owned))
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

/// The first number under any of `keys`, searched depth-first.
/// GET /status from a sidecar's loopback admin port.
pub fn fetch_status(port: u16) -> Option<Value> {
    if port == 0 {
        return None;
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /status HTTP/1.0\r\nHost: localhost\r\nAccept: application/json\r\n\r\n")
        .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let (_, body) = text.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}
