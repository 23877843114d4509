//! The app's stdout and stderr: pipes the app writes to, and one thread per
//! stream that copies what it reads to the sidecar's own stream at once,
//! unchanged, in order, then offers a copy to the log records' [`Tap`].
//!
//! The copy waits on nothing but the sidecar's own stream — exactly what the
//! app would wait on if it wrote there itself — and the tap never waits: when
//! its queue is full, the copy is dropped and counted. So a log sink that is
//! down or slow never reaches the app.
//!
//! Writes go out as whole lines, at most [`PIPE_BUF`](crate::output::PIPE_BUF) bytes a `write(2)` unless
//! one line is longer, so the sidecar's own lines on the same pipe never land
//! inside one of the app's. A partial line (a prompt, a line still being
//! written) goes out after [`PARTIAL_WAIT`] or once it reaches [`PARTIAL_BYTES`].

use std::fs::File;
use std::io::{self, IsTerminal as _, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::Tap;
use crate::output::chunk_len;
use crate::stats::Stats;
use crate::telemetry::LogStream;

/// How long a line without its newline waits for the rest before it is written as it is.
pub const PARTIAL_WAIT: Duration = Duration::from_millis(100);

/// A partial line this long is written without waiting for its end.
pub const PARTIAL_BYTES: usize = 64 * 1024;

/// One read from the app's pipe: a pipe's default capacity.
const READ_BYTES: usize = 64 * 1024;

/// The write ends the app gets as its fds 1 and 2; `None`: it inherits the
/// sidecar's own (a terminal, for people typing: `heroku run`, a shell).
#[derive(Debug, Default)]
pub struct AppStdio {
    /// The app's fd 1.
    pub stdout: Option<OwnedFd>,
    /// The app's fd 2.
    pub stderr: Option<OwnedFd>,
}

/// The copying threads; [`PassThrough::finish`] waits for them at exit.
#[derive(Debug, Default)]
pub struct PassThrough {
    done: Vec<mpsc::Receiver<()>>,
}

impl PassThrough {
    /// Makes the app's pipes and starts one copying thread per stream whose
    /// sidecar fd is not a terminal. The app gets the returned write ends.
    pub fn start(tap: &Tap, stats: &Arc<Stats>) -> io::Result<(AppStdio, PassThrough)> {
        let mut stdio = AppStdio::default();
        let mut threads = PassThrough::default();
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let own = match stream {
                LogStream::Stdout => io::stdout().as_fd().try_clone_to_owned()?,
                LogStream::Stderr => io::stderr().as_fd().try_clone_to_owned()?,
            };
            if own.as_fd().is_terminal() {
                continue;
            }
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
            let (tap, stats, (done_tx, done_rx)) = (tap.clone(), stats.clone(), mpsc::channel());
            std::thread::Builder::new()
                .name(format!("app-{}", stream.as_str()))
                .spawn(move || {
                    copy(&read, File::from(own), stream, &tap, &stats);
                    let _ = done_tx.send(());
                })?;
            threads.done.push(done_rx);
            match stream {
                LogStream::Stdout => stdio.stdout = Some(write),
                LogStream::Stderr => stdio.stderr = Some(write),
            }
        }
        Ok((stdio, threads))
    }

    /// Waits up to `timeout` for every stream to reach its end (the app and
    /// whatever inherited its fds have closed them) and be written; returns
    /// whether they did. A daemon the app left behind may keep a pipe open.
    pub fn finish(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.done.iter().all(|done| {
            let left = deadline.saturating_duration_since(Instant::now());
            !matches!(
                done.recv_timeout(left),
                Err(mpsc::RecvTimeoutError::Timeout)
            )
        })
    }
}

/// Copies `read` to `out` until the app's side is closed.
fn copy(read: &OwnedFd, mut out: File, stream: LogStream, tap: &Tap, stats: &Stats) {
    let mut buf = vec![0u8; READ_BYTES];
    let mut pending: Vec<u8> = Vec::new();
    let emit = |text: &[u8], out: &mut File| {
        write_lines(out, text, stats);
        stats.logs.bytes_read.add(text.len() as u64);
        stats
            .logs
            .lines_read
            .add(memchr::memchr_iter(b'\n', text).count() as u64);
        tap.offer(stream, text);
    };
    loop {
        if !pending.is_empty() && !readable_within(read.as_fd(), PARTIAL_WAIT) {
            emit(&pending, &mut out);
            pending.clear();
        }
        let n = match nix::unistd::read(read, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(err) => {
                tracing::warn!("cannot read the app's {}: {err}", stream.as_str());
                break;
            }
        };
        pending.extend_from_slice(&buf[..n]);
        match memchr::memrchr(b'\n', &pending) {
            Some(last) => {
                emit(&pending[..=last], &mut out);
                pending.drain(..=last);
            }
            None if pending.len() >= PARTIAL_BYTES => {
                emit(&pending, &mut out);
                pending.clear();
            }
            None => {}
        }
        if pending.capacity() > 2 * PARTIAL_BYTES {
            pending.shrink_to(PARTIAL_BYTES);
        }
    }
    if !pending.is_empty() {
        emit(&pending, &mut out);
    }
}

/// Whether `fd` has data (or its end) within `wait`.
fn readable_within(fd: BorrowedFd<'_>, wait: Duration) -> bool {
    let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
    loop {
        match poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], timeout) {
            Ok(n) => return n > 0,
            Err(Errno::EINTR) => continue,
            Err(_) => return true,
        }
    }
}

/// Writes `text` in whole-line chunks of at most [`PIPE_BUF`](crate::output::PIPE_BUF) bytes (a longer
/// line alone); a failed write (the reader closed the stream) is counted and
/// the rest still tried.
fn write_lines(out: &mut File, text: &[u8], stats: &Stats) {
    let mut start = 0;
    while start < text.len() {
        let end = start + chunk_len(&text[start..]);
        if out.write_all(&text[start..end]).is_err() {
            stats.logs.passthrough_errors.add((end - start) as u64);
        }
        start = end;
    }
}
