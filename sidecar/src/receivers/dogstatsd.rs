//! The DogStatsD receiver: datagrams → lines → messages → the aggregator.
//!
//! - [`parser`]: the line grammar (metrics, events, service checks).
//! - [`mapper`]: the config's name mappings (regex → name and tags).
//! - [`aggregate`]: 10 s buckets with DogStatsD semantics, as the Datadog Agent aggregates.
//! - [`server`]: the UDP (and unix) sockets; parses, maps, aggregates, flushes to the pipeline.

pub mod aggregate;
pub mod mapper;
pub mod parser;
pub mod server;
