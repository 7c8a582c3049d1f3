//! CPU softmax (cross-)attention, forward and backward, against a plain f64 oracle written here,
//! on every SIMD path this CPU has (the AVX-512 flash kernels and the scalar loops), over random
//! shapes: 1 query, 1 key, nq ≠ nk, head widths from 1 to past the AVX-512 kernels' 64 (which
//! then take the scalar loops), masks with zeros (all zeros too), row counts that are not
//! multiples of the 8-row tiles or the 64- and 256-key blocks, and the model's shape threaded.

use eraengine::ops::attention::{softmax_attention_bwd_on, softmax_attention_fwd_on};
use eraengine::ops::gemm::Simd;
use proptest::prelude::*;

mod common;
use common::simd::{fill, paths};

/// The f64 oracle: (out [nq,d], lse [h,nq], dq, dk, dv) for upstream gradient dout, straight
/// from the definitions (P = softmax over the real keys, dS = P ⊙ (dO·Vᵀ − rowsum(P ⊙ dO·Vᵀ))),
/// and for dq, dk, dv the sums of their terms' magnitudes (dS's difference taken as |dP| + |D|):
/// the scale of the f32 rounding in a sum that cancels.
#[allow(clippy::type_complexity)]
fn oracle(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    dout: &[f32],
    (nq, nk, d, h): (usize, usize, usize, usize),
) -> (Vec<f64>, Vec<f64>, [Vec<f64>; 3], [Vec<f64>; 3]) {
    let dh = d / h;
    let scale = 1.0 / (dh as f64).sqrt();
    let (mut out, mut lse) = (vec![0.0; nq * d], vec![0.0; h * nq]);
    let (mut dq, mut dk, mut dv) = (vec![0.0; nq * d], vec![0.0; nk * d], vec![0.0; nk * d]);
    let (mut mq, mut mk, mut mv) = (dq.clone(), dk.clone(), dv.clone());
    let keys: Vec<usize> = (0..nk).filter(|&j| mask[j] != 0.0).collect();
    if keys.is_empty() {
        return (out, lse, [dq, dk, dv], [mq, mk, mv]);
    }
    let x = |a: &[f32], i: usize, hd: usize, c: usize| a[i * d + hd * dh + c] as f64;
    for hd in 0..h {
        for i in 0..nq {
            let s: Vec<f64> = keys
                .iter()
                .map(|&j| {
                    scale
                        * (0..dh)
                            .map(|c| x(q, i, hd, c) * x(k, j, hd, c))
                            .sum::<f64>()
                })
                .collect();
            let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = s.iter().map(|t| (t - mx).exp()).sum();
            let p: Vec<f64> = s.iter().map(|t| (t - mx).exp() / total).collect();
            lse[hd * nq + i] = mx + total.ln();
            for c in 0..dh {
                out[i * d + hd * dh + c] = keys
                    .iter()
                    .zip(&p)
                    .map(|(&j, &pj)| pj * x(v, j, hd, c))
                    .sum();
            }
            let dp: Vec<f64> = keys
                .iter()
                .map(|&j| (0..dh).map(|c| x(dout, i, hd, c) * x(v, j, hd, c)).sum())
                .collect();
            let dsum: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
            for (t, &j) in keys.iter().enumerate() {
                let ds = p[t] * (dp[t] - dsum);
                let dsm = p[t] * (dp[t].abs() + dsum.abs());
                for c in 0..dh {
                    let (iq, jk) = (i * d + hd * dh + c, j * d + hd * dh + c);
                    dq[iq] += scale * ds * x(k, j, hd, c);
                    dk[jk] += scale * ds * x(q, i, hd, c);
                    dv[jk] += p[t] * x(dout, i, hd, c);
                    mq[iq] += scale * dsm * x(k, j, hd, c).abs();
                    mk[jk] += scale * dsm * x(q, i, hd, c).abs();
                    mv[jk] += p[t] * x(dout, i, hd, c).abs();
                }
            }
        }
    }
    (out, lse, [dq, dk, dv], [mq, mk, mv])
}

fn close(what: &str, got: &[f32], want: &[f64], tol: f64) -> Result<(), TestCaseError> {
    close_grad(what, got, want, &vec![0.0; want.len()], tol)
}

/// |got − want| ≤ tol·(1 + |want|) + 4e-6·mag. For a gradient, whose kernels sum in f32 over up
/// to 64 query rows (or keys) before the f64 total, `mag` is the sum of its terms' magnitudes
/// (about 32 f32 ulps of it are allowed); [`close`] passes zeros.
/// A sum that cancels (one key: dV = Σ_i dO_i, 140 terms of ±1 adding to 0.02) is then judged
/// against the rounding its terms carry, while a lost or doubled term, at least mag / (terms),
/// stays far outside it at these sizes.
fn close_grad(
    what: &str,
    got: &[f32],
    want: &[f64],
    mag: &[f64],
    tol: f64,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    prop_assert_eq!(mag.len(), want.len());
    for (i, ((&g, &w), &m)) in got.iter().zip(want).zip(mag).enumerate() {
        prop_assert!(
            (g as f64 - w).abs() <= tol * (1.0 + w.abs()) + 4e-6 * m,
            "{}[{}]: {} vs oracle {} (terms' magnitudes {})",
            what,
            i,
            g,
            w,
            m
        );
    }
    Ok(())
}

/// (nq, nk or 0 for self-attention, h, dh, mask kind: 0 all ones, 1 some zeros, 2 all zeros, seed)
fn case() -> impl Strategy<Value = (usize, usize, usize, usize, u8, u64)> {
    (
        prop_oneof![Just(1usize), 1usize..12, 60usize..200],
        // 260..600 keys: whole forward blocks of 256 keys as well as a partial last one
        prop_oneof![Just(0usize), Just(1usize), 1usize..150, 260usize..600],
        1usize..5,
        prop_oneof![Just(1usize), 1usize..20, Just(16usize), 30usize..70],
        prop_oneof![4 => Just(0u8), 4 => Just(1u8), 1 => Just(2u8)],
        any::<u64>(),
    )
}

fn check(
    simd: Simd,
    (nq, nk, h, dh, mask_kind, seed): (usize, usize, usize, usize, u8, u64),
) -> Result<(), TestCaseError> {
    let nk = if nk == 0 { nq } else { nk };
    let d = h * dh;
    let q = fill(nq * d, seed, -2.0, 2.0);
    let k = fill(nk * d, seed + 1, -2.0, 2.0);
    let v = fill(nk * d, seed + 2, -1.0, 1.0);
    let dout = fill(nq * d, seed + 3, -1.0, 1.0);
    let mask: Vec<f32> = match mask_kind {
        0 => vec![1.0; nk],
        1 => fill(nk, seed + 4, 0.0, 1.0)
            .iter()
            .map(|&u| if u < 0.3 { 0.0 } else { 2.0 * u })
            .collect(),
        _ => vec![0.0; nk],
    };
    let (wo, wl, wgrad, mags) = oracle(&q, &k, &v, &mask, &dout, (nq, nk, d, h));
    // outputs start as garbage (every value must be written); gradients are added to
    let (mut o, mut l) = (fill(nq * d, 9, 5.0, 6.0), fill(h * nq, 10, 5.0, 6.0));
    softmax_attention_fwd_on(Some(simd), &mut o, &mut l, &q, &k, &v, &mask, nq, nk, d, h);
    close("out", &o, &wo, 2e-6)?;
    close("lse", &l, &wl, 1e-6)?;
    let g0 = [
        fill(nq * d, 12, -1.0, 1.0),
        fill(nk * d, 13, -1.0, 1.0),
        fill(nk * d, 14, -1.0, 1.0),
    ];
    let mut g = g0.clone();
    let [dq, dk, dv] = &mut g;
    softmax_attention_bwd_on(
        Some(simd),
        dq,
        dk,
        dv,
        &dout,
        &o,
        &l,
        &q,
        &k,
        &v,
        &mask,
        nq,
        nk,
        d,
        h,
    );
    for (name, (((got, start), want), mag)) in ["dq", "dk", "dv"]
        .iter()
        .zip(g.iter().zip(&g0).zip(&wgrad).zip(&mags))
    {
        let added: Vec<f32> = got.iter().zip(start).map(|(a, b)| a - b).collect();
        close_grad(name, &added, want, mag, 3e-6)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn softmax_attention_matches_the_f64_oracle_on_every_path(c in case()) {
        for simd in paths("softmax attention") {
            check(simd, c)?;
        }
    }
}

#[test]
fn softmax_attention_matches_at_a_threaded_shape() {
    // 1,500 rows × 64, 4 heads (16 wide): many key blocks and tiles, split over the threads,
    // a few masked rows
    for simd in paths("softmax attention") {
        check(simd, (1500, 0, 4, 16, 1, 42))
            .map_err(|e| format!("{}: {e}", simd.name()))
            .unwrap();
    }
}
