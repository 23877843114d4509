//! End-to-end tests of issue 16: the app's stdout and stderr passed through
//! unchanged and made into log records — trace-correlated by the real ddtrace
//! 4.16 through Python's `logging`, grouped, masked, filtered — in the jsonl
//! file, at a recording Datadog logs intake and as OTLP logs.

use std::path::Path;
use std::time::Duration;

use dynoscope_tests::harness::{
    decode_with_python, python, read, render, status_of, Sidecar, PY_OTLP_VALUES,
};
use dynoscope_tests::intake::Intake;
use dynoscope_tests::servers::free_port;
use dynoscope_tests::wait_for;
use nix::sys::signal::Signal;
use serde_json::Value;

/// The records of kind `kind` in a jsonl file.
fn jsonl_of(path: &Path, kind: &str) -> Vec<Value> {
    read(path)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["kind"] == kind)
        .collect()
}

/// The entries of every accepted `/api/v2/logs` request, in order.
fn intake_logs(intake: &Intake) -> Vec<Value> {
    intake
        .accepted("/api/v2/logs")
        .iter()
        .flat_map(|r| {
            let entries: Vec<Value> = serde_json::from_slice(&r.body)
                .unwrap_or_else(|e| panic!("the logs body is not a JSON array: {e}"));
            entries
        })
        .collect()
}

/// Writes a DynoConfig for `web.1` of `spec` into `dir`; returns its path.
fn config_in(dir: &Path, spec: &str) -> String {
    let config = dir.join("web.1.yaml");
    std::fs::write(&config, render(spec)).unwrap_or_else(|e| panic!("{e}"));
    config.display().to_string()
}

#[test]
fn a_hundred_thousand_lines_reach_stdout_in_order_while_the_log_intake_is_down() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Nothing listens there: every delivery fails and is retried.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let spec = format!(
        "  admin: {{port: {admin}}}\n  apm: {{enabled: false}}\n  dogstatsd: {{enabled: false}}\n  \
         processMetrics: {{enabled: false}}\n  logs: {{enabled: true}}\n  sinks:\n  \
         - {{type: datadog, apiKey: {{fromEnv: DD_API_KEY}}, endpoint: \"{dead}\"}}\n",
        admin = free_port(),
    );
    let config = config_in(dir.path(), &spec);
    let mut sidecar = Sidecar::start(
        dir.path(),
        &[
            "run",
            "--config",
            &config,
            "--",
            "sh",
            "-c",
            "seq 1 100000; echo to-stderr >&2",
        ],
        &[("DD_API_KEY", "test-key")],
    );
    let code = sidecar.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "sidecar stderr:\n{}", sidecar.stderr());
    let stdout = read(&sidecar.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 100_000, "every line passed through, no other");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, (i + 1).to_string(), "line {} out of order", i + 1);
    }
    assert!(
        sidecar.stderr().contains("to-stderr\n"),
        "stderr passed through: {}",
        sidecar.stderr()
    );
}

/// A traced request that logs inside its span, a logged exception, a JSON
/// line, a secret and a health check; then it waits to be stopped.
const APP: &str = r#"
import json, logging, os, sys, time
from ddtrace import patch
patch(logging=True)
from ddtrace.trace import tracer
FORMAT = ('%(asctime)s %(levelname)s [%(name)s] [%(filename)s:%(lineno)d] '
          '[dd.service=%(dd.service)s dd.env=%(dd.env)s dd.version=%(dd.version)s '
          'dd.trace_id=%(dd.trace_id)s dd.span_id=%(dd.span_id)s] - %(message)s')
logging.basicConfig(format=FORMAT, stream=sys.stdout, level=logging.INFO)
log = logging.getLogger("shop")
with tracer.trace("web.request", service="shop", resource="GET /checkout") as span:
    log.info("charging the card")
try:
    raise ValueError("card declined")
except ValueError:
    log.exception("payment failed")
print(json.dumps({"level": "warn", "message": "slow query", "duration_ms": 812,
                  "db": {"table": "orders"}}), flush=True)
print("user login password=hunter2 ok", flush=True)
print("healthcheck ping", flush=True)
print("no level on stderr", file=sys.stderr, flush=True)
tracer.flush()
open("written", "w").close()
while True:
    time.sleep(0.05)
"#;

#[test]
fn ddtrace_logs_are_correlated_grouped_masked_and_filtered_in_jsonl_datadog_and_otlp() {
    let python = python();
    let intake = Intake::start();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let jsonl = dir.path().join("out.jsonl");
    let admin = free_port();
    let spec = format!(
        "  service: shop\n  env: test\n  admin: {{port: {admin}}}\n  apm: {{port: {apm}}}\n  \
         dogstatsd: {{enabled: false}}\n  processMetrics: {{enabled: false}}\n  \
         logs:\n    enabled: true\n    source: python\n    processingRules:\n    \
         - {{type: mask_sequences, name: passwords, pattern: 'password=\\S+', replacePlaceholder: 'password=[masked]'}}\n    \
         - {{type: exclude_at_match, name: health, pattern: '^healthcheck'}}\n  sinks:\n  \
         - {{type: datadog, apiKey: {{fromEnv: DD_API_KEY}}, endpoint: \"{url}\"}}\n  \
         - {{type: otlp, endpoint: \"{url}\"}}\n  - {{type: jsonl, path: {jsonl}}}\n",
        apm = free_port(),
        url = intake.url,
        jsonl = jsonl.display(),
    );
    let config = config_in(dir.path(), &spec);
    let app = dir.path().join("app.py");
    std::fs::write(&app, APP).unwrap_or_else(|e| panic!("{e}"));
    let app = app.display().to_string();
    let mut sidecar = Sidecar::start(
        dir.path(),
        &["run", "--config", &config, "--", &python, &app],
        &[("DD_API_KEY", "test-key")],
    );
    wait_for(Duration::from_secs(60), "the app's lines", || {
        dir.path().join("written").exists().then_some(())
    });
    let records = wait_for(Duration::from_secs(20), "5 log records and a span", || {
        let records = jsonl_of(&jsonl, "log");
        (records.len() >= 5 && !jsonl_of(&jsonl, "span").is_empty()).then_some(records)
    });
    let status = wait_for(Duration::from_secs(10), "/status", || status_of(admin));
    let logs = &status["counters"]["logs"];
    sidecar.signal(Signal::SIGTERM);
    sidecar.wait(Duration::from_secs(20));

    // The span's 128-bit trace id and its span id are the record's.
    let span = &jsonl_of(&jsonl, "span")[0];
    let high = u128::from_str_radix(span["meta"]["_dd.p.tid"].as_str().unwrap_or("0"), 16)
        .unwrap_or_else(|e| panic!("{e}"));
    let trace_id = (high << 64) | u128::from(span["trace_id"].as_u64().unwrap_or_default());
    let find = |needle: &str| {
        records
            .iter()
            .find(|r| r["message"].as_str().unwrap_or_default().contains(needle))
            .unwrap_or_else(|| panic!("no record of {needle:?} in {records:#?}"))
            .clone()
    };
    let charged = find("charging the card");
    assert_eq!(charged["dd"]["trace_id"], format!("{trace_id:032x}"));
    assert_eq!(
        charged["dd"]["span_id"],
        span["span_id"].as_u64().unwrap_or_default().to_string()
    );
    assert_eq!(charged["status"], "info");
    assert_eq!(charged["service"], "shop");
    assert_eq!(charged["ddsource"], "python");
    assert!(
        charged["ddtags"]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .any(|t| t == "dyno:web.1"),
        "{charged}"
    );

    // The traceback is one record with the line that logged it.
    let failed = find("payment failed");
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("\nTraceback (most recent call last):\n")
            && message.ends_with("ValueError: card declined"),
        "{message}"
    );
    assert_eq!(failed["status"], "error");
    assert!(
        failed["dd"].get("trace_id").is_none(),
        "no trace was active: {failed}"
    );

    // A JSON line keeps its attributes; its level is the status.
    let slow = find("slow query");
    assert_eq!(slow["message"], "slow query");
    assert_eq!(slow["status"], "warning");
    assert_eq!(slow["duration_ms"], 812);
    assert_eq!(slow["db"]["table"], "orders");

    // Masked before any sink; excluded but passed through.
    assert_eq!(
        find("user login")["message"],
        "user login password=[masked] ok"
    );
    assert!(!read(&jsonl).contains("hunter2"));
    assert!(!read(&jsonl).contains("healthcheck"));
    assert_eq!(find("no level on stderr")["status"], "error");
    let stdout = read(&sidecar.stdout);
    assert!(stdout.contains("user login password=hunter2 ok\n"));
    assert!(stdout.contains("\nhealthcheck ping\n"));
    assert_eq!(logs["dropped"]["rule"], 1, "{logs}");
    assert!(logs["multiline_groups"].as_u64() >= Some(1), "{logs}");

    // The intake got the same records, gzip-compressed, with the API key.
    let entries = intake_logs(&intake);
    let requests = intake.accepted("/api/v2/logs");
    assert!(!requests.is_empty());
    for request in &requests {
        assert_eq!(request.header("content-encoding"), Some("gzip"));
        assert_eq!(request.header("dd-api-key"), Some("test-key"));
        assert_eq!(request.header("content-type"), Some("application/json"));
    }
    let at_intake = entries
        .iter()
        .find(|e| e["message"] == "charging the card")
        .or_else(|| {
            entries.iter().find(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("charging the card"))
            })
        })
        .unwrap_or_else(|| panic!("not at the intake: {entries:#?}"));
    assert_eq!(at_intake["dd"]["trace_id"], format!("{trace_id:032x}"));
    assert_eq!(at_intake["hostname"], "shop.web.1");
    assert!(at_intake["timestamp"].as_i64() > Some(1_600_000_000_000));
    assert!(!entries.iter().any(|e| e.to_string().contains("hunter2")));

    // OTLP logs, decoded by opentelemetry-proto: the ids are the span's bytes.
    let bodies: Vec<Vec<u8>> = intake
        .accepted("/v1/logs")
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert!(!bodies.is_empty(), "no /v1/logs request");
    let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    let otlp = decode_with_python(&format!("{PY_OTLP_VALUES}{DECODE_OTLP_LOGS}"), &refs);
    let records = otlp.as_array().cloned().unwrap_or_default();
    let charged = records
        .iter()
        .find(|r| {
            r["body"]
                .as_str()
                .is_some_and(|b| b.contains("charging the card"))
        })
        .unwrap_or_else(|| panic!("not in OTLP: {otlp:#}"));
    assert_eq!(charged["trace_id"], format!("{trace_id:032x}"));
    assert_eq!(
        charged["span_id"],
        format!("{:016x}", span["span_id"].as_u64().unwrap_or_default())
    );
    assert_eq!(charged["severity_number"], 9);
    assert_eq!(charged["severity_text"], "info");
    assert_eq!(charged["service"], "shop");
    assert_eq!(charged["attributes"]["log.iostream"], "stdout");
    let slow = records
        .iter()
        .find(|r| r["body"] == "slow query")
        .unwrap_or_else(|| panic!("no JSON record in OTLP: {otlp:#}"));
    assert_eq!(slow["attributes"]["duration_ms"], 812);
    assert_eq!(slow["attributes"]["db.table"], "orders");
    assert_eq!(slow["severity_number"], 13);
}

/// The records of OTLP logs requests, decoded by opentelemetry-proto (after
/// [`PY_OTLP_VALUES`]).
const DECODE_OTLP_LOGS: &str = r#"
import json, sys
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
out = []
for path in sys.argv[1:]:
    req = ExportLogsServiceRequest()
    req.ParseFromString(open(path, "rb").read())
    for rl in req.resource_logs:
        for sl in rl.scope_logs:
            for r in sl.log_records:
                out.append({"service": attrs(rl.resource.attributes).get("service.name"),
                    "body": val(r.body), "severity_number": r.severity_number,
                    "severity_text": r.severity_text, "trace_id": r.trace_id.hex(),
                    "span_id": r.span_id.hex(), "attributes": attrs(r.attributes),
                    "time": r.time_unix_nano})
print(json.dumps(out))
"#;

#[test]
fn a_three_megabyte_burst_is_split_into_requests_and_a_413_is_counted_as_dropped() {
    let intake = Intake::start();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let admin = free_port();
    let spec = format!(
        "  admin: {{port: {admin}}}\n  apm: {{enabled: false}}\n  dogstatsd: {{enabled: false}}\n  \
         processMetrics: {{enabled: false}}\n  logs: {{enabled: true}}\n  sinks:\n  \
         - {{type: datadog, apiKey: {{fromEnv: DD_API_KEY}}, endpoint: \"{url}\"}}\n",
        url = intake.url,
    );
    let config = config_in(dir.path(), &spec);
    // 3 000 lines of 1 000 bytes, then, once told, 10 more.
    let script = "i=0; pad=$(printf '%0990d' 0); while [ $i -lt 3000 ]; do \
                  printf 'line %04d %s\\n' $i $pad; i=$((i+1)); done; \
                  while [ ! -e more ]; do sleep 0.05; done; \
                  seq 1 10; while true; do sleep 0.05; done";
    let mut sidecar = Sidecar::start(
        dir.path(),
        &["run", "--config", &config, "--", "sh", "-c", script],
        &[("DD_API_KEY", "test-key")],
    );
    let entries = wait_for(
        Duration::from_secs(60),
        "3 000 entries at the intake",
        || {
            let entries = intake_logs(&intake);
            (entries.len() >= 3000).then_some(entries)
        },
    );
    assert_eq!(entries.len(), 3000);
    for (i, entry) in entries.iter().enumerate() {
        let message = entry["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(&format!("line {i:04} ")), "{message}");
    }
    let requests = intake.accepted("/api/v2/logs");
    assert!(requests.len() >= 3, "{} requests", requests.len());
    for request in &requests {
        let count = serde_json::from_slice::<Vec<Value>>(&request.body)
            .map(|v| v.len())
            .unwrap_or_default();
        assert!(count <= 1000, "{count} entries in one request");
        assert!(
            request.body.len() <= 5_000_000,
            "{} bytes",
            request.body.len()
        );
    }

    intake.set_status(413);
    std::fs::write(dir.path().join("more"), "").unwrap_or_else(|e| panic!("{e}"));
    let rejected = wait_for(Duration::from_secs(30), "the 413 counted", || {
        let status = status_of(admin)?;
        let rejected = status["sinks"][0]["rejected"]["logs"].as_u64()?;
        (rejected >= 10).then_some(rejected)
    });
    assert_eq!(rejected, 10);
    sidecar.signal(Signal::SIGTERM);
    sidecar.wait(Duration::from_secs(20));
}

#[test]
fn the_readme_logs_example_is_valid_and_renders() {
    let readme = read(&dynoscope_tests::repo_root().join("README.md"));
    let section = readme
        .split("\n## Logs\n")
        .nth(1)
        .unwrap_or_else(|| panic!("README.md has no Logs section"));
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .unwrap_or_else(|| panic!("the Logs section has no yaml example"));
    let manifest = format!(
        "apiVersion: dynoscope.dev/v1alpha1\nkind: ObservabilityConfig\nmetadata: {{name: shop}}\n{yaml}\n"
    );
    let resources = dynoscope_crds::manifest::parse_documents(&manifest, "README.md")
        .unwrap_or_else(|e| panic!("{e}"));
    let spec = &resources[0].spec;
    let types = ["web".to_owned(), "worker".to_owned()];
    let problems = dynoscope_crds::validate::validate(spec, Some(&types), None);
    assert!(problems.is_empty(), "{problems:#?}");
    let input = dynoscope_crds::render::RenderInput {
        config: &resources[0],
        procfile: None,
        formation: None,
        heroku_app_name: None,
    };
    let (web, _) =
        dynoscope_crds::render::render_dyno(&input, "web.1").unwrap_or_else(|e| panic!("{e}"));
    let logs = web.logs.unwrap_or_else(|| panic!("logs are on"));
    assert_eq!(logs.processing_rules.len(), 2);
    assert_eq!(logs.source.as_deref(), Some("python"));
    let (worker, _) =
        dynoscope_crds::render::render_dyno(&input, "worker.1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        worker.logs.and_then(|l| l.source).as_deref(),
        Some("sidekiq")
    );
}
