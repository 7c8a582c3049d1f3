//! The worker pool (`ops::par::run`): results in item order, nothing lost between jobs whether
//! the workers are still spinning or already asleep when the next job comes, two callers at once,
//! and a panicking item re-raised without breaking the pool. A lost wake-up would hang, so every
//! case runs under a watchdog.

use eraengine::ops::par;
use std::sync::{mpsc, Mutex, PoisonError};
use std::time::Duration;

/// The pool is one per process; the cases take turns so each really runs on it (a case that finds
/// it busy runs on scoped threads instead).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `f` on its own thread; fails if it does not finish within `secs`.
fn within(secs: u64, f: impl FnOnce() + Send + 'static) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => h.join().expect("the case panicked"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("the pool did not finish within {secs} s (a lost wake-up?)")
        }
    }
}

/// Item i of job j: some work whose result depends on both.
fn work(j: usize, i: usize) -> u64 {
    let mut h = (j as u64) << 32 | i as u64;
    for _ in 0..(i % 7) * 200 {
        h = h
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    h
}

fn expected(j: usize, n: usize) -> Vec<u64> {
    (0..n).map(|i| work(j, i)).collect()
}

#[test]
fn results_come_back_in_order_with_any_gap_between_jobs() {
    within(120, || {
        // gaps shorter and longer than the workers' spin, so both the spinning and the sleeping
        // hand-over run many times
        let gaps = [0u64, 20, 150, 400, 2000];
        for j in 0..2000 {
            let n = 2 + j % 9;
            // every fourth job has items that outlast the caller's spin, so it sleeps and must
            // be woken by the worker that finishes last
            let slow = j % 4 == 3;
            let got = par::run(0..n, |i| {
                if slow {
                    std::thread::sleep(Duration::from_micros(300 + 200 * (i as u64 % 3)));
                }
                work(j, i)
            });
            assert_eq!(got, expected(j, n), "job {j}");
            let gap = gaps[j % gaps.len()];
            if gap > 0 {
                std::thread::sleep(Duration::from_micros(gap));
            }
        }
    });
}

#[test]
fn two_callers_at_once_both_get_their_results() {
    within(120, || {
        let a = std::thread::spawn(|| {
            for j in 0..1500 {
                assert_eq!(par::run(0..5, |i| work(j, i)), expected(j, 5));
            }
        });
        for j in 0..1500 {
            assert_eq!(par::run(0..4, |i| work(j + 7, i)), expected(j + 7, 4));
        }
        a.join().expect("the other caller panicked");
    });
}

#[test]
fn a_panicking_item_is_re_raised_and_the_pool_keeps_working() {
    within(60, || {
        for j in 0..50 {
            let r = std::panic::catch_unwind(|| {
                par::run(0..6, |i| {
                    if i == j % 6 {
                        panic!("item {i} fails");
                    }
                    work(j, i)
                })
            });
            assert!(r.is_err(), "job {j}: the panic was swallowed");
            assert_eq!(
                par::run(0..6, |i| work(j, i)),
                expected(j, 6),
                "job {j} after"
            );
        }
    });
}

/// The first item always runs on the calling thread, whether the workers are spinning or asleep:
/// ops that split rows alike then give the caller's core the same rows (the GEMM's row slabs rely
/// on it to find A in that core's cache).
#[test]
fn the_first_item_runs_on_the_calling_thread() {
    within(60, || {
        let me = std::thread::current().id();
        for j in 0..200 {
            if j % 50 == 49 {
                // let the workers fall asleep between some jobs
                std::thread::sleep(Duration::from_millis(2));
            }
            let who = par::run(0..2 + j % 5, |i| (i, std::thread::current().id()));
            assert_eq!(who[0], (0, me), "job {j}: item 0 ran on another thread");
        }
    });
}

/// The CPU backend's `copy` and `fill_zero` split large buffers over the workers: every value
/// lands where it belongs, for lengths around the split threshold and ragged chunks.
#[test]
fn large_copies_and_zero_fills_are_exact_when_split() {
    use eraengine::device::{Backend, Cpu};
    within(60, || {
        for len in [1usize, 4095, (1 << 18) - 1, 1 << 18, (1 << 18) + 7, 3 << 18] {
            let src: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
            let mut dst = vec![f32::NAN; len];
            let before = par::parallel_dispatches_on_this_thread();
            Cpu.copy(&mut dst, &src).unwrap();
            assert_eq!(dst, src, "copy of {len} values");
            Cpu.fill_zero(&mut dst).unwrap();
            assert!(dst.iter().all(|&v| v == 0.0), "zero fill of {len} values");
            let split = par::parallel_dispatches_on_this_thread() - before;
            if par::threads() > 1 && len >= 1 << 18 {
                assert_eq!(
                    split, 2,
                    "{len} values: copy and fill each split over the workers"
                );
            }
        }
        let mut short = vec![0f32; 3];
        assert!(
            Cpu.copy(&mut short, &vec![1.0; 4]).is_err(),
            "lengths differ"
        );
    });
}
