//! The sidecar's own stdout and stderr, each written by a thread of its own from a
//! queue bounded in bytes, so that a reader who stops reading stalls nothing else.
//!
//! On a dyno, stdout and stderr are the log stream: a pipe to the dyno manager, `up`'s
//! prefixer or a container runtime. When nobody drains that pipe, a `write(2)` on it
//! blocks — and a blocking write on a tokio worker used to freeze `/status`, the
//! receivers and the forwarding of SIGTERM with it. Here only the stream's writer
//! thread waits on the pipe:
//!
//! - [`LineWriter::write`] appends whole lines to the stream's queue and returns at
//!   once. When the queue already holds [`QUEUE_BYTES`], the lines are dropped and
//!   counted (`counters.output.<stream>.dropped_lines` / `dropped_bytes` in `/status`).
//! - The writer thread writes what is queued, whole lines only, at most [`PIPE_BUF`]
//!   bytes a `write(2)` unless a single line is longer: the kernel writes such a write
//!   into a pipe in one piece, so the sidecar's lines never interleave with the app's
//!   when both share the pipe.
//! - When lines were dropped, the stream gets one line saying how many (and how many
//!   bytes), at the place of the gap or, when nothing followed it, as soon as the
//!   stream has drained.
//!
//! Who writes where: the stdout sink's l2met lines and the sampler's log-runtime-metrics
//! lines go to [`stdout`]; tracing's subscriber writes to the stderr writer through
//! its [`MakeWriter`] implementation. `main` starts both ([`Output::start`]) before the
//! async runtime and [`install`]s them; see `sidecar/RUNTIME.md` for every thread and
//! what it may block on.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::AsFd as _;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

use crate::stats::{Stats, StreamStats};

/// The most bytes of lines a stream holds while its reader is behind — queued plus
/// being written; past it new lines are dropped and counted. 1 MiB per stream, so the
/// sidecar's output holds at most 2 MiB: about 10 000 l2met or log lines each, minutes
/// of normal output.
pub const QUEUE_BYTES: usize = 1 << 20;

/// The environment variable that sets the bound of each stream's queue in bytes, for
/// dynos where 2 MiB matter and for tests that fill the queue; default [`QUEUE_BYTES`].
pub const QUEUE_BYTES_ENV: &str = "DYNOSCOPE_OUTPUT_QUEUE_BYTES";

/// The queue bound from [`QUEUE_BYTES_ENV`]'s value: [`QUEUE_BYTES`] when unset or
/// not a number of bytes.
pub fn queue_bytes(value: Option<&str>) -> usize {
    value
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(QUEUE_BYTES)
}

/// The largest write POSIX guarantees a pipe takes in one piece (4096 bytes on Linux);
/// writes are cut at line ends below it so that no line of ours is split by the app's.
pub const PIPE_BUF: usize = 4096;

/// The batch buffers shrink back to this after a burst, so an idle writer does not keep
/// a burst's megabyte.
const SPARE_BYTES: usize = 64 * 1024;

/// Which of the sidecar's streams a writer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// File descriptor 1.
    Stdout,
    /// File descriptor 2.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn stats(self, stats: &Stats) -> &StreamStats {
        match self {
            Stream::Stdout => &stats.output.stdout,
            Stream::Stderr => &stats.output.stderr,
        }
    }
}

/// A handle to one stream's writer thread; clones share the queue.
#[derive(Clone)]
pub struct LineWriter {
    shared: Arc<Shared>,
}

impl fmt::Debug for LineWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineWriter")
            .field("stream", &self.shared.stream)
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

/// What producers and the writer thread share.
struct Shared {
    /// The queue; held only to append or take bytes, never during a write.
    queue: Mutex<Queue>,
    /// Wakes the writer thread when lines arrive.
    ready: Condvar,
    /// Wakes [`LineWriter::flush`] when the writer has written everything.
    idle: Condvar,
    /// The bound of `queued + in_flight`, in bytes.
    capacity: usize,
    /// Which stream, for the counters and the notice of dropped lines.
    stream: Stream,
    /// Where the counters live.
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Queue {
    /// Whole lines, each ending in `\n`, waiting for the writer.
    pending: Vec<u8>,
    /// Bytes the writer has taken and not finished writing: they still count
    /// against the bound, since they are still in memory.
    in_flight: usize,
    /// Lines dropped since the last notice.
    gap_lines: u64,
    /// Bytes of those lines.
    gap_bytes: u64,
}

impl Queue {
    fn held(&self) -> usize {
        self.pending.len() + self.in_flight
    }

    /// Takes the notice of the current gap, if lines were dropped since the last one.
    fn take_notice(&mut self, stream: Stream) -> Option<String> {
        if self.gap_lines == 0 {
            return None;
        }
        let text = notice(stream, self.gap_lines, self.gap_bytes);
        self.gap_lines = 0;
        self.gap_bytes = 0;
        Some(text)
    }

    /// The length of the notice the next accepted line needs before it; 0 without a gap.
    fn notice_len(&self, stream: Stream) -> usize {
        if self.gap_lines == 0 {
            return 0;
        }
        // Formatted twice, here and when taken: only while lines are being dropped.
        notice(stream, self.gap_lines, self.gap_bytes).len()
    }
}

/// The line that tells a stream's reader what it missed.
fn notice(stream: Stream, lines: u64, bytes: u64) -> String {
    format!(
        "dynoscope-sidecar: {} was blocked: dropped {lines} lines ({bytes} bytes)\n",
        stream.name()
    )
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves whole lines behind: keep going.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn counters(&self) -> &StreamStats {
        self.stream.stats(&self.stats)
    }
}

impl LineWriter {
    /// Starts the writer thread of `stream`, writing to `target` with a queue of
    /// `capacity` bytes, counting into `stats.output`.
    pub fn spawn(
        stream: Stream,
        target: Box<dyn Write + Send>,
        capacity: usize,
        stats: Arc<Stats>,
    ) -> io::Result<LineWriter> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            idle: Condvar::new(),
            capacity,
            stream,
            stats,
        });
        let thread = shared.clone();
        std::thread::Builder::new()
            .name(format!("{}-writer", stream.name()))
            .spawn(move || write_loop(&thread, target))?;
        Ok(LineWriter { shared })
    }

    /// Queues `text` — one or more lines; a missing final newline is added — and
    /// returns whether it was queued. Never waits for the stream: when the queue is
    /// full the lines are dropped and counted, all of them.
    pub fn write(&self, text: &[u8]) -> bool {
        if text.is_empty() {
            return true;
        }
        let newline = usize::from(!text.ends_with(b"\n"));
        let len = text.len() + newline;
        let shared = &self.shared;
        let mut queue = shared.lock();
        let notice = queue.notice_len(shared.stream);
        if queue.held() + notice + len > shared.capacity {
            let lines = count_lines(text) + newline as u64;
            queue.gap_lines += lines;
            queue.gap_bytes += len as u64;
            drop(queue);
            shared.counters().dropped_lines.add(lines);
            shared.counters().dropped_bytes.add(len as u64);
            // An idle writer (the line alone was over the bound) reports the gap now.
            shared.ready.notify_one();
            return false;
        }
        // The notice goes where the gap is: after the last line before it.
        if let Some(notice) = queue.take_notice(shared.stream) {
            queue.pending.extend_from_slice(notice.as_bytes());
        }
        queue.pending.extend_from_slice(text);
        if newline == 1 {
            queue.pending.push(b'\n');
        }
        drop(queue);
        shared.ready.notify_one();
        true
    }

    /// Waits up to `timeout` for the writer to write everything queued; returns
    /// whether it did. For the last lines at exit, which a blocked stream may never take.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut queue = self.shared.lock();
        while queue.held() > 0 || queue.gap_lines > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            queue = self
                .shared
                .idle
                .wait_timeout(queue, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// The writer thread: takes everything queued, writes it, and again, for the life of
/// the process.
fn write_loop(shared: &Shared, mut target: Box<dyn Write + Send>) {
    // Two buffers swapped with the queue's, so a steady stream allocates nothing.
    let mut batch = Vec::new();
    loop {
        {
            let mut queue = shared.lock();
            while queue.pending.is_empty() {
                // Drained with a gap nobody has reported yet: the stream takes
                // lines again, so say what it missed now rather than at the next line.
                if let Some(notice) = queue.take_notice(shared.stream) {
                    queue.pending.extend_from_slice(notice.as_bytes());
                    break;
                }
                shared.idle.notify_all();
                queue = shared
                    .ready
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            std::mem::swap(&mut queue.pending, &mut batch);
            queue.in_flight = batch.len();
        }
        let mut start = 0;
        while start < batch.len() {
            let end = start + chunk_len(&batch[start..]);
            let chunk = &batch[start..end];
            let lines = count_lines(chunk);
            let counters = shared.counters();
            // A failed write (a closed pipe: EPIPE, as std ignores SIGPIPE) loses the
            // chunk; the next one is tried all the same, the reader may come back.
            match target.write_all(chunk).and_then(|()| target.flush()) {
                Ok(()) => {
                    counters.written_lines.add(lines);
                    counters.written_bytes.add(chunk.len() as u64);
                }
                Err(_) => {
                    counters.dropped_lines.add(lines);
                    counters.dropped_bytes.add(chunk.len() as u64);
                }
            }
            shared.lock().in_flight -= chunk.len();
            start = end;
        }
        batch.clear();
        batch.shrink_to(SPARE_BYTES);
    }
}

/// The length of the next write from `buf` (whole lines, each ending in `\n`): as many
/// lines as fit in [`PIPE_BUF`], or the first line alone when it is longer.
pub(crate) fn chunk_len(buf: &[u8]) -> usize {
    if buf.len() <= PIPE_BUF {
        return buf.len();
    }
    if let Some(last) = memchr::memrchr(b'\n', &buf[..PIPE_BUF]) {
        return last + 1;
    }
    memchr::memchr(b'\n', &buf[PIPE_BUF..]).map_or(buf.len(), |end| PIPE_BUF + end + 1)
}

fn count_lines(text: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', text).count() as u64
}

/// tracing's subscriber writes each event through one of these: the formatted event is
/// collected and queued as one piece when the writer is dropped, at the end of the event.
#[derive(Debug)]
pub struct EventWriter<'a> {
    out: &'a LineWriter,
    buf: Vec<u8>,
}

impl Write for EventWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter<'_> {
    fn drop(&mut self) {
        self.out.write(&self.buf);
    }
}

impl<'a> MakeWriter<'a> for LineWriter {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            out: self,
            buf: Vec::new(),
        }
    }
}

/// The sidecar's two output streams.
#[derive(Debug)]
pub struct Output {
    /// Fd 1: l2met and runtime-metrics lines.
    pub stdout: LineWriter,
    /// Fd 2: the sidecar's logs.
    pub stderr: LineWriter,
}

impl Output {
    /// Starts the writer threads of fds 1 and 2, each with a queue of `queue_bytes`.
    ///
    /// Call it after the signals are blocked (see `supervisor::block_signals`): the
    /// threads inherit the mask, and one that did not block SIGTERM would die of it.
    pub fn start(stats: Arc<Stats>, queue_bytes: usize) -> io::Result<Output> {
        // Duplicates of fds 1 and 2 as plain files: std's `Stdout` buffers by line and
        // would choose its own write sizes; a `File` writes each chunk with `write(2)`.
        let stdout = std::fs::File::from(io::stdout().as_fd().try_clone_to_owned()?);
        let stderr = std::fs::File::from(io::stderr().as_fd().try_clone_to_owned()?);
        Ok(Output {
            stdout: LineWriter::spawn(
                Stream::Stdout,
                Box::new(stdout),
                queue_bytes,
                stats.clone(),
            )?,
            stderr: LineWriter::spawn(Stream::Stderr, Box::new(stderr), queue_bytes, stats)?,
        })
    }

    /// Waits up to `timeout` in all for both streams to write what they hold.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let stdout = self.stdout.flush(timeout);
        let stderr = self
            .stderr
            .flush(deadline.saturating_duration_since(Instant::now()));
        stdout && stderr
    }
}

/// The process's output streams, set once by `main`.
///
/// Why a global: the stdout sink is built by the sink factory from the pipeline's
/// config alone, and the sampler by its own task, so neither can be handed the writer;
/// tracing's subscriber takes its own clone of the stderr writer and does not use this.
static OUTPUT: OnceLock<Output> = OnceLock::new();

/// Makes `output` the process's output streams; returns them. When streams were
/// installed already, those stay and are returned.
pub fn install(output: Output) -> &'static Output {
    OUTPUT.get_or_init(|| output)
}

/// Writes whole lines to the sidecar's stdout through its writer thread; returns
/// whether they were queued. Without installed streams (unit tests, benchmarks, tools
/// using the library) it writes to stdout directly, blocking.
pub fn stdout(text: &[u8]) -> bool {
    match OUTPUT.get() {
        Some(output) => output.stdout.write(text),
        None => io::stdout().lock().write_all(text).is_ok(),
    }
}

#[cfg(test)]
mod tests;
