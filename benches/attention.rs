//! Attention kernels alone, per SIMD path: linear and softmax attention, forward and backward, at
//! the model's shapes (one era of 5,000 rows; d 64 / 4 heads and d 128 / 8 heads), with the FLOPs
//! of the scores and products (softmax: 4·n²·d forward, 8·n²·d backward as computed here, the
//! backward recomputing the scores once). Median of repeated runs, all threads.
//!
//!     cargo bench --bench attention
//!
//! Env: ERAENGINE_BENCH_ATTN_PATHS (comma list of avx512,avx2,portable; default every path the
//! CPU has), ERAENGINE_BENCH_ATTN_ROWS (default 5000).

use eraengine::ops::attention::{
    linear_attention_bwd_on, linear_attention_fwd_on, softmax_attention_bwd_on,
    softmax_attention_fwd_on,
};
use eraengine::ops::gemm::Simd;
use std::hint::black_box;
use std::time::Instant;

fn fill(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i + seed) * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

/// Median wall time of `reps` runs of `f`, in ms.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn main() {
    let n: usize = std::env::var("ERAENGINE_BENCH_ATTN_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let want: Vec<String> = std::env::var("ERAENGINE_BENCH_ATTN_PATHS")
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect())
        .unwrap_or_else(|_| vec!["avx512".into(), "avx2".into(), "portable".into()]);
    println!(
        "{:<8} {:>4} {:>2} {:<9} {:>9} {:>9} {:>9} {:>9}",
        "op", "d", "h", "path", "fwd ms", "fwd GF/s", "bwd ms", "bwd GF/s"
    );
    for (d, h) in [(64usize, 4usize), (128, 8)] {
        let (q, k, v, g) = (
            fill(n * d, 1),
            fill(n * d, 2),
            fill(n * d, 3),
            fill(n * d, 4),
        );
        let mask: Vec<f32> = (0..n)
            .map(|i| if i % 50 == 7 { 0.0 } else { 1.0 })
            .collect();
        for simd in Simd::ALL {
            if !simd.available() || !want.iter().any(|w| w == simd.name()) {
                continue;
            }
            let s = Some(simd);
            let (mut out, mut lse) = (vec![0f32; n * d], vec![0f32; h * n]);
            let (mut dq, mut dk, mut dv) =
                (vec![0f32; n * d], vec![0f32; n * d], vec![0f32; n * d]);
            let reps = if simd == Simd::Portable { 3 } else { 7 };
            let f = time(reps, || {
                softmax_attention_fwd_on(s, &mut out, &mut lse, &q, &k, &v, &mask, n, n, d, h);
                black_box(&out);
            });
            let b = time(reps, || {
                softmax_attention_bwd_on(
                    s, &mut dq, &mut dk, &mut dv, &g, &out, &lse, &q, &k, &v, &mask, n, n, d, h,
                );
                black_box(&dq);
            });
            let nn = (n * n * d) as f64;
            println!(
                "{:<8} {:>4} {:>2} {:<9} {:>9.2} {:>9.1} {:>9.2} {:>9.1}",
                "softmax",
                d,
                h,
                simd.name(),
                f,
                4.0 * nn / f / 1e6,
                b,
                8.0 * nn / b / 1e6
            );
            let dh = d / h;
            let (mut sb, mut zb) = (vec![0f32; h * dh * dh], vec![0f32; d]);
            let f = time(reps, || {
                linear_attention_fwd_on(s, &mut out, &mut sb, &mut zb, &q, &k, &v, &mask, n, d, h);
                black_box(&out);
            });
            let b = time(reps, || {
                linear_attention_bwd_on(
                    s, &mut dq, &mut dk, &mut dv, &g, &q, &k, &v, &mask, &sb, &zb, n, d, h,
                );
                black_box(&dq);
            });
            println!(
                "{:<8} {:>4} {:>2} {:<9} {:>9.2} {:>9} {:>9.2} {:>9}",
                "linear",
                d,
                h,
                simd.name(),
                f,
                "",
                b,
                ""
            );
        }
    }
}
