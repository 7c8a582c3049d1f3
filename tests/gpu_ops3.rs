//! The GPU kernels at shapes that reach their multi-block paths, against the CPU reference (the
//! `emu` backend runs the very same `.cu` sources; `cuda` a real GPU when there is one):
//! - the bias gradient of a linear map as the row sums riding on the split dw product (up to 70
//!   outputs and inputs, 1-63 splits), and column sums split over row ranges (more than 1024
//!   rows) with an ordered reduce of the f64 partials: db when k = 0, the gate's masked era mean
//!   and Σ dxt·x;
//! - the gate with more than 256 features (several per-feature blocks, partials of u and du added
//!   in block order), top-k with ties across blocks (a warp per feature ranks it), a rank above
//!   256 (u staged through shared memory in two passes);
//! - softmax cross-attention with nq ≠ nk, key tiles that are wholly masked, row counts that are
//!   not multiples of the tile or of the block, and heads wide enough for 32- and 16-thread blocks.
//!
//! Tolerances as in tests/gpu_ops2.rs for the same ops.

use eraengine::device::{Backend, Cpu};
use eraengine::ops::gate::GateSelect;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

#[macro_use]
mod gpu_common;
use eraengine::gpu::Order;
use gpu_common::attention::cross_run;
use gpu_common::gate::{gate_run, GateCase};
use gpu_common::matches_ref;

/// Deterministic values in [lo, hi) from an index (no RNG: fixed cases).
fn wave(len: usize, mul: usize, modulo: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len)
        .map(|i| lo + (hi - lo) * ((i * mul + 7) % modulo) as f32 / modulo as f32)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// column sums (linear db)

#[allow(clippy::too_many_arguments)]
fn db_run<B: Backend>(
    dev: &B,
    (n, k, m): (usize, usize, usize),
    x: &[f32],
    w: &[f32],
    dout: &[f32],
    db0: &[f32],
) -> eraengine::Result<(Vec<f32>, Vec<f32>)> {
    let (x, w, dy) = (dev.upload(x)?, dev.upload(w)?, dev.upload(dout)?);
    let mut dw = dev.upload(&wave(m * k, 5, 17, -0.5, 0.5))?;
    let mut db = dev.upload(db0)?;
    dev.linear_bwd(None, &mut dw, Some(&mut db), &dy, &x, &w, n, k, m)?;
    Ok((dev.download(&dw)?, dev.download(&db)?))
}

fn linear_db_over_many_rows_matches_cpu<B: Backend>(dev: &B) -> TestCaseResult {
    // (n, k, m): db rides on the split dw product (the first column tile of every split writes
    // its row sums of doutᵀ, the dw reduce adds them). One row tile and 21 splits of 64 rows;
    // three row tiles (m = 70) and a partial last split; two column tiles (k = 70: only the
    // first writes the sums) and two row tiles; one split (n ≤ 64); 63 splits of 272 rows (the
    // cap of 64 splits, rows rounded to slices of 16); and k = 0, where db is the split column
    // sum and its ordered reduce
    for (n, k, m) in [
        (1333usize, 3usize, 5usize),
        (2100, 4, 70),
        (1024, 2, 33),
        (1025, 2, 33),
        (300, 70, 70),
        (60, 3, 7),
        (17000, 2, 3),
        (1500, 0, 40),
    ] {
        let x = wave(n * k, 37, 101, -1.0, 1.0);
        let w = wave(m * k, 13, 29, -1.0, 1.0);
        let dout = wave(n * m, 7, 23, -1.0, 1.0);
        let db0: Vec<f32> = (0..m).map(|i| (i % 3) as f32 * 0.5).collect();
        let (want_dw, want) = db_run(&Cpu, (n, k, m), &x, &w, &dout, &db0).unwrap();
        let (got_dw, got) = db_run(dev, (n, k, m), &x, &w, &dout, &db0).unwrap();
        // db sums up to 17000 values of size ≤ 1: f32 within a split of 64-272 rows and f64
        // across (the CPU: blocks of 256 rows); dw the same products as tests/gpu_ops2.rs
        matches_ref(&format!("db n={n} k={k} m={m}"), &got, &want, 1e-5, 1e-5)?;
        matches_ref(
            &format!("dw n={n} k={k} m={m}"),
            &got_dw,
            &want_dw,
            1e-4,
            1e-4,
        )?;
    }
    Ok(())
}
gpu_test!(linear_db_over_many_rows_matches_cpu, [Order::Reverse]);

// ---------------------------------------------------------------------------------------------
// gate

/// More than 256 features and 64 rows; w from a few values and b often 0, so tied gates are
/// common (also across the blocks of 256 features).
fn gate_case() -> impl Strategy<Value = GateCase> {
    (65usize..200, 257usize..700, 0usize..4).prop_flat_map(|(n, f, r)| {
        let select = prop_oneof![
            (0.3f32..0.95).prop_map(GateSelect::Threshold),
            (0usize..f + 2).prop_map(GateSelect::TopK),
            Just(GateSelect::TopK(f / 2)),
        ];
        let w = prop::collection::vec(prop::sample::select(vec![-1.0f32, 0.0, 0.5, 2.0]), f);
        let b = prop_oneof![
            Just(vec![0.0f32; f * r]),
            prop::collection::vec(-1.0f32..1.0, f * r)
        ];
        let mask = prop_oneof![
            1 => Just(vec![1.0f32; n]),
            1 => Just(vec![0.0f32; n]),
            3 => prop::collection::vec(prop::sample::select(vec![0.0f32, 1.0]), n),
        ];
        (
            Just(n),
            Just(f),
            Just(r),
            select,
            prop::collection::vec(
                prop::sample::select(vec![-1.0f32, -0.5, 0.0, 0.5, 1.0]),
                n * f,
            ),
            mask,
            w,
            prop::collection::vec(-0.5f32..0.5, f * r),
            b,
            prop::collection::vec(-1.0f32..1.0, n * f),
            prop::collection::vec(-1.0f32..1.0, 2 * f + 2 * f * r),
        )
    })
}

/// x̄, u, ℓ and the backward sums in f64 on both devices: 1e-6 + 1e-6·|cpu|; keep exactly.
fn gate_on_many_features_matches_cpu<B: Backend>(dev: &B, c: &GateCase) -> TestCaseResult {
    gpu_common::gate::gate_matches_cpu(dev, c)
}
gpu_proptest!(6, gate_on_many_features_matches_cpu, gate_case());

/// A rank above 256: u goes through the logit pass's shared memory in two rounds; 1100 rows: the
/// masked column sum of x and Σ dxt·x in several row ranges.
fn gate_with_a_rank_above_256_matches_cpu<B: Backend>(dev: &B) -> TestCaseResult {
    let (n, f, r) = (1100usize, 300usize, 260usize);
    let x = wave(n * f, 7, 5, -1.0, 1.0);
    let mask: Vec<f32> = (0..n).map(|i| if i % 4 == 1 { 0.0 } else { 1.0 }).collect();
    let w = wave(f, 3, 4, -1.0, 2.0);
    let a = wave(f * r, 37, 101, -0.05, 0.05);
    let b = wave(f * r, 53, 89, -0.05, 0.05);
    let dxt = wave(n * f, 11, 19, -1.0, 1.0);
    let g0 = wave(2 * f + 2 * f * r, 5, 7, -1.0, 1.0);
    for select in [GateSelect::TopK(100), GateSelect::Threshold(0.6)] {
        let shape = (n, f, r);
        let cpu = gate_run(&Cpu, shape, select, &x, &mask, &w, &a, &b, &dxt, &g0).unwrap();
        let got = gate_run(dev, shape, select, &x, &mask, &w, &a, &b, &dxt, &g0).unwrap();
        prop_assert_eq!(&got[2], &cpu[2], "keep ({:?})", select);
        for j in 0..9 {
            matches_ref(
                &format!("output {j} {select:?}"),
                &got[j],
                &cpu[j],
                1e-6,
                1e-6,
            )?;
        }
    }
    Ok(())
}
gpu_test!(gate_with_a_rank_above_256_matches_cpu, [Order::Shuffle(5)]);

// ---------------------------------------------------------------------------------------------
// softmax cross-attention

/// Tolerances of tests/ops_cross_attention.rs: out 1e-5 + 1e-4·|cpu|, lse 1e-5 + 1e-5·|cpu|,
/// gradients 1e-4 + 1e-3·|cpu| (online softmax per group of 4 keys vs per 64-key block).
fn softmax_cross_attention_at_multi_tile_shapes_matches_cpu<B: Backend>(dev: &B) -> TestCaseResult {
    // (nq, nk, d, h, masked keys): keys 32..72 masked covers whole tiles; dh = 7, 1, 130 (the
    // dq and dkv passes run 32- and 16-thread blocks), 45 (odd, between)
    type Masked = fn(usize) -> bool;
    let cases: [(usize, usize, usize, usize, Masked); 5] = [
        (70, 133, 21, 3, |j| (32..72).contains(&j) || j % 7 == 0),
        (200, 9, 8, 8, |j| j == 4),
        (37, 66, 130, 1, |j| j % 3 == 2),
        (65, 97, 90, 2, |_| false),
        (33, 40, 12, 2, |_| true),
    ];
    for (nq, nk, d, h, masked) in cases {
        let q = wave(nq * d, 37, 101, -1.0, 1.0);
        let k = wave(nk * d, 53, 89, -1.0, 1.0);
        let v = wave(nk * d, 7, 23, -1.0, 1.0);
        let mask: Vec<f32> = (0..nk).map(|j| if masked(j) { 0.0 } else { 1.0 }).collect();
        let dout = wave(nq * d, 11, 19, -1.0, 1.0);
        let g0 = wave((nq + 2 * nk) * d, 5, 3, 0.0, 1.5);
        let shape = (nq, nk, d, h);
        let cpu = cross_run(&Cpu, shape, &q, &k, &v, &mask, &dout, &g0).unwrap();
        let got = cross_run(dev, shape, &q, &k, &v, &mask, &dout, &g0).unwrap();
        for (j, name) in ["out", "lse", "dq", "dk", "dv"].iter().enumerate() {
            let (atol, rtol) = match j {
                0 => (1e-5, 1e-4),
                1 => (1e-5, 1e-5),
                _ => (1e-4, 1e-3),
            };
            let what = format!("{name} nq={nq} nk={nk} d={d} h={h}");
            matches_ref(&what, &got[j], &cpu[j], atol, rtol)?;
        }
    }
    Ok(())
}
gpu_test!(
    softmax_cross_attention_at_multi_tile_shapes_matches_cpu,
    [Order::Forward, Order::Shuffle(11)]
);
