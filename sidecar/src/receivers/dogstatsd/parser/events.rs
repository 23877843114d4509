//! DogStatsD events (`_e{…}`) and service checks (`_sc|…`).

use std::borrow::Cow;

use super::{parse_timestamp, Origin, ParseError, Tags};

/// An event, borrowing from the line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event<'a> {
    /// Title, still escaped (`\\n`); see [`Event::title`].
    pub raw_title: &'a str,
    /// Text, still escaped (`\\n`); see [`Event::text`].
    pub raw_text: &'a str,
    /// `d:` unix seconds.
    pub timestamp: Option<i64>,
    /// `h:` hostname.
    pub hostname: Option<&'a str>,
    /// `k:` aggregation key.
    pub aggregation_key: Option<&'a str>,
    /// `p:` `normal` or `low`; other values are dropped.
    pub priority: Option<&'a str>,
    /// `s:` source type name.
    pub source_type: Option<&'a str>,
    /// `t:` `error`, `warning`, `info` or `success`; other values are dropped.
    pub alert_type: Option<&'a str>,
    /// `#` tags.
    pub tags: Tags<'a>,
    /// `c:`, `e:` and `card:`.
    pub origin: Origin<'a>,
}

impl Event<'_> {
    /// The title with `\\n` turned into newlines.
    pub fn title(&self) -> Cow<'_, str> {
        unescape_newlines(self.raw_title)
    }

    /// The text with `\\n` turned into newlines.
    pub fn text(&self) -> Cow<'_, str> {
        unescape_newlines(self.raw_text)
    }

    /// The event as the pipeline carries it; `now` (unix seconds) when the
    /// client sent no `d:`.
    pub fn to_telemetry(&self, now: i64) -> crate::telemetry::Event {
        crate::telemetry::Event {
            title: self.title().into_owned(),
            text: self.text().into_owned(),
            timestamp: self.timestamp.unwrap_or(now),
            hostname: self.hostname.map(str::to_owned),
            aggregation_key: self.aggregation_key.map(str::to_owned),
            priority: self.priority.map(str::to_owned),
            source_type: self.source_type.map(str::to_owned),
            alert_type: self.alert_type.map(str::to_owned),
            tags: sorted_tags(self.tags),
            origin: self.origin.to_telemetry(),
        }
    }
}

/// A service check, borrowing from the line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceCheck<'a> {
    /// Check name, never empty.
    pub name: &'a str,
    /// 0 ok, 1 warning, 2 critical, 3 unknown.
    pub status: u8,
    /// `d:` unix seconds.
    pub timestamp: Option<i64>,
    /// `h:` hostname.
    pub hostname: Option<&'a str>,
    /// `#` tags.
    pub tags: Tags<'a>,
    /// `m:` message, still escaped (`\\n`, `m\\:`); see [`ServiceCheck::message`].
    pub raw_message: Option<&'a str>,
    /// `c:`, `e:` and `card:`.
    pub origin: Origin<'a>,
}

impl ServiceCheck<'_> {
    /// The message with `\\n` turned into newlines.
    pub fn message(&self) -> Option<Cow<'_, str>> {
        self.raw_message.map(|raw| match unescape_newlines(raw) {
            // The clients escape `m:` inside the message as `m\:`.
            Cow::Borrowed(text) if text.contains("m\\:") => Cow::Owned(text.replace("m\\:", "m:")),
            Cow::Owned(text) => Cow::Owned(text.replace("m\\:", "m:")),
            borrowed => borrowed,
        })
    }

    /// The check as the pipeline carries it; `now` (unix seconds) when the
    /// client sent no `d:`.
    pub fn to_telemetry(&self, now: i64) -> crate::telemetry::ServiceCheck {
        crate::telemetry::ServiceCheck {
            name: self.name.to_owned(),
            status: self.status,
            timestamp: self.timestamp.unwrap_or(now),
            hostname: self.hostname.map(str::to_owned),
            message: self.message().map(Cow::into_owned),
            tags: sorted_tags(self.tags),
            origin: self.origin.to_telemetry(),
        }
    }
}

/// `rest` is the line after `_e{`.
pub(super) fn parse_event(rest: &str) -> Result<Event<'_>, ParseError> {
    let (header, body) = rest.split_once("}:").ok_or(ParseError::BadEventHeader)?;
    let (title_len, text_len) = header.split_once(',').ok_or(ParseError::BadEventHeader)?;
    let title_len: usize = title_len.parse().map_err(|_| ParseError::BadEventHeader)?;
    let text_len: usize = text_len.parse().map_err(|_| ParseError::BadEventHeader)?;
    // Lengths are bytes, so slicing must land on char boundaries; `get`
    // refuses the slices that do not instead of panicking.
    let text_start = title_len.checked_add(1).ok_or(ParseError::TruncatedEvent)?;
    let text_end = text_start
        .checked_add(text_len)
        .ok_or(ParseError::TruncatedEvent)?;
    let raw_title = body.get(..title_len).ok_or(ParseError::TruncatedEvent)?;
    if body.as_bytes().get(title_len) != Some(&b'|') {
        return Err(ParseError::TruncatedEvent);
    }
    let raw_text = body
        .get(text_start..text_end)
        .ok_or(ParseError::TruncatedEvent)?;
    if raw_title.is_empty() {
        return Err(ParseError::EmptyTitle);
    }
    let mut event = Event {
        raw_title,
        raw_text,
        ..Event::default()
    };
    let fields = &body[text_end..];
    if fields.is_empty() {
        return Ok(event);
    }
    // What follows the text must start a new field; anything else means the
    // declared text length was too short.
    let fields = fields.strip_prefix('|').ok_or(ParseError::TruncatedEvent)?;
    for field in fields.split('|') {
        if let Some(ts) = field.strip_prefix("d:") {
            event.timestamp = Some(parse_timestamp(ts)?);
        } else if let Some(host) = field.strip_prefix("h:") {
            event.hostname = Some(host);
        } else if let Some(key) = field.strip_prefix("k:") {
            event.aggregation_key = Some(key);
        } else if let Some(priority) = field.strip_prefix("p:") {
            event.priority = matches!(priority, "normal" | "low").then_some(priority);
        } else if let Some(source) = field.strip_prefix("s:") {
            event.source_type = Some(source);
        } else if let Some(alert) = field.strip_prefix("t:") {
            event.alert_type =
                matches!(alert, "error" | "warning" | "info" | "success").then_some(alert);
        } else if let Some(tags) = field.strip_prefix('#') {
            event.tags = Tags(tags);
        } else {
            // An origin field, or one of a newer protocol: ignored.
            event.origin.read(field);
        }
    }
    Ok(event)
}

/// `rest` is the line after `_sc|`.
pub(super) fn parse_service_check(rest: &str) -> Result<ServiceCheck<'_>, ParseError> {
    let (name, rest) = rest.split_once('|').ok_or(ParseError::BadServiceCheck)?;
    if name.is_empty() {
        return Err(ParseError::BadServiceCheck);
    }
    let (status, fields) = rest.split_once('|').unwrap_or((rest, ""));
    let status = match status {
        "0" => 0,
        "1" => 1,
        "2" => 2,
        "3" => 3,
        "" => return Err(ParseError::BadServiceCheck),
        _ => return Err(ParseError::BadStatus),
    };
    let mut check = ServiceCheck {
        name,
        status,
        ..ServiceCheck::default()
    };
    // The message ends at the next `|` like any field (the Agent splits on
    // every `|`): datadog-py puts `|c:` after it.
    for field in fields.split('|') {
        if let Some(ts) = field.strip_prefix("d:") {
            check.timestamp = Some(parse_timestamp(ts)?);
        } else if let Some(host) = field.strip_prefix("h:") {
            check.hostname = Some(host);
        } else if let Some(tags) = field.strip_prefix('#') {
            check.tags = Tags(tags);
        } else if let Some(message) = field.strip_prefix("m:") {
            check.raw_message = Some(message);
        } else {
            // An origin field, or one of a newer protocol: ignored.
            check.origin.read(field);
        }
    }
    Ok(check)
}

/// Clients escape newlines as the two characters `\n`.
pub(super) fn unescape_newlines(text: &str) -> Cow<'_, str> {
    if text.contains("\\n") {
        Cow::Owned(text.replace("\\n", "\n"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Tags as the data model wants them: sorted and de-duplicated.
pub(super) fn sorted_tags(tags: Tags<'_>) -> Vec<String> {
    let mut out: Vec<String> = tags.iter().map(str::to_owned).collect();
    out.sort_unstable();
    out.dedup();
    out
}
