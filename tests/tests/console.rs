//! The console: `up` running the shop, its real sidecars feeding it through
//! their `console` sinks, and Debian's chromium (headless, Selenium) reading
//! the page; and the console alone, flooded with traces, within its bound.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dynoscope_crds::console::{ConsoleBatch, ConsoleSpan};
use dynoscope_tests::intake::get;
use dynoscope_tests::{bin, wait_for};
use serde_json::Value;

/// The operator's RSS with a full window: the window's stated bound
/// (`console::store::STATED_BOUND_BYTES`, 64 MiB) plus the process itself.
const OPERATOR_RSS_BOUND_MIB: u64 = 96;

/// Stops the child (TERM, then KILL) when the test ends, passing or not.
struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        for _ in 0..150 {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn state(port: u16) -> Option<Value> {
    let (status, body) = get(port, "/api/state")?;
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

fn browser(args: &[&str]) -> Value {
    let script = dynoscope_tests::repo_root().join("tests/console_browser.py");
    for (path, install) in [
        ("/usr/bin/chromium", "chromium"),
        ("/usr/bin/chromedriver", "chromium-driver"),
    ] {
        assert!(
            Path::new(path).is_file(),
            "{path} is missing: install Debian's {install} (scripts/test.sh does, through scripts/lib.sh ensure_apt)"
        );
    }
    let out = Command::new(dynoscope_tests::harness::python())
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the browser script failed (pip install -r tests/requirements.txt installs selenium): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_console_shows_the_shops_dynos_memory_traces_and_an_r14_in_a_real_browser() {
    let app = tempfile::tempdir().unwrap();
    let (jsonl, _) = dynoscope_tests::shop::copy(app.path(), "2s");
    let console = dynoscope_tests::servers::free_port();
    let path = dynoscope_tests::shop::path_with_python();
    let mut up = Command::new(bin("dynoscope-operator"))
        .arg("up")
        .arg(app.path())
        .args(["--port", "16600", "--agent-port", "27600"])
        .args(["--console", &format!("127.0.0.1:{console}")])
        .env("PATH", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(Stop)
        .unwrap();
    let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let lines = output.clone();
    let stdout = up.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            lines.lock().unwrap().push(line);
        }
    });

    // Three dynos with three memory slots each (10 s slots: about 30 s), and a trace.
    wait_for(
        Duration::from_secs(120),
        "three dynos with 3 memory points each, a trace and APM stats in /api/state",
        || {
            let s = state(console)?;
            let dynos = s["formation"].as_array()?;
            let ready = dynos.len() == 3
                && dynos
                    .iter()
                    .all(|d| d["memorySeries"].as_array().is_some_and(|m| m.len() >= 3))
                && !s["traces"]["latest"].as_array()?.is_empty()
                && !s["services"].as_array()?.is_empty();
            ready.then_some(())
        },
    );

    let url = format!("http://127.0.0.1:{console}/");
    let page = browser(&[&url, "formation"]);
    assert_eq!(
        page["errors"],
        serde_json::json!([]),
        "console errors: {page}"
    );
    let rows = page["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["dyno"].as_str().unwrap()).collect();
    assert_eq!(names, ["web.1", "web.2", "worker.1"]);
    for row in rows {
        assert_eq!(row["state"], "up", "{row}");
        assert!(row["memory"].as_f64().unwrap() > 0.0, "{row}");
        assert!(
            row["memoryText"]
                .as_str()
                .unwrap()
                .contains("MB / 512.0 MB"),
            "{row}"
        );
        assert!(row["chartPoints"].as_u64().unwrap() >= 3, "{row}");
    }
    assert!(page["services"].as_u64().unwrap() > 0, "{page}");
    assert!(page["router"]
        .as_str()
        .unwrap()
        .contains("No router data yet"));
    // The shop logs through `logging` (issue 16): its lines reach the logs panel.
    let logs = page["logs"].as_str().unwrap();
    assert!(
        logs.contains("served /") || logs.contains("shop listening on port"),
        "{logs}"
    );
    assert!(page["sinks"]
        .as_str()
        .unwrap()
        .contains("console http://127.0.0.1"));

    // The waterfall's spans are the trace's spans in the jsonl output.
    let trace = page["trace"].as_str().unwrap().to_owned();
    let trace_id: u64 = trace.parse().unwrap();
    let mut shown: Vec<String> = page["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["span_id"].as_str().unwrap().to_owned())
        .collect();
    shown.sort();
    let written = wait_for(
        Duration::from_secs(30),
        "the trace's spans in the jsonl file",
        || {
            let mut ids: Vec<String> = std::fs::read_to_string(&jsonl)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|i| i["kind"] == "span" && i["trace_id"].as_u64() == Some(trace_id))
                .map(|i| i["span_id"].to_string())
                .collect();
            ids.sort();
            (ids.len() >= shown.len()).then_some(ids)
        },
    );
    assert_eq!(shown, written, "waterfall vs jsonl for trace {trace}");
    assert!(!page["detail"].as_str().unwrap().is_empty());

    // 600 MB more on a 512 MB dyno: its row shows R14.
    let (status, _) = get(16602, "/leak?mb=600").unwrap();
    assert_eq!(status, 200);
    let png = app.path().join("console.png");
    let page = browser(&[&url, "r14", "web.2", png.to_str().unwrap()]);
    assert_eq!(page["badge"], "R14", "{page}");
    assert_eq!(
        page["errors"],
        serde_json::json!([]),
        "console errors: {page}"
    );
    let web1 = &page["rows"][0];
    assert_eq!(web1["error"], "", "only web.2 leaked: {web1}");
    assert!(
        page["distinct"].as_u64().unwrap() > 64,
        "the screenshot looks blank: {page}"
    );
    // The terminal keeps the app's and the platform's lines, and prints the
    // console's address; the metrics went to the console, not to stdout.
    let output = output.lock().unwrap().clone();
    assert!(output
        .iter()
        .any(|l| l.contains(&format!("console on http://127.0.0.1:{console}"))));
    assert!(output
        .iter()
        .any(|l| l.contains("web.1") && l.contains("at=info method=GET")));
    let metric_lines: Vec<&String> = output
        .iter()
        .filter(|l| ["count#", "measure#"].iter().any(|m| l.contains(m)))
        .collect();
    assert!(
        metric_lines.is_empty(),
        "metric lines under up: {metric_lines:?}"
    );
    // The README's picture; committed when it changes.
    let target = dynoscope_tests::repo_root().join("docs/console.png");
    if std::env::var_os("DYNOSCOPE_UPDATE_SCREENSHOT").is_some() {
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&png, &target).unwrap();
    }
    drop(up);
}

fn post(port: u16, body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST /api/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn ten_thousand_traces_keep_the_console_within_its_memory_bound() {
    let port = dynoscope_tests::servers::free_port();
    let console = Command::new(bin("dynoscope-operator"))
        .args(["console", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()
        .map(Stop)
        .unwrap();
    wait_for(Duration::from_secs(10), "the console to listen", || {
        state(port)
    });
    let stack = "Traceback (most recent call last):\n  File \"app.py\", line 1\n".repeat(40);
    // 500 posts of 20 traces of 5 spans, each span with a 2.6 KiB stack.
    for batch in 0..500u64 {
        let spans = (0..20u64)
            .flat_map(|t| {
                let trace = batch * 20 + t + 1;
                (0..5u64).map(move |s| (trace, s))
            })
            .map(|(trace, s)| ConsoleSpan {
                trace_id: trace.to_string(),
                span_id: (trace * 10 + s + 1).to_string(),
                parent_id: if s == 0 {
                    "0".into()
                } else {
                    (trace * 10 + 1).to_string()
                },
                service: "shop".into(),
                name: "flask.request".into(),
                resource: format!("GET /item/{trace}"),
                start: 1_700_000_000_000_000_000,
                duration: 1_000_000,
                error: 1,
                meta: [("error.stack".to_owned(), stack.clone())].into(),
                ..ConsoleSpan::default()
            })
            .collect();
        let body = serde_json::to_vec(&ConsoleBatch {
            dyno: "web.1".into(),
            spans,
            ..ConsoleBatch::default()
        })
        .unwrap();
        assert_eq!(post(port, &body), 204, "batch {batch}");
    }
    let s = state(port).unwrap();
    let kept = s["memory"]["traces"].as_u64().unwrap();
    assert!(kept > 0 && kept <= 1000, "{}", s["memory"]);
    assert!(s["memory"]["dropped"]["traces_evicted"].as_u64().unwrap() >= 9000);
    assert!(s["memory"]["bytes"].as_u64().unwrap() <= s["memory"]["boundBytes"].as_u64().unwrap());
    // The newest trace is whole, the oldest gone.
    assert_eq!(get(port, "/api/trace?id=10000").unwrap().0, 200);
    assert_eq!(get(port, "/api/trace?id=1").unwrap().0, 404);
    // Bad posts are refused, not fatal.
    assert_eq!(post(port, b"{not json"), 400);
    assert_eq!(post(port, &vec![b' '; 2 * 1024 * 1024]), 413);
    let pid = i32::try_from(console.0.id()).unwrap();
    let peak = dynoscope_tests::load::peak_rss_mib(pid);
    assert!(
        peak < OPERATOR_RSS_BOUND_MIB,
        "peak RSS {peak} MiB over the stated {OPERATOR_RSS_BOUND_MIB} MiB"
    );
    println!("console peak RSS after 10 000 traces: {peak} MiB");
}
