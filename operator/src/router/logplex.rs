//! Logplex's drain wire format, as Heroku sends it: octet-counted RFC 5424
//! frames without structured data, and the headers of one POST.

use jiff::Timestamp;

/// `Content-Type` of a drain POST.
pub const CONTENT_TYPE: &str = "application/logplex-1";
/// Messages in one POST at most.
pub const MAX_BATCH: usize = 100;

/// One message as Logplex frames a router line:
/// `<158>1 2012-07-22T00:06:26.123456+00:00 host heroku router - at=info …`.
pub fn router_message(at: Timestamp, line: &str) -> String {
    format!(
        "<158>1 {} host heroku router - {line}",
        at.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00")
    )
}

/// The body of one POST: each message as `<byte count> <message>\n`, the
/// count covering the message and its newline (RFC 6587 octet counting).
pub fn body<'a>(messages: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut out = Vec::new();
    for message in messages {
        let message = message.trim_end_matches('\n');
        out.extend_from_slice(format!("{} {message}\n", message.len() + 1).as_bytes());
    }
    out
}

/// A new `Logplex-Frame-Id`: 32 uppercase hex digits, kept on retries.
pub fn frame_id() -> String {
    hex::encode_upper(fastrand::u128(..).to_be_bytes())
}

/// A new `Logplex-Drain-Token` (`d.` and a UUID), one per router.
pub fn drain_token() -> String {
    format!("d.{}", super::line::new_request_id())
}

#[cfg(test)]
mod tests;
