//! What this machine gives the CPU step (docs/cpu_limits.md): the f32 FMA peak and the memory's
//! read bandwidth on one and on all threads, and whether threads slow each other's GEMMs: one
//! single-threaded GEMM of cache-resident data alone and next to the same GEMM on another thread,
//! and the spread (best, median) of the two-thread GEMM against one thread. Last, whether a
//! layer's row-local chain of ops gains from running over row blocks that stay in the core's L2
//! (the scheduler change docs/cpu_limits.md weighs): a feed-forward block's forward op by op over
//! each thread's rows, as the engine runs it, against the same ops block by block.
//!
//! `cargo bench --bench machine`. Env: ERAENGINE_BENCH_MACHINE_SECS (default 1: seconds per
//! timed loop).

use eraengine::ops::elementwise::exp_f32;
use eraengine::ops::gemm::{Gemm, Simd};
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// The mean of `g` over `x` (a multiple of 8 long) in eight partial sums, so that it vectorises.
#[inline(always)]
fn mean8(x: &[f32], g: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    for c in x.chunks_exact(8) {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += g(v);
        }
    }
    acc.iter().sum::<f32>() / x.len() as f32
}

/// One thread's rows of the feed-forward chain's buffers: x, y [r, d]; ln [r, d]; h, a [r, 2d].
struct Rows<'a> {
    x: &'a [f32],
    ln: &'a mut [f32],
    h: &'a mut [f32],
    a: &'a mut [f32],
    y: &'a mut [f32],
}

/// The chain's weights: w1 [d, 2d] + b1, w2 [2d, d] + b2.
struct Ffn {
    d: usize,
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
}

impl Ffn {
    /// Step `op` (0..4: layer norm, d → 2d, GELU, 2d → d + residual) of rows `r` of `t`, on
    /// this thread alone.
    fn op(&self, op: usize, t: &mut Rows, r: std::ops::Range<usize>) {
        let (d, simd) = (self.d, Simd::detect());
        let (n, f) = (r.len(), 2 * self.d);
        let one = |m, k, nn, bias| Gemm {
            threads: Some(1),
            bias: Some(bias),
            ..Gemm::new(false, false, m, nn, k)
        };
        match op {
            0 => simd.run(
                #[inline(always)]
                || {
                    for (o, x) in t.ln[r.start * d..r.end * d]
                        .chunks_exact_mut(d)
                        .zip(t.x[r.start * d..r.end * d].chunks_exact(d))
                    {
                        let mean = mean8(x, |v| v);
                        let var = mean8(x, |v| (v - mean) * (v - mean));
                        let rs = 1.0 / (var + 1e-5).sqrt();
                        for (o, v) in o.iter_mut().zip(x) {
                            *o = (v - mean) * rs;
                        }
                    }
                },
            ),
            1 => one(n, d, f, &self.b1[..])
                .run(
                    &t.ln[r.start * d..r.end * d],
                    &self.w1,
                    &mut t.h[r.start * f..r.end * f],
                )
                .expect("gemm shapes are consistent"),
            2 => simd.run(
                #[inline(always)]
                || {
                    let (a, h) = (
                        &mut t.a[r.start * f..r.end * f],
                        &t.h[r.start * f..r.end * f],
                    );
                    for (o, &v) in a.iter_mut().zip(h) {
                        let u = 0.797_884_6 * (0.044_715 * v * v).mul_add(v, v);
                        *o = v / (1.0 + exp_f32(-2.0 * u));
                    }
                },
            ),
            _ => {
                let y = &mut t.y[r.start * d..r.end * d];
                one(n, f, d, &self.b2[..])
                    .run(&t.a[r.start * f..r.end * f], &self.w2, y)
                    .expect("gemm shapes are consistent");
                simd.run(
                    #[inline(always)]
                    || {
                        for (o, &v) in y.iter_mut().zip(&t.x[r.start * d..r.end * d]) {
                            *o += v;
                        }
                    },
                );
            }
        }
    }
}

/// A barrier whose waiters spin, as the engine's pool workers do between ops (a futex wake-up
/// costs more than the short ops it separates).
struct Spin {
    threads: usize,
    arrived: AtomicUsize,
}

impl Spin {
    /// Waits for round `round` (0, 1, ...) to be reached by every thread.
    fn wait(&self, round: usize) {
        self.arrived.fetch_add(1, Ordering::AcqRel);
        while self.arrived.load(Ordering::Acquire) < (round + 1) * self.threads {
            std::hint::spin_loop();
        }
    }
}

/// The feed-forward chain's forward over `n` rows at width `d` on `threads` threads, each with
/// its contiguous share of the rows, every cache flushed before each call. Each entry of
/// `blocks` is a way to run it: 0 runs each op over a thread's rows with the threads meeting
/// between ops (as the engine's ops run); b > 0 runs each thread's rows through all the ops b
/// rows at a time. The ways alternate call by call; returns each way's median milliseconds and
/// its median ratio to the first way's call just before it.
fn ffn_chain(secs: f64, n: usize, d: usize, threads: usize, blocks: &[usize]) -> Vec<(f64, f64)> {
    let f = 2 * d;
    let val = |len: usize, m: usize| -> Vec<f32> {
        (0..len)
            .map(|e| ((e * 7919) % m) as f32 / m as f32 - 0.5)
            .collect()
    };
    let ffn = Ffn {
        d,
        w1: val(d * f, 89),
        b1: val(f, 5),
        w2: val(f * d, 83),
        b2: val(d, 7),
    };
    let x = val(n * d, 97);
    let (mut ln, mut h, mut a, mut y) = (
        vec![0f32; n * d],
        vec![0f32; n * f],
        vec![0f32; n * f],
        vec![0f32; n * d],
    );
    let mut junk = vec![0f32; 16 << 20];
    let per = n.div_ceil(threads);
    let mut call = |block: usize| -> f64 {
        for j in junk.iter_mut() {
            *j += 1.0;
        }
        let mut rows: Vec<Rows> = x
            .chunks(per * d)
            .zip(ln.chunks_mut(per * d))
            .zip(h.chunks_mut(per * f).zip(a.chunks_mut(per * f)))
            .zip(y.chunks_mut(per * d))
            .map(|(((x, ln), (h, a)), y)| Rows { x, ln, h, a, y })
            .collect();
        let meet = Spin {
            threads: rows.len(),
            arrived: AtomicUsize::new(0),
        };
        // timed from the moment every thread has started (round 0) to the last one's end
        let spans: Vec<(Instant, Instant)> = std::thread::scope(|sc| {
            let hs: Vec<_> = rows
                .iter_mut()
                .map(|t| {
                    let (ffn, meet) = (&ffn, &meet);
                    sc.spawn(move || {
                        let r = t.x.len() / d;
                        meet.wait(0);
                        let t0 = Instant::now();
                        if block == 0 {
                            for op in 0..4 {
                                ffn.op(op, t, 0..r);
                                meet.wait(op + 1);
                            }
                        } else {
                            for b in (0..r).step_by(block) {
                                for op in 0..4 {
                                    ffn.op(op, t, b..(b + block).min(r));
                                }
                            }
                        }
                        (t0, Instant::now())
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("bench thread panicked"))
                .collect()
        });
        let t0 = spans
            .iter()
            .map(|s| s.0)
            .min()
            .expect("at least one thread");
        let t1 = spans
            .iter()
            .map(|s| s.1)
            .max()
            .expect("at least one thread");
        (t1 - t0).as_secs_f64() * 1e3
    };
    let mut times = vec![Vec::new(); blocks.len()];
    let end = Instant::now() + Duration::from_secs_f64(secs * blocks.len() as f64);
    while Instant::now() < end || times[0].len() < 5 {
        for (t, &b) in times.iter_mut().zip(blocks) {
            t.push(call(b));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    times
        .iter()
        .map(|t| {
            let ratios = t.iter().zip(&times[0]).map(|(x, w)| x / w).collect();
            (median(t.clone()), median(ratios))
        })
        .collect()
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
    for d in [64, 128] {
        let ways = [0, 64, 256, 1024];
        let r = ffn_chain(s, 5000, d, all, &ways);
        let blocks: Vec<String> = ways[1..]
            .iter()
            .zip(&r[1..])
            .map(|(b, (t, x))| format!("{b} rows {t:.3} ms ({x:.2}x)"))
            .collect();
        println!(
            "feed-forward forward 5000 x {d} (layer norm, d -> 2d, GELU, 2d -> d, residual), \
             {all} thread(s), caches flushed, median: op by op {:.3} ms; in row blocks of {}",
            r[0].0,
            blocks.join(", ")
        );
    }
}
