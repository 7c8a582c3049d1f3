//! The fused CPU linear attention against its naive twin, on every SIMD path this CPU has, over
//! random shapes: 1 row, odd head widths, one head and d = h, masks with zeros (all zeros too), and
//! row counts that cross the 64-row blocks and the thread split.

use eraengine::ops::attention::{
    linear_attention_bwd_naive, linear_attention_bwd_on, linear_attention_fwd_naive,
    linear_attention_fwd_on,
};
use eraengine::ops::gemm::Simd;
use proptest::prelude::*;

mod common;
use common::simd::{fill, paths};

fn close(what: &str, got: &[f32], want: &[f32], rtol: f32) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        prop_assert!(
            (g - w).abs() <= rtol * (1.0 + w.abs()),
            "{}[{}]: fused {} vs naive {}",
            what,
            i,
            g,
            w
        );
    }
    Ok(())
}

/// (n, h, dh, mask kind: 0 all ones, 1 some zeros, 2 all zeros, seed); head widths 8, 16 and 32
/// run the loops compiled for a fixed width, the others the run-time width
fn case() -> impl Strategy<Value = (usize, usize, usize, u8, u64)> {
    (
        prop_oneof![Just(1usize), 1usize..10, 60usize..200, 500usize..700],
        1usize..5,
        prop_oneof![
            Just(1usize),
            1usize..20,
            Just(8usize),
            Just(16usize),
            Just(32usize)
        ],
        prop_oneof![4 => Just(0u8), 4 => Just(1u8), 1 => Just(2u8)],
        any::<u64>(),
    )
}

fn check(
    simd: Simd,
    (n, h, dh, mask_kind, seed): (usize, usize, usize, u8, u64),
) -> Result<(), TestCaseError> {
    let d = h * dh;
    let q = fill(n * d, seed, -2.0, 2.0);
    let k = fill(n * d, seed + 1, -2.0, 2.0);
    let v = fill(n * d, seed + 2, -1.0, 1.0);
    let dout = fill(n * d, seed + 3, -1.0, 1.0);
    let mask: Vec<f32> = match mask_kind {
        0 => vec![1.0; n],
        1 => fill(n, seed + 4, 0.0, 1.0)
            .iter()
            .map(|&u| if u < 0.3 { 0.0 } else { 1.0 })
            .collect(),
        _ => vec![0.0; n],
    };
    let run_fwd = |fused: bool| {
        let (mut o, mut s, mut z) = (
            fill(n * d, 9, 5.0, 6.0),
            fill(h * dh * dh, 10, 5.0, 6.0),
            fill(d, 11, 5.0, 6.0),
        );
        if fused {
            linear_attention_fwd_on(
                Some(simd),
                &mut o,
                &mut s,
                &mut z,
                &q,
                &k,
                &v,
                &mask,
                n,
                d,
                h,
            );
        } else {
            linear_attention_fwd_naive(&mut o, &mut s, &mut z, &q, &k, &v, &mask, n, d, h);
        }
        (o, s, z)
    };
    let (of, sf, zf) = run_fwd(true);
    let (on, sn, zn) = run_fwd(false);
    // S and z: the same sums in the same 64-row f32 blocks, f64 across; with heads of width 16 on
    // AVX-512 and AVX2, S's block sums are fused multiply-adds (one rounding where the twin has
    // two), so S, and the output through it, agree to rounding of the 64-row f32 blocks instead
    let fma = matches!(simd, Simd::Avx512 | Simd::Avx2) && dh == 16;
    close("s", &sf, &sn, if fma { 2e-5 } else { 1e-6 })?;
    close("z", &zf, &zn, 1e-6)?;
    close("out", &of, &on, if fma { 3e-5 } else { 1e-5 })?;
    let run_bwd = |fused: bool| {
        let mut g = [
            fill(n * d, 12, -1.0, 1.0),
            fill(n * d, 13, -1.0, 1.0),
            fill(n * d, 14, -1.0, 1.0),
        ];
        let [dq, dk, dv] = &mut g;
        if fused {
            linear_attention_bwd_on(
                Some(simd),
                dq,
                dk,
                dv,
                &dout,
                &q,
                &k,
                &v,
                &mask,
                &sn,
                &zn,
                n,
                d,
                h,
            );
        } else {
            linear_attention_bwd_naive(dq, dk, dv, &dout, &q, &k, &v, &mask, &sn, &zn, n, d, h);
        }
        g
    };
    let gf = run_bwd(true);
    let gn = run_bwd(false);
    // dp = S·dnum and dS are summed in another order (rows of Sᵀ instead of dot products)
    for (name, (a, b)) in ["dq", "dk", "dv"].iter().zip(gf.iter().zip(&gn)) {
        close(name, a, b, 2e-5)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn fused_linear_attention_matches_the_naive_twin_on_every_path(c in case()) {
        for simd in paths("linear attention") {
            check(simd, c)?;
        }
    }
}

#[test]
fn fused_linear_attention_matches_at_the_model_shape() {
    // 5000 × 64, 4 heads: the bench shape, threaded, with a few padded rows
    for simd in paths("linear attention") {
        check(simd, (5000, 4, 16, 1, 42))
            .map_err(|e| format!("{}: {e}", simd.name()))
            .unwrap();
    }
}
