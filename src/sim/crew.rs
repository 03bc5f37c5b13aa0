//! Worker threads kept for a whole round (`with_crew`), each taking the next item of the
//! job at hand, the calling thread among them.
//!
//! Why not a thread per job: a round has one or two jobs per slice, 60 slices or more, and a
//! new thread per job had each start with an empty allocator cache and an arena of its own,
//! freeing what others allocated: a third of the time went to the allocator. The crew's
//! threads live as long as the round.
//!
//! Which thread runs which item changes nothing but the time: a job's items must not depend
//! on one another's order (see `slice`).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

/// Work made of `len()` independent items.
pub(crate) trait Job: Send + Sync {
    /// How many items.
    fn len(&self) -> usize;
    /// Does item `k` (`k < len()`), on whichever thread takes it.
    fn work(&self, k: usize);
}

/// The threads of `with_crew`: `run` a job on all of them.
pub(crate) struct Crew<'b, 'env> {
    board: &'b Board<'env>,
    /// Threads besides the caller's.
    helpers: usize,
}

/// What the crew's threads wait on.
struct Board<'env> {
    state: Mutex<State<'env>>,
    /// Wakes the helpers: a new job, or the end.
    wake: Condvar,
    /// Wakes the caller: the last helper let go of the job.
    idle: Condvar,
    /// The next item of the current job to take.
    next: AtomicUsize,
}

struct State<'env> {
    job: Option<Arc<dyn Job + 'env>>,
    /// Counts the jobs handed out, so that a helper takes each at most once.
    generation: u64,
    /// Helpers holding the current job.
    busy: usize,
    closing: bool,
    /// A helper panicked in a job.
    panicked: bool,
}

fn lock<'a, 'env>(board: &'a Board<'env>) -> MutexGuard<'a, State<'env>> {
    board.state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` with a crew of `threads` threads (this one and `threads - 1` helpers), which
/// end when `f` returns or panics.
pub(crate) fn with_crew<'env, R>(
    threads: usize,
    f: impl for<'b> FnOnce(&Crew<'b, 'env>) -> R,
) -> R {
    let board = Board {
        state: Mutex::new(State {
            job: None,
            generation: 0,
            busy: 0,
            closing: false,
            panicked: false,
        }),
        wake: Condvar::new(),
        idle: Condvar::new(),
        next: AtomicUsize::new(0),
    };
    thread::scope(|scope| {
        let helpers = threads.max(1) - 1;
        for _ in 0..helpers {
            scope.spawn(|| help(&board));
        }
        // Ends the helpers however `f` ends, so that the scope can join them.
        let _close = Close(&board);
        f(&Crew {
            board: &board,
            helpers,
        })
    })
}

impl<'env> Crew<'_, 'env> {
    /// Runs every item of `job`, on every thread of the crew, and returns when all are
    /// done and no helper holds the job any more.
    pub(crate) fn run(&self, job: Arc<dyn Job + 'env>) {
        let n = job.len();
        if self.helpers == 0 || n <= 1 {
            (0..n).for_each(|k| job.work(k));
            return;
        }
        let board = self.board;
        board.next.store(0, Relaxed);
        {
            let mut state = lock(board);
            state.job = Some(Arc::clone(&job));
            state.generation += 1;
        }
        board.wake.notify_all();
        drain(&*job, &board.next);
        let mut state = lock(board);
        // A helper that wakes from now on finds no job.
        state.job = None;
        while state.busy > 0 {
            state = board
                .idle
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.panicked {
            drop(state);
            panic!("a simulator thread panicked (its message is above)");
        }
    }
}

/// Takes items of `job` until none is left.
fn drain(job: &dyn Job, next: &AtomicUsize) {
    let n = job.len();
    loop {
        let k = next.fetch_add(1, Relaxed);
        if k >= n {
            break;
        }
        job.work(k);
    }
}

/// A helper: takes each job handed out, until the crew closes.
fn help(board: &Board<'_>) {
    let mut seen = 0;
    loop {
        let job = {
            let mut state = lock(board);
            loop {
                if state.closing {
                    return;
                }
                if state.generation != seen {
                    seen = state.generation;
                    if let Some(job) = state.job.clone() {
                        state.busy += 1;
                        break job;
                    }
                }
                state = board
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let done = Done(board);
        drain(&*job, &board.next);
        drop(job);
        drop(done);
    }
}

/// A helper let go of the job (or panicked in it).
struct Done<'b, 'env>(&'b Board<'env>);

impl Drop for Done<'_, '_> {
    fn drop(&mut self) {
        let mut state = lock(self.0);
        if thread::panicking() {
            state.panicked = true;
            // The others still take every item; the caller panics when they are done.
        }
        state.busy -= 1;
        if state.busy == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// Closes the crew.
struct Close<'b, 'env>(&'b Board<'env>);

impl Drop for Close<'_, '_> {
    fn drop(&mut self) {
        lock(self.0).closing = true;
        self.0.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    struct Sum {
        items: usize,
        total: AtomicU64,
        seen: Vec<AtomicUsize>,
    }

    impl Job for Sum {
        fn len(&self) -> usize {
            self.items
        }

        fn work(&self, k: usize) {
            self.total.fetch_add(k as u64, Relaxed);
            self.seen[k].fetch_add(1, Relaxed);
        }
    }

    #[test]
    fn every_item_of_every_job_runs_once_on_any_number_of_threads() {
        for threads in [1, 2, 3, 8] {
            with_crew(threads, |crew| {
                for items in [0, 1, 2, 5, 100, 1000] {
                    let job = Arc::new(Sum {
                        items,
                        total: AtomicU64::new(0),
                        seen: (0..items).map(|_| AtomicUsize::new(0)).collect(),
                    });
                    crew.run(job.clone());
                    let job = Arc::try_unwrap(job).unwrap_or_else(|_| panic!("still held"));
                    let n = items as u64;
                    assert_eq!(job.total.into_inner(), n * n.saturating_sub(1) / 2);
                    assert!(job.seen.iter().all(|s| s.load(Relaxed) == 1));
                }
            });
        }
    }

    struct Fails;

    impl Job for Fails {
        fn len(&self) -> usize {
            64
        }

        fn work(&self, k: usize) {
            assert_ne!(k, 40, "item 40 fails");
        }
    }

    #[test]
    fn a_panic_in_a_job_ends_the_crew_and_reaches_the_caller() {
        let result = std::panic::catch_unwind(|| {
            with_crew(2, |crew| {
                crew.run(Arc::new(Fails));
            })
        });
        assert!(result.is_err());
    }
}
