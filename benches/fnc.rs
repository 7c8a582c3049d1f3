//! Feature-neutral corr's least squares at Numerai's size (5,000 rows × 2,748 features): the
//! normal-equation path against the rank-revealing QR/SVD path, timed, and their agreement checked
//! (exit 1 if they differ by more than 1e-6). `cargo bench --bench fnc`.

use eraengine::metrics::corr::{neutralize as neutralize_lstsq, NEUTRALIZE_RCOND};
use eraengine::metrics::fnc::neutralize_normal;

fn design(features: &[u8], m: usize, nf: usize) -> Vec<f64> {
    let n = nf + 1;
    let mut a = vec![1.0; m * n];
    for i in 0..m {
        for f in 0..nf {
            a[i * n + f] = features[i * nf + f] as f64;
        }
    }
    a
}

/// 31 random bits (so `lcg / 2^30 − 1` is uniform on [−1, 1)).
fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

fn main() {
    let (m, nf) = (5000, 2748);
    let mut s = 11u64;
    // correlated quantized features, as Numerai's: a few latent factors plus noise, binned to 0..4
    let k = 40;
    let lat: Vec<f64> = (0..m * k)
        .map(|_| lcg(&mut s) as f64 / 2f64.powi(30) - 1.0)
        .collect();
    let load: Vec<f64> = (0..k * nf)
        .map(|_| lcg(&mut s) as f64 / 2f64.powi(30) - 1.0)
        .collect();
    let mut f = vec![0u8; m * nf];
    for i in 0..m {
        for j in 0..nf {
            let mut v = (lcg(&mut s) as f64 / 2f64.powi(30) - 1.0) * 2.0;
            for q in 0..k {
                v += lat[i * k + q] * load[q * nf + j];
            }
            f[i * nf + j] = (v * 0.8 + 2.5).clamp(0.0, 4.0) as u8;
        }
    }
    let mut hist = [0usize; 5];
    for &v in &f {
        hist[v as usize] += 1;
    }
    eprintln!("feature codes 0..4: {hist:?}");
    let b: Vec<f64> = (0..m)
        .map(|_| lcg(&mut s) as f64 / 2f64.powi(30) - 1.0)
        .collect();
    let t = std::time::Instant::now();
    let fast = neutralize_normal(&f, m, nf, &b);
    let tf = t.elapsed().as_secs_f64();
    eprintln!("normal equations: {tf:.2} s (taken: {})", fast.is_some());
    let t = std::time::Instant::now();
    let slow = neutralize_lstsq(&design(&f, m, nf), m, nf + 1, &b, NEUTRALIZE_RCOND);
    eprintln!(
        "rank-revealing QR/SVD path: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    if let Some(fast) = fast {
        let d = fast
            .iter()
            .zip(&slow)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        eprintln!("max |difference| {d:.2e}");
        if d > 1e-6 {
            eprintln!("the two paths disagree");
            std::process::exit(1);
        }
    }
}
