//! The CPU training step allocates no activation-sized buffer in its steady state: every
//! activation and gradient buffer of a step goes back to the CPU backend's pool when the step is
//! done with it, and the next step takes it from there. (Fresh buffers of that size cost page
//! faults and system time on every step: 54 MB a step before the pool saw every gradient.)
//!
//! A counting global allocator (this test binary only) records every allocation during a step.

use eraengine::bench::random_era;
use eraengine::device::Cpu;
use eraengine::model::{Attention, Config};
use eraengine::ops::gemm::Gemm;
use eraengine::params::Adam;
use eraengine::train::era::EraBatch;
use eraengine::train::{train_step, train_step_owned, TrainOptions, Trained};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

fn count(size: usize) {
    if COUNTING.load(Relaxed) {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(size, Relaxed);
        LARGEST.fetch_max(size, Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator with the caller's own arguments, so the
// GlobalAlloc contract holds exactly as it does for `System`; the counting only touches atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size());
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count(l.size());
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, size: usize) -> *mut u8 {
        count(size);
        System.realloc(p, l, size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// glibc's default threshold above which an allocation is a fresh mapping (page faults).
const MMAP_THRESHOLD: usize = 128 << 10;

struct StepAllocs {
    allocs: usize,
    bytes: usize,
    largest: usize,
}

/// `loaded`: each step's era is made from its codes as the era loader makes it
/// (`EraBatch::from_codes`, counted with the step) and given up to the step as the training loop
/// does (`train_step_owned`); else one era is lent to every step (`train_step`).
fn step_allocs(cfg: Config, n: usize, steps: u64, loaded: bool) -> Vec<StepAllocs> {
    let dev = Cpu;
    let mut m = Trained::fresh(&dev, &cfg, 0).unwrap();
    let mut adam = Adam::new(&dev, &m.params, 1e-3, 0.0).unwrap();
    let f = cfg.n_features;
    let batch = random_era(n, f, 3);
    let codes: Vec<u8> = batch.x.iter().map(|&v| (v * 2.0 + 2.0) as u8).collect();
    let opts = TrainOptions {
        quiet: true,
        ..TrainOptions::default()
    };
    let mut out = vec![];
    for step in 1..=steps {
        ALLOCS.store(0, Relaxed);
        BYTES.store(0, Relaxed);
        LARGEST.store(0, Relaxed);
        COUNTING.store(true, Relaxed);
        let r = if loaded {
            let era = EraBatch::from_codes("e".into(), n, f, 1, &codes, batch.y.clone());
            train_step_owned(&dev, &mut m, &mut adam, era, &opts, step)
        } else {
            train_step(&dev, &mut m, &mut adam, &batch, &opts, step)
        };
        COUNTING.store(false, Relaxed);
        r.unwrap();
        out.push(StepAllocs {
            allocs: ALLOCS.load(Relaxed),
            bytes: BYTES.load(Relaxed),
            largest: LARGEST.load(Relaxed),
        });
    }
    out
}

/// `fresh_pool`: nothing ran before in this process, so the first step allocated every buffer.
fn check(name: &str, cfg: Config, n: usize, fresh_pool: bool, loaded: bool) {
    let steps = step_allocs(cfg, n, 5, loaded);
    let first = &steps[0];
    eprintln!(
        "{name}: step 1: {} allocations, {} bytes, largest {}",
        first.allocs, first.bytes, first.largest
    );
    // Steps 1 and 2 fill the pool (the second may still meet a size the first did not free
    // yet); from step 3 on nothing activation-sized is allocated.
    for (i, s) in steps.iter().enumerate().skip(2) {
        eprintln!(
            "{name}: step {}: {} allocations, {} bytes, largest {}",
            i + 1,
            s.allocs,
            s.bytes,
            s.largest
        );
        assert!(
            s.largest < MMAP_THRESHOLD,
            "{name}: step {} allocated {} bytes at once (an activation or gradient buffer that \
             did not go back to the pool)",
            i + 1,
            s.largest
        );
        assert!(
            !fresh_pool || s.bytes * 10 < first.bytes,
            "{name}: step {} allocated {} bytes, not under a tenth of the first step's {}",
            i + 1,
            s.bytes,
            first.bytes
        );
    }
}

/// A thread's GEMM packing scratch is reserved whole by its first GEMM: larger shapes later on the
/// same thread allocate nothing of that size. (Else a step's allocations depend on which worker ran
/// which parts of the steps before: a worker first given the largest product in step 3 grew it.)
fn gemm_scratch_is_reserved_by_a_threads_first_gemm() {
    let run = |ta: bool, tb: bool, m: usize, n: usize, k: usize| {
        let g = Gemm {
            threads: Some(1),
            ..Gemm::new(ta, tb, m, n, k)
        };
        let (a, b, mut c) = (vec![0.5f32; m * k], vec![0.25f32; k * n], vec![0f32; m * n]);
        LARGEST.store(0, Relaxed);
        COUNTING.store(true, Relaxed);
        let r = g.run(&a, &b, &mut c);
        COUNTING.store(false, Relaxed);
        r.unwrap();
        assert!(
            c.iter().all(|&v| v == (k as f32) / 8.0),
            "{m}x{n}x{k}: wrong product"
        );
        LARGEST.load(Relaxed)
    };
    run(false, false, 3, 5, 7);
    // blocked with A packed (n over 1,024), B packed whole (k over KC, B transposed), A read
    // transposed in place, and a long, narrow k
    for (ta, tb, m, n, k) in [
        (false, false, 700, 4100, 600),
        (false, true, 64, 128, 3000),
        (true, false, 42, 64, 3000),
        (true, true, 500, 2000, 300),
        (false, false, 3000, 64, 42),
    ] {
        let largest = run(ta, tb, m, n, k);
        assert!(
            largest < MMAP_THRESHOLD,
            "GEMM {m}x{n}x{k} (ta {ta}, tb {tb}) allocated {largest} bytes at once after a small \
             GEMM on the same thread"
        );
    }
}

// One test function: the counters and the pool are global to the process, and tests in one binary
// run side by side.
#[test]
fn a_steady_state_step_allocates_no_activation_sized_buffer() {
    gemm_scratch_is_reserved_by_a_threads_first_gemm();
    // The bench model with dropout and the correlation loss (every backward of the default step).
    let mut cfg = Config::new(42, 1);
    cfg.dropout = 0.1;
    cfg.corr_weight = 1.0;
    check("linear", cfg.clone(), 3000, true, false);
    // the training loop's step: the loader's x (504 KB here) comes from the pool, where the step
    // it was given to left the previous era's
    check("linear, loaded eras", cfg.clone(), 3000, false, true);
    let mut soft = cfg;
    soft.attention = Attention::Softmax;
    check("softmax", soft, 2000, false, false);
}
