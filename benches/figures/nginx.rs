//! nginx as the yardstick for figure 1: when it is installed, it serves the exact bytes of our
//! `GET /nodes/` as a static file, from a private prefix (config, pid file, logs, temp dirs)
//! on a free loopback port, for the length of the run.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::load::{Connection, get_request};
use crate::procfs;
use crate::support::TempDir;

/// A running nginx serving from its own directory.
pub struct Nginx {
    // Fields drop in order: the process stops before its directory goes.
    process: Process,
    pub addr: SocketAddr,
    _dir: TempDir,
}

/// An nginx master process, stopped with its workers when dropped.
struct Process(Child);

/// The nginx binary: on `PATH`, or where distributions put it outside a user's `PATH`.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
}

/// `nginx/1.22.1`, from `nginx -v`.
pub fn version(binary: &Path) -> String {
    let out = Command::new(binary).arg("-v").output();
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .and_then(|line| line.rsplit(' ').next().map(str::to_owned))
        .unwrap_or_else(|| "nginx".into())
}

impl Nginx {
    /// The master and its workers.
    pub fn pids(&self) -> Vec<u32> {
        let master = self.process.0.id();
        let mut pids = procfs::children_of(master);
        pids.push(master);
        pids
    }

    /// Starts nginx serving `body` at `/nodes/`. nginx cannot bind port 0, so a port is picked
    /// by binding and releasing it; when someone takes it meanwhile, another one is tried.
    pub fn start(binary: &Path, body: &[u8]) -> Result<Nginx, String> {
        let dir = TempDir::new("nginx");
        fs::write(dir.join("nodes.json"), body).map_err(|e| e.to_string())?;
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port().map_err(|e| format!("no free port: {e}"))?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            fs::write(dir.join("nginx.conf"), config(dir.path(), addr))
                .map_err(|e| e.to_string())?;
            let log = dir.join("error.log");
            let child = Command::new(binary)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
            let mut process = Process(child);
            match process.wait_ready(addr, body) {
                Ok(()) => {
                    return Ok(Nginx {
                        process,
                        addr,
                        _dir: dir,
                    });
                }
                Err(e) => {
                    drop(process);
                    last_error = format!("{e}; {}", fs::read_to_string(&log).unwrap_or_default());
                    if !last_error.contains("in use") {
                        break;
                    }
                }
            }
        }
        Err(format!("nginx did not start: {}", last_error.trim()))
    }
}

impl Process {
    /// Waits until nginx answers `GET /nodes/` with exactly `body`.
    fn wait_ready(&mut self, addr: SocketAddr, body: &[u8]) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Err(format!("exited with {status}"));
            }
            if let Ok(mut connection) = Connection::open(addr) {
                let answer = connection
                    .exchange(&get_request("/nodes/"))
                    .map_err(|e| e.to_string())?;
                if answer.status == 200 && answer.body == body {
                    return Ok(());
                }
                return Err(format!("answered {} with other bytes", answer.status));
            }
            if Instant::now() > deadline {
                return Err("not listening after 5 s".into());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A SIGKILLed master leaves its workers serving: stop it with SIGTERM, and only if
        // that fails kill the master and each of its workers by pid.
        let master = self.0.id();
        let workers = procfs::children_of(master);
        let _ = Command::new("kill")
            .args(["-TERM", &master.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        for pid in workers {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(dir: &Path, addr: SocketAddr) -> String {
    let d = dir.display();
    // Like our server: no access log, TCP_NODELAY, connections kept alive.
    format!(
        "worker_processes auto;
daemon off;
pid {d}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    types {{ application/json json; }}
    server {{
        listen {addr};
        root {d};
        location = /nodes/ {{ try_files /nodes.json =404; }}
    }}
}}
"
    )
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
