//! GEMM against a naive f64 oracle on random shapes, every transpose form, accumulate flag and
//! epilogue, on every SIMD path this CPU has (each path forced; a missing one is reported). B given
//! as era codes (`Src::Codes`, value (c − 2) / 2) against the product of the decoded f32 matrix,
//! bit for bit, on random shapes and shapes that cross every block boundary.

use eraengine::error::Error;
use eraengine::ops::codes::decode_into;
use eraengine::ops::gemm::{gemm, Gemm, Simd, Src};
use proptest::prelude::*;

/// Deterministic values in [-1, 1).
fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The paths this CPU can run; the others are named on stderr so a skip is never silent.
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

struct Case {
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    /// Extra stride beyond the stored row length, for A, B, C.
    pad: [usize; 3],
    alpha: f32,
    accumulate: bool,
    bias: bool,
    act: bool,
    threads: Option<usize>,
    seed: u64,
}

fn relu(row: &mut [f32]) {
    for v in row {
        *v = v.max(0.0);
    }
}

/// Runs the case on `simd` and checks every element of C (and the padding) against f64.
fn check(cs: &Case, simd: Simd) {
    let (m, n, k) = (cs.m, cs.n, cs.k);
    let (ar, ac) = if cs.ta { (k, m) } else { (m, k) };
    let (br, bc) = if cs.tb { (n, k) } else { (k, n) };
    let (lda, ldb, ldc) = (ac + cs.pad[0], bc + cs.pad[1], n + cs.pad[2]);
    let a = fill(ar * lda, cs.seed);
    let b = fill(br * ldb, cs.seed + 1);
    let c0 = fill(m * ldc, cs.seed + 2);
    let bias = fill(n, cs.seed + 3);
    let mut c = c0.clone();
    let act: &(dyn Fn(&mut [f32]) + Sync) = &relu;
    let g = Gemm {
        lda,
        ldb,
        ldc,
        alpha: cs.alpha,
        accumulate: cs.accumulate,
        bias: cs.bias.then_some(&bias[..]),
        act: cs.act.then_some(act),
        simd: Some(simd),
        threads: cs.threads,
        ..Gemm::new(cs.ta, cs.tb, m, n, k)
    };
    g.run(&a, &b, &mut c).unwrap();
    let at = |i: usize, p: usize| if cs.ta { a[p * lda + i] } else { a[i * lda + p] } as f64;
    let bt = |p: usize, j: usize| if cs.tb { b[j * ldb + p] } else { b[p * ldb + j] } as f64;
    for i in 0..m {
        for j in 0..ldc {
            let got = c[i * ldc + j] as f64;
            if j >= n {
                assert_eq!(
                    got,
                    c0[i * ldc + j] as f64,
                    "padding of C changed at ({i},{j})"
                );
                continue;
            }
            let (mut s, mut mag) = (0f64, 0f64);
            for p in 0..k {
                s += at(i, p) * bt(p, j);
                mag += (at(i, p) * bt(p, j)).abs();
            }
            let mut want = cs.alpha as f64 * s;
            mag *= (cs.alpha as f64).abs();
            if cs.accumulate {
                want += c0[i * ldc + j] as f64;
                mag += (c0[i * ldc + j] as f64).abs();
            }
            if cs.bias {
                want += bias[j] as f64;
                mag += (bias[j] as f64).abs();
            }
            if cs.act {
                want = want.max(0.0);
            }
            // f32 summation error grows with k; a wrong or missing term is ~1e-1, far above this
            let tol = 2.0 * f32::EPSILON as f64 * (k as f64 + 3.0) * mag + 1e-30;
            assert!(
                (got - want).abs() <= tol,
                "{}: m {m} n {n} k {k} ta {} tb {} acc {}: C[{i},{j}] = {got}, want {want} (tol {tol})",
                simd.name(),
                cs.ta,
                cs.tb,
                cs.accumulate
            );
        }
    }
}

fn shape() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1usize), 1usize..80, 0usize..3]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_shapes_match_the_f64_oracle_on_every_path(
        m in shape(), n in shape(), k in prop_oneof![Just(0usize), Just(1usize), 1usize..300],
        ta: bool, tb: bool, accumulate: bool, bias: bool, act: bool,
        pad in prop::array::uniform3(prop_oneof![Just(0usize), 1usize..5]),
        alpha in prop_oneof![Just(1.0f32), -2.0f32..2.0],
        seed in 0u64..1000,
    ) {
        let cs = Case { m, n, k, ta, tb, pad, alpha, accumulate, bias, act, threads: Some(1), seed };
        for s in paths() {
            check(&cs, s);
        }
    }
}

/// Shapes that cross every block boundary (k > KC, m > MC, ragged edges), with row-major A both
/// packed (n > 1,024) and read in place (n ≤ 1,024; B then packed whole where it fits, else a slice
/// of k at a time), transposed A and plain B both packed (stride > 256) and read in place, each
/// form, single- and multi-threaded.
#[test]
fn blocked_and_threaded_shapes_match_the_oracle() {
    let shapes = [
        (390, 1030, 260), // m > MC (384), k > KC, n > 1,024: A packed, ragged m and n
        (401, 150, 300),  // the same with A read in place (n ≤ 1,024), B packed whole
        (100, 700, 600),  // A in place over 22 column panels, B too big to pack whole
        (37, 42, 700),    // n = 42: full + half panel; k spans three KC blocks
        (13, 128, 3100),  // A in place, B too big to pack whole: one KC slice of B at a time
        (130, 64, 64),    // the model's d × d, m-split over threads
        (20, 24, 12_000), // small m, huge k: split-k over threads
        (250, 80, 600), // strides ≤ 256: transposed A and plain B read in place (80 = 2 + ½ panels)
        (3000, 1, 64),  // one output column (the head): split by its padded work, not its flops
        (3000, 64, 1),  // k = 1 (the head's input gradient): split likewise
    ];
    for s in paths() {
        for &(m, n, k) in &shapes {
            for (ta, tb) in [(false, true), (false, false), (true, false), (true, true)] {
                for threads in [Some(1), Some(2), Some(3)] {
                    let cs = Case {
                        m,
                        n,
                        k,
                        ta,
                        tb,
                        pad: [1, 0, 3],
                        alpha: 0.5,
                        accumulate: true,
                        bias: true,
                        act: false,
                        threads,
                        seed: (m * n + k) as u64,
                    };
                    check(&cs, s);
                }
            }
        }
    }
}

#[test]
fn threaded_results_are_deterministic() {
    let (m, n, k) = (64, 64, 5000);
    let a = fill(k * m, 1);
    let b = fill(k * n, 2);
    let run = || {
        let mut c = vec![0f32; m * n];
        let g = Gemm {
            threads: Some(2),
            ..Gemm::new(true, false, m, n, k)
        };
        g.run(&a, &b, &mut c).unwrap();
        c
    };
    assert_eq!(run(), run());
}

#[test]
fn short_slices_and_bad_strides_are_shape_errors() {
    let a = vec![0f32; 6];
    let b = vec![0f32; 6];
    let mut c = vec![0f32; 4];
    // A [2,3] needs 6 values with lda 3; lda 2 < 3 is a bad stride
    assert!(matches!(
        gemm(None, false, false, 2, 2, 3, &a, 2, &b, 2, &mut c, 2, false),
        Err(Error::Shape(_))
    ));
    // B [3,2] with ldb 3 needs 8 values
    assert!(matches!(
        gemm(None, false, false, 2, 2, 3, &a, 3, &b, 3, &mut c, 2, false),
        Err(Error::Shape(_))
    ));
    // C [2,2] with ldc 3 needs 5 values
    assert!(matches!(
        gemm(None, false, false, 2, 2, 3, &a, 3, &b, 2, &mut c, 3, false),
        Err(Error::Shape(_))
    ));
    // overflow in (rows - 1) · ld is an error, not a wrap
    assert!(matches!(
        gemm(
            None,
            false,
            false,
            2,
            2,
            3,
            &a,
            usize::MAX,
            &b,
            2,
            &mut c,
            2,
            false
        ),
        Err(Error::Shape(_))
    ));
    let short_bias = [0f32; 1];
    let g = Gemm {
        bias: Some(&short_bias),
        ..Gemm::new(false, false, 2, 2, 3)
    };
    assert!(matches!(g.run(&a, &b, &mut c), Err(Error::Shape(_))));
    assert!(c.iter().all(|&v| v == 0.0), "an error wrote to C");
    // a well-formed call succeeds
    gemm(None, false, false, 2, 2, 3, &a, 3, &b, 2, &mut c, 2, false).unwrap();
}

#[test]
fn forcing_a_missing_path_is_an_error() {
    for s in Simd::ALL {
        let g = Gemm {
            simd: Some(s),
            ..Gemm::new(false, false, 1, 1, 1)
        };
        let mut c = [0f32];
        let r = g.run(&[2.0], &[3.0], &mut c);
        if s.available() {
            r.unwrap();
            assert_eq!(c[0], 6.0);
        } else {
            assert!(matches!(r, Err(Error::Usage(_))));
        }
    }
    assert!(Simd::detect().available());
}

/// A product with one output column or k = 1 counts its padded tile work against the threshold for
/// splitting (so the model's one-output head runs on every thread), and a small one stays serial.
/// The shapes split on every path: one column is padded to 8 (AVX2, portable) or 16 (AVX-512).
#[test]
fn narrow_products_split_by_their_tile_work() {
    use eraengine::ops::par;
    for (m, n, k, split) in [(6000, 1, 64, true), (3000, 64, 1, true), (40, 1, 8, false)] {
        let a = fill(m * k, 5);
        let b = fill(n * k, 6);
        let mut c = vec![0f32; m * n];
        let before = par::parallel_dispatches_on_this_thread();
        Gemm {
            threads: Some(2),
            ..Gemm::new(false, true, m, n, k)
        }
        .run(&a, &b, &mut c)
        .unwrap();
        let ran_split = par::parallel_dispatches_on_this_thread() > before;
        assert_eq!(ran_split, split, "m {m} n {n} k {k}");
    }
}

// ---- B as era codes ----------------------------------------------------------------------------

/// Deterministic codes in 0..=4 (from `fill`'s values in [-1, 1)).
fn codes(len: usize, seed: u64) -> Vec<u8> {
    fill(len, seed)
        .iter()
        .map(|&v| ((v + 1.0) * 2.5) as u8)
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct CodesCase {
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

fn check_codes(cs: CodesCase, simd: Simd) {
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
    let a = fill(alen, cs.seed + 7);
    let bias = fill(n, cs.seed + 9);
    let c0 = fill(len(m, ldc, n).max(1), cs.seed + 11);
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
        let cs = CodesCase { m, n, k, ta, pad, accumulate, bias, threads, seed };
        for s in paths() {
            check_codes(cs, s);
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
                    let cs = CodesCase {
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
                    check_codes(cs, s);
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
