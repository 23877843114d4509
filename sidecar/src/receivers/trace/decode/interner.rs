//! Per-payload string interning for the trace decoders: each distinct byte
//! string becomes one `Arc<str>` shared by every span that repeats it.

use std::hash::BuildHasher;
use std::sync::Arc;

use crate::telemetry::Str;

/// Turns bytes into a string, replacing invalid UTF-8.
pub(super) fn lossy(bytes: &[u8]) -> Str {
    match String::from_utf8_lossy(bytes) {
        std::borrow::Cow::Borrowed(s) => Arc::from(s),
        std::borrow::Cow::Owned(s) => Arc::from(s),
    }
}

/// Per-payload string interning, keyed by the bytes as they arrive, with in
/// front of it the string each position of a v0.4 span held in the span
/// before.
///
/// Tracers write every span's meta keys in the same order, and most values
/// repeat from one span to the next (env, version, component, runtime-id,
/// …), so most v0.4 strings are found by position: one length check and one
/// compare. The others cost one hash and one compare. Neither checks UTF-8:
/// an interned string has exactly the bytes it is found by. A new string
/// costs one UTF-8 check and one allocation.
pub(super) struct Interner {
    /// Indices into `strings`, hashed by the string's bytes.
    pub(super) table: hashbrown::HashTable<u32>,
    /// Every interned string: valid UTF-8 of at most 64 bytes.
    pub(super) strings: Vec<Str>,
    pub(super) hasher: foldhash::fast::FixedState,
    /// By [`Slot`]: an index into `strings` (`u32::MAX` for none yet).
    /// Indices rather than `Arc`s, so that remembering a string costs no
    /// reference count.
    pub(super) recent: [u32; Slot::COUNT],
}

impl Default for Interner {
    fn default() -> Self {
        Self {
            table: hashbrown::HashTable::new(),
            strings: Vec::new(),
            hasher: foldhash::fast::FixedState::default(),
            recent: [u32::MAX; Slot::COUNT],
        }
    }
}

impl Interner {
    /// The string of `bytes`.
    pub(super) fn intern(&mut self, bytes: &[u8]) -> Str {
        match self.index(bytes) {
            Ok(index) => self.strings[index as usize].clone(),
            Err(s) => s,
        }
    }

    /// The string of `bytes`, read at position `slot` of a v0.4 span.
    #[inline(always)]
    pub(super) fn intern_at(&mut self, slot: usize, bytes: &[u8]) -> Str {
        let recent = self.recent.get(slot).copied().unwrap_or(u32::MAX);
        match self.strings.get(recent as usize) {
            Some(s) if same_bytes(s.as_bytes(), bytes) => s.clone(),
            _ => self.intern_new_at(slot, bytes),
        }
    }

    /// [`intern_at`](Self::intern_at) when the slot holds another string;
    /// out of line so that the common case inlines into the reader.
    #[inline(never)]
    pub(super) fn intern_new_at(&mut self, slot: usize, bytes: &[u8]) -> Str {
        match self.index(bytes) {
            Ok(index) => {
                if let Some(recent) = self.recent.get_mut(slot) {
                    *recent = index;
                }
                self.strings[index as usize].clone()
            }
            Err(s) => s,
        }
    }

    /// The index in `strings` of `bytes`, interned if new; the string itself
    /// when it is not kept.
    pub(super) fn index(&mut self, bytes: &[u8]) -> Result<u32, Str> {
        let hash = self.hasher.hash_one(bytes);
        let strings = &self.strings;
        if let Some(&index) = self
            .table
            .find(hash, |&i| same_bytes(strings[i as usize].as_bytes(), bytes))
        {
            return Ok(index);
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            // Repaired strings are not kept: their bytes are not the key.
            return Err(lossy(bytes));
        };
        let s: Str = Arc::from(text);
        // Unique values (URLs, ids) would only grow the table; short strings
        // are the ones that repeat (keys, services, names, types).
        let index = match u32::try_from(self.strings.len()) {
            Ok(index) if bytes.len() <= 64 && index != u32::MAX => index,
            _ => return Err(s),
        };
        self.strings.push(s);
        let (hasher, strings) = (&self.hasher, &self.strings);
        self.table.insert_unique(hash, index, |&i| {
            hasher.hash_one(strings[i as usize].as_bytes())
        });
        Ok(index)
    }
}

/// `a == b`, without calling `memcmp` for the short strings spans are made
/// of: two overlapping compares of a fixed width, which compile to loads,
/// cover a string of up to twice that width.
#[inline(always)]
pub(super) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    pub(super) fn ends<const N: usize>(a: &[u8], b: &[u8]) -> bool {
        a.first_chunk::<N>() == b.first_chunk::<N>() && a.last_chunk::<N>() == b.last_chunk::<N>()
    }
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        4..=7 => ends::<4>(a, b),
        8..=15 => ends::<8>(a, b),
        16..=31 => ends::<16>(a, b),
        32..=64 => ends::<32>(a, b),
        _ => a == b,
    }
}

/// Where a string sits in a v0.4 span, as an index into
/// [`Interner::recent`]: the four string fields, then the meta entries
/// (key and value), then the metrics keys.
pub(super) struct Slot;

impl Slot {
    pub(super) const SERVICE: usize = 0;
    pub(super) const NAME: usize = 1;
    pub(super) const RESOURCE: usize = 2;
    pub(super) const TYPE: usize = 3;
    /// Meta entries remembered; later ones go to the hash table only.
    pub(super) const META_ENTRIES: usize = 32;
    /// Metrics entries remembered.
    pub(super) const METRICS_ENTRIES: usize = 16;
    pub(super) const COUNT: usize = 4 + 2 * Self::META_ENTRIES + Self::METRICS_ENTRIES;

    /// The slot of the `entry`th meta key; `usize::MAX`, which is no slot,
    /// beyond the remembered entries (and so for its value too).
    pub(super) fn meta_key(entry: usize) -> usize {
        if entry < Self::META_ENTRIES {
            4 + 2 * entry
        } else {
            usize::MAX
        }
    }

    pub(super) fn meta_value(entry: usize) -> usize {
        Self::meta_key(entry).saturating_add(1)
    }

    pub(super) fn metric_key(entry: usize) -> usize {
        if entry < Self::METRICS_ENTRIES {
            4 + 2 * Self::META_ENTRIES + entry
        } else {
            usize::MAX
        }
    }
}
