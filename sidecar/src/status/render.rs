//! `dynoscope-sidecar status` for people: the [`SidecarStatus`] in underlined
//! sections, one block per receiver, sink and check, like `agent status`.
//!
//! Pure: the time is a parameter, so the tests pin it.

use std::fmt::Write as _;
use std::time::Duration;

use dynoscope_crds::duration::HumanDuration;
use dynoscope_crds::sidecar_status::{
    CheckState, CheckStatus, CounterValue, ItemCounts, Observability, ReceiverStatus, ReloadResult,
    SidecarStatus, SinkStatus,
};

/// The whole page; `now` is the current unix time, for the "… ago" columns.
pub fn render(status: &SidecarStatus, now: i64) -> String {
    let mut out = String::new();
    let title = format!("dynoscope sidecar (v{})", status.version);
    let _ = writeln!(out, "{title}\n{}", "=".repeat(title.len()));
    let _ = writeln!(out, "  PID: {}", status.pid);
    let uptime = Duration::from_secs(status.uptime_seconds.max(0.0) as u64);
    let _ = writeln!(out, "  Uptime: {}", HumanDuration(uptime));
    config(&mut out, status);
    app(&mut out, status);
    section(&mut out, "Receivers");
    if status.receivers.is_empty() {
        let _ = writeln!(out, "  None (observability is off).");
    }
    for (name, receiver) in &status.receivers {
        self::receiver(&mut out, name, receiver);
    }
    section(&mut out, "Sinks");
    if status.sinks.is_empty() {
        let _ = writeln!(out, "  None.");
    }
    for sink in &status.sinks {
        self::sink(&mut out, sink, now);
    }
    section(&mut out, "Checks");
    if status.checks.is_empty() {
        let _ = writeln!(out, "  None assigned to this dyno.");
    }
    for check in &status.checks {
        self::check(&mut out, check, now);
    }
    sampler(&mut out, status, now);
    logs(&mut out, status);
    counters(&mut out, status);
    out
}

fn section(out: &mut String, title: &str) {
    let _ = writeln!(out, "\n{title}\n{}", "=".repeat(title.len()));
}

/// A block inside a section: the name, underlined with dashes.
fn block(out: &mut String, title: &str) {
    let _ = writeln!(out, "\n  {title}\n  {}", "-".repeat(title.chars().count()));
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

/// `12s ago`, or `never` for no time (0 or absent).
fn ago(now: i64, at: Option<i64>) -> String {
    match at.filter(|&at| at > 0) {
        None => "never".to_owned(),
        Some(at) => {
            let secs = u64::try_from(now.saturating_sub(at)).unwrap_or(0);
            format!("{} ago", HumanDuration(Duration::from_secs(secs)))
        }
    }
}

/// `1.5 KiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `timeout 1, status_5xx 2`, or `none`.
fn by_kind<'a>(kinds: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let listed: Vec<String> = kinds
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    if listed.is_empty() {
        "none".to_owned()
    } else {
        listed.join(", ")
    }
}

fn items(counts: &ItemCounts) -> [(&'static str, u64); 6] {
    [
        ("points", counts.points),
        ("sketches", counts.sketches),
        ("spans", counts.spans),
        ("events", counts.events),
        ("logs", counts.logs),
        ("telemetry", counts.telemetry),
    ]
}

fn config(out: &mut String, status: &SidecarStatus) {
    section(out, "Config");
    let config = &status.config;
    let observability = match config.observability {
        Observability::On => "on",
        Observability::Disabled => "disabled (by an override)",
        Observability::Off => "off (no valid config)",
    };
    let _ = writeln!(out, "  Source: {}", config.source);
    let _ = writeln!(out, "  Observability: {observability}");
    let _ = writeln!(out, "  Hash: {}", or_dash(config.hash.as_deref()));
    let _ = writeln!(out, "  Resource: {}", or_dash(config.resource.as_deref()));
    let _ = writeln!(out, "  Dyno: {}", or_dash(config.dyno.as_deref()));
    let count = |name| status.counters.get("reloads", name).unwrap_or(0);
    let _ = writeln!(
        out,
        "  Reloads: {} ok, {} failed",
        count("ok"),
        count("failed")
    );
    match &status.last_reload {
        None => {
            let _ = writeln!(out, "  Last reload: none");
        }
        Some(last) => {
            let result = match last.result {
                ReloadResult::Ok => "ok",
                ReloadResult::Error => "error",
            };
            let _ = write!(out, "  Last reload: {result}");
            if !last.changed.is_empty() {
                let _ = write!(out, " (changed: {})", last.changed.join(", "));
            }
            let _ = writeln!(out);
            for line in last.error.iter().flat_map(|e| e.lines()) {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
}

fn app(out: &mut String, status: &SidecarStatus) {
    section(out, "App");
    let app = &status.app;
    let pid = app.pid.map_or("-".to_owned(), |p| p.to_string());
    let state = serde_json::to_value(app.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let _ = writeln!(out, "  PID: {pid}");
    let _ = writeln!(out, "  State: {state}");
    let _ = writeln!(out, "  Command: {}", app.command.join(" "));
    if let Some(code) = app.exit_code {
        let _ = writeln!(out, "  Exit code: {code}");
    }
}

fn receiver(out: &mut String, name: &str, receiver: &ReceiverStatus) {
    block(out, name);
    let listening: Vec<String> = [
        ("tcp", &receiver.tcp),
        ("udp", &receiver.udp),
        ("socket", &receiver.socket),
    ]
    .into_iter()
    .filter_map(|(kind, addr)| addr.as_ref().map(|a| format!("{kind} {a}")))
    .collect();
    let listening = if listening.is_empty() {
        "nowhere (off, or not bound)".to_owned()
    } else {
        listening.join(", ")
    };
    let _ = writeln!(out, "    Listening: {listening}");
    if let Some(max) = receiver.max_request_bytes {
        let _ = writeln!(out, "    Largest request: {}", bytes(max));
    }
    let counts: Vec<String> = receiver
        .counts
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    let _ = writeln!(out, "    Received: {}", counts.join(", "));
    let errors = by_kind(receiver.errors.iter().map(|(k, n)| (k.as_str(), *n)));
    let _ = writeln!(out, "    Errors: {errors}");
}

fn sink(out: &mut String, sink: &SinkStatus, now: i64) {
    block(out, &sink.name);
    let sent: Vec<String> = items(&sink.sent)
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    let _ = writeln!(out, "    Sent: {}", sent.join(", "));
    let _ = writeln!(
        out,
        "    Bytes: {}   Batches: {}   Retries: {}",
        bytes(sink.bytes),
        sink.batches,
        sink.retries
    );
    let errors = sink
        .errors
        .by_kind()
        .into_iter()
        .chain(sink.io_errors.iter().map(|(k, n)| (k.as_str(), *n)));
    let _ = writeln!(out, "    Errors: {}", by_kind(errors));
    let _ = writeln!(out, "    Dropped: {}", by_kind(items(&sink.dropped)));
    let _ = writeln!(out, "    Rejected: {}", by_kind(items(&sink.rejected)));
    if sink.unflushed.total() > 0 {
        let _ = writeln!(out, "    Unflushed: {}", by_kind(items(&sink.unflushed)));
    }
    let fill = if sink.buffer_capacity == 0 {
        format!("{} (unbounded)", bytes(sink.buffer_bytes))
    } else {
        let percent = sink.buffer_bytes as f64 * 100.0 / sink.buffer_capacity as f64;
        format!(
            "{} of {} ({percent:.0}%)",
            bytes(sink.buffer_bytes),
            bytes(sink.buffer_capacity)
        )
    };
    let _ = writeln!(out, "    Buffer: {fill}");
    for (kind, part) in &sink.buffer_kinds {
        let disk = if part.disk_bytes > 0 || part.spilled > 0 {
            format!(
                ", disk {}, spilled {}, replayed {}",
                bytes(part.disk_bytes),
                part.spilled,
                part.replayed
            )
        } else {
            String::new()
        };
        let oldest = if part.oldest > 0 {
            format!(", oldest {}", ago(now, Some(part.oldest)))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "      {kind}: {} of {} share{disk}{oldest}",
            bytes(part.memory_bytes),
            bytes(part.share_bytes)
        );
    }
    if let Some(disk) = &sink.disk {
        let _ = writeln!(
            out,
            "    Disk buffer: {} of {} in {}, {} corrupt records skipped",
            bytes(disk.bytes),
            bytes(disk.capacity),
            disk.path,
            disk.corrupt_records
        );
    }
    let _ = writeln!(
        out,
        "    Last success: {}",
        ago(now, Some(sink.last_success))
    );
    let _ = writeln!(
        out,
        "    Last error: {}",
        sink.last_error.as_deref().unwrap_or("none")
    );
    if sink.started.is_some() || sink.builds.is_some() {
        let builds = sink
            .builds
            .map_or(String::new(), |n| format!(", built {n}×"));
        let _ = writeln!(out, "    Started: {}{builds}", ago(now, sink.started));
    }
}

fn check(out: &mut String, check: &CheckStatus, now: i64) {
    block(out, &check.name);
    let _ = writeln!(out, "    Type: {}", check.kind);
    let _ = writeln!(out, "    Instance: {}", or_dash(check.target.as_deref()));
    let state = match check.state() {
        CheckState::Pending => "PENDING (not run yet)".to_owned(),
        CheckState::Ok => "OK".to_owned(),
        CheckState::Failing => format!("FAILING ({} in a row)", check.consecutive_failures),
    };
    let _ = writeln!(out, "    Status: {state}");
    let _ = writeln!(
        out,
        "    Runs: {}, failures: {}",
        check.runs, check.failures
    );
    let took = check
        .last_duration_ms
        .map_or(String::new(), |ms| format!(" (took {ms} ms)"));
    let _ = writeln!(out, "    Last run: {}{took}", ago(now, check.last_run));
    let _ = writeln!(out, "    Last success: {}", ago(now, check.last_success));
    let _ = writeln!(
        out,
        "    Last error: {}",
        check.last_error.as_deref().unwrap_or("none")
    );
}

fn sampler(out: &mut String, status: &SidecarStatus, now: i64) {
    section(out, "Memory sampler");
    let Some(sampler) = &status.sampler else {
        let _ = writeln!(out, "  No sample yet (off, or the first one is due).");
        return;
    };
    let _ = writeln!(out, "  Last sample: {}", ago(now, Some(sampler.at)));
    let _ = writeln!(out, "  Memory source: {}", sampler.memory_source);
    for (name, value) in &sampler.values {
        let shown = if name.contains("memory") && !name.contains("pgpg") {
            format!("{:.2} MiB", value / (1024.0 * 1024.0))
        } else {
            format!("{value:.2}")
        };
        let _ = writeln!(out, "  {name}: {shown}");
    }
    for error in &sampler.errors {
        let _ = writeln!(out, "  Error: {error}");
    }
}

/// The app's output: what was read and passed through, and the log records made of it.
fn logs(out: &mut String, status: &SidecarStatus) {
    section(out, "Logs");
    let Some(logs) = status.counters.0.get("logs") else {
        let _ = writeln!(out, "  No app output read yet.");
        return;
    };
    let count = |name| status.counters.get("logs", name).unwrap_or(0);
    let kinds = |name| match logs.get(name) {
        Some(CounterValue::ByKind(kinds)) => by_kind(kinds.iter().map(|(k, n)| (k.as_str(), *n))),
        _ => by_kind([]),
    };
    let _ = writeln!(
        out,
        "  Lines read: {} ({})",
        count("lines_read"),
        bytes(count("bytes_read"))
    );
    let _ = writeln!(
        out,
        "  Records: {} (multi-line {}, lines cut at the maximum size {})",
        count("records"),
        count("multiline_groups"),
        count("truncated")
    );
    let _ = writeln!(out, "  Dropped: {}", kinds("dropped"));
    let _ = writeln!(out, "  Parse failures: {}", kinds("parse_failures"));
}

fn counters(out: &mut String, status: &SidecarStatus) {
    section(out, "Counters");
    for (group, counters) in &status.counters.0 {
        for (name, value) in counters {
            match value {
                CounterValue::Count(n) => {
                    let _ = writeln!(out, "  {group}.{name}: {n}");
                }
                CounterValue::ByKind(kinds) => {
                    let listed = by_kind(kinds.iter().map(|(k, n)| (k.as_str(), *n)));
                    let _ = writeln!(out, "  {group}.{name}: {listed}");
                }
                CounterValue::Other(other) => {
                    let _ = writeln!(out, "  {group}.{name}: {other}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
