//! What `/status` reports, and who reads it.
//!
//! - `board`: [`StatusBoard`], written by the components as things happen;
//!   a snapshot joins it with the counters of [`crate::stats`] into the typed
//!   [`SidecarStatus`] of the API crate (`dynoscope_crds::sidecar_status`),
//!   the one model every reader shares.
//! - [`server`]: the loopback admin endpoint serving it (`GET /status`).
//! - [`render`]: `dynoscope-sidecar status`, the model for people.
//!
//! The one client is `dynoscope_crds::sidecar_status::fetch`, used here, by
//! the operator and by the tests.

mod board;
pub mod render;
pub mod server;

pub use board::StatusBoard;
pub use dynoscope_crds::sidecar_status::{AppState, SidecarStatus};
pub use render::render;
pub use server::AdminState;
