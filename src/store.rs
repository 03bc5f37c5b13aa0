//! The known nodes and their file (SPEC §4).
//!
//! One committer thread applies every change (`membership::Rules::apply`). It takes all the
//! changes waiting at once, applies them in order to a copy of the table, writes the nodes to a
//! temporary file, flushes it to disk and renames it over the nodes file (group commit), and
//! only then publishes the new table and calls each change's completion. Readers therefore only
//! ever see what is on disk, a failed write leaves the table as it was, and no worker thread
//! waits on the disk. A batch that only records check results publishes without a write: the
//! file holds the nodes, not their check state.

use std::borrow::Cow;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread;

use crate::error::Error;
use crate::membership::{Change, Committed, Outcome, Rules, Snapshot};
use crate::table::{Source, Table};

/// The lock file that makes a directory belong to one process.
pub const LOCK_FILE: &str = "seedmesh.lock";

/// Most changes written in one disk write.
const MAX_BATCH: usize = 4096;

/// A change could not be made durable; nothing changed, in memory or on disk. Each variant
/// but `Stopped` carries the whole message: the file and the system's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersistError {
    /// No space left on the device, or the quota is used up.
    DiskFull(String),
    /// The process may not write the directory or its files (permissions, read-only mount).
    Denied(String),
    /// Any other I/O error while writing.
    Io(String),
    /// The committer thread has stopped: the process is stopping.
    Stopped,
}

impl PersistError {
    /// Every cause label, in the order `/metrics` lists them.
    pub const CAUSES: [&'static str; 4] = ["disk_full", "denied", "io", "stopped"];

    /// The position of this cause in `CAUSES`.
    pub fn cause_index(&self) -> usize {
        match self {
            PersistError::DiskFull(_) => 0,
            PersistError::Denied(_) => 1,
            PersistError::Io(_) => 2,
            PersistError::Stopped => 3,
        }
    }

    /// Classifies a failed write of `path`.
    fn of(path: &Path, e: &io::Error) -> PersistError {
        let message = format!("could not save {}: {e}", path.display());
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                PersistError::DiskFull(message)
            }
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                PersistError::Denied(message)
            }
            _ => PersistError::Io(message),
        }
    }
}

impl fmt::Display for PersistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PersistError::DiskFull(message)
            | PersistError::Denied(message)
            | PersistError::Io(message) => f.write_str(message),
            PersistError::Stopped => f.write_str("the process is stopping"),
        }
    }
}

impl std::error::Error for PersistError {}

/// What the committer has done since start. Counters only grow.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Writes of the nodes file that reached the disk.
    pub writes: AtomicU64,
    /// Writes that failed, by `PersistError::CAUSES`; the changes in them were refused.
    pub write_failures: [AtomicU64; PersistError::CAUSES.len()],
    /// Changes applied and committed (each answered 200 by the API).
    pub changes: AtomicU64,
}

/// Called by the committer thread once a change is on disk (or failed to get there).
pub type Completion = Box<dyn FnOnce(Result<Committed, PersistError>) + Send>;

struct Job {
    change: Change,
    done: Completion,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The state directory, created with its parents when missing.
    pub dir: PathBuf,
    /// The nodes file's name inside `dir`.
    pub file_name: String,
    /// What changes may do: the cap, own identities, the local-address rule. Also applied to
    /// the entries of the file at start.
    pub rules: Rules,
}

/// The known nodes of this process: read with `snapshot`, changed with `submit` or `apply`.
pub struct Store {
    current: Arc<Mutex<Arc<Snapshot>>>,
    stats: Arc<StoreStats>,
    jobs: mpsc::Sender<Job>,
    path: PathBuf,
    /// Held open for the life of the process: the OS lock on the directory.
    _lock: File,
}

impl Store {
    /// Creates the directory if needed, takes its lock, loads the nodes file and starts the
    /// committer thread. Returns the warnings about skipped file entries.
    pub fn open(options: StoreOptions) -> Result<(Store, Vec<String>), Error> {
        let StoreOptions {
            dir,
            file_name,
            rules,
        } = options;
        fs::create_dir_all(&dir).map_err(|source| Error::Dir {
            path: dir.clone(),
            source,
        })?;
        let lock = lock_directory(&dir)?;
        let path = dir.join(&file_name);
        let (table, warnings) = load(&path, &rules)?;

        let current = Arc::new(Mutex::new(Arc::new(Snapshot::new(table))));
        let stats = Arc::new(StoreStats::default());
        let (jobs, queue) = mpsc::channel();
        let committer = Committer {
            current: Arc::clone(&current),
            stats: Arc::clone(&stats),
            path: path.clone(),
            temp: dir.join(format!("{file_name}.tmp")),
            dir,
            rules,
            rng: Mutex::new(fastrand::Rng::new()),
        };
        thread::Builder::new()
            .name("committer".into())
            .spawn(move || committer.run(&queue))
            .map_err(|source| Error::Start {
                what: "the committer thread",
                source,
            })?;
        let store = Store {
            current,
            stats,
            jobs,
            path,
            _lock: lock,
        };
        Ok((store, warnings))
    }

    /// The nodes file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the committer has done since start.
    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// The committed list. Cheap: the lock is held only to clone an `Arc`.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Queues a change; `done` runs on the committer thread once it is on disk or failed.
    pub fn submit(&self, change: Change, done: Completion) {
        if let Err(mpsc::SendError(job)) = self.jobs.send(Job { change, done }) {
            // The committer is gone (it only stops when the store is dropped).
            (job.done)(Err(PersistError::Stopped));
        }
    }

    /// Applies a change and waits until it is on disk.
    pub fn apply(&self, change: Change) -> Result<Committed, PersistError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(
            change,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        );
        rx.recv().unwrap_or(Err(PersistError::Stopped))
    }

    /// Returns once every change submitted before the call is committed (or failed).
    pub fn flush(&self) {
        let _ = self.apply(Change::Forget(Vec::new()));
    }
}

/// Takes the OS lock on `dir`'s lock file, and writes our pid into it for whoever comes next.
fn lock_directory(dir: &Path) -> Result<File, Error> {
    let path = dir.join(LOCK_FILE);
    let dir_error = |source| Error::Dir {
        path: dir.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(dir_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => format!("lock held on {}", path.display()),
                pid => format!("pid {pid}, lock held on {}", path.display()),
            };
            return Err(Error::Locked {
                path: dir.to_path_buf(),
                holder,
            });
        }
        Err(TryLockError::Error(source)) => return Err(dir_error(source)),
    }
    // Only informative: a failure to record the pid does not matter.
    let _ = file
        .set_len(0)
        .and_then(|_| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

/// Loads the nodes file into a table: a missing file is an empty table; entries that are
/// not valid nodes, are this process, are refused by the local-address rule, or are
/// duplicates are skipped with a warning each; anything but a JSON array (as Python's `json`
/// writes it, see `pyjson`) is an error, and the file is not touched. Loaded entries wait for
/// this process's first check before it vouches for them.
pub fn load(path: &Path, rules: &Rules) -> Result<(Table, Vec<String>), Error> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Table::new(), Vec::new())),
        Err(source) => {
            return Err(Error::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let list = crate::pyjson::read_node_list(&text).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut table = Table::new();
    let file = path.display();
    let mut warnings: Vec<String> = list
        .reasons
        .iter()
        .map(|skipped| format!("{file}: skipping {skipped}"))
        .collect();
    if list.skipped > list.reasons.len() {
        warnings.push(format!(
            "{file}: skipping {} more invalid entries",
            list.skipped - list.reasons.len()
        ));
    }
    let mut rng = fastrand::Rng::new();
    let max_nodes = rules.max_nodes;
    for (node, i) in list.nodes.into_iter().zip(list.positions) {
        let skip = |why: &dyn fmt::Display| format!("{file}: skipping entry {i} {node}: {why}");
        if rules.own.contains(&node) {
            warnings.push(skip(&"it is this process"));
        } else if let Err(refusal) = rules.local.check_node(&node) {
            warnings.push(skip(&refusal));
        } else if table.contains(&node) {
            warnings.push(skip(&"a duplicate"));
        } else if table.len() >= max_nodes {
            warnings.push(format!(
                "{file}: skipping entries from {i} on: --max_nodes is {max_nodes}"
            ));
            break;
        } else {
            table.admit(node, Source::File, max_nodes, &mut rng);
        }
    }
    Ok((table, warnings))
}

/// The committer thread's state.
struct Committer {
    current: Arc<Mutex<Arc<Snapshot>>>,
    stats: Arc<StoreStats>,
    path: PathBuf,
    temp: PathBuf,
    dir: PathBuf,
    rules: Rules,
    /// Breaks eviction ties; only the committer thread uses it.
    rng: Mutex<fastrand::Rng>,
}

impl Committer {
    /// Runs until every `Store` handle is gone.
    fn run(self, queue: &mpsc::Receiver<Job>) {
        while let Ok(first) = queue.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit(batch);
        }
    }

    /// Applies a batch in order, writes the result once, then completes every job.
    fn commit(&self, batch: Vec<Job>) {
        let base = Arc::clone(&self.current.lock().unwrap_or_else(PoisonError::into_inner));
        let mut table = Cow::Borrowed(&base.table);
        let outcomes: Vec<Outcome> = {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            batch
                .iter()
                .map(|job| self.rules.apply(&mut table, &job.change, &mut rng))
                .collect()
        };
        let writes = outcomes.iter().any(Outcome::changed);
        let result = match table {
            Cow::Borrowed(_) => Ok(Arc::clone(&base)),
            Cow::Owned(table) => {
                let snapshot = Snapshot::new(table);
                let written = if writes {
                    self.write(snapshot.file_json())
                } else {
                    Ok(())
                };
                match written {
                    Ok(()) => {
                        if writes {
                            self.stats.writes.fetch_add(1, Ordering::Relaxed);
                        }
                        let snapshot = Arc::new(snapshot);
                        *self.current.lock().unwrap_or_else(PoisonError::into_inner) =
                            Arc::clone(&snapshot);
                        Ok(snapshot)
                    }
                    Err(e) => {
                        let error = PersistError::of(&self.path, &e);
                        self.stats.write_failures[error.cause_index()]
                            .fetch_add(1, Ordering::Relaxed);
                        log::error!("{error}; the list is unchanged");
                        Err(error)
                    }
                }
            }
        };
        if result.is_ok() {
            let changed = outcomes.iter().filter(|o| o.changed()).count();
            self.stats
                .changes
                .fetch_add(changed as u64, Ordering::Relaxed);
        }
        for (job, outcome) in batch.into_iter().zip(outcomes) {
            let committed = result
                .clone()
                .map(|snapshot| Committed { outcome, snapshot });
            // A completion that panics must not take the committer down with it.
            let _ = panic::catch_unwind(AssertUnwindSafe(|| (job.done)(committed)));
        }
    }

    /// Writes `json` as the nodes file: temporary file, flushed to disk, renamed over the
    /// file, then the directory flushed so the rename itself is durable. A write that fails
    /// before the rename removes its temporary file (a full disk leaves no empty file behind).
    fn write(&self, json: &[u8]) -> io::Result<()> {
        let replaced = self
            .write_temp(json)
            .and_then(|()| fs::rename(&self.temp, &self.path));
        if replaced.is_err() {
            let _ = fs::remove_file(&self.temp);
        }
        replaced?;
        File::open(&self.dir)?.sync_all()
    }

    fn write_temp(&self, json: &[u8]) -> io::Result<()> {
        let mut file = File::create(&self.temp)?;
        file.write_all(json)?;
        file.write_all(b"\n")?;
        file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Identity;
    use crate::nodes::Node;
    use crate::policy::LocalRule;

    fn n(port: u16) -> Node {
        Node::new("127.0.0.1", port).unwrap()
    }

    fn rules(max_nodes: usize, own: Vec<Node>) -> Rules {
        Rules {
            max_nodes,
            own: Identity::of(own),
            local: LocalRule {
                allow_local: true,
                public_only: false,
            },
            max_referred: 8,
        }
    }

    fn nodes(table: &Table) -> Vec<Node> {
        table.iter().map(|e| e.node().clone()).collect()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("seedmesh-store-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn open(dir: &Path, max_nodes: usize) -> Store {
        let options = StoreOptions {
            dir: dir.to_path_buf(),
            file_name: "nodes.json".into(),
            rules: rules(max_nodes, vec![n(1)]),
        };
        Store::open(options).unwrap().0
    }

    #[test]
    fn changes_are_on_disk_when_acknowledged_and_survive_reopening() {
        let dir = temp_dir("reopen");
        let store = open(&dir, 10);
        assert_eq!(
            store.apply(Change::Register(n(5))).unwrap().outcome,
            Outcome::Added { evicted: None }
        );
        assert_eq!(
            store.apply(Change::Register(n(5))).unwrap().outcome,
            Outcome::AlreadyKnown
        );
        assert_eq!(
            store.apply(Change::Add(n(1))).unwrap().outcome,
            Outcome::IsSelf
        );
        assert_eq!(
            store.apply(Change::Add(n(6))).unwrap().outcome,
            Outcome::Added { evicted: None }
        );
        assert_eq!(
            store.apply(Change::Remove(n(9))).unwrap().outcome,
            Outcome::NotKnown
        );
        let on_disk = fs::read_to_string(dir.join("nodes.json")).unwrap();
        assert_eq!(
            on_disk,
            "[{\"ip_address\":\"127.0.0.1\",\"port\":5},{\"ip_address\":\"127.0.0.1\",\"port\":6}]\n"
        );
        drop(store);
        let (table, warnings) = load(&dir.join("nodes.json"), &rules(10, vec![])).unwrap();
        assert_eq!(nodes(&table), &[n(5), n(6)]);
        assert!(warnings.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_table_evicts_learned_nodes_stop_at_the_cap_and_checks_are_not_written() {
        let dir = temp_dir("full");
        let store = open(&dir, 3);
        let learned = store
            .apply(Change::Learn(vec![n(1), n(2), n(2), n(3)]))
            .unwrap();
        assert_eq!(
            learned.outcome,
            Outcome::Learned {
                added: 2,
                evicted: 0,
                refused: 0
            },
            "own node and duplicate skipped"
        );
        assert_eq!(
            store.apply(Change::Add(n(4))).unwrap().outcome,
            Outcome::Added { evicted: None }
        );
        // One address group (127.0/16) holds them all: a newcomer of it is refused.
        assert_eq!(
            store.apply(Change::Add(n(7))).unwrap().outcome,
            Outcome::Full
        );
        let writes = store.stats().writes.load(Ordering::Relaxed);
        let at = std::time::Instant::now();
        let checked = store
            .apply(Change::Checked {
                results: vec![(n(2), true)],
                at,
            })
            .unwrap();
        assert_eq!(checked.outcome, Outcome::Recorded);
        assert_eq!(
            checked.snapshot.known(),
            &[n(2), n(4)],
            "2 is now vouched for"
        );
        assert_eq!(
            store.stats().writes.load(Ordering::Relaxed),
            writes,
            "check state is not written"
        );
        let forgot = store.apply(Change::Forget(vec![n(2), n(9)])).unwrap();
        assert_eq!(forgot.outcome, Outcome::Forgot(1));
        assert_eq!(nodes(&forgot.snapshot.table), &[n(3), n(4)]);
        store.apply(Change::Add(n(5))).unwrap();
        let newcomer = Node::new("127.8.0.1", 1).unwrap();
        let admitted = store.apply(Change::Register(newcomer.clone())).unwrap();
        assert!(
            matches!(admitted.outcome, Outcome::Added { evicted: Some(_) }),
            "{:?}",
            admitted.outcome
        );
        assert!(admitted.snapshot.table.contains(&newcomer));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = temp_dir("fail");
        let store = open(&dir, 10);
        store.apply(Change::Add(n(5))).unwrap();
        // A directory where the temporary file should go makes the write fail.
        fs::create_dir(dir.join("nodes.json.tmp")).unwrap();
        let err = store.apply(Change::Add(n(6))).unwrap_err();
        assert!(err.to_string().contains("could not save"), "{err}");
        assert_eq!(nodes(&store.snapshot().table), &[n(5)]);
        fs::remove_dir(dir.join("nodes.json.tmp")).unwrap();
        assert_eq!(
            store.apply(Change::Add(n(6))).unwrap().outcome,
            Outcome::Added { evicted: None }
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_write_that_fails_leaves_no_temporary_file() {
        let dir = temp_dir("leftover");
        let store = open(&dir, 10);
        // A directory where the file should be: the rename over it fails.
        let _ = fs::remove_file(dir.join("nodes.json"));
        fs::create_dir(dir.join("nodes.json")).unwrap();
        assert!(store.apply(Change::Add(n(6))).is_err());
        assert!(!dir.join("nodes.json.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loading_skips_bad_entries_and_refuses_non_arrays() {
        let dir = temp_dir("load");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nodes.json");
        fs::write(
            &path,
            r#"[{"ip_address": "127.0.0.1", "port": 55000}, {"ip_address": "x y", "port": 1},
               {"ip_address": "127.0.0.1", "port": 55000}, 7, {"ip_address": "::1", "port": 2}]"#,
        )
        .unwrap();
        let (table, warnings) = load(&path, &rules(10, vec![])).unwrap();
        assert_eq!(nodes(&table), &[n(55000), Node::new("::1", 2).unwrap()]);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("entry 1"), "{warnings:?}");

        for bad in [&b"{}"[..], b"[{", b"", b"null"] {
            fs::write(&path, bad).unwrap();
            let err = load(&path, &rules(10, vec![])).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains("nodes.json"), "{err}");
            assert_eq!(fs::read(&path).unwrap(), bad, "left untouched");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() {
        let dir = temp_dir("lock");
        let first = open(&dir, 10);
        let options = StoreOptions {
            dir: dir.clone(),
            file_name: "nodes.json".into(),
            rules: rules(10, vec![]),
        };
        let err = Store::open(options.clone()).err().unwrap();
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(
            Store::open(options).is_ok(),
            "the lock goes with its holder"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
