use super::*;

const SMAPS: &str = "\
5581a0000000-5581a0100000 r--p 00000000 fd:00 1234 /usr/bin/dynoscope-sidecar
Size:               1024 kB
Rss:                 512 kB
Private_Dirty:         8 kB
Anonymous:             0 kB
Swap:                  0 kB
VmFlags: rd mr mw me sd
5581a0100000-5581a0700000 r-xp 00100000 fd:00 1234 /usr/bin/dynoscope-sidecar
Size:               6144 kB
Rss:                5800 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
VmFlags: rd ex mr mw me sd
5581a0700000-5581a0780000 r--p 00700000 fd:00 1234 /usr/bin/dynoscope-sidecar
Size:                512 kB
Rss:                 512 kB
Private_Dirty:       120 kB
Anonymous:           120 kB
Swap:                  0 kB
VmFlags: rd mr mw me ac sd
5581a0780000-5581a0790000 rw-p 00780000 fd:00 1234 /usr/bin/dynoscope-sidecar
Rss:                  64 kB
Anonymous:            64 kB
VmFlags: rd wr mr mw me ac sd
5581a1000000-5581a1100000 rw-p 00000000 00:00 0 [heap]
Rss:                 300 kB
Anonymous:           300 kB
7f0000000000-7f0000200000 r-xp 00028000 fd:00 99 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1400 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
VmFlags: rd ex mr mw me lo sd
7f0000300000-7f0000301000 r-xp 00000000 00:00 0 [vdso]
Rss:                   4 kB
Anonymous:             0 kB
";

#[test]
fn only_clean_read_only_file_mappings_are_candidates() {
    assert_eq!(
        candidates(SMAPS.lines()),
        vec![
            Candidate {
                start: 0x5581_a000_0000,
                end: 0x5581_a010_0000,
                rss_kib: 512
            },
            Candidate {
                start: 0x5581_a010_0000,
                end: 0x5581_a070_0000,
                rss_kib: 5800
            },
        ],
        "a page dirty in the page cache is the file's; not: the relocated (RELRO) mapping with copied pages, writable data, \
         the heap, a locked mapping, the vdso"
    );
}

#[test]
fn unmapping_this_test_process_code_keeps_it_running() {
    let done = unmap_start_up_pages();
    assert!(done.mappings > 0, "{done:?}");
    // The code that runs next faults its pages back in.
    let text: String = ["still", "running"].join(" ");
    assert_eq!(text, "still running");
    assert!(!candidates(std::fs::read_to_string("/proc/self/smaps").unwrap().lines()).is_empty());
}
