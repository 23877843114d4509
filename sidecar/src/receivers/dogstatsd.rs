//! The DogStatsD receiver: datagrams → lines → messages → the aggregator.
//!
//! - [`parser`]: the line grammar (metrics, events, service checks).
//! - [`mapper`]: the config's name mappings (regex → name and tags).

pub mod mapper;
pub mod parser;
pub mod server;
