//! Starting the real binaries, signalling them, and reading what they do from `/proc`.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{Resp, Value, json, nodes_in_file, nodes_of, request, wait_until};

/// How long a process may take to print `listening on`.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// A running `dns` or `node`; killed when dropped.
pub struct Proc {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    stderr: Arc<Mutex<String>>,
}

/// What a process printed when it failed to start.
#[derive(Debug)]
pub struct Failed {
    pub status: ExitStatus,
    pub stderr: String,
}

pub fn dns(dir: &Path, args: &[&str]) -> Proc {
    spawn(env!("CARGO_BIN_EXE_dns"), dir, args)
}

pub fn node(dir: &Path, args: &[&str]) -> Proc {
    spawn(env!("CARGO_BIN_EXE_node"), dir, args)
}

/// Starts `bin -d dir -p 0 args…` on 127.0.0.1 unless `args` says otherwise, and waits for
/// its `listening on` line.
/// Linux's "text file busy" error number.
const ETXTBSY: i32 = 26;

pub fn spawn(bin: &str, dir: &Path, args: &[&str]) -> Proc {
    match try_spawn(bin, dir, args) {
        Ok(proc) => proc,
        Err(failed) => panic!("{bin} {args:?} did not start: {failed:?}"),
    }
}

pub fn try_spawn(bin: &str, dir: &Path, args: &[&str]) -> Result<Proc, Failed> {
    let mut full: Vec<String> = vec!["-d".into(), dir.display().to_string()];
    if !args.iter().any(|a| *a == "-p" || a.starts_with("--port")) {
        full.extend(["-p".into(), "0".into()]);
    }
    if !args.iter().any(|a| *a == "-i" || a.starts_with("--ip")) {
        full.extend(["-i".into(), "127.0.0.1".into()]);
    }
    full.extend(args.iter().map(|a| a.to_string()));
    let mut command = Command::new(bin);
    command
        .args(&full)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A script a test has just written can be "busy" (ETXTBSY) for a moment: another test
    // thread's fork inherited the writing descriptor until its exec. Try again then.
    let mut tries = 0;
    let mut child = loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 50 => {
                tries += 1;
                thread::sleep(Duration::from_millis(20));
            }
            spawned => break spawned.expect("spawn binary"),
        }
    };
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err_pipe = child.stderr.take().unwrap();
    let sink = Arc::clone(&stderr);
    let err_reader = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err_pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the process never blocks on a full pipe.
        for _ in lines {}
    });
    match rx.recv_timeout(START_DEADLINE) {
        Ok(line) => {
            let addr = line
                .strip_prefix("listening on ")
                .unwrap_or_else(|| panic!("first line was {line:?}"))
                .parse()
                .expect("listening address");
            let proc = Proc {
                child,
                addr,
                dir: dir.to_path_buf(),
                stderr,
            };
            // The start-up log line comes on stderr just after `listening on` on stdout: wait
            // for it, so that `stderr()` holds all the process logged while starting (unless
            // the flags silence it).
            if !args.iter().any(|a| *a == "-q" || a.starts_with("--log")) {
                wait_until(START_DEADLINE, "the start-up log line", || {
                    proc.stderr().contains(" listening on ")
                });
            }
            Ok(proc)
        }
        Err(_) => {
            let status = wait_exit(&mut child, Duration::from_secs(10));
            // The process is gone, so its stderr ends: take all of it.
            let _ = err_reader.join();
            let stderr = stderr.lock().unwrap().clone();
            Err(Failed { status, stderr })
        }
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().expect("wait");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a binary to completion (for flags that exit at once), returning status, stdout, stderr.
pub fn run_to_exit(bin: &str, args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run binary");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// This process as a node object.
    pub fn node_json(&self) -> Value {
        json!({"ip_address": self.addr.ip().to_string(), "port": self.addr.port()})
    }

    pub fn nodes_file(&self) -> PathBuf {
        self.dir.join("nodes.json")
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the log (stderr) holds `text`, for up to 10 s, and returns the log. The
    /// log is read by a thread of its own, so a line can lag the event it reports (and the
    /// `listening on` line on stdout): never assert on the log without waiting.
    pub fn wait_log(&self, text: &str) -> String {
        let limit = Duration::from_secs(10);
        let started = Instant::now();
        loop {
            let log = self.stderr();
            if log.contains(text) {
                return log;
            }
            if started.elapsed() > limit {
                panic!("no {text:?} in the log within {limit:?}:\n{log}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address of a seed's DNS server (`--seed_listen`), from its `dns seeding on` line.
    pub fn seeding_addr(&self) -> SocketAddr {
        self.wait_log("dns seeding on ")
            .lines()
            .find_map(|line| {
                let rest = line.split("dns seeding on ").nth(1)?;
                rest.split(' ').next()?.parse().ok()
            })
            .expect("the 'dns seeding on' log line")
    }

    /// The value of one sample of its `/metrics` (`name{labels}` as printed), 0 when absent.
    pub fn metric(&self, sample: &str) -> u64 {
        let metrics = self.get("/metrics").body;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }

    pub fn get(&self, path: &str) -> Resp {
        request("GET", self.addr, path, None, &[])
    }

    pub fn post(&self, path: &str, body: &str) -> Resp {
        request("POST", self.addr, path, Some(body), &[])
    }

    pub fn delete(&self, path: &str, body: &str) -> Resp {
        request("DELETE", self.addr, path, Some(body), &[])
    }

    /// `GET /nodes/` as (ip_address, port) pairs.
    pub fn nodes(&self) -> Vec<(String, u16)> {
        let resp = self.get("/nodes/");
        assert_eq!(resp.status, 200, "{}", resp.body);
        nodes_of(&resp.json())
    }

    /// Sends a signal with `kill(1)` and waits for the exit, up to `limit`.
    pub fn signal(&mut self, name: &str, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        self.send_signal(name);
        let status = self.wait_exit(limit);
        (status, started.elapsed())
    }

    /// Sends a signal with `kill(1)`, without waiting for anything.
    pub fn send_signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the process to exit, killing it after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        wait_exit(&mut self.child, limit)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// CPU time (user + system) the process has used, from /proc.
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("read stat");
        // Fields after the command name (which is in parentheses): utime is 14th, stime 15th.
        let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10)
    }

    /// Number of threads of the process, from /proc.
    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .expect("read task dir")
            .count()
    }

    /// The number of threads once the process is idle: after its first update round, whose
    /// check threads come and go, and with no connection open.
    pub fn threads_at_rest(&self) -> usize {
        wait_until(START_DEADLINE, "the first update round is over", || {
            self.stderr().contains("round:")
                && !self.thread_names().iter().any(|n| n == "peer-check")
        });
        self.threads()
    }

    /// The names of the process's threads (`peer-check`, `http-conn`, …), from /proc.
    pub fn thread_names(&self) -> Vec<String> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return Vec::new();
        };
        tasks
            .flatten()
            // A thread may end between the listing and the read: skip it.
            .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
            .map(|name| name.trim_end().to_owned())
            .collect()
    }

    /// Each thread's name and what the kernel says it waits in (`wchan`), from /proc.
    pub fn thread_waits(&self) -> Vec<(String, String)> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return Vec::new();
        };
        let read = |path: PathBuf| std::fs::read_to_string(path).ok();
        tasks
            .flatten()
            .filter_map(|task| {
                let name = read(task.path().join("comm"))?;
                let wchan = read(task.path().join("wchan"))?;
                Some((name.trim_end().to_owned(), wchan.trim_end().to_owned()))
            })
            .collect()
    }

    /// Resident memory of the process in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status")
    }

    /// The nodes file as (ip_address, port) pairs; panics unless it is a JSON array of nodes.
    pub fn nodes_on_disk(&self) -> Vec<(String, u16)> {
        nodes_in_file(&self.nodes_file())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
