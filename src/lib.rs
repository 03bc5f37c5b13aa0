//! seedmesh: peer discovery for a blockchain network. A seed server (`dns`) and nodes
//! (`node`) that find each other over plain HTTP/JSON. The contract is docs/SPEC.md; the map
//! of the code is ARCHITECTURE.md.
//!
//! Data flows one way: `server` turns an HTTP request into a `routes::Request`, `routes`
//! decides the answer against a snapshot of the `store`, and changes are committed to disk by
//! the store's committer thread before they are answered. `update` runs the periodic rounds,
//! reaching peers through a `transport::Transport` (`peers` is the HTTP one).
#![forbid(unsafe_code)]

pub mod address;
pub mod app;
pub mod config;
pub mod daemon;
pub mod dnscache;
pub mod dnscounts;
pub mod dnsnodes;
pub mod dnsseed;
pub mod dnsserver;
pub mod dnszone;
pub mod error;
pub mod feeler;
pub mod flags;
pub mod logging;
pub mod membership;
pub mod nodes;
pub mod peers;
pub mod policy;
pub mod pyjson;
pub mod report;
pub mod resolve;
pub mod response;
pub mod routes;
pub mod server;
pub mod sim;
pub mod stats;
pub mod store;
pub mod table;
pub mod transport;
pub mod update;
pub mod upkeep;

use std::process::ExitCode;

use config::{Command, Kind};

/// The whole of `main` for both binaries: parse flags, run, report the error once.
pub fn main(kind: Kind) -> ExitCode {
    let args = std::env::args_os().skip(1).collect();
    let settings = match config::parse(kind, args) {
        Ok(Command::Run(settings)) => settings,
        Ok(Command::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(kind, &e),
    };
    logging::init(settings.log_level);
    match daemon::run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(kind, &e),
    }
}

fn fail(kind: Kind, e: &error::Error) -> ExitCode {
    eprintln!("{}: error: {e}", kind.name());
    ExitCode::from(e.exit_code())
}
