//! seedmesh: peer discovery for a blockchain network.
#![forbid(unsafe_code)]

pub mod error;
pub mod nodes;
pub mod peers;
pub mod routes;
pub mod server;
pub mod stats;
pub mod store;
pub mod update;
