//! Wall-clock time as the telemetry carries it: unix seconds (milliseconds for logs).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in whole unix seconds; 0 if the clock is before 1970.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Now, in unix milliseconds (log records' timestamps); 0 if the clock is before 1970.
pub fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
