//! The DogStatsD line grammar: metrics, events and service checks.
//!
//! [`parse_line`] borrows from the datagram and allocates nothing: a metric's
//! values and tags stay as slices of the line and are iterated on demand, so
//! the per-line cost is one UTF-8 check, a few `memchr`s and one float parse
//! per value. Errors are a plain enum, counted by kind by the receiver.
//!
//! The grammar, as the Datadog agent's `dogstatsd` package accepts it:
//!
//! ```text
//! metric   name:value[:value...]|type[|@rate][|#tag,k:v][|c:container][|e:ext][|card:level][|T<unix seconds>]
//! event    _e{<title bytes>,<text bytes>}:<title>|<text>[|d:ts][|h:host][|k:key][|p:normal|low][|s:source][|t:error|warning|info|success][|#tags][|c:…][|e:…][|card:…]
//! service  _sc|<name>|<0|1|2|3>[|d:ts][|h:host][|#tags][|m:message][|c:…][|e:…][|card:…]
//! ```
//!
//! Optional fields come in any order and unknown ones are ignored, so a
//! newer client never loses its metrics to an older receiver. Every field,
//! `m:` included, ends at the next `|`, as the Agent splits them:
//! datadog-py 0.56 in a container sends `_sc|name|2|#tags|m:db down|c:in-…`,
//! whose message is `db down`.
//!
//! The origin fields `c:`, `e:`, `card:` are read by [`origin`]; events and
//! service checks by [`events`].

mod events;
mod origin;

pub use events::{Event, ServiceCheck};
pub use origin::Origin;

/// The largest line accepted: the agent's read buffer, and the largest
/// payload a client sends over a unix socket.
pub const MAX_LINE_BYTES: usize = 8192;

/// One parsed DogStatsD message, borrowing from the datagram.
#[derive(Clone, Debug, PartialEq)]
pub enum Message<'a> {
    /// A metric sample (`name:value|type…`).
    Metric(Metric<'a>),
    /// An event (`_e{…}`).
    Event(Event<'a>),
    /// A service check (`_sc|…`).
    ServiceCheck(ServiceCheck<'a>),
}

/// The six metric types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// `c`: summed, reported as a rate.
    Count,
    /// `g`: last value wins.
    Gauge,
    /// `ms`: like a histogram, in milliseconds.
    Timer,
    /// `h`: aggregates and percentiles of the samples.
    Histogram,
    /// `s`: number of distinct members.
    Set,
    /// `d`: a global distribution, kept as a sketch.
    Distribution,
}

/// A metric sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric<'a> {
    /// Metric name, never empty.
    pub name: &'a str,
    /// The type letter, decoded.
    pub kind: MetricKind,
    /// The text between the first `:` and the first `|`: one or more
    /// `:`-separated numbers (all validated), or, for a set, the member.
    pub raw_values: &'a str,
    /// The first value, parsed once here so single-value lines (nearly all
    /// of them) are not parsed twice. 0 for sets.
    pub first_value: f64,
    /// `@rate`, in (0, 1]; 1 when absent.
    pub sample_rate: f64,
    /// `#` tags.
    pub tags: Tags<'a>,
    /// `c:`, `e:` and `card:`.
    pub origin: Origin<'a>,
    /// `T` unix seconds: the point keeps this time and skips aggregation
    /// (counts and gauges only; the aggregator ignores it on other types).
    pub timestamp: Option<i64>,
}

impl<'a> Metric<'a> {
    /// The numeric values of the line (one per `:`-separated value); empty
    /// for sets.
    pub fn values(&self) -> Values<'a> {
        if self.kind == MetricKind::Set {
            return Values {
                first: None,
                rest: None,
            };
        }
        let rest = self.raw_values.split_once(':').map(|(_, rest)| rest);
        Values {
            first: Some(self.first_value),
            rest,
        }
    }

    /// The set member, for `s` lines.
    pub fn set_member(&self) -> Option<&'a str> {
        (self.kind == MetricKind::Set).then_some(self.raw_values)
    }
}

/// Iterator over a metric's values. The values were validated by the
/// parser, so iteration cannot fail.
#[derive(Clone, Debug)]
pub struct Values<'a> {
    first: Option<f64>,
    rest: Option<&'a str>,
}

impl Iterator for Values<'_> {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        let rest = self.rest?;
        let (value, rest) = match rest.split_once(':') {
            Some((value, rest)) => (value, Some(rest)),
            None => (rest, None),
        };
        self.rest = rest;
        // Validated in `parse_values`; a miss here would be a parser bug,
        // and ending the iteration is the harmless answer.
        parse_number(value)
    }
}

/// A comma-separated tag list, kept as the raw slice; empty tags are skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tags<'a>(pub &'a str);

impl<'a> Tags<'a> {
    /// The tags, in the order sent, without empty ones.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.0.split(',').filter(|tag| !tag.is_empty())
    }

    /// Whether no tag was sent.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// Why a line was rejected. One variant per malformed form, so the receiver
/// can count them by kind without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ParseError {
    /// The line is longer than [`MAX_LINE_BYTES`].
    #[error("line longer than 8192 bytes")]
    Oversized,
    /// The line is not UTF-8.
    #[error("line is not UTF-8")]
    NotUtf8,
    /// A metric line without `:` or without `|type`.
    #[error("metric line is not name:value|type")]
    MissingField,
    /// A metric with an empty name.
    #[error("metric name is empty")]
    EmptyName,
    /// A metric with no value, or a value that is not a finite number.
    #[error("metric value is not a number")]
    BadValue,
    /// A type other than c, g, ms, h, s, d.
    #[error("unknown metric type")]
    BadType,
    /// An `@` field that is not a number in (0, 1].
    #[error("sample rate is not a number in (0, 1]")]
    BadRate,
    /// A `T` or `d:` field that is not a positive integer.
    #[error("timestamp is not a positive integer")]
    BadTimestamp,
    /// An event header that is not `_e{<int>,<int>}:`.
    #[error("event header is not _e{{<title len>,<text len>}}:")]
    BadEventHeader,
    /// An event shorter than its declared lengths, or missing the `|`
    /// between title and text.
    #[error("event is shorter than its declared lengths")]
    TruncatedEvent,
    /// An event with an empty title.
    #[error("event title is empty")]
    EmptyTitle,
    /// A service check without a name or status.
    #[error("service check is not _sc|name|status")]
    BadServiceCheck,
    /// A service check status other than 0, 1, 2, 3.
    #[error("service check status is not 0, 1, 2 or 3")]
    BadStatus,
}

impl ParseError {
    /// Every variant, for counters keyed by kind.
    pub const ALL: [ParseError; 13] = [
        ParseError::Oversized,
        ParseError::NotUtf8,
        ParseError::MissingField,
        ParseError::EmptyName,
        ParseError::BadValue,
        ParseError::BadType,
        ParseError::BadRate,
        ParseError::BadTimestamp,
        ParseError::BadEventHeader,
        ParseError::TruncatedEvent,
        ParseError::EmptyTitle,
        ParseError::BadServiceCheck,
        ParseError::BadStatus,
    ];

    /// A stable snake_case name, for `/status` counters.
    pub const fn as_str(self) -> &'static str {
        match self {
            ParseError::Oversized => "oversized",
            ParseError::NotUtf8 => "not_utf8",
            ParseError::MissingField => "missing_field",
            ParseError::EmptyName => "empty_name",
            ParseError::BadValue => "bad_value",
            ParseError::BadType => "bad_type",
            ParseError::BadRate => "bad_rate",
            ParseError::BadTimestamp => "bad_timestamp",
            ParseError::BadEventHeader => "bad_event_header",
            ParseError::TruncatedEvent => "truncated_event",
            ParseError::EmptyTitle => "empty_title",
            ParseError::BadServiceCheck => "bad_service_check",
            ParseError::BadStatus => "bad_status",
        }
    }
}

/// The non-empty lines of a datagram. Clients end every message with `\n`
/// and some send `\r\n`; neither produces an empty message.
pub fn lines(datagram: &[u8]) -> impl Iterator<Item = &[u8]> {
    datagram
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
}

/// Parses one line (without its `\n`).
pub fn parse_line(line: &[u8]) -> Result<Message<'_>, ParseError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(ParseError::Oversized);
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    if let Some(rest) = line.strip_prefix("_e{") {
        events::parse_event(rest).map(Message::Event)
    } else if let Some(rest) = line.strip_prefix("_sc|") {
        events::parse_service_check(rest).map(Message::ServiceCheck)
    } else {
        parse_metric(line).map(Message::Metric)
    }
}

fn parse_metric(line: &str) -> Result<Metric<'_>, ParseError> {
    let bytes = line.as_bytes();
    let colon = memchr::memchr(b':', bytes).ok_or(ParseError::MissingField)?;
    let name = &line[..colon];
    if name.is_empty() {
        return Err(ParseError::EmptyName);
    }
    let after_name = &line[colon + 1..];
    let pipe = memchr::memchr(b'|', after_name.as_bytes()).ok_or(ParseError::MissingField)?;
    let raw_values = &after_name[..pipe];
    let after_values = &after_name[pipe + 1..];
    let (type_field, mut fields) = match memchr::memchr(b'|', after_values.as_bytes()) {
        Some(i) => (&after_values[..i], &after_values[i + 1..]),
        None => (after_values, ""),
    };
    let kind = match type_field {
        "c" => MetricKind::Count,
        "g" => MetricKind::Gauge,
        "ms" => MetricKind::Timer,
        "h" => MetricKind::Histogram,
        "s" => MetricKind::Set,
        "d" => MetricKind::Distribution,
        _ => return Err(ParseError::BadType),
    };
    let first_value = match kind {
        MetricKind::Set if raw_values.is_empty() => return Err(ParseError::BadValue),
        MetricKind::Set => 0.0,
        _ => parse_values(raw_values)?,
    };
    let mut metric = Metric {
        name,
        kind,
        raw_values,
        first_value,
        sample_rate: 1.0,
        tags: Tags::default(),
        origin: Origin::default(),
        timestamp: None,
    };
    while !fields.is_empty() {
        let field;
        (field, fields) = match memchr::memchr(b'|', fields.as_bytes()) {
            Some(i) => (&fields[..i], &fields[i + 1..]),
            None => (fields, ""),
        };
        match field.as_bytes().first() {
            Some(b'@') => metric.sample_rate = parse_rate(&field[1..])?,
            Some(b'#') => metric.tags = Tags(&field[1..]),
            Some(b'T') => metric.timestamp = Some(parse_timestamp(&field[1..])?),
            // Anything else is an origin field or one from a newer protocol: ignored.
            _ => _ = metric.origin.read(field),
        }
    }
    Ok(metric)
}

/// Validates every `:`-separated value and returns the first.
fn parse_values(raw: &str) -> Result<f64, ParseError> {
    let mut parts = raw.split(':');
    let first = parts
        .next()
        .and_then(parse_number)
        .ok_or(ParseError::BadValue)?;
    for part in parts {
        parse_number(part).ok_or(ParseError::BadValue)?;
    }
    Ok(first)
}

/// A finite float. Rust's parser also accepts `inf`, `nan` and `infinity`,
/// which would poison every aggregate of the context, so they are refused.
fn parse_number(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn parse_rate(text: &str) -> Result<f64, ParseError> {
    match parse_number(text) {
        Some(rate) if rate > 0.0 && rate <= 1.0 => Ok(rate),
        _ => Err(ParseError::BadRate),
    }
}

fn parse_timestamp(text: &str) -> Result<i64, ParseError> {
    match text.parse::<i64>() {
        Ok(ts) if ts > 0 => Ok(ts),
        _ => Err(ParseError::BadTimestamp),
    }
}

#[cfg(test)]
mod tests;
