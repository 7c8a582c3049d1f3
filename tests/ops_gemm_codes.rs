//! GEMM with B given as era codes (`Src::Codes`, value (c − 2) / 2) against the same product of
//! the decoded f32 matrix (itself checked against an f64 oracle in tests/ops_gemm.rs):
//! bit for bit, on random shapes and on shapes that cross every block boundary, on every SIMD path
//! this CPU has (each forced; a missing one is reported), single- and multi-threaded.

use eraengine::ops::codes::decode_into;
use eraengine::ops::gemm::{Gemm, Simd, Src};
use proptest::prelude::*;

fn paths() -> Vec<Simd> {
    Simd::ALL
        .into_iter()
        .filter(|s| {
            let ok = s.available();
            if !ok {
                eprintln!("SKIPPING gemm path {}: this CPU lacks it", s.name());
            }
            ok
        })
        .collect()
}

/// Deterministic codes in 0..=4 and values in [-1, 1).
fn codes(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 33) % 5) as u8
        })
        .collect()
}
fn values(len: usize, seed: u64) -> Vec<f32> {
    codes(len, seed ^ 0x55)
        .iter()
        .zip(codes(len, seed ^ 0xAA))
        .map(|(&a, b)| (a as f32 * 5.0 + b as f32) / 12.5 - 1.0)
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    /// Whether A is stored transposed (B, the codes, is stored [k, n]).
    ta: bool,
    pad: usize,
    accumulate: bool,
    bias: bool,
    threads: usize,
    seed: u64,
}

fn check(cs: Case, simd: Simd) {
    let (m, n, k) = (cs.m, cs.n, cs.k);
    let (ta, tb) = (cs.ta, false);
    let (ar, ac) = if ta { (k, m) } else { (m, k) };
    let (br, bc) = if tb { (n, k) } else { (k, n) };
    let (lda, ldb, ldc) = (ac + cs.pad, bc + 2 * cs.pad, n + cs.pad);
    let len =
        |rows: usize, ld: usize, cols: usize| if rows == 0 { 0 } else { (rows - 1) * ld + cols };
    let (alen, blen) = (len(ar, lda, ac), len(br, ldb, bc));
    let c_codes = codes(blen, cs.seed);
    let mut decoded = vec![0f32; c_codes.len()];
    decode_into(&mut decoded, &c_codes);
    let a = values(alen, cs.seed + 7);
    let bias = values(n, cs.seed + 9);
    let c0 = values(len(m, ldc, n).max(1), cs.seed + 11);
    let g = Gemm {
        lda,
        ldb,
        ldc,
        accumulate: cs.accumulate,
        bias: cs.bias.then_some(&bias[..]),
        simd: Some(simd),
        threads: Some(cs.threads),
        ..Gemm::new(ta, tb, m, n, k)
    };
    let (mut want, mut got) = (c0.clone(), c0.clone());
    g.run(&a, &decoded, &mut want).unwrap();
    g.run_src(&a, Src::Codes(&c_codes), &mut got).unwrap();
    let same = want
        .iter()
        .zip(&got)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(
        same,
        "{cs:?} on {}: codes and f32 products differ",
        simd.name()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn codes_b_gives_the_decoded_product_bit_for_bit(
        m in prop_oneof![Just(1usize), 1usize..60],
        n in prop_oneof![Just(1usize), 1usize..150],
        k in prop_oneof![Just(0usize), Just(1usize), 1usize..600],
        ta: bool, accumulate: bool, bias: bool,
        pad in 0usize..3, threads in 1usize..4, seed in 0u64..1000,
    ) {
        let cs = Case { m, n, k, ta, pad, accumulate, bias, threads, seed };
        for s in paths() {
            check(cs, s);
        }
    }
}

/// The mapper's shapes and every block boundary: m > MC (384) in row slabs over threads, k > KC
/// (256), n over 128, split-k (small m, long k), B's partial last panels; A both ways.
#[test]
fn blocked_and_threaded_codes_shapes() {
    let shapes = [
        (64, 705, 512),   // the weight gradient's block at F 705: codes B [512, 705]
        (128, 2_376, 40), // at F 2,376 (a short block)
        (401, 150, 300),  // row slabs, two KC blocks
        (20, 24, 3_000),  // split-k over threads
    ];
    for s in paths() {
        for &(m, n, k) in &shapes {
            for ta in [true, false] {
                for threads in [1, 2, 3] {
                    let seed = (m * n + k) as u64;
                    let (pad, accumulate, bias) = (1, true, true);
                    let cs = Case {
                        m,
                        n,
                        k,
                        ta,
                        pad,
                        accumulate,
                        bias,
                        threads,
                        seed,
                    };
                    check(cs, s);
                }
            }
        }
    }
}

#[test]
fn codes_stored_transposed_or_short_are_errors() {
    let c = vec![2u8; 12];
    let f = vec![0f32; 12];
    let mut out = vec![0f32; 9];
    let tb = Gemm::new(false, true, 3, 3, 4).run_src(&f, Src::Codes(&c), &mut out);
    assert!(tb.is_err(), "codes B stored transposed");
    let short = Gemm::new(false, false, 3, 3, 4).run_src(&f, Src::Codes(&c[..11]), &mut out);
    assert!(short.is_err(), "11 codes for a [4, 3] B");
    assert!(out.iter().all(|&v| v == 0.0), "an error wrote to C");
    let ok = Gemm::new(false, false, 3, 3, 4).run_src(&f, Src::Codes(&c), &mut out);
    assert!(ok.is_ok());
}
