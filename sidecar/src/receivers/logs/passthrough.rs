//! The app's stdout and stderr: pipes the app writes to, and one thread per
//! stream that copies what it reads to the sidecar's own stream at once,
//! unchanged, in order, then offers a copy to the log records' [`Tap`].
//!
//! The copy waits on nothing but the sidecar's own stream — exactly what the
//! app would wait on if it wrote there itself — and the tap never waits: when
//! its queue is full, the copy is dropped and counted. So a log sink that is
//! down or slow never reaches the app.
//!
//! Writes go out as whole lines, at most [`PIPE_BUF`](output::PIPE_BUF) bytes a
//! `write(2)` unless one line is longer, so the sidecar's own lines on the same
//! pipe never land inside one of the app's. (One write per read under a lock
//! shared with the sidecar's writer threads would save syscalls, but then a
//! writer waits on the pass-through instead of on its pipe, and a blocked
//! stdout would hold it on a lock: `tests/tests/faults.rs` refuses that.) A
//! partial line (a prompt, a line still being written) goes out after
//! [`PARTIAL_WAIT`] or once it reaches [`PARTIAL_BYTES`].

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
use crate::output;
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
    let mut emit = |text: &[u8]| {
        write_lines(&mut out, text, stats);
        stats.logs.bytes_read.add(text.len() as u64);
        stats
            .logs
            .lines_read
            .add(memchr::memchr_iter(b'\n', text).count() as u64);
        tap.offer(stream, text);
    };
    // `buf[..held]`: the start of a line whose end has not come yet (shorter
    // than PARTIAL_BYTES); each read lands right after it, so a line is copied
    // once from the pipe and once to `out`, and never moved in between unless
    // it spans two reads.
    let mut buf = vec![0u8; PARTIAL_BYTES + READ_BYTES];
    let mut held = 0;
    loop {
        if held > 0 && !readable_within(read.as_fd(), PARTIAL_WAIT) {
            emit(&buf[..held]);
            held = 0;
        }
        let n = match nix::unistd::read(read, &mut buf[held..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(err) => {
                tracing::warn!("cannot read the app's {}: {err}", stream.as_str());
                break;
            }
        };
        let filled = held + n;
        // Only the new bytes are searched: the held ones have no newline.
        let lines_end = memchr::memrchr(b'\n', &buf[held..filled]).map(|last| held + last + 1);
        held = match lines_end {
            Some(end) => {
                emit(&buf[..end]);
                buf.copy_within(end..filled, 0);
                filled - end
            }
            None => filled,
        };
        if held >= PARTIAL_BYTES {
            emit(&buf[..held]);
            held = 0;
        }
    }
    if held > 0 {
        emit(&buf[..held]);
    }
}

/// Writes `text` in whole-line chunks of at most [`PIPE_BUF`](output::PIPE_BUF) bytes (a longer
/// line alone); a failed write (the reader closed the stream) is counted and
/// the rest still tried.
fn write_lines(out: &mut File, text: &[u8], stats: &Stats) {
    let mut start = 0;
    while start < text.len() {
        let end = start + output::chunk_len(&text[start..]);
        if out.write_all(&text[start..end]).is_err() {
            stats.logs.passthrough_errors.add((end - start) as u64);
        }
        start = end;
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

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    /// Runs `copy` from a pipe the test writes with `writes` to a pipe it reads
    /// back; returns what came out.
    fn through_copy(writes: Vec<Vec<u8>>, pause: Duration) -> Vec<u8> {
        let (app_read, app_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let (out_read, out_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let stats = Arc::new(Stats::default());
        let tap = Tap::new(1 << 20, stats.clone());
        let copier = std::thread::spawn(move || {
            copy(
                &app_read,
                File::from(out_write),
                LogStream::Stdout,
                &tap,
                &stats,
            );
        });
        let writer = std::thread::spawn(move || {
            let mut app = File::from(app_write);
            for write in writes {
                app.write_all(&write).expect("write");
                std::thread::sleep(pause);
            }
        });
        let mut out = Vec::new();
        File::from(out_read).read_to_end(&mut out).expect("read");
        writer.join().expect("writer");
        copier.join().expect("copier");
        out
    }

    #[test]
    fn lines_across_reads_long_lines_and_a_last_partial_line_pass_unchanged() {
        // Lines of 0 to 200 000 bytes, written in pieces that cut them anywhere:
        // longer than a read, than PARTIAL_BYTES, and ending without a newline.
        let mut text = Vec::new();
        for i in 0..400usize {
            let len = (i * 7919) % 3000 + if i % 97 == 0 { 200_000 } else { 0 };
            text.extend((0..len).map(|j| b'a' + ((i + j) % 26) as u8));
            text.push(b'\n');
        }
        text.extend_from_slice(b"a prompt without its newline");
        let mut writes = Vec::new();
        let mut at = 0;
        for i in 0usize.. {
            if at == text.len() {
                break;
            }
            let end = (at + (i * 104_729) % 90_000 + 1).min(text.len());
            writes.push(text[at..end].to_vec());
            at = end;
        }
        assert_eq!(through_copy(writes, Duration::ZERO), text);
    }

    #[test]
    fn a_partial_line_written_out_after_the_wait_is_neither_repeated_nor_lost() {
        let writes = vec![b"one\ntw".to_vec(), b"o\nthree".to_vec()];
        let out = through_copy(writes, PARTIAL_WAIT * 3);
        assert_eq!(out, b"one\ntwo\nthree");
    }
}
