use super::*;

fn entry(n: u64) -> Entry {
    Entry {
        bytes: format!("entry-{n:04}").into_bytes(),
        items: 1,
    }
}

fn write(disk: &Disk, endpoint: &str, range: std::ops::Range<u64>) {
    let entries: Vec<Entry> = range.map(entry).collect();
    let records: Vec<(&Entry, i64)> = entries.iter().map(|e| (e, 1_700_000_000)).collect();
    assert_eq!(
        disk.write(endpoint, ItemKind::Points, &records).unwrap(),
        records.len()
    );
}

/// Reads and commits everything of `endpoint`, in batches of up to `per_batch` entries.
fn drain(disk: &Disk, endpoint: &str, per_batch: usize) -> Vec<String> {
    let mut out = Vec::new();
    while let Some((records, mark)) = disk.read(endpoint, usize::MAX, per_batch) {
        out.extend(
            records
                .iter()
                .map(|r| String::from_utf8_lossy(&r.entry.bytes).into_owned()),
        );
        disk.commit(&mark);
    }
    out
}

fn names(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|n| format!("entry-{n:04}")).collect()
}

fn open(dir: &Path, max_bytes: u64) -> (Arc<Disk>, Arc<SinkStats>) {
    let stats = Arc::new(SinkStats::default());
    let disk = Disk::open(dir, max_bytes, stats.clone());
    disk.prepare(&[("series", ItemKind::Points)]);
    (disk, stats)
}

#[test]
fn records_come_back_in_order_across_segments_and_are_gone_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, stats) = open(dir.path(), 1 << 20);
    disk.lock().segment_bytes = 100;
    write(&disk, "series", 0..20);
    assert!(disk.has_unread("series").unwrap());
    assert!(stats.disk.bytes.get() > 0);
    assert_eq!(drain(&disk, "series", 3), names(0..20));
    assert_eq!(disk.has_unread("series"), Some(false));
    assert_eq!(stats.disk.bytes.get(), 0);
    let left = fs::read_dir(dir.path().join("series"))
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|e| e == "seg")
        })
        .count();
    assert!(left <= 1, "{left} segments left");
}

#[test]
fn a_new_run_delivers_what_the_last_left_and_not_what_it_delivered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (disk, _) = open(dir.path(), 1 << 20);
        disk.lock().segment_bytes = 200;
        write(&disk, "series", 0..30);
        let (records, mark) = disk.read("series", usize::MAX, 4).unwrap();
        assert_eq!(records.len(), 4);
        disk.commit(&mark);
        // Read but never committed: sent again by the next run.
        let (_, unsent) = disk.read("series", usize::MAX, 4).unwrap();
        disk.release(&unsent);
    }
    let (disk, _) = open(dir.path(), 1 << 20);
    assert_eq!(drain(&disk, "series", 7), names(4..30));
}

/// The one segment file of the `series` log under `dir`.
fn only_segment(dir: &Path) -> PathBuf {
    fs::read_dir(dir.join("series"))
        .unwrap()
        .map(|f| f.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap()
}

#[test]
fn a_torn_last_record_is_skipped_and_counted_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (disk, _) = open(dir.path(), 1 << 20);
        write(&disk, "series", 0..10);
    }
    let segment = only_segment(dir.path());
    // A kill -9 mid-write: half a record at the end.
    let bytes = fs::read(&segment).unwrap();
    let mut torn = bytes.clone();
    torn.extend_from_slice(&encode(&entry(10), 0)[..20]);
    fs::write(&segment, &torn).unwrap();

    let (disk, stats) = open(dir.path(), 1 << 20);
    assert_eq!(drain(&disk, "series", 100), names(0..10));
    assert_eq!(stats.disk.corrupt_records.get(), 1);

    // A flipped byte in a record's body fails its checksum: that record and the rest of its segment are skipped.
    drop(disk);
    let dir = tempfile::tempdir().unwrap();
    {
        let (disk, _) = open(dir.path(), 1 << 20);
        write(&disk, "series", 0..10);
    }
    let segment = only_segment(dir.path());
    let mut bytes = fs::read(&segment).unwrap();
    let record = bytes.len() / 10;
    bytes[record * 7 + 30] ^= 0xff;
    fs::write(&segment, &bytes).unwrap();
    let (disk, stats) = open(dir.path(), 1 << 20);
    assert_eq!(drain(&disk, "series", 100), names(0..7));
    assert_eq!(stats.disk.corrupt_records.get(), 1);
}

#[test]
fn past_max_bytes_the_oldest_segment_goes_and_its_items_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let record = HEADER + entry(0).bytes.len() as u64;
    // Room for 10 records, in segments of 5.
    let (disk, stats) = open(dir.path(), record * 10);
    disk.lock().segment_bytes = record * 5;
    write(&disk, "series", 0..12);
    assert_eq!(stats.dropped.points.get(), 5);
    assert!(stats.disk.bytes.get() <= record * 10);
    assert_eq!(drain(&disk, "series", 100), names(5..12));
}

#[test]
fn garbage_in_the_directory_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("series")).unwrap();
    fs::write(dir.path().join("series/notes.txt"), "hello").unwrap();
    fs::write(dir.path().join("series/cursor"), "not numbers").unwrap();
    fs::write(
        dir.path().join("series/00000000000000000007.seg"),
        [0xffu8; 40],
    )
    .unwrap();
    let (disk, stats) = open(dir.path(), 1 << 20);
    assert_eq!(drain(&disk, "series", 100), Vec::<String>::new());
    assert_eq!(stats.disk.corrupt_records.get(), 1);
    write(&disk, "series", 0..3);
    assert_eq!(drain(&disk, "series", 100), names(0..3));
}
