//! `STATE/up.json`: what a running `up` manages, for `dynoscope-operator status`.

use serde::{Deserialize, Serialize};

/// The formation of a running `up`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpState {
    /// Pid of `up`.
    pub pid: u32,
    /// `up` is stopping every dyno.
    pub stopping: bool,
    /// Every dyno.
    pub dynos: Vec<DynoState>,
}

/// One dyno.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DynoState {
    /// e.g. `web.1`.
    pub name: String,
    /// `up`, `crashed`, `down` or `stopping`.
    pub state: String,
    /// Pid of its sidecar.
    pub pid: Option<u32>,
    /// Restarts after crashes.
    pub restarts: u32,
    /// Its rendered config.
    pub config: String,
    /// Hash of that config.
    pub config_hash: String,
    /// Its sidecar's loopback admin port.
    pub admin_port: u16,
    /// Unix seconds when its running process started; `None` while it is down.
    /// For the console; not written to `up.json` (it would move by a second).
    #[serde(default, skip_serializing)]
    pub started: Option<i64>,
}
