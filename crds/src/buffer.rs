//! How a network sink buffers what it cannot deliver yet: the memory budget,
//! its shares per kind of data, and an optional disk buffer.
//!
//! ```yaml
//! sinks:
//!   - type: datadog
//!     apiKey: {fromEnv: DD_API_KEY}
//!     buffer:
//!       memoryBytes: 8Mi            # the memory budget (default 8 MiB)
//!       shares: {points: 30}        # percent of it per kind; the rest keep their defaults
//!       type: disk                  # spill what memory cannot hold (default: memory)
//!       maxBytes: 256Mi             # disk bytes at most
//!       path: /var/lib/dynoscope/datadog
//! ```

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A sink's buffer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BufferSpec {
    /// `memory` (the default): what the memory budget cannot hold is dropped,
    /// oldest first, and counted. `disk`: it is written to `path` instead, and
    /// delivered from there when the endpoint takes data again, also after a restart.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<BufferType>,
    /// The memory budget, e.g. `8Mi`; at least 64Ki. Default: 8Mi (or the
    /// sink's `bufferBytes`, which this replaces: set one of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<ByteSize>,
    /// Percent of the memory budget reserved for each kind of data. A kind
    /// may use free room beyond its share; it gives it back, oldest first,
    /// when a kind within its share needs it. Kinds not named keep their
    /// default share; shares of kinds a sink does not carry are shared out
    /// among the others.
    #[serde(default, skip_serializing_if = "Shares::is_empty")]
    pub shares: Shares,
    /// disk: the disk bytes the buffer may take, e.g. `256Mi`; past it the
    /// oldest data on disk is dropped and counted. Default: 256Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<ByteSize>,
    /// disk: the directory of this sink's buffer (created if missing; one
    /// directory per sink). Required with `type: disk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl BufferSpec {
    /// Whether what memory cannot hold goes to disk.
    pub fn is_disk(&self) -> bool {
        self.type_ == Some(BufferType::Disk)
    }
}

/// Where a buffer keeps what memory cannot hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BufferType {
    /// Nowhere: it is dropped, oldest first.
    Memory,
    /// On disk, under `path`.
    Disk,
}

/// Percent of the memory budget per kind of data; unset: the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Shares {
    /// Metric points. Default: 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<u32>,
    /// Distribution sketches. Default: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sketches: Option<u32>,
    /// Spans and APM stats. Default: 35.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans: Option<u32>,
    /// Events and service checks. Default: 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<u32>,
    /// Log records. Default: 25.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<u32>,
    /// Tracer telemetry requests. Default: 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<u32>,
}

impl Shares {
    /// The default percent per kind, in the order of [`Shares::resolved`].
    pub const DEFAULTS: [u32; 6] = [20, 10, 35, 5, 25, 5];
    /// The kinds, as manifests spell them, in the order of [`Shares::resolved`].
    pub const KINDS: [&'static str; 6] =
        ["points", "sketches", "spans", "events", "logs", "telemetry"];

    /// Whether no share is set.
    pub fn is_empty(&self) -> bool {
        self.given().iter().all(Option::is_none)
    }

    /// The shares as given, in the order of [`Shares::KINDS`].
    pub fn given(&self) -> [Option<u32>; 6] {
        [
            self.points,
            self.sketches,
            self.spans,
            self.events,
            self.logs,
            self.telemetry,
        ]
    }

    /// Every kind's share, the default where none is given.
    pub fn resolved(&self) -> [u32; 6] {
        let mut out = Self::DEFAULTS;
        for (slot, given) in out.iter_mut().zip(self.given()) {
            if let Some(share) = given {
                *slot = share;
            }
        }
        out
    }
}

/// A size in bytes, written as a number or a Kubernetes quantity: `65536`,
/// `64Ki`, `8Mi`, `1Gi`, `500M`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: write bytes as a number or with a unit, such as 65536, 64Ki, 8Mi, 1Gi or 500M")]
pub struct ParseByteSizeError {
    input: String,
}

impl FromStr for ByteSize {
    type Err = ParseByteSizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = || ParseByteSizeError {
            input: input.to_owned(),
        };
        let text = input.trim();
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        if digits == 0 {
            return Err(err());
        }
        let number: u64 = text[..digits].parse().map_err(|_| err())?;
        let unit: u64 = match &text[digits..] {
            "" => 1,
            "K" | "k" => 1000,
            "M" => 1000 * 1000,
            "G" => 1000 * 1000 * 1000,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            _ => return Err(err()),
        };
        number.checked_mul(unit).map(ByteSize).ok_or_else(err)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]+(K|k|M|G|Ki|Mi|Gi|Ti)?$"}
            ],
            "description": "A size in bytes: a number, or a number and a unit (K, M, G, Ki, Mi, Gi, Ti), e.g. 8Mi."
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_numbers_or_quantities_and_print_canonically() {
        for (text, bytes, shown) in [
            ("65536", 65536, "64Ki"),
            ("64Ki", 65536, "64Ki"),
            ("8Mi", 8 << 20, "8Mi"),
            ("1Gi", 1 << 30, "1Gi"),
            ("500M", 500_000_000, "500000000"),
            ("3", 3, "3"),
        ] {
            let size: ByteSize = text.parse().unwrap();
            assert_eq!(size.0, bytes, "{text}");
            assert_eq!(size.to_string(), shown, "{text}");
        }
        for bad in ["", "Mi", "8 MiB", "-1", "1.5Gi", "99999999999999999999"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?}");
        }
        let from_yaml: ByteSize = serde_yaml::from_str("1048576").unwrap();
        assert_eq!(from_yaml, ByteSize(1 << 20));
    }

    #[test]
    fn shares_keep_their_defaults_where_not_given() {
        let shares = Shares {
            points: Some(50),
            ..Shares::default()
        };
        assert_eq!(shares.resolved(), [50, 10, 35, 5, 25, 5]);
        assert_eq!(Shares::DEFAULTS.iter().sum::<u32>(), 100);
    }
}
