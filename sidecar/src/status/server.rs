//! The loopback admin endpoint (`GET /status`, JSON) and `dynoscope-sidecar status`,
//! which prints it for people, grouped like `agent status`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use dynoscope_crds::DynoConfig;
use serde_json::Value;
use tokio::sync::watch;

use crate::config;
use crate::stats::Stats;
use crate::status::StatusBoard;

/// What the handlers read.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The status board.
    pub status: Arc<StatusBoard>,
    /// The counters.
    pub stats: Arc<Stats>,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/status", get(status))
        .with_state(state)
}

async fn status(State(state): State<AdminState>) -> Json<Value> {
    Json(state.status.snapshot(&state.stats))
}

/// Serves `/status` on an already-bound listener until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, state: AdminState) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

/// Serves on `127.0.0.1:<admin port>`, re-binding when the config's port changes
/// (`flag` overrides the config). A port that cannot be bound is reported, never fatal.
pub async fn run(
    mut config: watch::Receiver<Option<Arc<DynoConfig>>>,
    flag: Option<u16>,
    state: AdminState,
) {
    loop {
        let port = config::admin_port(config.borrow_and_update().as_deref(), flag);
        let listener = match port {
            0 => None,
            port => {
                match tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await
                {
                    Ok(listener) => {
                        tracing::info!("status at http://127.0.0.1:{port}/status");
                        Some(listener)
                    }
                    Err(err) => {
                        tracing::error!("cannot serve /status on 127.0.0.1:{port}: {err}; set another adminPort");
                        None
                    }
                }
            }
        };
        let mut watcher = config.clone();
        let port_changed = async move {
            loop {
                if watcher.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                if config::admin_port(watcher.borrow_and_update().as_deref(), flag) != port {
                    return;
                }
            }
        };
        match listener {
            Some(listener) => {
                let server = axum::serve(listener, router(state.clone()))
                    .with_graceful_shutdown(port_changed);
                if let Err(err) = server.await {
                    tracing::error!("/status server failed: {err}");
                }
            }
            None => port_changed.await,
        }
    }
}

/// Why the status could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Nothing answered.
    #[error(
        "cannot reach the sidecar at {addr}: {source}; is it running, and is its adminPort {addr}?"
    )]
    Connect {
        /// The address tried.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Something answered, but not with the status.
    #[error("{addr} did not answer with a status: {reason}")]
    Response {
        /// The address tried.
        addr: String,
        /// What was wrong.
        reason: String,
    },
}

/// Fetches `/status` from `addr` (`host:port`) with a plain HTTP/1.1 request.
pub fn fetch(addr: &str) -> Result<Value, AdminError> {
    let connect_error = |source| AdminError::Connect {
        addr: addr.to_owned(),
        source,
    };
    let response_error = |reason: String| AdminError::Response {
        addr: addr.to_owned(),
        reason,
    };
    let target = addr
        .to_socket_addrs()
        .map_err(connect_error)?
        .next()
        .ok_or_else(|| connect_error(std::io::ErrorKind::NotFound.into()))?;
    let mut stream =
        TcpStream::connect_timeout(&target, Duration::from_secs(2)).map_err(connect_error)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(connect_error)?;
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(connect_error)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(connect_error)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| response_error("no HTTP response".into()))?;
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.contains(" 200 ") {
        return Err(response_error(status_line.to_owned()));
    }
    serde_json::from_str(body).map_err(|err| response_error(err.to_string()))
}

/// The status for people: sections with underlined titles, like `agent status`.
pub fn render(status: &Value) -> String {
    let mut out = String::new();
    let text = |value: &Value| match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let section = |out: &mut String, title: &str| {
        let _ = writeln!(out, "\n{title}\n{}", "=".repeat(title.len()));
    };
    let version = text(&status["version"]);
    let title = format!("dynoscope sidecar (v{version})");
    let _ = writeln!(out, "{title}\n{}", "=".repeat(title.len()));
    let _ = writeln!(out, "  PID: {}", text(&status["pid"]));
    let uptime = status["uptime_seconds"].as_f64().unwrap_or(0.0);
    let _ = writeln!(
        out,
        "  Uptime: {}",
        dynoscope_crds::duration::HumanDuration(Duration::from_secs(uptime as u64))
    );

    section(&mut out, "Config");
    let config = &status["config"];
    for (label, key) in [
        ("Source", "source"),
        ("Observability", "observability"),
        ("Hash", "hash"),
        ("Resource", "resource"),
        ("Dyno", "dyno"),
    ] {
        let _ = writeln!(out, "  {label}: {}", text(&config[key]));
    }
    let reloads = &status["counters"]["reloads"];
    let _ = writeln!(
        out,
        "  Reloads: {} ok, {} failed",
        text(&reloads["ok"]),
        text(&reloads["failed"])
    );
    match status["last_reload"].as_object() {
        None => {
            let _ = writeln!(out, "  Last reload: none");
        }
        Some(last) => {
            let result = last.get("result").map(text).unwrap_or_default();
            let _ = write!(out, "  Last reload: {result}");
            if let Some(changed) = last
                .get("changed")
                .and_then(Value::as_array)
                .filter(|c| !c.is_empty())
            {
                let names: Vec<String> = changed.iter().map(text).collect();
                let _ = write!(out, " (changed: {})", names.join(", "));
            }
            let _ = writeln!(out);
            if let Some(error) = last.get("error").and_then(Value::as_str) {
                for line in error.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
    }

    section(&mut out, "App");
    let app = &status["app"];
    let _ = writeln!(out, "  PID: {}", text(&app["pid"]));
    let _ = writeln!(out, "  State: {}", text(&app["state"]));
    let command: Vec<String> = app["command"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let _ = writeln!(out, "  Command: {}", command.join(" "));
    if !app["exit_code"].is_null() {
        let _ = writeln!(out, "  Exit code: {}", text(&app["exit_code"]));
    }

    section(&mut out, "Memory sampler");
    match status["sampler"].as_object() {
        None => {
            let _ = writeln!(out, "  No sample yet (off, or the first one is due).");
        }
        Some(sampler) => {
            let _ = writeln!(
                out,
                "  Memory source: {}",
                sampler.get("memory_source").map(text).unwrap_or_default()
            );
            for (name, value) in sampler
                .get("values")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let number = value.as_f64().unwrap_or(0.0);
                let shown = if name.contains("memory") && !name.contains("pgpg") {
                    format!("{:.2} MiB", number / (1024.0 * 1024.0))
                } else {
                    format!("{number:.2}")
                };
                let _ = writeln!(out, "  {name}: {shown}");
            }
        }
    }

    section(&mut out, "Counters");
    let mut counters = Vec::new();
    flatten("", &status["counters"], &mut counters);
    for (name, value) in counters {
        let _ = writeln!(out, "  {name}: {value}");
    }
    out
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, inner, out);
            }
        }
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_status_and_renders_it_for_people() {
        let board = Arc::new(StatusBoard::new("file /etc/dyno.yaml".into()));
        board.set_reload(Err("dyno.yaml: field `apm.port`: invalid".into()));
        let stats = Arc::new(Stats::default());
        stats.reloads.failed.inc();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tokio::spawn(serve(
            listener,
            AdminState {
                status: board,
                stats,
            },
        ));
        let status = tokio::task::spawn_blocking(move || fetch(&addr))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = status.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status["config"]["source"], "file /etc/dyno.yaml");
        assert_eq!(status["counters"]["reloads"]["failed"], 1);
        let text = render(&status);
        for want in [
            "Config\n======",
            "  Source: file /etc/dyno.yaml",
            "  Reloads: 0 ok, 1 failed",
            "    dyno.yaml: field `apm.port`: invalid",
            "  reloads.failed: 1",
        ] {
            assert!(text.contains(want), "want {want:?} in\n{text}");
        }
    }
}
