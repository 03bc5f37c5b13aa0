//! Test support: run the real `dns` and `node` binaries on loopback, each in its own
//! temporary directory, and talk to them over HTTP. Conditions are awaited with deadlines.
//!
//! - `process`: starting, signalling and inspecting the binaries (`Proc`);
//! - `http`: requests and raw exchanges on the wire;
//! - `lists`: node lists as answers and files hold them;
//! - `peers`: stand-ins for other processes (black holes, refused ports, fake peers);
//! - `netns`: a network namespace of the test's own, for real remote callers.
// Each test binary uses a part of this support.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub use http::*;
pub use lists::*;
pub use netns::*;
pub use peers::*;
pub use process::*;
pub use serde_json::{Value, json};

mod http;
mod lists;
mod netns;
mod peers;
mod process;

/// Flags for a `dns` whose list holds made-up addresses, refused when checked: its sweep (one
/// at start, then hourly) never removes them, when the sweep is not what a test is about.
pub const NO_SWEEP: [&str; 4] = ["-u", "3600", "--fail_limit", "1000000"];

/// `NO_SWEEP`, and every node in one `GET /nodes/` answer.
pub const NO_SWEEP_WHOLE_LIST: [&str; 6] = [
    "-u",
    "3600",
    "--fail_limit",
    "1000000",
    "--list_limit",
    "100000",
];

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("seedmesh-test-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until `check` is true, panicking with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if check() {
            return started.elapsed();
        }
        if started.elapsed() > limit {
            panic!("timed out after {limit:?} waiting until {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}
