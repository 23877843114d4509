use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::sinks::SinkError;
use crate::telemetry::{MetricType, Point, TracerTelemetry};
use dynoscope_crds::observability::SinkSpec;

/// Every point a recorder saw, with the label of the sink that wrote it.
type Seen = Arc<Mutex<Vec<(String, Point)>>>;
/// The label of every sink built, in order.
type Built = Arc<Mutex<Vec<String>>>;

/// Records what it is given; panics on a point named `boom`; its flush takes `flush_delay`.
#[derive(Debug)]
struct Recorder {
    seen: Seen,
    label: String,
    flush_delay: Duration,
}

impl Sink for Recorder {
    fn write(&mut self, batch: &[Telemetry]) -> Result<(), SinkError> {
        for item in batch {
            if let Telemetry::Points(points) = item {
                for point in points {
                    assert!(point.name != "boom", "a sink blew up");
                    if let Ok(mut seen) = self.seen.lock() {
                        seen.push((self.label.clone(), point.clone()));
                    }
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        std::thread::sleep(self.flush_delay);
        Ok(())
    }
}

/// A jsonl spec: the tests' sinks are told apart by their path, the label of their recorder.
fn jsonl(path: &str, max_bytes: Option<i64>) -> SinkSpec {
    SinkSpec::Jsonl {
        path: path.into(),
        max_bytes,
        max_files: None,
        buffer_bytes: None,
    }
}

fn point(name: &str) -> Telemetry {
    Telemetry::Points(vec![Point {
        name: name.into(),
        metric_type: MetricType::Gauge,
        value: 1.0,
        timestamp: 0,
        interval: 0,
        tags: vec!["z:last".into(), "a:first".into()],
        origin: None,
    }])
}

/// A factory of recorders labelled by their destination; the one at path
/// `slow` takes a second to flush.
fn recorder() -> (Seen, Built, SinkFactory) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let built = Arc::new(Mutex::new(Vec::new()));
    let (factory_seen, factory_built) = (seen.clone(), built.clone());
    let factory: SinkFactory = Arc::new(move |spec: &SinkSpec, _: &PipelineConfig, _: &_| {
        let label = sinks::destination(spec);
        if let Ok(mut built) = factory_built.lock() {
            built.push(label.clone());
        }
        let flush_delay = if label == "jsonl slow" {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        };
        Ok(Box::new(Recorder {
            seen: factory_seen.clone(),
            label,
            flush_delay,
        }) as Box<dyn Sink>)
    });
    (seen, built, factory)
}

fn config(tags: &[&str]) -> PipelineConfig {
    with_sinks(tags, vec![SinkSpec::Stdout { metrics: None }])
}

fn with_sinks(tags: &[&str], sinks: Vec<SinkSpec>) -> PipelineConfig {
    PipelineConfig {
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        sinks,
        ..PipelineConfig::default()
    }
}

fn built(built: &Built) -> Vec<String> {
    built.lock().map(|b| b.clone()).unwrap_or_default()
}

async fn wait_for(seen: &Mutex<Vec<(String, Point)>>, count: usize) -> Vec<(String, Point)> {
    for _ in 0..400 {
        let now = seen.lock().map(|s| s.clone()).unwrap_or_default();
        if now.len() >= count {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    seen.lock().map(|s| s.clone()).unwrap_or_default()
}

#[tokio::test]
async fn tags_points_and_follows_reconfiguration() {
    let stats = Arc::new(Stats::default());
    let (seen, sinks_built, factory) = recorder();
    let pipeline = spawn_with(config(&["dyno:web.1", "a:first"]), stats.clone(), factory);
    let handle = pipeline.handle();
    assert!(handle.send(point("one")));
    let got = wait_for(&seen, 1).await;
    assert_eq!(got[0].1.tags, ["a:first", "dyno:web.1", "z:last"]);

    pipeline.reconfigure(config(&["dyno:web.2"]));
    // Unchanged config: no rebuild.
    pipeline.reconfigure(config(&["dyno:web.2"]));
    tokio::time::sleep(Duration::from_millis(20)).await;
    handle.send(point("two"));
    let got = wait_for(&seen, 2).await;
    assert_eq!(got[1].1.tags, ["a:first", "dyno:web.2", "z:last"]);
    assert_eq!(stats.pipeline.reconfigured.get(), 1);
    assert_eq!(built(&sinks_built), ["stdout"], "new tags rebuild no sink");
    assert!(pipeline.shutdown(Duration::from_secs(1)).await);
    assert!(!handle.send(point("late")), "closed after shutdown");
    assert_eq!(stats.pipeline.dropped_closed.get(), 1);
}

#[tokio::test]
async fn shutdown_writes_everything_queued() {
    let stats = Arc::new(Stats::default());
    let (seen, _, factory) = recorder();
    let pipeline = spawn_with(config(&[]), stats.clone(), factory);
    let handle = pipeline.handle();
    for i in 0..1000 {
        handle.send(point(&format!("p{i}")));
    }
    assert!(pipeline.shutdown(Duration::from_secs(2)).await);
    assert_eq!(seen.lock().map(|s| s.len()).unwrap_or_default(), 1000);
    assert_eq!(stats.pipeline.processed.get(), 1000);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let stats = Arc::new(Stats::default());
    // A current-thread runtime: the pipeline task cannot run while we send.
    let (_seen, _, factory) = recorder();
    let pipeline = spawn_with(config(&[]), stats.clone(), factory);
    let handle = pipeline.handle();
    for _ in 0..QUEUE_CAPACITY + 10 {
        handle.send(point("p"));
    }
    assert_eq!(stats.pipeline.dropped_full.get(), 10);
    assert_eq!(stats.pipeline.accepted.get(), QUEUE_CAPACITY as u64);
    assert!(pipeline.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_panicking_sink_is_contained_and_the_pipeline_restarts() {
    let stats = Arc::new(Stats::default());
    let (seen, _, factory) = recorder();
    let pipeline = spawn_with(config(&[]), stats.clone(), factory);
    let handle = pipeline.handle();
    handle.send(point("boom"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    handle.send(point("after"));
    let got = wait_for(&seen, 1).await;
    assert_eq!(
        got.iter().map(|(_, p)| p.name.as_str()).collect::<Vec<_>>(),
        ["after"]
    );
    assert_eq!(stats.pipeline.panics.get(), 1);
    assert!(pipeline.shutdown(Duration::from_secs(1)).await);
}

/// Takes every tracer telemetry request, as the Datadog sink does; records their paths.
#[derive(Debug)]
struct Forwarder(Arc<Mutex<Vec<String>>>);

impl Sink for Forwarder {
    fn write(&mut self, _batch: &[Telemetry]) -> Result<(), SinkError> {
        Ok(())
    }

    fn takes_tracer_telemetry(&self) -> bool {
        true
    }

    fn forward_tracer_telemetry(&mut self, request: &TracerTelemetry) -> bool {
        if let Ok(mut paths) = self.0.lock() {
            paths.push(request.path.clone());
        }
        true
    }
}

fn tracer_telemetry(path: &str) -> TracerTelemetry {
    TracerTelemetry {
        path: path.into(),
        headers: http::HeaderMap::new(),
        body: bytes::Bytes::from_static(b"{}"),
    }
}

#[tokio::test]
async fn tracer_telemetry_goes_to_the_sinks_that_forward_it_or_is_counted_as_dropped() {
    let stats = Arc::new(Stats::default());
    let (seen, _, recorders) = recorder();
    let paths = Arc::new(Mutex::new(Vec::new()));
    let forwarded = paths.clone();
    // A prometheus spec stands for the forwarding sink here.
    let factory: SinkFactory =
        Arc::new(
            move |spec: &SinkSpec, config: &PipelineConfig, r: &_| match spec {
                SinkSpec::Prometheus { .. } => {
                    Ok(Box::new(Forwarder(forwarded.clone())) as Box<dyn Sink>)
                }
                _ => recorders(spec, config, r),
            },
        );
    let forwarding = SinkSpec::Prometheus {
        listen: None,
        remote_write: None,
    };
    let web1 = with_sinks(&[], vec![SinkSpec::Stdout { metrics: None }, forwarding]);
    let pipeline = spawn_with(web1, stats.clone(), factory);
    let handle = pipeline.handle();
    assert!(handle.forward_tracer_telemetry(tracer_telemetry("/api/v2/apmtelemetry")));
    handle.send(point("one"));
    wait_for(&seen, 1).await;
    let paths_now = || paths.lock().map(|p| p.clone()).unwrap_or_default();
    for _ in 0..200 {
        if !paths_now().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(paths_now(), ["/api/v2/apmtelemetry"]);
    assert_eq!(stats.traces.telemetry_forwarded.get(), 1);

    pipeline.reconfigure(config(&[]));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(handle.forward_tracer_telemetry(tracer_telemetry("/api/v2/apmtelemetry")));
    handle.send(point("two"));
    wait_for(&seen, 2).await;
    assert_eq!(paths_now().len(), 1, "no sink forwards it now");
    assert_eq!(stats.traces.telemetry_dropped.get("no_datadog_sink"), 1);
    assert_eq!(stats.traces.telemetry_forwarded.get(), 1);
    assert!(pipeline.shutdown(Duration::from_secs(1)).await);
    assert_eq!(stats.pipeline.processed.get(), 4);
}

#[tokio::test]
async fn a_tag_only_change_rebuilds_no_sink() {
    let stats = Arc::new(Stats::default());
    let (seen, sinks_built, factory) = recorder();
    let sinks = vec![
        SinkSpec::Stdout { metrics: None },
        jsonl("a", None),
        jsonl("b", None),
    ];
    let pipeline = spawn_with(
        with_sinks(&["team:a"], sinks.clone()),
        stats.clone(),
        factory,
    );
    let handle = pipeline.handle();
    handle.send(point("one"));
    wait_for(&seen, 3).await;

    pipeline.reconfigure(with_sinks(&["team:b"], sinks));
    handle.send(point("two"));
    let got = wait_for(&seen, 6).await;
    assert_eq!(built(&sinks_built), ["stdout", "jsonl a", "jsonl b"]);
    assert_eq!(stats.pipeline.sinks_kept.get(), 3);
    assert_eq!(stats.pipeline.sinks_retired.get(), 0);
    let two: Vec<_> = got.iter().filter(|(_, p)| p.name == "two").collect();
    assert_eq!(two.len(), 3, "every kept sink writes on: {got:?}");
    assert!(two
        .iter()
        .all(|(_, p)| p.tags.contains(&"team:b".to_owned())));
    assert!(pipeline.shutdown(Duration::from_secs(1)).await);
}

#[tokio::test]
async fn changing_one_sinks_spec_rebuilds_only_that_one() {
    let stats = Arc::new(Stats::default());
    let (seen, sinks_built, factory) = recorder();
    let before = vec![
        SinkSpec::Stdout { metrics: None },
        jsonl("a", None),
        jsonl("b", None),
    ];
    let pipeline = spawn_with(with_sinks(&[], before), stats.clone(), factory);
    let handle = pipeline.handle();
    handle.send(point("one"));
    wait_for(&seen, 3).await;

    // b changes, a moves in the list (order is not identity), stdout goes.
    let after = vec![jsonl("b", Some(1 << 20)), jsonl("a", None)];
    pipeline.reconfigure(with_sinks(&[], after));
    handle.send(point("two"));
    let got = wait_for(&seen, 5).await;
    assert_eq!(
        built(&sinks_built),
        ["stdout", "jsonl a", "jsonl b", "jsonl b"]
    );
    assert_eq!(stats.pipeline.sinks_kept.get(), 1);
    assert_eq!(stats.pipeline.sinks_built.get(), 4);
    assert_eq!(stats.pipeline.sinks_retired.get(), 2, "old b and stdout");
    let mut two: Vec<_> = got
        .iter()
        .filter(|(_, p)| p.name == "two")
        .map(|(label, _)| label.as_str())
        .collect();
    two.sort_unstable();
    assert_eq!(two, ["jsonl a", "jsonl b"]);
    assert!(pipeline.shutdown(Duration::from_secs(1)).await);
}

#[tokio::test]
async fn a_sinks_slow_flush_does_not_delay_the_next_batch() {
    let stats = Arc::new(Stats::default());
    let (seen, _, factory) = recorder();
    let pipeline = spawn_with(
        with_sinks(&[], vec![jsonl("slow", None), jsonl("fast", None)]),
        stats.clone(),
        factory,
    );
    let handle = pipeline.handle();
    handle.send(point("one"));
    wait_for(&seen, 2).await;

    // The slow sink is replaced: it flushes (1 s) before its successor writes.
    let changed = with_sinks(&[], vec![jsonl("slow", Some(1 << 20)), jsonl("fast", None)]);
    pipeline.reconfigure(changed);
    let sent = std::time::Instant::now();
    handle.send(point("two"));
    let written_by = |label: &str, seen: &[(String, Point)]| {
        seen.iter().any(|(l, p)| l == label && p.name == "two")
    };
    loop {
        let now = seen.lock().map(|s| s.clone()).unwrap_or_default();
        if written_by("jsonl fast", &now) {
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_millis(500),
            "the fast sink waited"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let now = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(
        !written_by("jsonl slow", &now),
        "the successor waits for the flush"
    );
    let got = wait_for(&seen, 4).await;
    assert!(written_by("jsonl slow", &got), "and then writes: {got:?}");
    assert!(sent.elapsed() >= Duration::from_millis(900));
    assert!(pipeline.shutdown(Duration::from_secs(5)).await);
}

#[test]
fn from_dyno_resolves_a_version_reference() {
    let text =
        "apiVersion: dynoscope.dev/v1alpha1\nkind: ObservabilityConfig\nmetadata: {name: shop}\n\
        spec: {version: {fromEnv: REL}, sinks: [{type: jsonl, path: /tmp/x.jsonl}]}\n";
    let mut resources =
        dynoscope_crds::manifest::parse_documents(text, "m.yaml").unwrap_or_default();
    let resource = resources.remove(0);
    let input = dynoscope_crds::render::RenderInput {
        config: &resource,
        procfile: None,
        formation: None,
        heroku_app_name: None,
    };
    let (dyno, _) =
        dynoscope_crds::render::render_dyno(&input, "web.1").unwrap_or_else(|e| panic!("{e}"));
    let config = PipelineConfig::from_dyno(&dyno, |name| (name == "REL").then(|| "v7".to_owned()));
    assert!(
        config.tags.contains(&"version:v7".to_owned()),
        "{:?}",
        config.tags
    );
    assert!(config.tags.contains(&"dyno:web.1".to_owned()));
    assert_eq!(config.hostname, "shop.web.1");
    assert_eq!(config.sinks.len(), 1);
}

/// An event of about `bytes`.
fn big_event(bytes: usize) -> Telemetry {
    Telemetry::Event(crate::telemetry::Event {
        title: "big".into(),
        text: "x".repeat(bytes),
        ..Default::default()
    })
}

#[tokio::test]
async fn past_its_byte_budget_the_queue_drops_and_counts_by_kind() {
    let stats = Arc::new(Stats::default());
    // A current-thread runtime: nothing is dequeued while we send.
    let (_seen, _built, factory) = recorder();
    let pipeline = spawn_with(config(&[]), stats.clone(), factory);
    let handle = pipeline.handle();
    let mib = 1 << 20;
    assert!(handle.has_room(QUEUE_BYTES - mib));
    let mut accepted = 0;
    for _ in 0..20 {
        accepted += usize::from(handle.send(big_event(mib)));
    }
    // Each item is a little over 1 MiB: 15 fit in 16 MiB, the rest are dropped.
    assert_eq!(accepted, 15);
    assert_eq!(stats.pipeline.dropped_over_budget.get("event"), 5);
    assert!(!handle.has_room(mib));
    assert!(handle.has_room(100));
    assert!(handle.send(point("small")));
    assert!(!handle.send(big_event(QUEUE_BYTES)));
    assert_eq!(stats.pipeline.dropped_over_budget.get("event"), 6);
    assert!(stats.pipeline.queued_bytes.get() <= QUEUE_BYTES as u64);
    assert!(pipeline.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn delivered_items_give_their_bytes_back() {
    let stats = Arc::new(Stats::default());
    let (seen, _built, factory) = recorder();
    let pipeline = spawn_with(config(&["dyno:web.1"]), stats.clone(), factory);
    let handle = pipeline.handle();
    for _ in 0..10 {
        assert!(handle.send(big_event(1 << 20)));
    }
    handle.send(point("last"));
    assert!(stats.pipeline.queued_bytes.get() > 10 << 20);
    wait_for(&seen, 1).await;
    // Tagging grows items after they leave the queue; the gauge still returns to zero.
    assert_eq!(stats.pipeline.queued_bytes.get(), 0);
    assert!(handle.has_room(QUEUE_BYTES));
    // An item larger than the budget goes into an empty queue, and alone.
    assert!(handle.has_room(QUEUE_BYTES + (1 << 20)));
    assert!(handle.send(big_event(QUEUE_BYTES + (1 << 20))));
    assert!(!handle.send(point("beside it")));
    assert!(pipeline.shutdown(Duration::from_secs(5)).await);
}

#[test]
fn an_item_naming_its_service_keeps_its_unified_tags_and_gets_the_dynos_identity() {
    let dyno: Vec<String> = [
        "appname:shop",
        "dyno:web.1",
        "env:prod",
        "service:shop",
        "version:v42",
    ]
    .map(String::from)
    .to_vec();
    let point = |tags: &[&str]| Point {
        name: "trace.http.request.hits".into(),
        metric_type: MetricType::Count,
        value: 1.0,
        timestamp: 0,
        interval: 10,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        origin: None,
    };
    let cases: &[(&[&str], &[&str])] = &[
        // APM stats of another service: only the dyno's identity is added.
        (
            &["resource:GET /api", "service:other"],
            &[
                "appname:shop",
                "dyno:web.1",
                "resource:GET /api",
                "service:other",
            ],
        ),
        (
            &["env:staging", "service:other"],
            &["appname:shop", "dyno:web.1", "env:staging", "service:other"],
        ),
        // No service of its own: the dyno's, all of them.
        (
            &["source:cgroup"],
            &[
                "appname:shop",
                "dyno:web.1",
                "env:prod",
                "service:shop",
                "source:cgroup",
                "version:v42",
            ],
        ),
    ];
    for (tags, want) in cases {
        let mut item = Telemetry::Points(vec![point(tags)]);
        tag(&mut item, &dyno);
        let Telemetry::Points(points) = item else {
            panic!("points stay points")
        };
        assert_eq!(points[0].tags, *want, "{tags:?}");
    }
}
