//! Heroku's dyno sizes and their memory: `formation.<type>.size` and `up --size`.
//!
//! | size | memory (quota) | R15 at |
//! |---|---|---|
//! | `eco`, `basic`, `standard-1x` | 512 MB | 2 × quota |
//! | `standard-2x` | 1 GB | 2 × quota |
//! | `performance-m`, `private-m`, `shield-m` | 2.5 GB | 2 × quota |
//! | `performance-l`, `private-l`, `shield-l` | 14 GB | 2 × quota |
//! | `private-s`, `shield-s` | 1 GB | 2 × quota |
//! | `performance-l-ram`, `private-l-ram`, `shield-l-ram` | 30 GB | 1.2 × quota |
//! | `performance-xl`, `private-xl`, `shield-xl` | 62 GB | 1.2 × quota |
//! | `performance-2xl`, `private-2xl`, `shield-2xl` | 126 GB | 1.2 × quota |
//!
//! MB and GB are binary (MiB, GiB), as in Heroku's `memory_quota=512.00MB`. Names
//! are matched case-insensitively (`Standard-1X` as the dashboard writes it).

use std::collections::BTreeMap;
use std::fmt;

const MIB: u64 = 1024 * 1024;

/// One dyno size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DynoSize {
    /// Heroku's name, lower case, e.g. `standard-1x`.
    pub name: &'static str,
    /// Its memory quota, bytes: over it Heroku logs R14.
    pub memory_bytes: u64,
    /// Percent of the quota at which Heroku logs R15 and restarts the dyno.
    pub r15_percent: u64,
}

impl DynoSize {
    /// The memory at which R15 kills the dyno, bytes.
    pub fn r15_bytes(&self) -> u64 {
        self.memory_bytes * self.r15_percent / 100
    }
}

const fn size(name: &'static str, mib: u64, r15_percent: u64) -> DynoSize {
    DynoSize {
        name,
        memory_bytes: mib * MIB,
        r15_percent,
    }
}

/// Every size Heroku sells (Common Runtime, Private and Shield Spaces), smallest first.
pub const SIZES: &[DynoSize] = &[
    size("eco", 512, 200),
    size("basic", 512, 200),
    size("standard-1x", 512, 200),
    size("standard-2x", 1024, 200),
    size("private-s", 1024, 200),
    size("shield-s", 1024, 200),
    size("performance-m", 2560, 200),
    size("private-m", 2560, 200),
    size("shield-m", 2560, 200),
    size("performance-l", 14 * 1024, 200),
    size("private-l", 14 * 1024, 200),
    size("shield-l", 14 * 1024, 200),
    size("performance-l-ram", 30 * 1024, 120),
    size("private-l-ram", 30 * 1024, 120),
    size("shield-l-ram", 30 * 1024, 120),
    size("performance-xl", 62 * 1024, 120),
    size("private-xl", 62 * 1024, 120),
    size("shield-xl", 62 * 1024, 120),
    size("performance-2xl", 126 * 1024, 120),
    size("private-2xl", 126 * 1024, 120),
    size("shield-2xl", 126 * 1024, 120),
];

/// A size name that is not in [`SIZES`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown dyno size `{given}`: use one of {}", names())]
pub struct UnknownSize {
    /// What was written.
    pub given: String,
}

/// Every size name, comma-separated, for messages.
pub fn names() -> String {
    SIZES.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

/// The size called `name`, in any case (`Standard-1X`); surrounding blanks are ignored.
pub fn parse(name: &str) -> Result<&'static DynoSize, UnknownSize> {
    let wanted = name.trim();
    SIZES
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(wanted))
        .ok_or_else(|| UnknownSize {
            given: name.to_owned(),
        })
}

/// `up --size`: one size for every process type (`standard-2x`), or some per type
/// (`web=standard-1x,worker=performance-m`), or both (`standard-2x,web=standard-1x`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SizeOverrides {
    /// For every process type not named in `types`.
    pub all: Option<&'static DynoSize>,
    /// Per process type.
    pub types: BTreeMap<String, &'static DynoSize>,
}

impl SizeOverrides {
    /// Parses `--size`'s value.
    pub fn parse(text: &str) -> Result<Self, UnknownSize> {
        let mut overrides = SizeOverrides::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((kind, name)) => {
                    overrides.types.insert(kind.trim().to_owned(), parse(name)?);
                }
                None => overrides.all = Some(parse(part)?),
            }
        }
        Ok(overrides)
    }

    /// The size for `dyno_type`, if the overrides give one.
    pub fn for_type(&self, dyno_type: &str) -> Option<&'static DynoSize> {
        self.types.get(dyno_type).copied().or(self.all)
    }

    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.types.is_empty()
    }
}

impl fmt::Display for DynoSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
mod tests;
