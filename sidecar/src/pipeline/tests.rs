use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::sinks::SinkError;
use crate::telemetry::{MetricType, Point, TracerTelemetry};

/// Every point a recorder saw, with the tags of the config that built it.
type Seen = Arc<Mutex<Vec<(Vec<String>, Point)>>>;

/// Records what it is given; panics on a point named `boom`.
#[derive(Debug)]
struct Recorder {
    seen: Seen,
    label: Vec<String>,
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
}

fn point(name: &str) -> Telemetry {
    Telemetry::Points(vec![Point {
        name: name.into(),
        metric_type: MetricType::Gauge,
        value: 1.0,
        timestamp: 0,
        interval: 0,
        tags: vec!["z:last".into(), "a:first".into()],
    }])
}

fn recorder() -> (Seen, SinkFactory) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let factory_seen = seen.clone();
    let factory: SinkFactory = Arc::new(move |config: &PipelineConfig| {
        vec![Box::new(Recorder {
            seen: factory_seen.clone(),
            label: config.tags.clone(),
        }) as Box<dyn Sink>]
    });
    (seen, factory)
}

fn config(tags: &[&str]) -> PipelineConfig {
    PipelineConfig {
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        ..PipelineConfig::default()
    }
}

async fn wait_for(
    seen: &Mutex<Vec<(Vec<String>, Point)>>,
    count: usize,
) -> Vec<(Vec<String>, Point)> {
    for _ in 0..200 {
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
    let (seen, factory) = recorder();
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
    assert_eq!(got[1].0, ["dyno:web.2"], "written by the new sinks");
    assert_eq!(got[1].1.tags, ["a:first", "dyno:web.2", "z:last"]);
    assert_eq!(stats.pipeline.reconfigured.get(), 1);
    assert!(pipeline.shutdown(Duration::from_secs(1)).await);
    assert!(!handle.send(point("late")), "closed after shutdown");
    assert_eq!(stats.pipeline.dropped_closed.get(), 1);
}

#[tokio::test]
async fn shutdown_writes_everything_queued() {
    let stats = Arc::new(Stats::default());
    let (seen, factory) = recorder();
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
    let (_seen, factory) = recorder();
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
    let (seen, factory) = recorder();
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
    let (seen, recorders) = recorder();
    let paths = Arc::new(Mutex::new(Vec::new()));
    let forwarded = paths.clone();
    // Dyno web.1 has a forwarding sink beside the recorder; others only the recorder.
    let factory: SinkFactory = Arc::new(move |config: &PipelineConfig| {
        let mut sinks = recorders(config);
        if config.dyno == "web.1" {
            sinks.push(Box::new(Forwarder(forwarded.clone())));
        }
        sinks
    });
    let web1 = PipelineConfig {
        dyno: "web.1".into(),
        ..config(&[])
    };
    let pipeline = spawn_with(web1, stats.clone(), factory);
    let handle = pipeline.handle();
    assert!(handle.forward_tracer_telemetry(tracer_telemetry("/api/v2/apmtelemetry")));
    handle.send(point("one"));
    // Items are handled in order: once "one" is written, the request before it was offered.
    wait_for(&seen, 1).await;
    let paths_now = || paths.lock().map(|p| p.clone()).unwrap_or_default();
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
    let (_seen, factory) = recorder();
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
    let (seen, factory) = recorder();
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
