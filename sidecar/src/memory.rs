//! The sidecar's process-wide memory settings, for its idle RSS (≤ 8 MiB
//! without network sinks): the crate's only `unsafe` calls, two libc ones.
//!
//! **Allocator arenas.** glibc gives every thread that allocates an arena of
//! its own (up to 8 per core), each holding free memory of its own: at idle
//! ~70 KiB each, under a flood megabytes. [`cap_allocator_arenas`] caps them
//! at [`ARENAS`], shared by all threads.
//!
//! **Start-up pages.** Most of the idle RSS is not the heap but clean,
//! file-backed pages of the binary and of libc: start-up runs code spread
//! over the whole text (arguments, YAML and the CRD types, every sink's and
//! receiver's set-up), and the kernel maps up to 64 KiB around each page
//! fault, so after start-up most of the text is mapped. [`unmap_once_settled`]
//! removes those pages from this process's page tables (`MADV_DONTNEED`);
//! they stay in the page cache, and the code that runs afterwards faults its
//! own pages back in (minor faults). The idle RSS then holds the code the
//! idle sidecar runs, not what it ran once.
//!
//! Only private, read-only, file-backed mappings without a single private
//! (copy-on-write) page are unmapped: their every page is the file's, so
//! dropping one loses nothing. A relocated read-only mapping (RELRO) holds
//! copied pages and is left alone.

#![allow(unsafe_code)]

use std::io::BufRead as _;
use std::time::Duration;

/// The allocator arenas all threads share: one per core of the dynos the
/// sidecar is sized for (a Standard-2X has 2 vCPUs in practice; the hot
/// path runs on the 2 async workers).
pub const ARENAS: i32 = 2;

/// Caps glibc's malloc arenas at [`ARENAS`]. Call it first thing in `main`,
/// before any thread allocates. A no-op on other C libraries.
pub fn cap_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets an allocator parameter; M_ARENA_MAX takes
    // any positive count, and it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// How long after the app starts the start-up pages are unmapped: the
/// receivers and sinks are built, the sampler has run once.
pub const START_UP_SETTLED: Duration = Duration::from_secs(1);

/// What [`unmap_start_up_pages`] gave back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unmapped {
    /// Mappings unmapped.
    pub mappings: usize,
    /// Their resident bytes before (`Rss` in `/proc/self/smaps`).
    pub resident_bytes: u64,
}

/// A mapping of `/proc/self/smaps` that may be unmapped.
#[derive(Debug, PartialEq, Eq)]
struct Candidate {
    start: usize,
    end: usize,
    rss_kib: u64,
}

/// Unmaps the start-up pages [`START_UP_SETTLED`] from now, on a short-lived
/// thread of its own (reading `smaps` blocks; no async worker waits on it).
pub fn unmap_once_settled() {
    let spawned = std::thread::Builder::new()
        .name("dynoscope-unmap".into())
        .stack_size(64 << 10)
        .spawn(|| {
            std::thread::sleep(START_UP_SETTLED);
            let done = unmap_start_up_pages();
            tracing::debug!(
                "unmapped {} start-up mappings ({} KiB were resident)",
                done.mappings,
                done.resident_bytes / 1024
            );
        });
    if let Err(err) = spawned {
        tracing::debug!("start-up pages stay mapped: no thread to unmap them ({err})");
    }
}

/// Unmaps the clean read-only file mappings (see the module); what it gave back.
/// Reads `/proc/self/smaps`: call it from a thread that may block.
pub fn unmap_start_up_pages() -> Unmapped {
    // Read line by line: the whole text is ~100 KiB the idle heap would keep.
    let Ok(file) = std::fs::File::open("/proc/self/smaps") else {
        return Unmapped::default();
    };
    let lines = std::io::BufReader::with_capacity(4096, file)
        .lines()
        .map_while(Result::ok);
    let mut done = Unmapped::default();
    for candidate in candidates(lines) {
        let len = candidate.end - candidate.start;
        // SAFETY: the range is a whole mapping of this process that is
        // read-only and holds only its file's pages (no private copies), so
        // MADV_DONTNEED changes no byte any thread can read: a later access
        // faults the same file page back in. No Rust object lives in it.
        let rc = unsafe {
            libc::madvise(
                candidate.start as *mut libc::c_void,
                len,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            done.mappings += 1;
            done.resident_bytes += candidate.rss_kib * 1024;
        }
    }
    done
}

/// The mappings of `smaps` lines that are private, not writable, backed by
/// a file, and hold no anonymous (copied) pages.
fn candidates<L: AsRef<str>>(smaps: impl Iterator<Item = L>) -> Vec<Candidate> {
    let mut out = Vec::new();
    // The mapping being read: its range and whether it qualifies so far.
    let mut current: Option<(Candidate, bool)> = None;
    let mut finish = |current: &mut Option<(Candidate, bool)>| {
        if let Some((candidate, true)) = current.take() {
            out.push(candidate);
        }
    };
    for line in smaps {
        let line = line.as_ref();
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((start, end)) = first.split_once('-').and_then(|(s, e)| {
            Some((
                usize::from_str_radix(s, 16).ok()?,
                usize::from_str_radix(e, 16).ok()?,
            ))
        }) {
            finish(&mut current);
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            let eligible = perms.len() == 4
                && perms.starts_with('r')
                && !perms.contains('w')
                && perms.ends_with('p')
                && path.starts_with('/');
            current = Some((
                Candidate {
                    start,
                    end,
                    rss_kib: 0,
                },
                eligible && end > start,
            ));
            continue;
        }
        let Some((candidate, eligible)) = current.as_mut() else {
            continue;
        };
        let kib = || fields.clone().next().and_then(|v| v.parse::<u64>().ok());
        match first {
            "Rss:" => candidate.rss_kib = kib().unwrap_or(0),
            // Copied pages; a file page dirty in the page cache (a binary
            // just written) is still the file's, and counts as Private_Dirty.
            "Anonymous:" | "Swap:" if kib() != Some(0) => *eligible = false,
            "VmFlags:" if line.split_ascii_whitespace().any(|f| f == "lo") => *eligible = false,
            _ => {}
        }
    }
    finish(&mut current);
    out
}

#[cfg(test)]
#[path = "memory/tests.rs"]
mod tests;
