//! The disk buffer's files: segment names and records (see the parent module).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{Record, Segment};
use crate::sinks::delivery::Entry;

/// Record header: len, crc, items, queued_at.
pub(super) const HEADER: u64 = 24;
/// A record longer than this is taken for corruption.
const MAX_RECORD: u64 = 64 * 1024 * 1024;

pub(super) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

pub(super) fn encode(entry: &Entry, at: i64) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + entry.bytes.len());
    body.extend_from_slice(&entry.items.to_le_bytes());
    body.extend_from_slice(&at.to_le_bytes());
    body.extend_from_slice(&entry.bytes);
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads one record at the reader's position: `Ok(None)` at a clean end,
/// `Err` for a torn or corrupt one.
fn next_record(reader: &mut impl Read) -> io::Result<Option<(Record, u64)>> {
    let mut head = [0u8; 8];
    match reader.read_exact(&mut head[..1]) {
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    reader.read_exact(&mut head[1..])?;
    let len = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if !(16..=MAX_RECORD).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("record length {len}"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    reader.read_exact(&mut body)?;
    if crc32fast::hash(&body) != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "checksum mismatch",
        ));
    }
    let items = u64::from_le_bytes(body[..8].try_into().unwrap_or_default());
    let at = i64::from_le_bytes(body[8..16].try_into().unwrap_or_default());
    body.drain(..16);
    Ok(Some((
        Record {
            entry: Entry { bytes: body, items },
            at,
        },
        8 + len,
    )))
}

/// A segment's valid length, items and first queue time, and whether it ends torn.
pub(super) fn scan_segment(path: &Path, id: u64) -> io::Result<(Segment, bool)> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut segment = Segment {
        id,
        bytes: 0,
        items: 0,
        first_at: 0,
    };
    loop {
        match next_record(&mut reader) {
            Ok(Some((record, len))) => {
                if segment.bytes == 0 {
                    segment.first_at = record.at;
                }
                segment.bytes += len;
                segment.items += record.entry.items;
            }
            Ok(None) => return Ok((segment, false)),
            Err(_) => return Ok((segment, true)),
        }
    }
}

/// Reads whole records of `path` from `start`: at least one, then more while
/// they stay within `max_bytes` of entry bytes and `max_entries`. Returns
/// them, where they end, and the error that stopped the reading early, if any.
pub(super) fn read_records(
    path: &Path,
    start: u64,
    end: u64,
    max_bytes: usize,
    max_entries: usize,
) -> io::Result<(Vec<Record>, u64, Option<io::Error>)> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(start))?;
    let mut reader = BufReader::new(file.take(end - start));
    let (mut records, mut offset, mut bytes) = (Vec::new(), start, 0usize);
    while records.len() < max_entries.max(1) && offset < end {
        let (record, len) = match next_record(&mut reader) {
            Ok(Some(next)) => next,
            Ok(None) => break,
            Err(err) => return Ok((records, offset, Some(err))),
        };
        if !records.is_empty() && bytes + record.entry.bytes.len() > max_bytes {
            break;
        }
        bytes += record.entry.bytes.len();
        offset += len;
        records.push(record);
    }
    Ok((records, offset, None))
}
