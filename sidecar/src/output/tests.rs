use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::*;

/// An in-memory stream whose reader can stop: each `write` call needs a permit
/// (`None`: as many as it likes) and is recorded as one piece, like a `write(2)`.
#[derive(Clone, Default)]
struct Pipe {
    permits: Arc<(Mutex<Option<usize>>, Condvar)>,
    writes: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Pipe {
    fn blocked() -> Pipe {
        let pipe = Pipe::default();
        *pipe
            .permits
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(0);
        pipe
    }

    fn set(&self, permits: Option<usize>) {
        *self
            .permits
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = permits;
        self.permits.1.notify_all();
    }

    fn writes(&self) -> Vec<Vec<u8>> {
        self.writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn text(&self) -> String {
        String::from_utf8(self.writes().concat()).unwrap_or_default()
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (lock, cvar) = &*self.permits;
        let mut permits = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while *permits == Some(0) {
            permits = cvar.wait(permits).unwrap_or_else(PoisonError::into_inner);
        }
        if let Some(n) = permits.as_mut() {
            *n -= 1;
        }
        self.writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn writer(pipe: &Pipe, capacity: usize) -> (LineWriter, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let writer = LineWriter::spawn(
        Stream::Stdout,
        Box::new(pipe.clone()),
        capacity,
        stats.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (writer, stats)
}

/// Polls `check` for up to 5 s.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(5), "{what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn line(i: usize, len: usize) -> Vec<u8> {
    let mut line = format!("line-{i:04}").into_bytes();
    line.resize(len - 1, b'.');
    line.push(b'\n');
    line
}

#[test]
fn lines_are_written_whole_in_order_and_counted() {
    let pipe = Pipe::default();
    let (out, stats) = writer(&pipe, 1024);
    assert!(out.write(b"a"));
    assert!(out.write(b"b\n"));
    assert!(out.write(b"c\nd\n"));
    assert!(out.write(b""));
    assert!(out.flush(Duration::from_secs(5)));
    assert_eq!(pipe.text(), "a\nb\nc\nd\n");
    assert_eq!(stats.output.stdout.written_lines.get(), 4);
    assert_eq!(stats.output.stdout.written_bytes.get(), 8);
    assert_eq!(stats.output.stdout.dropped_lines.get(), 0);
    assert_eq!(stats.output.stderr.written_lines.get(), 0);
}

#[test]
fn a_full_queue_drops_and_counts_without_waiting_then_reports_the_gap_once_drained() {
    let pipe = Pipe::blocked();
    let (out, stats) = writer(&pipe, 64);
    assert!(out.write(b"first"));
    // The writer takes `first` and waits on the pipe; it still counts against the bound.
    eventually("the writer to take the first line", || {
        out.shared.lock().in_flight == 6
    });
    for i in 0..5 {
        assert!(out.write(&line(i, 10)), "line {i}");
    }
    let start = Instant::now();
    for i in 5..9 {
        assert!(!out.write(&line(i, 10)), "line {i} should be dropped");
    }
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(stats.output.stdout.dropped_lines.get(), 4);
    assert_eq!(stats.output.stdout.dropped_bytes.get(), 40);
    assert!(!out.flush(Duration::from_millis(20)), "the pipe is blocked");

    pipe.set(None);
    assert!(out.flush(Duration::from_secs(5)));
    let text = pipe.text();
    let want_lines: String = (0..5)
        .map(|i| String::from_utf8(line(i, 10)).unwrap_or_default())
        .collect();
    assert_eq!(
        text,
        format!(
            "first\n{want_lines}dynoscope-sidecar: stdout was blocked: dropped 4 lines (40 bytes)\n"
        )
    );
    assert_eq!(stats.output.stdout.written_lines.get(), 7);
    assert_eq!(stats.output.stdout.written_bytes.get(), text.len() as u64);

    // The gap was reported: the next line comes without a notice.
    assert!(out.write(b"later"));
    assert!(out.flush(Duration::from_secs(5)));
    assert!(
        pipe.text().ends_with("(40 bytes)\nlater\n"),
        "{}",
        pipe.text()
    );
}

#[test]
fn the_notice_goes_where_the_gap_is_when_lines_follow_it() {
    let pipe = Pipe::blocked();
    let (out, stats) = writer(&pipe, 10_000);
    assert!(out.write(&line(0, 1000)));
    eventually("the writer to take line 0", || {
        out.shared.lock().in_flight == 1000
    });
    for i in 1..10 {
        assert!(out.write(&line(i, 1000)), "line {i}");
    }
    assert!(!out.write(b"lost"));
    // Line 0 goes; the writer takes lines 1-9 and writes the first four (one PIPE_BUF).
    pipe.set(Some(2));
    eventually("four more lines to be written", || {
        out.shared.lock().held() == 5000
    });
    assert!(out.write(&line(10, 1000)));
    pipe.set(None);
    assert!(out.flush(Duration::from_secs(5)));
    let want: String = (0..10)
        .map(|i| String::from_utf8(line(i, 1000)).unwrap_or_default())
        .chain([
            "dynoscope-sidecar: stdout was blocked: dropped 1 lines (5 bytes)\n".to_owned(),
            String::from_utf8(line(10, 1000)).unwrap_or_default(),
        ])
        .collect();
    assert_eq!(pipe.text(), want);
    assert_eq!(stats.output.stdout.dropped_lines.get(), 1);
}

#[test]
fn writes_are_whole_lines_of_at_most_pipe_buf_unless_one_line_is_longer() {
    let pipe = Pipe::blocked();
    let (out, _) = writer(&pipe, QUEUE_BYTES);
    assert!(out.write(b"first"));
    eventually("the writer to take the first line", || {
        out.shared.lock().in_flight == 6
    });
    let mut want = b"first\n".to_vec();
    for i in 0..100 {
        let l = line(i, 100);
        assert!(out.write(&l));
        want.extend_from_slice(&l);
    }
    let long = line(100, 3 * PIPE_BUF);
    assert!(out.write(&long));
    want.extend_from_slice(&long);
    pipe.set(None);
    assert!(out.flush(Duration::from_secs(5)));
    let writes = pipe.writes();
    assert_eq!(writes.concat(), want);
    for write in &writes {
        assert!(write.ends_with(b"\n"));
        assert!(write.len() <= PIPE_BUF || count_lines(write) == 1);
    }
    // 1 + 100 × 100 bytes + one long line: the first, three PIPE_BUF-sized batches, the long one.
    assert_eq!(
        writes.len(),
        5,
        "{:?}",
        writes.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

#[test]
fn chunks_end_at_line_ends() {
    let lines = |n: usize, len: usize| (0..n).flat_map(|i| line(i, len)).collect::<Vec<u8>>();
    let cases = [
        (b"a\n".to_vec(), 2),
        (lines(40, 100), 4000),
        (lines(41, 100), 4100 - 100),
        (lines(1, 5000), 5000),
        ([line(0, 5000), line(1, 10)].concat(), 5000),
        ([line(0, 10), line(1, 5000)].concat(), 10),
    ];
    for (buf, want) in cases {
        assert_eq!(chunk_len(&buf), want, "{} bytes", buf.len());
    }
}

#[test]
fn a_line_over_the_bound_is_dropped_and_reported() {
    let pipe = Pipe::default();
    let (out, stats) = writer(&pipe, 100);
    assert!(!out.write(&line(0, 200)));
    assert!(out.flush(Duration::from_secs(5)));
    assert_eq!(
        pipe.text(),
        "dynoscope-sidecar: stdout was blocked: dropped 1 lines (200 bytes)\n"
    );
    assert_eq!(stats.output.stdout.dropped_bytes.get(), 200);
}

#[test]
fn a_failing_stream_counts_its_lines_as_dropped() {
    #[derive(Debug)]
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let stats = Arc::new(Stats::default());
    let out = LineWriter::spawn(Stream::Stderr, Box::new(Closed), 1024, stats.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.write(b"one\ntwo\n"));
    assert!(out.flush(Duration::from_secs(5)));
    assert_eq!(stats.output.stderr.dropped_lines.get(), 2);
    assert_eq!(stats.output.stderr.dropped_bytes.get(), 8);
    assert_eq!(stats.output.stderr.written_lines.get(), 0);
}

#[test]
fn a_tracing_event_is_queued_as_one_piece() {
    let pipe = Pipe::default();
    let (out, stats) = writer(&pipe, 4096);
    let subscriber = tracing_subscriber::fmt()
        .with_writer(out.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(answer = 42, "hello from the sidecar");
    });
    assert!(out.flush(Duration::from_secs(5)));
    let writes = pipe.writes();
    assert_eq!(writes.len(), 1);
    let text = pipe.text();
    assert!(
        text.contains("hello from the sidecar") && text.contains("answer=42"),
        "{text}"
    );
    assert_eq!(stats.output.stdout.written_lines.get(), 1);
}

#[test]
fn the_queue_bound_comes_from_the_environment_when_it_is_a_number() {
    assert_eq!(queue_bytes(None), QUEUE_BYTES);
    assert_eq!(queue_bytes(Some("4096")), 4096);
    assert_eq!(queue_bytes(Some(" 4096\n")), 4096);
    assert_eq!(queue_bytes(Some("1MiB")), QUEUE_BYTES);
}
