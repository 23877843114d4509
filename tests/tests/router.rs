//! The router (`up`'s, and `dynoscope-operator router` alone): Heroku's
//! headers, random spread over the web dynos, H12/H14/H10, one router line
//! per request, and those lines posted to a Logplex drain.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dynoscope_tests::intake::Intake;
use dynoscope_tests::servers::free_port;
use dynoscope_tests::{bin, wait_for};

/// A response: status, headers (names lower-case), body.
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// One GET on a connection of its own; `None` when nothing answered.
fn request(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<Answer> {
    send(port, "GET", path, headers, b"")
}

/// One HTTP/1.1 request on a connection of its own; `None` when nothing answered.
fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Answer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    let mut text =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n");
    if !body.is_empty() {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// Lines a process printed.
type Lines = Arc<Mutex<Vec<String>>>;

fn collect(stream: impl Read + Send + 'static) -> Lines {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

fn router_lines(lines: &Lines) -> Vec<String> {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("heroku[router]"))
        .cloned()
        .collect()
}

/// A process stopped with SIGTERM (then SIGKILL) when the test ends, failed or not.
struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `up` with the shop (no self traffic), stdout collected.
fn up_shop(app: &std::path::Path, port: u16, agent: u16, args: &[&str]) -> (Stop, Lines) {
    dynoscope_tests::shop::copy(app, "5s");
    let mut up = Command::new(bin("dynoscope-operator"))
        .arg("up")
        .arg(app)
        .args([
            "--port",
            &port.to_string(),
            "--agent-port",
            &agent.to_string(),
        ])
        .arg("--no-console")
        .args(args)
        .env("PATH", dynoscope_tests::shop::path_with_python())
        .env("SHOP_SELF_TRAFFIC", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(Stop)
        .unwrap();
    let lines = collect(up.0.stdout.take().unwrap());
    (up, lines)
}

#[test]
fn up_routes_to_both_web_dynos_with_heroku_headers_lines_and_h12() {
    let app = tempfile::tempdir().unwrap();
    let (port, agent) = (16700, 27700);
    let (_up, lines) = up_shop(
        app.path(),
        port,
        agent,
        &["--formation", "web=2,worker=0", "--router-timeout", "1s"],
    );
    // Both web dynos answer through the router once they listen.
    wait_for(
        Duration::from_secs(60),
        "both web dynos behind the router",
        || {
            let dynos: BTreeSet<String> = (0..10)
                .filter_map(|_| request(port, "/warm", &[]))
                .filter(|a| a.status == 200)
                .filter_map(|a| a.headers.get("x-dyno").cloned())
                .collect();
            (dynos.len() == 2).then_some(())
        },
    );
    // The web dynos moved off the router's port.
    assert!(lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("shop listening on port 16701")));
    let before = router_lines(&lines).len();

    let mut dynos = BTreeMap::<String, u32>::new();
    let mut ids = BTreeSet::new();
    for i in 0..200 {
        let answer = request(port, &format!("/r{i}?q=1"), &[]).expect("an answer");
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body, format!("200 /r{i}?q=1\n"));
        assert_eq!(answer.headers["via"], "1.1 vegur");
        *dynos.entry(answer.headers["x-dyno"].clone()).or_default() += 1;
        ids.insert(answer.headers["x-request-id"].clone());
    }
    assert_eq!(
        dynos.keys().collect::<Vec<_>>(),
        ["web.1", "web.2"],
        "{dynos:?}"
    );
    assert!(
        dynos.values().all(|n| *n >= 50),
        "random, not skewed: {dynos:?}"
    );
    assert_eq!(ids.len(), 200, "a new request id for each request");

    // A valid id of the client's is kept; an invalid one replaced.
    let kept = "client-chosen-id-0123456789";
    let answer = request(port, "/kept", &[("X-Request-Id", kept)]).unwrap();
    assert_eq!(answer.headers["x-request-id"], kept);
    let answer = request(port, "/replaced", &[("X-Request-Id", "too short")]).unwrap();
    assert_ne!(answer.headers["x-request-id"], "too short");
    assert_eq!(answer.headers["x-request-id"].len(), 36);

    // H12: the dyno's first byte comes after the 1 s timeout.
    let slow = request(port, "/slow?ms=3000", &[]).unwrap();
    assert_eq!(slow.status, 503);
    assert!(slow.body.contains("H12"), "{}", slow.body);

    wait_for(Duration::from_secs(10), "every router line", || {
        (router_lines(&lines).len() >= before + 203).then_some(())
    });
    let all = router_lines(&lines);
    let line = regex::Regex::new(
        r#"^\d\d:\d\d:\d\d heroku\[router\] +\| at=info method=GET path="/r(\d+)\?q=1" host=localhost:16700 request_id=([0-9a-f-]{36}) fwd="127\.0\.0\.1" dyno=(web\.[12]) connect=\d+ms service=\d+ms status=200 bytes=(\d+) protocol=http$"#,
    )
    .unwrap();
    let mut logged = BTreeSet::new();
    for l in &all[before..] {
        if let Some(c) = line.captures(l) {
            let i: usize = c[1].parse().unwrap();
            assert_eq!(
                c[4].parse::<usize>().unwrap(),
                format!("200 /r{i}?q=1\n").len(),
                "{l}"
            );
            assert!(ids.contains(&c[2]), "{l}");
            logged.insert(c[2].to_owned());
        }
    }
    assert_eq!(
        logged, ids,
        "one router line per request, with the id the app got"
    );
    let h12 = regex::Regex::new(
        r#"\| at=error code=H12 desc="Request timeout" method=GET path="/slow\?ms=3000" host=localhost:16700 request_id=[0-9a-f-]{36} fwd="127\.0\.0\.1" dyno=web\.[12] connect=\d+ms service=(\d+)ms status=503 bytes= protocol=http$"#,
    )
    .unwrap();
    let service: u64 = all.iter().find_map(|l| h12.captures(l)).unwrap_or_else(|| {
        panic!(
            "no H12 line: {:#?}",
            &all[before..].iter().rev().take(3).collect::<Vec<_>>()
        )
    })[1]
        .parse()
        .unwrap();
    assert!(service >= 1000, "H12 before the 1 s timeout: {service} ms");
    assert!(all
        .iter()
        .any(|l| l.contains(&format!("request_id={kept} "))));

    // The same lines went to `up`'s drain (`dynoscope-sidecar drain`), whose
    // metrics reach the manifest's jsonl sink as a real drain's would: one
    // `heroku.router.request` per router line, the H12 counted by code.
    let jsonl = app.path().join("shop.jsonl");
    // Lines of requests a dyno served (warm-up ones before the dynos listened have `dyno=`).
    let printed = router_lines(&lines)
        .iter()
        .filter(|l| l.contains(" dyno=web."))
        .count() as f64;
    let (requests, h12) = wait_for(
        Duration::from_secs(40),
        "the drain's router metrics",
        || {
            let points: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .filter(|p: &serde_json::Value| p["kind"] == "point")
                .collect();
            let total = |name: &str, tag: &str| -> f64 {
                points
                    .iter()
                    .filter(|p| p["name"] == name && p["tags"].to_string().contains(tag))
                    .map(|p| {
                        p["value"].as_f64().unwrap_or(0.0) * p["interval"].as_f64().unwrap_or(1.0)
                    })
                    .sum()
            };
            let requests = total("heroku.router.request", "dyno:web.");
            (requests >= printed).then(|| (requests, total("heroku.router.error", "code:H12")))
        },
    );
    assert_eq!(
        requests, printed,
        "one heroku.router.request per router line"
    );
    assert_eq!(h12, 1.0);
}

#[test]
fn up_without_web_dynos_answers_h14() {
    let app = tempfile::tempdir().unwrap();
    let (port, agent) = (16800, 27800);
    let (_up, lines) = up_shop(app.path(), port, agent, &["--formation", "web=0,worker=1"]);
    let answer = wait_for(Duration::from_secs(30), "the router", || {
        request(port, "/", &[])
    });
    assert_eq!(answer.status, 503);
    assert!(answer.body.contains("H14"), "{}", answer.body);
    wait_for(Duration::from_secs(10), "the H14 line", || {
        router_lines(&lines).into_iter().find(|l| {
            l.contains(r#"| at=error code=H14 desc="No web dynos running" method=GET path="/" host=localhost:16800 request_id="#)
                && l.ends_with(r#" fwd="127.0.0.1" dyno= connect= service= status=503 bytes= protocol=http"#)
        })
    });
}

/// `dynoscope-operator router` alone, in front of `backends`, lines to `drain`.
fn router_alone(port: u16, backends: &[String], drain: Option<&str>) -> (Stop, Lines) {
    let mut command = Command::new(bin("dynoscope-operator"));
    command
        .args([
            "router",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--timeout",
            "2s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for backend in backends {
        command.args(["--backend", backend]);
    }
    if let Some(drain) = drain {
        command.args(["--drain-url", drain]);
    }
    let mut router = command.spawn().map(Stop).unwrap();
    let lines = collect(router.0.stdout.take().unwrap());
    wait_for(Duration::from_secs(10), "the router to listen", || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    (router, lines)
}

/// Splits a Logplex body into its messages, checking each octet count.
fn frames(mut body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let space = body.iter().position(|b| *b == b' ').unwrap();
        let count: usize = std::str::from_utf8(&body[..space])
            .unwrap()
            .parse()
            .unwrap();
        let frame = &body[space + 1..space + 1 + count];
        assert_eq!(frame.last(), Some(&b'\n'));
        out.push(String::from_utf8(frame[..count - 1].to_vec()).unwrap());
        body = &body[space + 1 + count..];
    }
    out
}

#[test]
fn router_alone_sets_headers_skips_a_refusing_dyno_and_posts_logplex_frames() {
    let backend = Intake::start();
    let drain = Intake::start();
    let port = free_port();
    let refusing = free_port();
    let (_router, lines) = router_alone(
        port,
        &[
            format!("web.1={}", backend.url.trim_start_matches("http://")),
            format!("web.2=127.0.0.1:{refusing}"),
        ],
        Some(&format!(
            "{}/logs",
            drain.url.replace("http://", "http://user:secret@")
        )),
    );
    let before = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    for i in 0..150 {
        let answer = request(
            port,
            &format!("/p{i}"),
            &[("X-Forwarded-For", "203.0.113.9")],
        )
        .unwrap();
        // web.2 refuses: each request goes to web.1 instead, as Heroku retries another dyno.
        assert_eq!(answer.status, 200, "request {i}: {}", answer.body);
    }
    let seen = backend.requests();
    assert_eq!(seen.len(), 150);
    // A request body passes through whole (streamed, not buffered by the router).
    let upload: Vec<u8> = (0..3 << 19).map(|i: u32| (i % 251) as u8).collect();
    let answer = send(port, "POST", "/upload", &[], &upload).unwrap();
    assert_eq!(answer.status, 200);
    let uploaded = backend
        .requests()
        .into_iter()
        .find(|r| r.path == "/upload")
        .unwrap();
    assert_eq!(uploaded.method, "POST");
    assert!(
        uploaded.body == upload,
        "{} bytes arrived of {}",
        uploaded.body.len(),
        upload.len()
    );
    let first = &seen[0];
    assert_eq!(
        first.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(first.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        first.header("x-forwarded-port"),
        Some(port.to_string().as_str())
    );
    assert_eq!(first.header("via"), Some("1.1 vegur"));
    let start: i64 = first.header("x-request-start").unwrap().parse().unwrap();
    assert!(
        (before..before + 60_000).contains(&start),
        "{start} vs {before}"
    );
    let ids: BTreeSet<&str> = seen
        .iter()
        .filter_map(|r| r.header("x-request-id"))
        .collect();
    assert_eq!(ids.len(), 150);

    // The lines on stdout as `heroku logs` prints them…
    wait_for(Duration::from_secs(10), "151 router lines", || {
        (router_lines(&lines).len() >= 151).then_some(())
    });
    let stdout = regex::Regex::new(r#"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 heroku\[router\]: at=info method=(GET path="/p\d+" .* fwd="203\.0\.113\.9, 127\.0\.0\.1"|POST path="/upload" .* fwd="127\.0\.0\.1") dyno=web\.1 connect=\d+ms service=\d+ms status=200 bytes=\d+ protocol=http$"#).unwrap();
    assert!(
        router_lines(&lines).iter().all(|l| stdout.is_match(l)),
        "{:?}",
        router_lines(&lines).first()
    );

    // …and at the drain: a batch of 100, then the 50 left within about a second.
    let posts = wait_for(Duration::from_secs(10), "151 lines at the drain", || {
        let posts = drain.accepted("/logs");
        let n: usize = posts.iter().map(|p| frames(&p.body).len()).sum();
        (n >= 151).then_some(posts)
    });
    let mut messages = Vec::new();
    for post in &posts {
        assert_eq!(post.method, "POST");
        assert_eq!(post.header("content-type"), Some("application/logplex-1"));
        assert_eq!(post.header("authorization"), Some("Basic dXNlcjpzZWNyZXQ="));
        let frame_id = post.header("logplex-frame-id").unwrap();
        assert!(
            frame_id.len() == 32
                && frame_id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
            "{frame_id}"
        );
        assert!(post
            .header("logplex-drain-token")
            .unwrap()
            .starts_with("d."));
        let body = frames(&post.body);
        assert!(body.len() <= 100);
        assert_eq!(
            post.header("logplex-msg-count"),
            Some(body.len().to_string().as_str())
        );
        messages.extend(body);
    }
    assert_eq!(messages.len(), 151);
    let (uploads, messages): (Vec<String>, Vec<String>) = messages
        .into_iter()
        .partition(|m| m.contains(r#" method=POST path="/upload" "#));
    assert_eq!(uploads.len(), 1);
    let frame = regex::Regex::new(r#"^<158>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 host heroku router - at=info method=GET path="/p(\d+)" host=localhost:\d+ request_id=\S+ fwd="203\.0\.113\.9, 127\.0\.0\.1" dyno=web\.1 connect=\d+ms service=\d+ms status=200 bytes=\d+ protocol=http$"#).unwrap();
    let paths: BTreeSet<usize> = messages
        .iter()
        .map(|m| {
            frame.captures(m).unwrap_or_else(|| panic!("{m}"))[1]
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(paths, (0..150).collect());

    // A drain answering 503: the same frame, with the same id, three times in all.
    drain.set_status(503);
    let _ = request(port, "/retried", &[]).unwrap();
    let tries = wait_for(Duration::from_secs(15), "three tries", || {
        let tries: Vec<_> = drain
            .requests()
            .into_iter()
            .filter(|r| r.answered == 503)
            .collect();
        (tries.len() >= 3).then_some(tries)
    });
    std::thread::sleep(Duration::from_secs(2));
    let tries_now = drain
        .requests()
        .iter()
        .filter(|r| r.answered == 503)
        .count();
    assert_eq!(tries_now, 3, "3 tries, then dropped");
    let ids: BTreeSet<_> = tries
        .iter()
        .map(|r| r.header("logplex-frame-id").unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "a retry keeps its frame id");
    assert_eq!(tries[0].body, tries[2].body);
}

#[test]
fn router_alone_answers_h10_when_every_dyno_refuses_and_h13_when_one_hangs_up() {
    let port = free_port();
    let refusing = free_port();
    // A dyno that accepts, reads the request and closes without answering.
    let rude = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let rude_port = rude.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in rude.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 1024];
            let mut stream = stream;
            let _ = stream.read(&mut buf);
        }
    });
    let (_router, lines) = router_alone(port, &[format!("web.1=127.0.0.1:{refusing}")], None);
    let answer = request(port, "/down", &[]).unwrap();
    assert_eq!(answer.status, 503);
    let (_router2, lines2) = {
        let port2 = free_port();
        let (r, l) = router_alone(port2, &[format!("web.1=127.0.0.1:{rude_port}")], None);
        let answer = request(port2, "/hangup", &[]).unwrap();
        assert_eq!(answer.status, 503);
        assert!(answer.body.contains("H13"), "{}", answer.body);
        (r, l)
    };
    wait_for(Duration::from_secs(10), "the H10 and H13 lines", || {
        let h10 = router_lines(&lines).iter().any(|l| {
            l.contains(r#"at=error code=H10 desc="App crashed" method=GET path="/down""#)
                && l.contains(" dyno= connect= service= status=503 bytes= ")
        });
        let h13 = router_lines(&lines2).iter().any(|l| {
            l.contains(r#"at=error code=H13 desc="Connection closed without response" method=GET path="/hangup""#)
                && l.contains(" dyno=web.1 ")
                && l.contains(" status=503 ")
        });
        (h10 && h13).then_some(())
    });
}

/// Stands in for `dynoscope-sidecar drain` (the lead's, not on this branch):
/// records each POST's config path, headers and body as one JSON line.
const FAKE_DRAIN: &str = r#"
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
config, listen, out = sys.argv[1], sys.argv[2], sys.argv[3]
host, port = listen.rsplit(":", 1)
class Drain(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open(out, "a") as f:
            f.write(json.dumps({"config": config, "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode()}) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
print("drain listening on", listen, flush=True)
HTTPServer((host, int(port)), Drain).serve_forever()
"#;

#[test]
fn up_starts_the_sidecars_drain_when_it_has_one_and_the_router_posts_to_it() {
    let app = tempfile::tempdir().unwrap();
    let (port, agent) = (16900, 27900);
    let posts = app.path().join("posts.jsonl");
    std::fs::write(app.path().join("drain.py"), FAKE_DRAIN).unwrap();
    let sidecar = app.path().join("dynoscope-sidecar");
    std::fs::write(
        &sidecar,
        format!(
            "#!/bin/sh\nif [ \"$1\" = drain ]; then\n  [ \"$2\" = --help ] && exit 0\n  exec python3 {} \"$3\" \"$5\" {}\nfi\nexec {} \"$@\"\n",
            app.path().join("drain.py").display(),
            posts.display(),
            bin("dynoscope-sidecar").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &sidecar,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (_up, lines) = up_shop(
        app.path(),
        port,
        agent,
        &[
            "--formation",
            "web=1,worker=0",
            "--sidecar",
            sidecar.to_str().unwrap(),
        ],
    );
    wait_for(Duration::from_secs(60), "web.1 behind the router", || {
        request(port, "/warm", &[]).filter(|a| a.status == 200)
    });
    assert_eq!(request(port, "/drained", &[]).unwrap().status, 200);
    let post = wait_for(Duration::from_secs(15), "the line at the drain", || {
        std::fs::read_to_string(&posts)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|p| p["body"].as_str().unwrap().contains(r#"path="/drained""#))
    });
    assert_eq!(post["path"], "/logs");
    assert_eq!(post["headers"]["content-type"], "application/logplex-1");
    let config = std::fs::read_to_string(post["config"].as_str().unwrap()).unwrap();
    assert!(config.contains("dyno: drain.1"), "{config}");
    assert!(lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains(&format!("drain listening on 127.0.0.1:{}", agent - 1))));
}
