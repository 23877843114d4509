//! What a Logplex line says, by APP-NAME and PROCID (../shared/HEROKU.md):
//! router lines, runtime metrics, R errors and state changes of a dyno,
//! Platform API lines, Heroku Postgres and Redis metric lines, Logplex's own
//! errors, and the app's output. Pure functions over borrowed text; turning
//! them into metrics is [`super::metrics`]'s.

use super::syslog::Line;

/// A line, read.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading<'a> {
    /// `heroku router`: one request through Heroku's router.
    Router(RouterLine<'a>),
    /// `heroku web.1` with `sample#` fields: log-runtime-metrics.
    Runtime {
        /// The dyno, e.g. `web.1`.
        dyno: &'a str,
        /// The `sample#` fields.
        samples: Vec<Sample<'a>>,
    },
    /// `heroku web.1 Error R14 (Memory quota exceeded)`.
    DynoError {
        /// The dyno.
        dyno: &'a str,
        /// `R14`.
        code: &'a str,
        /// `Memory quota exceeded`.
        desc: &'a str,
    },
    /// `heroku web.1 State changed from up to crashed`.
    Crashed {
        /// The dyno.
        dyno: &'a str,
    },
    /// `heroku api`: releases, deploys, scaling, config changes.
    Api {
        /// The line, e.g. `Release v42 created by user@example.com`.
        message: &'a str,
    },
    /// `app heroku-postgres` or `app heroku-redis` metric lines.
    Addon {
        /// Which add-on family.
        kind: AddonKind,
        /// `source=`: the attachment, e.g. `DATABASE`.
        source: Option<&'a str>,
        /// `addon=`: the add-on's name.
        addon: Option<&'a str>,
        /// The `sample#` fields.
        samples: Vec<Sample<'a>>,
    },
    /// `heroku logplex Error L10 (output buffer overflow): 8 messages dropped since …`.
    LogplexError {
        /// `L10`.
        code: &'a str,
        /// The messages Logplex says it dropped, when it says.
        dropped: Option<u64>,
    },
    /// The app's own output (`app web.1`), or another add-on's lines.
    App {
        /// PROCID: the dyno, or the add-on.
        proc_id: &'a str,
    },
    /// Any other platform line (`heroku web.1 Starting process with command …`).
    Platform {
        /// PROCID.
        proc_id: &'a str,
    },
}

/// Add-on families with metric lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddonKind {
    /// Heroku Postgres (`heroku-postgres`).
    Postgres,
    /// Heroku Key-Value Store / Redis (`heroku-redis`).
    Redis,
}

impl AddonKind {
    /// The metric prefix, e.g. `heroku.postgres`.
    pub fn prefix(self) -> &'static str {
        match self {
            AddonKind::Postgres => "heroku.postgres",
            AddonKind::Redis => "heroku.redis",
        }
    }
}

/// One `sample#key=value<unit>` field.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The key after `sample#`, e.g. `memory_total` or `db_size`.
    pub key: &'a str,
    /// The number.
    pub value: f64,
    /// The unit after it.
    pub unit: Unit,
}

/// Units of `sample#` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// No unit.
    None,
    /// `bytes`.
    Bytes,
    /// `kB` (kibibytes, as Heroku's add-ons mean it).
    KiloBytes,
    /// `MB` or `M` (mebibytes, as the runtime metrics mean it).
    MegaBytes,
    /// `pages`.
    Pages,
}

impl Unit {
    /// The value in bytes for byte units; unchanged otherwise.
    pub fn normalize(self, value: f64) -> f64 {
        match self {
            Unit::KiloBytes => value * 1024.0,
            Unit::MegaBytes => value * 1024.0 * 1024.0,
            Unit::None | Unit::Bytes | Unit::Pages => value,
        }
    }
}

/// One request through Heroku's router.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouterLine<'a> {
    /// `info`, `warning` or `error`.
    pub at: &'a str,
    /// `H12` on errors.
    pub code: Option<&'a str>,
    /// `Request timeout` on errors.
    pub desc: Option<&'a str>,
    /// `GET`.
    pub method: Option<&'a str>,
    /// Path and query.
    pub path: Option<&'a str>,
    /// The request id.
    pub request_id: Option<&'a str>,
    /// `web.1`; none on most errors.
    pub dyno: Option<&'a str>,
    /// Milliseconds to connect to the dyno.
    pub connect_ms: Option<f64>,
    /// Milliseconds the dyno took.
    pub service_ms: Option<f64>,
    /// The HTTP status sent to the client.
    pub status: Option<u16>,
    /// Bytes from the dyno to the client.
    pub bytes: Option<u64>,
    /// `http`, `https`, `http1.1`, `http2.0`.
    pub protocol: Option<&'a str>,
}

/// Reads a line by its APP-NAME and PROCID.
pub fn read<'a>(line: &Line<'a>) -> Reading<'a> {
    let (app, proc_id, text) = (line.app_name, line.proc_id, line.message);
    match (app, proc_id) {
        ("heroku", "router") => Reading::Router(router_line(text)),
        ("heroku", "api") => Reading::Api { message: text },
        ("heroku", "logplex") => logplex_error(text).unwrap_or(Reading::Platform { proc_id }),
        ("heroku", dyno) if is_dyno(dyno) => dyno_line(dyno, text),
        ("app", "heroku-postgres") => addon(AddonKind::Postgres, text, proc_id),
        ("app", "heroku-redis") => addon(AddonKind::Redis, text, proc_id),
        ("app", _) => Reading::App { proc_id },
        _ => Reading::Platform { proc_id },
    }
}

/// `web.1`, `worker.12`, `run.2345`, `release.1`: a process type and a number.
pub fn is_dyno(proc_id: &str) -> bool {
    proc_id.split_once('.').is_some_and(|(kind, n)| {
        !kind.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The `key=value` pairs of a logfmt text; `key="quoted value"` unquoted
/// (no escapes: Heroku's router writes none). Words without `=` are skipped.
pub fn logfmt(text: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = text;
    std::iter::from_fn(move || loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return None;
        }
        let word_end = rest.find([' ', '=']).unwrap_or(rest.len());
        if rest.as_bytes().get(word_end) != Some(&b'=') {
            rest = &rest[word_end..];
            continue;
        }
        let key = &rest[..word_end];
        let after = &rest[word_end + 1..];
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => {
                let end = after.find(' ').unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        rest = next;
        return Some((key, value));
    })
}

fn non_empty(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

fn millis(value: &str) -> Option<f64> {
    value.strip_suffix("ms").unwrap_or(value).parse().ok()
}

fn router_line(text: &str) -> RouterLine<'_> {
    let mut line = RouterLine::default();
    for (key, value) in logfmt(text) {
        match key {
            "at" => line.at = value,
            "code" => line.code = non_empty(value),
            "desc" => line.desc = non_empty(value),
            "method" => line.method = non_empty(value),
            "path" => line.path = non_empty(value),
            "request_id" => line.request_id = non_empty(value),
            "dyno" => line.dyno = non_empty(value),
            "connect" => line.connect_ms = millis(value),
            "service" => line.service_ms = millis(value),
            "status" => line.status = value.parse().ok(),
            "bytes" => line.bytes = value.parse().ok(),
            "protocol" => line.protocol = non_empty(value),
            _ => {}
        }
    }
    line
}

/// `sample#` fields of a text; values with an unknown unit are skipped.
fn samples(text: &str) -> Vec<Sample<'_>> {
    logfmt(text)
        .filter_map(|(key, value)| {
            let key = key.strip_prefix("sample#")?;
            let split = value
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
                .unwrap_or(value.len());
            let (number, unit) = value.split_at(split);
            let unit = match unit {
                "" => Unit::None,
                "bytes" => Unit::Bytes,
                "kB" => Unit::KiloBytes,
                "MB" | "M" => Unit::MegaBytes,
                "pages" => Unit::Pages,
                _ => return None,
            };
            let value: f64 = number.parse().ok().filter(|v: &f64| v.is_finite())?;
            Some(Sample { key, value, unit })
        })
        .collect()
}

fn dyno_line<'a>(dyno: &'a str, text: &'a str) -> Reading<'a> {
    if let Some(rest) = text.strip_prefix("Error ") {
        // `Error R14 (Memory quota exceeded)`.
        let (code, desc) = rest.split_once(' ').unwrap_or((rest, ""));
        let desc = desc
            .trim()
            .strip_prefix('(')
            .and_then(|d| d.split_once(')'))
            .map_or(desc.trim(), |(d, _)| d);
        if code.len() >= 2 && code.starts_with('R') {
            return Reading::DynoError { dyno, code, desc };
        }
    }
    if text.starts_with("State changed from ") && text.ends_with(" to crashed") {
        return Reading::Crashed { dyno };
    }
    if text.contains("sample#") {
        return Reading::Runtime {
            dyno,
            samples: samples(text),
        };
    }
    Reading::Platform { proc_id: dyno }
}

fn addon<'a>(kind: AddonKind, text: &'a str, proc_id: &'a str) -> Reading<'a> {
    if !text.contains("sample#") {
        return Reading::App { proc_id };
    }
    let field = |name: &str| logfmt(text).find(|(k, _)| *k == name).map(|(_, v)| v);
    Reading::Addon {
        kind,
        source: field("source").and_then(non_empty),
        addon: field("addon").and_then(non_empty),
        samples: samples(text),
    }
}

fn logplex_error(text: &str) -> Option<Reading<'_>> {
    let rest = text.strip_prefix("Error ")?;
    let (code, rest) = rest.split_once(' ')?;
    let dropped = rest
        .split_once("): ")
        .and_then(|(_, tail)| tail.split(' ').next())
        .and_then(|n| n.parse().ok());
    Some(Reading::LogplexError { code, dropped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receivers::drain::syslog;

    fn reading(app: &str, proc_id: &str, text: &str) -> Reading<'static> {
        let raw = format!("<134>1 2012-07-22T00:06:26+00:00 host {app} {proc_id} - {text}");
        let leaked: &'static str = Box::leak(raw.into_boxed_str());
        read(&syslog::parse(leaked.as_bytes()).unwrap())
    }

    #[test]
    fn a_router_line_with_router_2_fields() {
        let Reading::Router(line) = reading(
            "heroku",
            "router",
            r#"at=info method=GET path="/a b?x=1" host=www.example.de request_id=407b fwd="1.2.3.4, 5.6.7.8" dyno=web.1 connect=7001ms service=459ms status=200 bytes=15225 protocol=http1.1 tls=true tls_version=tls1.3"#,
        ) else {
            panic!("not a router line");
        };
        assert_eq!(line.at, "info");
        assert_eq!(line.path, Some("/a b?x=1"));
        assert_eq!(line.dyno, Some("web.1"));
        assert_eq!(line.connect_ms, Some(7001.0));
        assert_eq!(line.service_ms, Some(459.0));
        assert_eq!((line.status, line.bytes), (Some(200), Some(15225)));
        assert_eq!(line.protocol, Some("http1.1"));
    }

    #[test]
    fn an_error_router_line_has_empty_fields() {
        let Reading::Router(line) = reading(
            "heroku",
            "router",
            r#"at=error code=H10 desc="App crashed" method=GET path="/" host=x request_id=r fwd="1.1.1.1" dyno= connect= service= status=503 bytes= protocol=https"#,
        ) else {
            panic!("not a router line");
        };
        assert_eq!((line.code, line.desc), (Some("H10"), Some("App crashed")));
        assert_eq!((line.dyno, line.connect_ms, line.bytes), (None, None, None));
        assert_eq!(line.status, Some(503));
    }

    #[test]
    fn runtime_samples_in_mb_m_and_pages() {
        let Reading::Runtime { dyno, samples } = reading(
            "heroku",
            "web.1",
            "source=web.1 dyno=heroku.1.abc sample#memory_total=21.00MB sample#memory_rss=870M sample#memory_pgpgin=348836pages sample#load_avg_1m=2.46",
        ) else {
            panic!("not runtime");
        };
        assert_eq!(dyno, "web.1");
        let keys: Vec<_> = samples.iter().map(|s| (s.key, s.value, s.unit)).collect();
        assert_eq!(
            keys,
            [
                ("memory_total", 21.0, Unit::MegaBytes),
                ("memory_rss", 870.0, Unit::MegaBytes),
                ("memory_pgpgin", 348_836.0, Unit::Pages),
                ("load_avg_1m", 2.46, Unit::None),
            ]
        );
    }

    #[test]
    fn errors_crashes_api_and_logplex_lines() {
        assert_eq!(
            reading("heroku", "web.2", "Error R14 (Memory quota exceeded)"),
            Reading::DynoError {
                dyno: "web.2",
                code: "R14",
                desc: "Memory quota exceeded"
            }
        );
        assert_eq!(
            reading("heroku", "worker.1", "State changed from up to crashed"),
            Reading::Crashed { dyno: "worker.1" }
        );
        assert_eq!(
            reading("heroku", "web.1", "State changed from starting to up"),
            Reading::Platform { proc_id: "web.1" }
        );
        assert_eq!(
            reading("heroku", "logplex", "Error L10 (output buffer overflow): 8 messages dropped since 2012-07-22T00:06:00+00:00."),
            Reading::LogplexError { code: "L10", dropped: Some(8) }
        );
        assert!(matches!(
            reading("heroku", "api", "Release v42 created by a@b.c"),
            Reading::Api { .. }
        ));
    }

    #[test]
    fn addon_lines_with_mixed_keys_and_units() {
        let Reading::Addon { kind, source, addon, samples } = reading(
            "app",
            "heroku-postgres",
            "source=HEROKU_POSTGRESQL_GREEN addon=postgresql-opaque-12345 sample#db_size=147391814791bytes sample#active-connections=41 sample#memory-total=31328356kB sample#wal-percentage-used=0.0776",
        ) else {
            panic!("not an add-on line");
        };
        assert_eq!(kind, AddonKind::Postgres);
        assert_eq!(source, Some("HEROKU_POSTGRESQL_GREEN"));
        assert_eq!(addon, Some("postgresql-opaque-12345"));
        assert_eq!(samples.len(), 4);
        assert_eq!(
            samples[2].unit.normalize(samples[2].value),
            31_328_356.0 * 1024.0
        );
        // An old line without `addon=`, with `8945836.0bytes`.
        let Reading::Addon { addon, samples, .. } = reading(
            "app",
            "heroku-postgres",
            "source=DATABASE sample#db_size=8945836.0bytes",
        ) else {
            panic!("not an add-on line");
        };
        assert_eq!((addon, samples[0].value), (None, 8_945_836.0));
    }

    #[test]
    fn the_apps_output_is_an_app_line() {
        assert_eq!(
            reading("app", "web.1", "GET / 200"),
            Reading::App { proc_id: "web.1" }
        );
        assert!(is_dyno("run.2345") && !is_dyno("router") && !is_dyno("web.") && !is_dyno(".1"));
    }
}
