//! The RFC 5424 header of a Logplex message, as Logplex writes it (no
//! structured-data field): `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID MSG`.
//!
//! Nothing here trusts HOSTNAME (an older form puts the drain token there)
//! or PRI beyond its syntax; APP-NAME and PROCID say what a line is.

/// One message's header fields and text, borrowed from the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// Facility × 8 + severity.
    pub pri: u8,
    /// Unix milliseconds of TIMESTAMP.
    pub timestamp_ms: i64,
    /// HOSTNAME, usually `host`.
    pub hostname: &'a str,
    /// APP-NAME: `app` (the app's output and add-ons) or `heroku` (the platform).
    pub app_name: &'a str,
    /// PROCID: the dyno (`web.1`), `router`, `api`, `heroku-postgres`, …
    pub proc_id: &'a str,
    /// The text after MSGID.
    pub message: &'a str,
}

/// Why a message is not an RFC 5424 line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineError {
    /// Not UTF-8.
    Utf8,
    /// No `<PRI>1 ` at the start.
    Pri,
    /// A header field is missing.
    Header,
    /// TIMESTAMP is not RFC 3339.
    Timestamp,
}

impl LineError {
    /// The counter's label.
    pub fn reason(self) -> &'static str {
        match self {
            LineError::Utf8 => "utf8",
            LineError::Pri => "pri",
            LineError::Header => "header",
            LineError::Timestamp => "timestamp",
        }
    }
}

/// Parses one message of a frame.
pub fn parse(message: &[u8]) -> Result<Line<'_>, LineError> {
    let text = std::str::from_utf8(message).map_err(|_| LineError::Utf8)?;
    let rest = text.strip_prefix('<').ok_or(LineError::Pri)?;
    let (pri, rest) = rest.split_once('>').ok_or(LineError::Pri)?;
    let pri: u8 = pri
        .parse()
        .ok()
        .filter(|p| *p <= 191)
        .ok_or(LineError::Pri)?;
    let rest = rest.strip_prefix("1 ").ok_or(LineError::Pri)?;
    let mut fields = rest.splitn(6, ' ');
    let mut next = || fields.next().ok_or(LineError::Header);
    let (timestamp, hostname, app_name, proc_id, _msgid) =
        (next()?, next()?, next()?, next()?, next()?);
    let message = fields.next().unwrap_or("");
    let timestamp_ms = rfc3339_ms(timestamp).ok_or(LineError::Timestamp)?;
    Ok(Line {
        pri,
        timestamp_ms,
        hostname,
        app_name,
        proc_id,
        message,
    })
}

/// Unix milliseconds of an RFC 3339 time (`2012-07-22T00:06:26.123456+00:00`,
/// `…Z`). Written here rather than pulled from a date crate: this one format
/// is all the sidecar reads.
pub fn rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0i64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let sep = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(sep(4, b'-')
        && sep(7, b'-')
        && matches!(b.get(10), Some(b'T' | b't'))
        && sep(13, b':')
        && sep(16, b':'))
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if sep(i, b'.') {
        let digits = b[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let frac = num(i + 1..i + 1 + digits.min(3))?;
        millis = frac * 10i64.pow(3 - digits.min(3) as u32);
        i += 1 + digits;
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && sep(i + 3, b':') => {
            let secs = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(((days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs) * 1000) + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_heroku_header_fields() {
        let line = parse(
            b"<158>1 2012-07-22T00:06:26.123456+00:00 host heroku router - at=info method=GET",
        )
        .unwrap();
        assert_eq!(line.pri, 158);
        assert_eq!(line.timestamp_ms, 1_342_915_586_123);
        assert_eq!(
            (line.hostname, line.app_name, line.proc_id, line.message),
            ("host", "heroku", "router", "at=info method=GET")
        );
    }

    #[test]
    fn the_drain_token_as_hostname_and_an_empty_message_are_fine() {
        let line = parse(b"<134>1 2012-07-22T00:06:26+00:00 d.73ea-11 heroku web.3 -").unwrap();
        assert_eq!(
            (line.hostname, line.proc_id, line.message),
            ("d.73ea-11", "web.3", "")
        );
    }

    #[test]
    fn rfc3339_at_each_precision_and_offset() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_ms("2012-07-22T00:06:26+00:00"),
            Some(1_342_915_586_000)
        );
        assert_eq!(
            rfc3339_ms("2012-07-22T00:06:26.5+00:00"),
            Some(1_342_915_586_500)
        );
        assert_eq!(
            rfc3339_ms("2012-07-22T02:06:26.123+02:00"),
            Some(1_342_915_586_123)
        );
        assert_eq!(rfc3339_ms("2024-02-29T23:59:59Z"), Some(1_709_251_199_000));
        for bad in [
            "2012-07-22",
            "2012-13-22T00:06:26Z",
            "2012-07-22T00:06:26",
            "2012-07-22T00:06:26.Z",
            "2012-07-22T00:06:26+0000",
        ] {
            assert_eq!(rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_headers_say_which_part() {
        assert_eq!(parse(b"hello"), Err(LineError::Pri));
        assert_eq!(parse(b"<999>1 x"), Err(LineError::Pri));
        assert_eq!(
            parse(b"<134>1 2012-07-22T00:06:26+00:00 host"),
            Err(LineError::Header)
        );
        assert_eq!(
            parse(b"<134>1 yesterday host app web.1 - hi"),
            Err(LineError::Timestamp)
        );
        assert_eq!(parse(b"<134>1 \xff"), Err(LineError::Utf8));
    }
}
