use super::*;

#[test]
fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
    let config = DeliveryConfig {
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        ..DeliveryConfig::default()
    };
    for (attempt, ceiling) in [(0, 100), (1, 200), (3, 800), (4, 1000), (30, 1000)] {
        for _ in 0..50 {
            let d = backoff(&config, attempt).as_millis();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "attempt {attempt}: {d} ms"
            );
        }
    }
}

#[test]
fn gzip_and_snappy_bodies_round_trip() {
    let raw = b"{\"series\":[]}".repeat(10);
    let gz = compress(Compression::Gzip, &raw).unwrap_or_default();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out)
        .unwrap_or_default();
    assert_eq!(out, raw);
    let sn = compress(Compression::Snappy, &raw).unwrap_or_default();
    assert_eq!(
        snap::raw::Decoder::new()
            .decompress_vec(&sn)
            .unwrap_or_default(),
        raw
    );
}

fn endpoint(kind: ItemKind) -> Endpoint {
    Endpoint {
        name: "test",
        // Nothing listens on port 9 of loopback; these tests never send anyway.
        uri: Uri::from_static("http://127.0.0.1:9/"),
        headers: HeaderMap::new(),
        compression: Compression::Gzip,
        kind,
        prefix: Vec::new(),
        separator: b"",
        suffix: b"",
        max_entries: usize::MAX,
    }
}

/// An entry that costs `size` bytes of the buffer.
fn entry(size: usize, items: u64) -> Entry {
    Entry {
        bytes: vec![b'x'; size - ENTRY_OVERHEAD as usize],
        items,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_kind_drops_its_own_oldest_and_a_kind_over_its_share_gives_room_back() {
    let config = DeliveryConfig {
        buffer_bytes: 1000,
        batch_bytes: usize::MAX,
        batch_interval: Duration::from_secs(3600),
        // Points and spans: 500 bytes each.
        shares: [50, 10, 50, 10, 10, 10],
        ..DeliveryConfig::default()
    };
    let stats = Arc::new(SinkStats::default());
    let endpoints = vec![endpoint(ItemKind::Points), endpoint(ItemKind::Spans)];
    let delivery = Delivery::start("test".into(), endpoints, config, stats.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    let kinds = &stats.buffer_kinds.0;
    assert_eq!(kinds[ItemKind::Points.index()].share_bytes.get(), 500);
    assert_eq!(
        kinds[ItemKind::Events.index()].share_bytes.get(),
        0,
        "not carried"
    );
    delivery.push(1, entry(400, 3)); // spans, oldest
    delivery.push(1, entry(400, 4)); // spans borrow 300 bytes of the points' share
    assert_eq!(stats.buffer_bytes.get(), 800);
    delivery.push(0, entry(300, 2)); // points within their share: the spans give room back
    assert_eq!(stats.dropped.spans.get(), 3);
    assert_eq!(stats.buffer_bytes.get(), 700);
    delivery.push(0, entry(300, 5)); // free room: points borrow 100 bytes
    assert_eq!(stats.buffer_bytes.get(), 1000);
    delivery.push(1, entry(200, 1)); // spans over their share: they drop their own oldest
    assert_eq!(stats.dropped.spans.get(), 7);
    assert_eq!(stats.dropped.points.get(), 0, "points never lose to spans");
    assert_eq!(kinds[ItemKind::Points.index()].memory_bytes.get(), 600);
    assert_eq!(kinds[ItemKind::Spans.index()].memory_bytes.get(), 200);
    assert!(
        kinds[ItemKind::Points.index()]
            .oldest
            .load(Ordering::Relaxed)
            > 0
    );
    delivery.push(0, entry(2000, 9)); // larger than the buffer: itself dropped
    assert_eq!(stats.dropped.points.get(), 9);
    assert_eq!(stats.buffer_bytes.get(), 800);
    assert_eq!(delivery.shared.lock().pending, [7, 0, 1, 0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_request_goes_alone_to_its_own_url_and_is_charged_for_its_headers() {
    let config = DeliveryConfig {
        batch_bytes: usize::MAX,
        batch_interval: Duration::from_secs(3600),
        ..DeliveryConfig::default()
    };
    let stats = Arc::new(SinkStats::default());
    let delivery = Delivery::start(
        "test".into(),
        vec![Endpoint {
            compression: Compression::None,
            ..endpoint(ItemKind::Telemetry)
        }],
        config,
        stats.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut headers = HeaderMap::new();
    headers.insert(
        "dd-telemetry-request-type",
        HeaderValue::from_static("app-started"),
    );
    let target = Target {
        uri: Uri::from_static("http://127.0.0.1:9/api/v2/apmtelemetry"),
        headers,
    };
    delivery.push(0, entry(100, 1));
    delivery.push(0, entry(100, 1));
    delivery.push_to(0, entry(100, 1), target.clone());
    delivery.push(0, entry(100, 1));
    let header_cost =
        ("dd-telemetry-request-type".len() + "app-started".len()) as u64 + ENTRY_OVERHEAD;
    assert_eq!(stats.buffer_bytes.get(), 400 + header_cost);
    let shared = &delivery.shared;
    let batches: Vec<(u64, Option<Target>, usize)> = std::iter::from_fn(|| match shared.next() {
        Some(Next::Batch(b)) => Some((b.items, b.target, b.body.len())),
        _ => None,
    })
    .collect();
    let body = 100 - ENTRY_OVERHEAD as usize;
    assert_eq!(
        batches,
        [
            (2, None, 2 * body),
            (1, Some(target), body),
            (1, None, body)
        ],
        "uncompressed, and the proxied request alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_moves_to_the_successor_ahead_of_its_own_entries_within_its_buffer() {
    let config = |buffer_bytes| DeliveryConfig {
        buffer_bytes,
        batch_bytes: usize::MAX,
        batch_interval: Duration::from_secs(3600),
        ..DeliveryConfig::default()
    };
    let endpoints = || vec![endpoint(ItemKind::Points), endpoint(ItemKind::Spans)];
    let old_stats = Arc::new(SinkStats::default());
    let old = Delivery::start("old".into(), endpoints(), config(10_000), old_stats.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    old.push(0, entry(400, 1));
    old.push(1, entry(400, 2));
    old.push(0, entry(400, 3));
    let new_stats = Arc::new(SinkStats::default());
    let new = Delivery::start("new".into(), endpoints(), config(1000), new_stats.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    new.push(0, entry(100, 4));

    let backlog = old.take_backlog();
    assert_eq!(backlog.len(), 3);
    assert_eq!(old.shared.lock().pending, [0; KINDS]);
    assert_eq!(old_stats.buffer_bytes.get(), 0);

    new.accept_backlog(backlog);
    // 1000 bytes hold the newest three; the oldest point does not fit.
    assert_eq!(new_stats.dropped.points.get(), 1);
    assert_eq!(new.shared.lock().pending, [7, 0, 2, 0, 0, 0]);
    assert_eq!(new_stats.buffer_bytes.get(), 900);
    let points: Vec<u64> = new.shared.lock().queues[0]
        .iter()
        .map(|q| q.entry.items)
        .collect();
    assert_eq!(points, [3, 4], "the predecessor's entries go first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_while_the_endpoint_is_down_retries_a_few_times_not_in_a_burst() {
    let config = DeliveryConfig {
        batch_interval: Duration::from_millis(10),
        flush_wait: Duration::from_millis(1500),
        ..DeliveryConfig::default()
    };
    let stats = Arc::new(SinkStats::default());
    // Nothing listens on port 9 of loopback: every attempt is refused at once.
    let delivery = Delivery::start(
        "test".into(),
        vec![endpoint(ItemKind::Points)],
        config,
        stats.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    delivery.push(0, entry(100, 1));
    let started = Instant::now();
    while stats.errors.connection.get() == 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = stats.retries.get();
    assert_eq!(delivery.flush(), [1, 0, 0, 0, 0, 0]);
    // One try when the flush starts, then the reconnect back-off (≥ 125 ms,
    // doubling to 1 s): a handful in 1.5 s. Shrinking each delay to the
    // deadline made this 80+ in the last 100 ms.
    let during = stats.retries.get() - before;
    assert!(
        (1..=8).contains(&during),
        "{during} retries during the flush"
    );
}
