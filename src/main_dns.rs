//! `dns`: the seedmesh seed server.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    seedmesh::main(seedmesh::config::Kind::Dns)
}
