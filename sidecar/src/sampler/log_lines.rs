//! Heroku's log-runtime-metrics lines, byte for byte, and the R14 and R15 errors.
//!
//! ```text
//! source=web.1 dyno=heroku.2808254.d97d0ea7-… sample#load_avg_1m=2.46 sample#load_avg_5m=1.06 sample#load_avg_15m=0.99
//! source=web.1 dyno=heroku.2808254.d97d0ea7-… sample#memory_total=180.43MB sample#memory_rss=180.05MB … sample#memory_quota=512.00MB
//! ```
//! MB are MiB with two decimals; page counts end in `pages`.

use super::cgroup::DynoMemory;
use super::procs::LoadAvg;

const MIB: f64 = 1024.0 * 1024.0;

/// The load-average line.
pub fn load_line(source: &str, dyno_id: &str, load: &LoadAvg) -> String {
    format!(
        "source={source} dyno={dyno_id} sample#load_avg_1m={:.2} sample#load_avg_5m={:.2} sample#load_avg_15m={:.2}",
        load.one, load.five, load.fifteen
    )
}

/// The memory line; `quota` is the cgroup's limit or, without one, the machine's memory.
pub fn memory_line(source: &str, dyno_id: &str, memory: &DynoMemory, quota: u64) -> String {
    format!(
        "source={source} dyno={dyno_id} sample#memory_total={} sample#memory_rss={} sample#memory_cache={} \
         sample#memory_swap={} sample#memory_pgpgin={}pages sample#memory_pgpgout={}pages sample#memory_quota={}",
        mb(memory.total()),
        mb(memory.rss),
        mb(memory.cache),
        mb(memory.swap),
        memory.pgpgin,
        memory.pgpgout,
        mb(quota)
    )
}

/// Heroku's two R14 lines when `total` exceeds `quota`, e.g. `Process running mem=1028MB(103.3%)`.
pub fn r14_lines(total: u64, quota: u64) -> Option<[String; 2]> {
    if quota == 0 || total <= quota {
        return None;
    }
    let percent = total as f64 * 100.0 / quota as f64;
    Some([
        format!(
            "Process running mem={:.0}MB({percent:.1}%)",
            total as f64 / MIB
        ),
        "Error R14 (Memory quota exceeded)".to_owned(),
    ])
}

/// Heroku's three R15 lines, where the dyno manager kills the dyno:
/// `Process running mem=1030MB(201.1%)`, `Error R15 (Memory quota vastly exceeded)`,
/// `Stopping process with SIGKILL`.
pub fn r15_lines(total: u64, quota: u64) -> [String; 3] {
    let percent = if quota == 0 {
        0.0
    } else {
        total as f64 * 100.0 / quota as f64
    };
    [
        format!(
            "Process running mem={:.0}MB({percent:.1}%)",
            total as f64 / MIB
        ),
        "Error R15 (Memory quota vastly exceeded)".to_owned(),
        "Stopping process with SIGKILL".to_owned(),
    ]
}

fn mb(bytes: u64) -> String {
    format!("{:.2}MB", bytes as f64 / MIB)
}

/// The `dyno=` value: `heroku.<n>.<uuid>` as Heroku writes it. The uuid is `HEROKU_DYNO_ID`
/// when set; otherwise it and `<n>` are derived from the app and dyno names, so they stay
/// the same across restarts.
pub fn dyno_id(app: &str, dyno: &str, heroku_dyno_id: Option<&str>) -> String {
    let number = fnv1a(app.as_bytes()) % 10_000_000;
    let uuid = match heroku_dyno_id.filter(|id| !id.trim().is_empty()) {
        Some(id) => id.to_owned(),
        None => {
            let a = fnv1a(format!("{app}/{dyno}").as_bytes());
            let b = fnv1a(format!("{dyno}/{app}").as_bytes());
            format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xffff,
                b >> 48,
                b & 0xffff_ffff_ffff
            )
        }
    };
    format!("heroku.{number}.{uuid}")
}

/// FNV-1a: a tiny hash that, unlike std's, is the same in every build.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One log-runtime-metrics line, read back.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeLine {
    /// `source=`, the dyno name.
    pub source: String,
    /// `dyno=`, the dyno id.
    pub dyno: String,
    /// `sample#name=value<unit>` in order: name, number, unit (`MB`, `pages` or empty).
    pub samples: Vec<(String, f64, String)>,
}

/// Parses a log-runtime-metrics line (what a log drain's consumer does).
pub fn parse(line: &str) -> Option<RuntimeLine> {
    let mut words = line.split(' ');
    let source = words.next()?.strip_prefix("source=")?.to_owned();
    let dyno = words.next()?.strip_prefix("dyno=")?.to_owned();
    let mut samples = Vec::new();
    for word in words {
        let (name, value) = word.strip_prefix("sample#")?.split_once('=')?;
        let split = value
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(value.len());
        let number = value[..split].parse().ok()?;
        samples.push((name.to_owned(), number, value[split..].to_owned()));
    }
    Some(RuntimeLine {
        source,
        dyno,
        samples,
    })
}
