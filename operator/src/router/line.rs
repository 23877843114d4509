//! Heroku's router line (`at=info method=GET path="/" … protocol=http`) and
//! the request id the router hands the app.

use std::fmt;

/// One router line; `None` fields print empty (`dyno= connect=`), as Heroku's
/// error lines do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterLine {
    /// `H12`, … on errors; `None` for `at=info`.
    pub code: Option<&'static str>,
    /// `GET`, …
    pub method: String,
    /// Path and query, as the client sent it.
    pub path: String,
    /// The `Host` header.
    pub host: String,
    /// The `X-Request-Id` the app received.
    pub request_id: String,
    /// The `X-Forwarded-For` the app received.
    pub fwd: String,
    /// The dyno that served it (`web.1`).
    pub dyno: Option<String>,
    /// Milliseconds to connect to the dyno.
    pub connect_ms: Option<u64>,
    /// Milliseconds from sending the request to the end of the response.
    pub service_ms: Option<u64>,
    /// The status the client received.
    pub status: u16,
    /// Body bytes the client received from the dyno.
    pub bytes: Option<u64>,
    /// `http` (the legacy router's spelling; TLS ends before this router).
    pub protocol: &'static str,
}

/// Heroku's description of an H code (its error-codes page).
pub fn describe(code: &str) -> &'static str {
    match code {
        "H10" => "App crashed",
        "H12" => "Request timeout",
        "H13" => "Connection closed without response",
        "H14" => "No web dynos running",
        "H18" => "Server Request Interrupted",
        "H27" => "Client Request Interrupted",
        _ => "Platform error",
    }
}

impl fmt::Display for RouterLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn opt(v: Option<u64>, unit: &str) -> String {
            v.map_or(String::new(), |v| format!("{v}{unit}"))
        }
        match self.code {
            Some(code) => write!(f, "at=error code={code} desc=\"{}\" ", describe(code))?,
            None => f.write_str("at=info ")?,
        }
        write!(
            f,
            "method={} path=\"{}\" host={} request_id={} fwd=\"{}\" dyno={} connect={} service={} status={} bytes={} protocol={}",
            self.method,
            escape(&self.path),
            self.host,
            self.request_id,
            escape(&self.fwd),
            self.dyno.as_deref().unwrap_or_default(),
            opt(self.connect_ms, "ms"),
            opt(self.service_ms, "ms"),
            self.status,
            opt(self.bytes, ""),
            self.protocol,
        )
    }
}

/// A quoted value must not end its quotes early nor break the line.
fn escape(value: &str) -> String {
    value
        .chars()
        .map(|c| if c == '"' || c.is_control() { '_' } else { c })
        .collect()
}

/// Whether the client's `X-Request-Id` is kept: 20–200 characters of
/// `[A-Za-z0-9+=/-]`, as Heroku's router checks.
pub fn valid_request_id(id: &str) -> bool {
    (20..=200).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'=' | b'/' | b'-'))
}

/// A new random UUID v4, as Heroku's router makes request ids.
pub fn new_request_id() -> String {
    let mut bytes = fastrand::u128(..).to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests;
