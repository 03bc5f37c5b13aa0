//! `node`: a seedmesh network node.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    seedmesh::main(seedmesh::config::Kind::Node)
}
