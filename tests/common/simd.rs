//! Helpers of the tests that force every SIMD path: deterministic data and the paths to run.

use eraengine::ops::gemm::Simd;

/// `len` values in [lo, hi) from a xorshift stream seeded by `seed`.
pub fn fill(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            lo + (hi - lo) * ((x >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

/// Every SIMD path this CPU has (the portable one always), printed to stderr under `what`.
pub fn paths(what: &str) -> Vec<Simd> {
    let p: Vec<Simd> = Simd::ALL.into_iter().filter(|s| s.available()).collect();
    assert!(p.contains(&Simd::Portable));
    eprintln!(
        "{what} paths tested: {:?}",
        p.iter().map(|s| s.name()).collect::<Vec<_>>()
    );
    p
}
