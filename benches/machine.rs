//! What this machine gives the CPU step (docs/cpu_limits.md): the f32 FMA peak and the memory's
//! read bandwidth on one and on all threads, and whether threads slow each other's GEMMs: one
//! single-threaded GEMM of cache-resident data alone and next to the same GEMM on another thread,
//! and the spread (best, median) of the two-thread GEMM against one thread.
//!
//! `cargo bench --bench machine`. Env: ERAENGINE_BENCH_MACHINE_SECS (default 1: seconds per
//! timed loop).

use eraengine::ops::gemm::{Gemm, Simd};
use std::time::{Duration, Instant};

fn secs() -> f64 {
    std::env::var("ERAENGINE_BENCH_MACHINE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&s: &f64| s > 0.0)
        .unwrap_or(1.0)
}

/// Runs `f` on `threads` threads at once; returns each thread's result.
fn on_threads<T: Send>(threads: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let f = &f;
        let hs: Vec<_> = (0..threads).map(|t| s.spawn(move || f(t))).collect();
        hs.into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .collect()
    })
}

/// A timed FMA loop: `iters` steps → (flops per second, a sum that keeps the chains alive).
type FmaLoop = unsafe fn(u64) -> (f64, f32);

/// FMA flops per second of one thread: 12 independent zmm chains (enough to fill two FMA ports
/// of 4-cycle latency), `iters` steps.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop(iters: u64) -> (f64, f32) {
    use std::arch::x86_64::*;
    let x = _mm512_set1_ps(1.000_000_1);
    let y = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(1.0); 12];
    let t0 = Instant::now();
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, x, y);
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    let mut s = _mm512_setzero_ps();
    for a in acc {
        s = _mm512_add_ps(s, a);
    }
    (iters as f64 * 12.0 * 32.0 / dt, _mm512_reduce_add_ps(s))
}

/// [`fma_loop`] on AVX2 + FMA: 12 independent ymm chains, 16 flops each per step.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop_ymm(iters: u64) -> (f64, f32) {
    use std::arch::x86_64::*;
    let x = _mm256_set1_ps(1.000_000_1);
    let y = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); 12];
    let t0 = Instant::now();
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, x, y);
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    let sum = acc
        .iter()
        .fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
    let mut v = [0f32; 8];
    // SAFETY: v holds 8 floats; storeu takes an unaligned pointer.
    unsafe { _mm256_storeu_ps(v.as_mut_ptr(), sum) };
    (iters as f64 * 12.0 * 16.0 / dt, v.iter().sum())
}

/// Bytes per second one thread reads from `buf`, summed `reps` times (f32 adds vectorised at the
/// machine's SIMD width; 64 partial sums so the adds do not wait on each other).
fn read_loop(buf: &[f32], reps: usize) -> (f64, f32) {
    let t0 = Instant::now();
    let mut acc = [0f32; 64];
    Simd::detect().run(
        #[inline(always)]
        || {
            for _ in 0..reps {
                for c in buf.chunks_exact(64) {
                    for (a, &v) in acc.iter_mut().zip(c) {
                        *a += v;
                    }
                }
            }
        },
    );
    let dt = t0.elapsed().as_secs_f64();
    ((buf.len() * 4 * reps) as f64 / dt, acc.iter().sum())
}

/// Median and best of per-call milliseconds of `f` over about `secs` seconds.
fn spread(secs: f64, mut f: impl FnMut()) -> (f64, f64) {
    let mut v = Vec::new();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end || v.len() < 5 {
        let t0 = Instant::now();
        f();
        v.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

fn gemm_1t(rows: usize, x: &[f32], w: &[f32], out: &mut [f32]) {
    Gemm {
        threads: Some(1),
        ..Gemm::new(false, true, rows, 128, 128)
    }
    .run(&x[..rows * 128], w, &mut out[..rows * 128])
    .expect("gemm shapes are consistent");
}

fn main() {
    let s = secs();
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("machine: {all} threads; rates are per thread");
    // the widest FMA this CPU has: (register, steps per timed loop, the loop)
    #[cfg(target_arch = "x86_64")]
    let peak: Option<(&str, u64, FmaLoop)> = if std::is_x86_feature_detected!("avx512f") {
        Some(("zmm", (s * 2e8) as u64, fma_loop))
    } else if Simd::Avx2.available() {
        Some(("ymm", (s * 4e8) as u64, fma_loop_ymm))
    } else {
        None
    };
    #[cfg(not(target_arch = "x86_64"))]
    let peak: Option<(&str, u64, FmaLoop)> = None;
    match peak {
        Some((reg, iters, f)) => {
            for t in [1, all] {
                // SAFETY: `peak` holds a loop only where its instructions were detected above.
                let r = on_threads(t, |_| unsafe { f(iters) });
                let gf: Vec<String> = r.iter().map(|x| format!("{:.1}", x.0 / 1e9)).collect();
                println!("fma peak ({reg}), {t} thread(s): {} GF/s", gf.join(" / "));
            }
        }
        None => println!("fma peak: not measured (neither AVX-512 nor AVX2 + FMA on this CPU)"),
    }
    // far beyond the caches: the memory's bandwidth
    let floats = 64usize << 20;
    let reps = ((s * 4e9) / (floats * 4) as f64).max(1.0) as usize;
    for t in [1, all] {
        let r = on_threads(t, |_| read_loop(&vec![1f32; floats], reps));
        let gb: Vec<String> = r.iter().map(|x| format!("{:.1}", x.0 / 1e9)).collect();
        println!("read 256 MB, {t} thread(s): {} GB/s", gb.join(" / "));
    }
    let rows = 1008;
    let w: Vec<f32> = (0..128 * 128).map(|e| (e % 13) as f32 * 0.1).collect();
    let x: Vec<f32> = (0..5000 * 128).map(|e| (e % 97) as f32 * 0.01).collect();
    let mut out = vec![0f32; 5000 * 128];
    let alone = spread(s, || gemm_1t(rows, &x, &w, &mut out));
    let side = on_threads(all.min(2), |_| {
        let mut out = vec![0f32; rows * 128];
        spread(s, || gemm_1t(rows, &x, &w, &mut out))
    });
    let side: Vec<String> = side.iter().map(|m| format!("{:.3}", m.0)).collect();
    println!(
        "one-thread GEMM {rows} x 128 x 128 (cache-resident), median: alone {:.3} ms, two at once {} ms",
        alone.0,
        side.join(" / ")
    );
    let one = spread(s, || gemm_1t(5000, &x, &w, &mut out));
    let two = spread(s, || {
        Gemm::new(false, true, 5000, 128, 128)
            .run(&x, &w, &mut out)
            .expect("gemm shapes are consistent")
    });
    println!(
        "GEMM 5000 x 128 x 128: 1 thread median {:.3} ms; all threads median {:.3} ms, best {:.3} ms",
        one.0, two.0, two.1
    );
}
