//! GEMM throughput per SIMD path, one and two threads, at 4096³ and at the model's shapes; compare
//! with `benches/gemm_numpy.py` (numpy / OpenBLAS sgemm at the same shapes and forms).
//!
//!     cargo bench --bench gemm
//!
//! Shapes are m × k × n (the notation). Forms as the linear op uses them: `A·Bᵀ` is the
//! forward (inp[m,k] · W[n,k]ᵀ), `Aᵀ·B` the weight gradient (doutᵀ · inp, stored [k,m] and [k,n]),
//! `A·B` plain. Each cell is the best of repeated runs (at least 3, at least ~0.3 s in all).
//! `1t cpu GF/s` divides the flops of all single-thread runs by the CPU time the thread was
//! actually on a core (/proc/thread-self/schedstat), so it is robust on a shared, loaded machine.
//! Env: ERAENGINE_BENCH_GEMM_PATHS (comma list of avx512,avx2,portable; default every path the CPU
//! has), ERAENGINE_BENCH_GEMM_BIG (default 1: include 4096³; 0 skips it).

use eraengine::ops::gemm::{Gemm, Simd};
use std::hint::black_box;
use std::time::Instant;

/// (label, m, k, n, ta, tb)
const SHAPES: [(&str, usize, usize, usize, bool, bool); 10] = [
    ("4096^3 A·B", 4096, 4096, 4096, false, false),
    ("fwd 5000x42x64", 5000, 42, 64, false, true),
    ("fwd 5000x705x64", 5000, 705, 64, false, true),
    ("fwd 5000x64x64", 5000, 64, 64, false, true),
    ("dW 64x5000x64", 64, 5000, 64, true, false),
    ("fwd 5000x2376x128", 5000, 2376, 128, false, true),
    ("fwd 5000x128x128", 5000, 128, 128, false, true),
    ("dW 128x5000x128", 128, 5000, 128, true, false),
    ("dX 5000x128x128", 5000, 128, 128, false, false),
    ("fwd 5000x128x256", 5000, 128, 256, false, true),
];

fn fill(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

/// Nanoseconds this thread has spent on a CPU (Linux schedstat), if readable.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn main() {
    let want: Option<Vec<String>> = std::env::var("ERAENGINE_BENCH_GEMM_PATHS")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let big = std::env::var("ERAENGINE_BENCH_GEMM_BIG").map_or(true, |v| v != "0");
    let paths: Vec<Simd> = Simd::ALL
        .into_iter()
        .filter(|s| {
            if !s.available() {
                println!("# {}: not supported by this CPU", s.name());
                return false;
            }
            want.as_ref()
                .is_none_or(|w| w.iter().any(|x| x == s.name()))
        })
        .collect();
    println!(
        "{:<20} {:<9} {:>9} {:>9} {:>11} {:>9} {:>9}",
        "shape (m x k x n)", "path", "1t ms", "1t GF/s", "1t cpu GF/s", "2t ms", "2t GF/s"
    );
    for (label, m, k, n, ta, tb) in SHAPES {
        if m == 4096 && !big {
            continue;
        }
        let a = fill(m * k);
        let b = fill(k * n);
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * m as f64 * n as f64 * k as f64;
        for &s in &paths {
            let mut cells = Vec::new();
            let mut cpu_gf = f64::NAN;
            for threads in [1usize, 2] {
                let g = Gemm {
                    simd: Some(s),
                    threads: Some(threads),
                    ..Gemm::new(ta, tb, m, n, k)
                };
                let mut best = f64::INFINITY;
                let (mut reps, mut spent) = (0, 0.0);
                let cpu0 = thread_cpu_ns();
                while reps < 3 || (spent < 0.3 && reps < 1000) {
                    let t = Instant::now();
                    if let Err(e) = g.run(black_box(&a), black_box(&b), black_box(&mut c)) {
                        eprintln!("gemm failed: {e}");
                        std::process::exit(1);
                    }
                    let dt = t.elapsed().as_secs_f64();
                    best = best.min(dt);
                    spent += dt;
                    reps += 1;
                }
                if threads == 1 {
                    if let (Some(c0), Some(c1)) = (cpu0, thread_cpu_ns()) {
                        cpu_gf = flops * reps as f64 / (c1.saturating_sub(c0).max(1) as f64);
                    }
                }
                cells.push((best * 1e3, flops / best / 1e9));
            }
            println!(
                "{:<20} {:<9} {:>9.3} {:>9.1} {:>11.1} {:>9.3} {:>9.1}",
                label,
                s.name(),
                cells[0].0,
                cells[0].1,
                cpu_gf,
                cells[1].0,
                cells[1].1
            );
        }
    }
}
