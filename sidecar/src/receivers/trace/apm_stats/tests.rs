//! Table tests of which spans count, how they group, and what is emitted.

use super::*;

const T0: i64 = 1_700_000_000;
const NS: i64 = 1_000_000_000;

#[derive(Clone, Copy)]
struct S {
    id: u64,
    parent: u64,
    service: &'static str,
    name: &'static str,
    resource: &'static str,
    /// Seconds after T0 the span starts.
    at: i64,
    /// Milliseconds.
    ms: i64,
    error: i32,
    meta: &'static [(&'static str, &'static str)],
    metrics: &'static [(&'static str, f64)],
}

const BASE: S = S {
    id: 1,
    parent: 0,
    service: "shop",
    name: "flask.request",
    resource: "GET /cart",
    at: 1,
    ms: 100,
    error: 0,
    meta: &[],
    metrics: &[],
};

fn chunk(spans: &[S]) -> TraceChunk {
    let spans = spans
        .iter()
        .map(|s| Span {
            service: s.service.into(),
            name: s.name.into(),
            resource: s.resource.into(),
            trace_id: 7,
            span_id: s.id,
            parent_id: s.parent,
            start: (T0 + s.at) * NS,
            duration: s.ms * 1_000_000,
            error: s.error,
            meta: s
                .meta
                .iter()
                .map(|(k, v)| (Str::from(*k), Str::from(*v)))
                .collect(),
            metrics: s.metrics.iter().map(|(k, v)| (Str::from(*k), *v)).collect(),
            span_type: "web".into(),
            ..Span::default()
        })
        .collect();
    TraceChunk {
        priority: None,
        spans,
    }
}

/// `name{tags} = value` lines, sorted, for readable comparisons.
fn lines(points: &[Point]) -> Vec<String> {
    let mut out: Vec<String> = points
        .iter()
        .map(|p| format!("{}{{{}}} = {}", p.name, p.tags.join(","), p.value))
        .collect();
    out.sort();
    out
}

fn value(points: &[Point], name: &str, tags: &[&str]) -> Option<f64> {
    points
        .iter()
        .find(|p| p.name == name && p.tags == tags)
        .map(|p| p.value)
}

#[test]
fn counts_hits_errors_and_top_level() {
    let mut stats = ApmStats::new(ApmStatsConfig {
        default_env: Some("prod".into()),
        ..ApmStatsConfig::default()
    });
    stats.add_chunk(
        &chunk(&[
            S {
                meta: &[("http.status_code", "200")],
                ..BASE
            },
            // Same service, not measured: not counted.
            S {
                id: 2,
                parent: 1,
                name: "render",
                ..BASE
            },
            // Another service: top-level.
            S {
                id: 3,
                parent: 1,
                service: "db",
                name: "postgres.query",
                resource: "SELECT 1",
                error: 1,
                ..BASE
            },
            // Measured child of the same service.
            S {
                id: 4,
                parent: 1,
                name: "cache",
                metrics: &[("_dd.measured", 1.0)],
                ..BASE
            },
            // A client span.
            S {
                id: 5,
                parent: 1,
                name: "http.client",
                meta: &[("span.kind", "client")],
                ..BASE
            },
        ]),
        T0 + 5,
    );
    stats.add_chunk(
        &chunk(&[S {
            meta: &[("http.status_code", "500")],
            error: 1,
            ..BASE
        }]),
        T0 + 5,
    );
    let c = stats.counters();
    assert_eq!((c.spans_counted, c.spans_skipped), (5, 1));
    assert!(
        stats.flush(T0 + 19).is_empty(),
        "a bucket stays open one more interval"
    );
    let points = stats.flush(T0 + 20);
    let shop = ["env:prod", "resource:GET /cart", "service:shop"];
    let cases: &[(&str, &[&str], f64)] = &[
        ("trace.flask.request.hits", &shop, 2.0),
        ("trace.flask.request.hits.top_level", &shop, 2.0),
        ("trace.flask.request.errors", &shop, 1.0),
        (
            "trace.flask.request.hits.by_http_status",
            &[
                "env:prod",
                "http.status_code:200",
                "resource:GET /cart",
                "service:shop",
            ],
            1.0,
        ),
        (
            "trace.flask.request.errors.by_http_status",
            &[
                "env:prod",
                "http.status_code:200",
                "resource:GET /cart",
                "service:shop",
            ],
            0.0,
        ),
        (
            "trace.flask.request.errors.by_http_status",
            &[
                "env:prod",
                "http.status_code:500",
                "resource:GET /cart",
                "service:shop",
            ],
            1.0,
        ),
        ("trace.flask.request.duration", &shop, 0.2),
        (
            "trace.postgres.query.hits",
            &["env:prod", "resource:SELECT 1", "service:db"],
            1.0,
        ),
        (
            "trace.postgres.query.errors",
            &["env:prod", "resource:SELECT 1", "service:db"],
            1.0,
        ),
        ("trace.cache.hits.top_level", &shop, 0.0),
        ("trace.cache.hits", &shop, 1.0),
        (
            "trace.http.client.hits",
            &[
                "env:prod",
                "resource:GET /cart",
                "service:shop",
                "span.kind:client",
            ],
            1.0,
        ),
    ];
    for (name, tags, want) in cases {
        let got = value(&points, name, tags);
        assert!(
            got.is_some_and(|g| (g - want).abs() < 1e-9),
            "{name}{tags:?}: {got:?}, want {want}\n{:#?}",
            lines(&points)
        );
    }
    assert_eq!(value(&points, "trace.render.hits", &shop), None);
    // Each (name, tags) once per bucket.
    let mut seen = lines(&points)
        .into_iter()
        .map(|l| l.split(" = ").next().unwrap_or_default().to_owned())
        .collect::<Vec<_>>();
    let n = seen.len();
    seen.dedup();
    assert_eq!(seen.len(), n);
}

#[test]
fn latency_percentiles_in_seconds() {
    let mut stats = ApmStats::new(ApmStatsConfig::default());
    for ms in 1..=100 {
        stats.add_chunk(&chunk(&[S { ms, ..BASE }]), T0 + 5);
    }
    let points = stats.flush_all();
    let tags = ["resource:GET /cart", "service:shop"];
    for (suffix, want) in [
        (".p50", 0.050),
        (".p95", 0.095),
        (".p99", 0.099),
        (".max", 0.100),
        (".avg", 0.0505),
    ] {
        let got = value(
            &points,
            &format!("trace.flask.request.duration{suffix}"),
            &tags,
        )
        .unwrap();
        assert!(
            (got - want).abs() <= 0.011 * want,
            "{suffix}: {got} vs {want}"
        );
    }
}

#[test]
fn sample_rate_weighs_and_env_version_come_from_meta() {
    let mut stats = ApmStats::new(ApmStatsConfig {
        default_env: Some("dflt".into()),
        ..ApmStatsConfig::default()
    });
    stats.add_chunk(
        &chunk(&[S {
            meta: &[("env", "staging"), ("version", "v42")],
            metrics: &[("_sample_rate", 0.25)],
            ..BASE
        }]),
        T0 + 5,
    );
    let points = stats.flush_all();
    assert_eq!(
        value(
            &points,
            "trace.flask.request.hits",
            &[
                "env:staging",
                "resource:GET /cart",
                "service:shop",
                "version:v42"
            ]
        ),
        Some(4.0)
    );
}

#[test]
fn buckets_by_end_time_and_late_spans_join_the_oldest_open_bucket() {
    let mut stats = ApmStats::new(ApmStatsConfig::default());
    // Starts at T0+9.95, ends at T0+10.05: the second bucket.
    stats.add_chunk(
        &chunk(&[S {
            at: 9,
            ms: 1100,
            ..BASE
        }]),
        T0 + 11,
    );
    stats.add_chunk(&chunk(&[S { at: 1, ..BASE }]), T0 + 11);
    let first = stats.flush(T0 + 20);
    assert!(first.iter().all(|p| p.timestamp == T0));
    assert_eq!(
        value(
            &first,
            "trace.flask.request.hits",
            &["resource:GET /cart", "service:shop"]
        ),
        Some(1.0)
    );
    // Late: belongs to the flushed bucket, so it joins the oldest open one.
    stats.add_chunk(&chunk(&[S { at: 2, ..BASE }]), T0 + 21);
    let second = stats.flush(T0 + 30);
    assert!(second.iter().all(|p| p.timestamp == T0 + 10));
    assert_eq!(
        value(
            &second,
            "trace.flask.request.hits",
            &["resource:GET /cart", "service:shop"]
        ),
        Some(2.0)
    );
}

#[test]
fn status_code_as_a_metric() {
    let mut stats = ApmStats::new(ApmStatsConfig::default());
    stats.add_chunk(
        &chunk(&[S {
            metrics: &[("http.status_code", 404.0)],
            ..BASE
        }]),
        T0 + 5,
    );
    let points = stats.flush_all();
    let tags = ["http.status_code:404", "resource:GET /cart", "service:shop"];
    assert_eq!(
        value(&points, "trace.flask.request.hits.by_http_status", &tags),
        Some(1.0)
    );
}

#[test]
fn groups_are_bounded_in_bytes() {
    // Room for one group: the second resource is dropped and counted, the
    // first still counts.
    let mut stats = ApmStats::new(ApmStatsConfig {
        max_bytes: 1,
        ..ApmStatsConfig::default()
    });
    stats.add_chunk(&chunk(&[BASE]), T0 + 5);
    stats.add_chunk(
        &chunk(&[S {
            resource: "GET /other",
            ..BASE
        }]),
        T0 + 5,
    );
    stats.add_chunk(&chunk(&[BASE]), T0 + 5);
    let c = stats.counters();
    assert_eq!((c.groups, c.spans_counted, c.group_overflow), (1, 2, 1));
    assert!(c.bytes > size_of::<Key>(), "{c:?}");
    stats.flush_all();
    assert_eq!(stats.counters().bytes, 0);
}

#[test]
fn a_flood_of_unique_resources_stays_within_the_stated_bytes_and_counts_the_drops() {
    const MAX: usize = 128 << 10;
    let mut stats = ApmStats::new(ApmStatsConfig {
        max_bytes: MAX,
        ..ApmStatsConfig::default()
    });
    for i in 0..5_000 {
        let mut c = chunk(&[BASE]);
        c.spans[0].resource = format!("GET /item/{i}").into();
        c.spans[0].duration = (i + 1) * 1_000_000;
        stats.add_chunk(&c, T0 + 5);
    }
    let c = stats.counters();
    // Within the budget plus one group's sketch growth.
    assert!(c.bytes <= MAX + 4096, "{c:?}");
    assert!(c.bytes >= MAX - 4096, "the budget is used: {c:?}");
    assert_eq!(c.spans_counted + c.group_overflow, 5_000, "{c:?}");
    assert!(c.group_overflow > 4_000, "{c:?}");
}

#[test]
fn clocks_far_ahead_are_clamped_to_now() {
    let mut stats = ApmStats::new(ApmStatsConfig::default());
    stats.add_chunk(
        &chunk(&[S {
            at: 1_000_000,
            ..BASE
        }]),
        T0 + 5,
    );
    let points = stats.flush(T0 + 20);
    assert!(!points.is_empty() && points.iter().all(|p| p.timestamp == T0));
}

#[test]
fn span_kind_and_synthetics_group_and_tag_like_the_agent() {
    let mut stats = ApmStats::new(ApmStatsConfig::default());
    // A Synthetics chunk: its origin is on the root.
    stats.add_chunk(
        &chunk(&[S {
            meta: &[
                ("_dd.origin", "synthetics-browser"),
                ("span.kind", "server"),
            ],
            ..BASE
        }]),
        T0 + 5,
    );
    // The same span without either: another group.
    stats.add_chunk(&chunk(&[BASE]), T0 + 5);
    // A client span of another service, under a root of ours.
    stats.add_chunk(
        &chunk(&[
            BASE,
            S {
                id: 2,
                parent: 1,
                service: "other",
                name: "http.request",
                resource: "GET /api",
                meta: &[("span.kind", "client")],
                ..BASE
            },
        ]),
        T0 + 5,
    );
    let hits: Vec<String> = lines(&stats.flush_all())
        .into_iter()
        .filter(|l| l.contains(".hits{"))
        .collect();
    assert_eq!(
        hits,
        [
            "trace.flask.request.hits{resource:GET /cart,service:shop,span.kind:server,synthetics:true} = 1",
            "trace.flask.request.hits{resource:GET /cart,service:shop} = 2",
            "trace.http.request.hits{resource:GET /api,service:other,span.kind:client} = 1",
        ]
    );
}
