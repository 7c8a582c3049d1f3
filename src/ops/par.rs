//! Work splitting over rows on a small persistent thread pool.
//!
//! An op cuts its rows into at most [`threads`] contiguous chunks ([`chunk_rows`]), zips the chunks
//! of every buffer it writes, and hands the zipped items to [`run`], which runs the first item on
//! the calling thread (so ops that split rows alike give a core the same rows, still in its cache)
//! and the rest on the pool's workers. Small work (under [`MIN_PAR_FLOPS`]) stays on one thread.
//! Results come back in chunk order, so reductions over chunks are deterministic for a given
//! thread count.

use std::sync::OnceLock;

/// Below this many flops an op runs on the calling thread: spawning costs more than it saves.
pub const MIN_PAR_FLOPS: usize = 32 * 1024;

/// Worker threads to use: `std::thread::available_parallelism()`, read once.
pub fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|t| t.get())
            .unwrap_or(1)
            .max(1)
    })
}

/// Rows per chunk for `n` rows costing `flops_per_row` each: all n (one chunk) when the work is
/// small, else ⌈n / threads⌉ (at least 1).
pub fn chunk_rows(n: usize, flops_per_row: usize) -> usize {
    let t = threads();
    if t <= 1 || n <= 1 || n.saturating_mul(flops_per_row) < MIN_PAR_FLOPS {
        return n.max(1);
    }
    n.div_ceil(t.min(n)).max(1)
}

/// Like [`chunk_rows`], but the chunk is rounded up to a multiple of `align` (e.g. 4 so a dropout
/// chunk starts on a Philox counter boundary).
pub fn chunk_rows_aligned(n: usize, flops_per_row: usize, align: usize) -> usize {
    let c = chunk_rows(n, flops_per_row);
    let a = align.max(1);
    c.div_ceil(a) * a
}

/// Runs `f` on every item, on the calling thread and the pool's workers; returns the results in
/// item order. A panic in a worker is re-raised on the caller.
///
/// The workers are started once and wait between calls, spinning for a moment (after 20 µs,
/// yielding the core at every turn to any other ready thread, such as the era loader) and then
/// asleep (spawning threads for every op cost more system time than the ops themselves on small
/// eras; a futex wake-up for every op cost more than a short spin). When the pool is busy — another thread is
/// running ops at the same time, or `run` is called from inside a task — the items run on scoped
/// threads instead, so `run` never waits on itself.
pub fn run<I, T, F>(items: I, f: F) -> Vec<T>
where
    I: IntoIterator,
    I::Item: Send,
    T: Send,
    F: Fn(I::Item) -> T + Sync,
{
    let items: Vec<I::Item> = items.into_iter().collect();
    if items.len() <= 1 {
        return items.into_iter().map(&f).collect();
    }
    count_parallel_dispatch();
    match pool::Pool::get().and_then(|p| p.try_lock()) {
        Some(guard) => pool::run_on(guard, items, &f),
        None => run_scoped(items, &f),
    }
}

fn run_scoped<X: Send, T: Send>(mut items: Vec<X>, f: &(dyn Fn(X) -> T + Sync)) -> Vec<T> {
    let first = items.remove(0);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .into_iter()
            .map(|item| scope.spawn(move || f(item)))
            .collect();
        let mut out = Vec::with_capacity(handles.len() + 1);
        out.push(f(first));
        for h in handles {
            match h.join() {
                Ok(v) => out.push(v),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
        out
    })
}

mod pool {
    //! A fixed set of worker threads fed one job at a time.
    use std::any::Any;
    use std::cell::Cell;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};
    use std::time::{Duration, Instant};

    /// A type-erased task: run item `i`. Lives on the caller's stack for the duration of a job.
    type Task = dyn Fn(usize) + Sync;

    struct Job {
        /// Points at the caller's task; valid until `remaining` reaches 0 (the caller waits).
        task: *const Task,
        total: usize,
        next: AtomicUsize,
        remaining: AtomicUsize,
        panic: Mutex<Option<Box<dyn Any + Send>>>,
    }

    // SAFETY: `task` points to a `Sync` closure that outlives every use (see `run_on`).
    unsafe impl Send for Job {}
    unsafe impl Sync for Job {}

    impl Job {
        /// Takes and runs items until none is left; true if this call finished the last one.
        fn work(&self) -> bool {
            let mut finished_last = false;
            loop {
                let i = self.next.fetch_add(1, Ordering::AcqRel);
                if i >= self.total {
                    return finished_last;
                }
                finished_last = self.run_item(i);
            }
        }

        /// Runs item `i` (taken from `next`, or item 0, which only the caller runs); true if it
        /// was the last one to finish.
        fn run_item(&self, i: usize) -> bool {
            // SAFETY: i < total and item i has not run (it came from `next`, or it is item 0,
            // which `next` skips and the caller runs), so `remaining` stays > 0 until the
            // decrement below and the caller, which owns the task, is still waiting (or is this
            // thread).
            let task = unsafe { &*self.task };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| task(i))) {
                if let Ok(mut slot) = self.panic.lock() {
                    slot.get_or_insert(p);
                }
            }
            self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
        }
    }

    struct Shared {
        /// (generation, current job)
        slot: Mutex<(u64, Option<Arc<Job>>)>,
        wake: Condvar,
        /// The generation of `slot`, readable without the lock by spinning workers.
        generation: AtomicU64,
        /// Workers asleep on `wake` (changed only under `slot`'s lock).
        sleepers: AtomicUsize,
        done: Mutex<()>,
        done_cv: Condvar,
        /// The caller is asleep on `done_cv` (changed only under `done`'s lock).
        caller_asleep: AtomicBool,
    }

    /// How long a worker (after its last job) or the caller (waiting for the workers) spins
    /// before it sleeps. A training step's ops come back to back, a few to a few hundred
    /// microseconds apart: a sleeping thread costs a futex wake-up per op (tens of microseconds
    /// on a VM), a spinning one costs only the core it already had.
    const SPIN: Duration = Duration::from_micros(200);

    /// A spinning thread yields its core at every turn ([`spin_turn`]) once it has waited this
    /// long: the gaps between a small era's ops are a few microseconds, too short to pay a
    /// system call per turn.
    const YIELD_AFTER: Duration = Duration::from_micros(20);

    /// One turn of a spin: a few pause instructions, then, when `offer`, the core is offered to
    /// any other thread ready to run on it (`sched_yield`: back at once when there is none).
    /// `train`'s era loader shares the cores with the step; without the yield it ran only by
    /// preempting a thread that the other was about to wait for. `train --epochs 4 --refit off`,
    /// alternated pairs: 16 eras × 2,376 features 0.94× the time (8 of 8 faster; 0.86× yielding
    /// from the first turn, the same as this within noise in 8 pairs against it), 30 × 705
    /// 0.95–0.97×, the built-in data (1,000-row eras) 1.01–1.02× (noise ±8%); `bench` (no loader)
    /// the same within 1%, alternated in one process.
    #[inline]
    fn spin_turn(offer: bool) {
        for _ in 0..64 {
            std::hint::spin_loop();
        }
        if offer {
            std::thread::yield_now();
        }
    }

    pub struct Pool {
        shared: Arc<Shared>,
        busy: Mutex<()>,
    }

    thread_local! {
        static IN_TASK: Cell<bool> = const { Cell::new(false) };
    }

    impl Pool {
        /// The process-wide pool (None on a single core).
        pub fn get() -> Option<&'static Pool> {
            static POOL: OnceLock<Option<Pool>> = OnceLock::new();
            POOL.get_or_init(|| {
                let workers = super::threads().saturating_sub(1);
                if workers == 0 {
                    return None;
                }
                let shared = Arc::new(Shared {
                    slot: Mutex::new((0, None)),
                    wake: Condvar::new(),
                    generation: AtomicU64::new(0),
                    sleepers: AtomicUsize::new(0),
                    done: Mutex::new(()),
                    done_cv: Condvar::new(),
                    caller_asleep: AtomicBool::new(false),
                });
                for w in 0..workers {
                    let sh = shared.clone();
                    let spawned = std::thread::Builder::new()
                        .name(format!("eraengine-worker-{w}"))
                        .spawn(move || worker(sh));
                    if spawned.is_err() {
                        return None;
                    }
                }
                Some(Pool {
                    shared,
                    busy: Mutex::new(()),
                })
            })
            .as_ref()
        }

        /// Exclusive use of the pool, or None if it is busy or we are inside one of its tasks.
        pub fn try_lock(&'static self) -> Option<(&'static Pool, MutexGuard<'static, ()>)> {
            if IN_TASK.with(|t| t.get()) {
                return None;
            }
            match self.busy.try_lock() {
                Ok(g) => Some((self, g)),
                // poisoned by a panicking item re-raised through `run_on`: the lock guards no
                // data, so the pool is as usable as before
                Err(TryLockError::Poisoned(p)) => Some((self, p.into_inner())),
                Err(TryLockError::WouldBlock) => None,
            }
        }
    }

    fn worker(sh: Arc<Shared>) {
        IN_TASK.with(|t| t.set(true));
        let mut seen = 0u64;
        loop {
            // spin a while for the next job before sleeping
            let t0 = Instant::now();
            while sh.generation.load(Ordering::Acquire) == seen {
                let waited = t0.elapsed();
                if waited >= SPIN {
                    break;
                }
                spin_turn(waited >= YIELD_AFTER);
            }
            let job = {
                // a poisoned lock only means another thread panicked holding it; the data
                // (a counter and a job handle) is still consistent, so recover it
                let mut slot = sh.slot.lock().unwrap_or_else(PoisonError::into_inner);
                if slot.0 == seen {
                    // counted under the lock the caller holds when it publishes a job, so
                    // either it sees this sleeper or this loop sees its job
                    sh.sleepers.fetch_add(1, Ordering::AcqRel);
                    while slot.0 == seen {
                        slot = sh.wake.wait(slot).unwrap_or_else(PoisonError::into_inner);
                    }
                    sh.sleepers.fetch_sub(1, Ordering::AcqRel);
                }
                seen = slot.0;
                slot.1.clone()
            };
            if let Some(job) = job {
                if job.work() {
                    // Under the lock, so the caller cannot go to sleep between this check and
                    // the notification.
                    let _g = sh.done.lock().unwrap_or_else(PoisonError::into_inner);
                    if sh.caller_asleep.load(Ordering::Acquire) {
                        sh.done_cv.notify_all();
                    }
                }
            }
        }
    }

    /// Runs `f` over `items` with the pool held by `guard`.
    pub fn run_on<X: Send, T: Send>(
        guard: (&'static Pool, MutexGuard<'static, ()>),
        items: Vec<X>,
        f: &(dyn Fn(X) -> T + Sync),
    ) -> Vec<T> {
        let (pool, _busy) = guard;
        let n = items.len();
        let inputs: Vec<Mutex<Option<X>>> =
            items.into_iter().map(|x| Mutex::new(Some(x))).collect();
        let outputs: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
        let task = |i: usize| {
            let item = inputs[i].lock().ok().and_then(|mut x| x.take());
            if let Some(item) = item {
                let r = f(item);
                if let Ok(mut o) = outputs[i].lock() {
                    *o = Some(r);
                }
            }
        };
        let task_ref: &(dyn Fn(usize) + Sync + '_) = &task;
        // SAFETY: the pointer is only dereferenced for items < n, all of which finish before
        // this function returns (it waits for `remaining == 0` below), so `task` outlives them.
        let task_ptr: *const Task =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static Task>(task_ref) };
        let job = Arc::new(Job {
            task: task_ptr,
            total: n,
            next: AtomicUsize::new(1),
            remaining: AtomicUsize::new(n),
            panic: Mutex::new(None),
        });
        let sh = &pool.shared;
        {
            let mut slot = sh.slot.lock().unwrap_or_else(PoisonError::into_inner);
            slot.0 += 1;
            slot.1 = Some(job.clone());
            sh.generation.store(slot.0, Ordering::Release);
            if sh.sleepers.load(Ordering::Acquire) > 0 {
                sh.wake.notify_all();
            }
        }
        IN_TASK.with(|t| t.set(true));
        job.run_item(0);
        job.work();
        IN_TASK.with(|t| t.set(false));
        // The SAFETY argument above needs this wait to happen whatever state the locks are in:
        // a poisoned lock (a thread panicked while holding it) is recovered, never a reason to
        // skip the wait.
        let t0 = Instant::now();
        while job.remaining.load(Ordering::Acquire) != 0 {
            let waited = t0.elapsed();
            if waited >= SPIN {
                break;
            }
            spin_turn(waited >= YIELD_AFTER);
        }
        if job.remaining.load(Ordering::Acquire) != 0 {
            let mut g = sh.done.lock().unwrap_or_else(PoisonError::into_inner);
            sh.caller_asleep.store(true, Ordering::Release);
            while job.remaining.load(Ordering::Acquire) != 0 {
                g = sh.done_cv.wait(g).unwrap_or_else(PoisonError::into_inner);
            }
            sh.caller_asleep.store(false, Ordering::Release);
        }
        // Drop the job from the slot so no worker holds the task pointer past this call.
        sh.slot.lock().unwrap_or_else(PoisonError::into_inner).1 = None;
        if let Some(p) = job.panic.lock().ok().and_then(|mut p| p.take()) {
            std::panic::resume_unwind(p);
        }
        outputs
            .into_iter()
            .map(|o| {
                o.into_inner()
                    .ok()
                    .flatten()
                    .expect("every item ran (the job waited for all of them)")
            })
            .collect()
    }
}

/// Row ranges `[start, end)` covering `0..n` in chunks of `chunk` rows.
pub fn ranges(n: usize, chunk: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let c = chunk.max(1);
    (0..n.div_ceil(c)).map(move |i| i * c..((i + 1) * c).min(n))
}

/// Calls of [`run`] that split their work over more than one thread since the process started, from
/// every thread together. Tests read it to check that a "threaded" case really ran threaded; it only
/// grows (and other threads add to it), so compare before and after with "at least".
pub fn parallel_dispatches() -> u64 {
    PARALLEL_DISPATCHES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Like [`parallel_dispatches`], counting only the calls of [`run`] made on the calling thread (so a
/// test's count is not inflated by tests running beside it).
pub fn parallel_dispatches_on_this_thread() -> u64 {
    DISPATCHES_HERE.with(|c| c.get())
}

static PARALLEL_DISPATCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    static DISPATCHES_HERE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_parallel_dispatch() {
    PARALLEL_DISPATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    DISPATCHES_HERE.with(|c| c.set(c.get() + 1));
}
