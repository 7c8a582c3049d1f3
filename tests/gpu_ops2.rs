//! The GPU kernels of part 2 (linear, linear attention, gate, positional encoding, softmax attention)
//! against the CPU reference: the GPU backend (`emu`: the very same `.cu` sources run by the CPU
//! emulator, with the backend's real launch configurations, under three thread orders; `cuda`: a
//! real GPU when there is one, see tests/gpu_common) vs `device::Cpu`, forward and backward, on
//! small odd shapes (n = 1, partial tiles, fully masked eras, heads = 1 and heads = d). Backwards
//! start from non-zero gradients, so the `+=` contract is checked too. Finally three training steps
//! of the model on both devices. The device-generic properties of the same ops (f64 oracle, finite
//! differences) are in tests/ops_*.rs and tests/model.rs.
//!
//! Tolerances: |gpu − cpu| ≤ atol + rtol·|cpu|, stated per op below (f32 kernels vs CPU ops that sum
//! in a different order, some in f64).

use eraengine::device::{Backend, Cpu};
use eraengine::ops::gate::GateSelect;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

#[macro_use]
mod gpu_common;
use eraengine::gpu::Order;
use gpu_common::gate::{gate_run, GateCase};
use gpu_common::matches_ref;

fn vals(len: usize, lo: f32, hi: f32) -> BoxedStrategy<Vec<f32>> {
    prop::collection::vec(lo..hi, len).boxed()
}

/// A row mask: all real, fully masked, or mixed.
fn mask_of(n: usize) -> BoxedStrategy<Vec<f32>> {
    prop_oneof![
        1 => Just(vec![1.0f32; n]),
        1 => Just(vec![0.0f32; n]),
        3 => prop::collection::vec(prop::sample::select(vec![0.0f32, 1.0]), n),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// linear

/// n, k, m, with_bias, with_dinp, inp, w, b, dout, initial grads (dinp | dw | db)
type LinCase = (
    usize,
    usize,
    usize,
    bool,
    bool,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
);

fn lin_case() -> impl Strategy<Value = LinCase> {
    (
        1usize..41,
        1usize..17,
        1usize..17,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(n, k, m, bias, dinp)| {
            (
                Just(n),
                Just(k),
                Just(m),
                Just(bias),
                Just(dinp),
                vals(n * k, -2.0, 2.0),
                vals(m * k, -1.0, 1.0),
                vals(m, -1.0, 1.0),
                vals(n * m, -1.0, 1.0),
                vals(n * k + m * k + m, -1.0, 1.0),
            )
        })
}

#[allow(clippy::too_many_arguments)]
fn lin_run<B: Backend>(
    dev: &B,
    (n, k, m): (usize, usize, usize),
    bias: bool,
    with_dinp: bool,
    inp: &[f32],
    w: &[f32],
    b: &[f32],
    dout: &[f32],
    g0: &[f32],
) -> eraengine::Result<[Vec<f32>; 4]> {
    let x = dev.upload(inp)?;
    let wb = dev.upload(w)?;
    let bb = dev.upload(b)?;
    let mut out = dev.upload(&vec![7.0; n * m])?; // the forward overwrites
    dev.linear_fwd(&mut out, &x, &wb, bias.then_some(&bb), n, k, m)?;
    let dy = dev.upload(dout)?;
    let mut dx = dev.upload(&g0[..n * k])?;
    let mut dw = dev.upload(&g0[n * k..n * k + m * k])?;
    let mut db = dev.upload(&g0[n * k + m * k..])?;
    dev.linear_bwd(
        with_dinp.then_some(&mut dx),
        &mut dw,
        bias.then_some(&mut db),
        &dy,
        &x,
        &wb,
        n,
        k,
        m,
    )?;
    Ok([
        dev.download(&out)?,
        dev.download(&dx)?,
        dev.download(&dw)?,
        dev.download(&db)?,
    ])
}

/// Tolerance 2e-5 + 1e-5·|cpu|: both sides are f32 dot products of ≤ 40 terms of size ≤ 2.
fn linear_matches_cpu<B: Backend>(
    dev: &B,
    (n, k, m, bias, with_dinp, inp, w, b, dout, g0): &LinCase,
) -> TestCaseResult {
    let (n, k, m, bias, with_dinp) = (*n, *k, *m, *bias, *with_dinp);
    let cpu = lin_run(&Cpu, (n, k, m), bias, with_dinp, inp, w, b, dout, g0).unwrap();
    let got = lin_run(dev, (n, k, m), bias, with_dinp, inp, w, b, dout, g0).unwrap();
    for (j, name) in ["out", "dinp", "dw", "db"].iter().enumerate() {
        matches_ref(
            &format!("{name} n={n} k={k} m={m}"),
            &got[j],
            &cpu[j],
            2e-5,
            1e-5,
        )?;
    }
    Ok(())
}
gpu_proptest!(20, linear_matches_cpu, lin_case());

fn linear_with_many_rows_splits_dw_and_matches_cpu<B: Backend>(dev: &B) -> TestCaseResult {
    // n = 600 rows: three splits of the dw product and 10 row tiles of the forward; k, m past one tile
    let (n, k, m) = (600usize, 70usize, 5usize);
    let inp: Vec<f32> = (0..n * k)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let w: Vec<f32> = (0..m * k)
        .map(|i| ((i * 13) % 29) as f32 / 14.0 - 1.0)
        .collect();
    let b: Vec<f32> = (0..m).map(|i| i as f32 * 0.1).collect();
    let dout: Vec<f32> = (0..n * m)
        .map(|i| ((i * 7) % 23) as f32 / 11.0 - 1.0)
        .collect();
    let g0: Vec<f32> = (0..n * k + m * k + m)
        .map(|i| (i % 3) as f32 * 0.5)
        .collect();
    let cpu = lin_run(&Cpu, (n, k, m), true, true, &inp, &w, &b, &dout, &g0).unwrap();
    let got = lin_run(dev, (n, k, m), true, true, &inp, &w, &b, &dout, &g0).unwrap();
    for j in 0..4 {
        // dw sums 600 products: 1e-4 relative
        matches_ref(&format!("output {j}"), &got[j], &cpu[j], 1e-4, 1e-4)?;
    }
    Ok(())
}
gpu_test!(
    linear_with_many_rows_splits_dw_and_matches_cpu,
    [Order::Forward]
);

// ---------------------------------------------------------------------------------------------
// attention (linear and softmax share the case generator)

/// n, d, h, q, k, v, mask, dout, initial grads (dq | dk | dv)
type AttnCase = (
    usize,
    usize,
    usize,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
);

/// heads = 1, heads = d (dh = 1) and in between; d ≤ 16, n ≤ 40.
fn attn_case() -> impl Strategy<Value = AttnCase> {
    (1usize..41, 1usize..=4, 1usize..=5)
        .prop_flat_map(|(n, h, dh)| {
            let d = h * dh;
            (
                Just(n),
                Just(d),
                Just(h),
                prop_oneof![Just(h), Just(1usize), Just(d)],
            )
        })
        .prop_flat_map(|(n, d, _, h)| {
            (
                Just(n),
                Just(d),
                Just(h),
                vals(n * d, -2.0, 2.0),
                vals(n * d, -2.0, 2.0),
                vals(n * d, -2.0, 2.0),
                mask_of(n),
                vals(n * d, -1.0, 1.0),
                vals(3 * n * d, -1.0, 1.0),
            )
        })
}

#[allow(clippy::too_many_arguments)]
fn lin_attn_run<B: Backend>(
    dev: &B,
    n: usize,
    d: usize,
    h: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    dout: &[f32],
    g0: &[f32],
) -> eraengine::Result<[Vec<f32>; 6]> {
    let dh = d / h;
    let (qb, kb, vb, mb) = (
        dev.upload(q)?,
        dev.upload(k)?,
        dev.upload(v)?,
        dev.upload(mask)?,
    );
    let mut out = dev.upload(&vec![3.0; n * d])?;
    let mut s = dev.upload(&vec![3.0; h * dh * dh])?;
    let mut z = dev.upload(&vec![3.0; h * dh])?;
    dev.linear_attention_fwd(&mut out, &mut s, &mut z, &qb, &kb, &vb, &mb, n, d, h)?;
    let dy = dev.upload(dout)?;
    let mut dq = dev.upload(&g0[..n * d])?;
    let mut dk = dev.upload(&g0[n * d..2 * n * d])?;
    let mut dv = dev.upload(&g0[2 * n * d..])?;
    dev.linear_attention_bwd(
        &mut dq, &mut dk, &mut dv, &dy, &qb, &kb, &vb, &mb, &s, &z, n, d, h,
    )?;
    Ok([
        dev.download(&out)?,
        dev.download(&s)?,
        dev.download(&z)?,
        dev.download(&dq)?,
        dev.download(&dk)?,
        dev.download(&dv)?,
    ])
}

/// Tolerance 1e-4 + 1e-4·|cpu|: S and z sum up to 40 products of φ ≤ 3 and |v| ≤ 2 in f32; the
/// output divides by den ≥ 1e-6 (a fully masked era gives 0 / 1e-6 = 0 exactly on both).
fn linear_attention_matches_cpu<B: Backend>(
    dev: &B,
    (n, d, h, q, k, v, mask, dout, g0): &AttnCase,
) -> TestCaseResult {
    let (n, d, h) = (*n, *d, *h);
    let cpu = lin_attn_run(&Cpu, n, d, h, q, k, v, mask, dout, g0).unwrap();
    let got = lin_attn_run(dev, n, d, h, q, k, v, mask, dout, g0).unwrap();
    for (j, name) in ["out", "s", "z", "dq", "dk", "dv"].iter().enumerate() {
        matches_ref(
            &format!("{name} n={n} d={d} h={h}"),
            &got[j],
            &cpu[j],
            1e-4,
            1e-4,
        )?;
    }
    Ok(())
}
gpu_proptest!(20, linear_attention_matches_cpu, attn_case());

// ---------------------------------------------------------------------------------------------
// gate

fn gate_case() -> impl Strategy<Value = GateCase> {
    (1usize..41, 1usize..21, 0usize..5).prop_flat_map(|(n, f, r)| {
        let select = prop_oneof![
            Just(GateSelect::Threshold(0.0)),
            (0.3f32..0.95).prop_map(GateSelect::Threshold),
            (0usize..f + 2).prop_map(GateSelect::TopK),
        ];
        // w from a few values and b often 0, so equal gates (ties in top-k) are common
        let w = prop::collection::vec(prop::sample::select(vec![-1.0f32, 0.0, 0.5, 2.0]), f);
        let b = prop_oneof![Just(vec![0.0f32; f * r]), vals(f * r, -1.0, 1.0)];
        (
            Just(n),
            Just(f),
            Just(r),
            select,
            prop::collection::vec(
                prop::sample::select(vec![-1.0f32, -0.5, 0.0, 0.5, 1.0]),
                n * f,
            ),
            mask_of(n),
            w,
            vals(f * r, -0.5, 0.5),
            b,
            vals(n * f, -1.0, 1.0),
            vals(2 * f + 2 * f * r, -1.0, 1.0),
        )
    })
}

/// Both devices compute x̄, u, ℓ and the backward sums in f64 and round once: 1e-6 + 1e-6·|cpu|;
/// keep (threshold and top-k with ties) must match exactly.
fn gate_matches_cpu<B: Backend>(dev: &B, c: &GateCase) -> TestCaseResult {
    gpu_common::gate::gate_matches_cpu(dev, c)
}
gpu_proptest!(24, gate_matches_cpu, gate_case());

/// On every device (an invariant, not a comparison).
fn top_k_ties_go_to_the_lower_feature_index<B: Backend>(dev: &B) -> TestCaseResult {
    // static gate, w = [1, 2, 2, 1, 2]: gates tie in two groups; top-2 keeps features 1 and 2,
    // top-4 also keeps feature 0 (the lower index of the tied 1s)
    let (n, f) = (3usize, 5usize);
    let w = [1.0f32, 2.0, 2.0, 1.0, 2.0];
    let x = vec![1.0f32; n * f];
    let mask = vec![1.0f32; n];
    for (k, want) in [
        (2usize, vec![0.0f32, 1.0, 1.0, 0.0, 0.0]),
        (4, vec![1.0, 1.0, 1.0, 0.0, 1.0]),
    ] {
        let got = gate_run(
            dev,
            (n, f, 0),
            GateSelect::TopK(k),
            &x,
            &mask,
            &w,
            &[],
            &[],
            &vec![0.0; n * f],
            &vec![0.0; 2 * f],
        )
        .unwrap();
        prop_assert_eq!(&got[2], &want, "top-{}", k);
    }
    Ok(())
}
device_test!(
    top_k_ties_go_to_the_lower_feature_index,
    [Order::Forward, Order::Reverse]
);

// ---------------------------------------------------------------------------------------------
// positional encoding

fn pos_enc_case() -> impl Strategy<Value = (usize, usize, Vec<f32>)> {
    (1usize..41, 1usize..17).prop_flat_map(|(n, d)| (Just(n), Just(d), vals(n * d, -2.0, 2.0)))
}

/// Both sides compute the encoding in f64 and round once; the f32 add may differ by one ulp of
/// |h| + 1: 1e-6 + 1e-6·|cpu|.
fn pos_enc_add_matches_cpu<B: Backend>(
    dev: &B,
    (n, d, h0): &(usize, usize, Vec<f32>),
) -> TestCaseResult {
    let (n, d) = (*n, *d);
    let mut want = h0.clone();
    Cpu.pos_enc_add(&mut want, n, d).unwrap();
    let mut h = dev.upload(h0).unwrap();
    dev.pos_enc_add(&mut h, n, d).unwrap();
    matches_ref(
        &format!("pos_enc n={n} d={d}"),
        &dev.download(&h).unwrap(),
        &want,
        1e-6,
        1e-6,
    )
}
gpu_proptest!(16, pos_enc_add_matches_cpu, pos_enc_case());

fn pos_enc_add_matches_cpu_on_long_eras<B: Backend>(dev: &B) -> TestCaseResult {
    // row indices up to 5000: the angle of column 0 is i radians, far past one turn
    let (n, d) = (5000usize, 6usize);
    let mut want = vec![0.0f32; n * d];
    Cpu.pos_enc_add(&mut want, n, d).unwrap();
    let mut h = dev.zeros(n * d).unwrap();
    dev.pos_enc_add(&mut h, n, d).unwrap();
    matches_ref("pe", &dev.download(&h).unwrap(), &want, 1e-6, 0.0)
}
gpu_test!(pos_enc_add_matches_cpu_on_long_eras, [Order::Forward]);

#[allow(clippy::too_many_arguments)]
fn softmax_attn_run<B: Backend>(
    dev: &B,
    n: usize,
    d: usize,
    h: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    dout: &[f32],
    g0: &[f32],
) -> eraengine::Result<[Vec<f32>; 5]> {
    gpu_common::attention::cross_run(dev, (n, n, d, h), q, k, v, mask, dout, g0)
}

/// Tolerance 1e-5 + 1e-4·|cpu|: online softmax in f32 on the GPU (per key) vs f32 blocks of 64
/// keys with an f64 denominator on the CPU; fully masked eras must give out = 0, lse = 0 and
/// leave the gradients as they were (asserted on both devices).
fn softmax_attention_matches_cpu<B: Backend>(
    dev: &B,
    (n, d, h, q, k, v, mask, dout, g0): &AttnCase,
) -> TestCaseResult {
    let (n, d, h) = (*n, *d, *h);
    let cpu = softmax_attn_run(&Cpu, n, d, h, q, k, v, mask, dout, g0).unwrap();
    let got = softmax_attn_run(dev, n, d, h, q, k, v, mask, dout, g0).unwrap();
    if mask.iter().all(|&m| m == 0.0) {
        for r in [&cpu, &got] {
            prop_assert!(r[0].iter().all(|&o| o == 0.0));
            prop_assert!(r[1].iter().all(|&l| l == 0.0));
            prop_assert_eq!(&r[2], &g0[..n * d].to_vec());
        }
    }
    for (j, name) in ["out", "lse", "dq", "dk", "dv"].iter().enumerate() {
        matches_ref(
            &format!("{name} n={n} d={d} h={h}"),
            &got[j],
            &cpu[j],
            1e-5,
            1e-4,
        )?;
    }
    Ok(())
}
gpu_proptest!(20, softmax_attention_matches_cpu, attn_case());

/// Deterministic attention inputs of `n` rows × `d` columns (q, k, v, mask with every fifth row
/// masked, dout, and the three gradients' initial values) for the fixed-shape tests.
#[allow(clippy::type_complexity)]
fn fixed_attn_inputs(
    n: usize,
    d: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let q: Vec<f32> = (0..n * d)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let k: Vec<f32> = (0..n * d)
        .map(|i| ((i * 53) % 89) as f32 / 44.0 - 1.0)
        .collect();
    let v: Vec<f32> = (0..n * d)
        .map(|i| ((i * 7) % 23) as f32 / 11.0 - 1.0)
        .collect();
    let mask: Vec<f32> = (0..n).map(|i| if i % 5 == 3 { 0.0 } else { 1.0 }).collect();
    let dout: Vec<f32> = (0..n * d)
        .map(|i| ((i * 11) % 19) as f32 / 9.0 - 1.0)
        .collect();
    let g0: Vec<f32> = (0..3 * n * d).map(|i| (i % 3) as f32 * 0.5).collect();
    (q, k, v, mask, dout, g0)
}

fn linear_attention_with_many_rows_and_wide_heads_matches_cpu<B: Backend>(
    dev: &B,
) -> TestCaseResult {
    // several 64-row tiles with a partial last one (n = 150, dh 32 as at d 256 / 8 heads), the
    // head's state in shared memory with few rows per block (dh 96) and read from global memory
    // (dh 120: it does not fit beside 8 rows)
    for (n, d, h) in [(150usize, 64usize, 2usize), (40, 96, 1), (30, 240, 2)] {
        let (q, k, v, mask, dout, g0) = fixed_attn_inputs(n, d);
        linear_attention_matches_cpu(dev, &(n, d, h, q, k, v, mask, dout, g0))?;
    }
    Ok(())
}
gpu_test!(
    linear_attention_with_many_rows_and_wide_heads_matches_cpu,
    [Order::Forward, Order::Reverse]
);

fn softmax_attention_with_many_keys_and_wide_heads_matches_cpu<B: Backend>(
    dev: &B,
) -> TestCaseResult {
    // the register path split into parts: n = 150 keys, dh 4 (several query blocks, a partial
    // tile) and n = 300, dh 8 (several 256-row tiles in dq and dkv); dh = 24: the wider heads'
    // shapes (dq unsplit); dh = 96 forces the shared-memory path's smaller tiles
    for (n, d, h) in [
        (150usize, 8usize, 2usize),
        (300, 16, 2),
        (100, 48, 2),
        (70, 96, 1),
    ] {
        let (q, k, v, mask, dout, g0) = fixed_attn_inputs(n, d);
        let cpu = softmax_attn_run(&Cpu, n, d, h, &q, &k, &v, &mask, &dout, &g0).unwrap();
        let got = softmax_attn_run(dev, n, d, h, &q, &k, &v, &mask, &dout, &g0).unwrap();
        for j in 0..5 {
            matches_ref(
                &format!("n={n} d={d} output {j}"),
                &got[j],
                &cpu[j],
                1e-5,
                1e-4,
            )?;
        }
    }
    Ok(())
}
gpu_test!(
    softmax_attention_with_many_keys_and_wide_heads_matches_cpu,
    [Order::Reverse]
);

// ---------------------------------------------------------------------------------------------
// the whole model: forward, loss, backward, clipped Adam through `train::train_step`

/// (losses per step, gradients after the last step, parameters after the last step) by name order
type StepResult = (Vec<[f32; 4]>, Vec<Vec<f32>>, Vec<Vec<f32>>);

fn train_steps<B: Backend>(
    dev: &B,
    cfg: &eraengine::model::Config,
    batch: &eraengine::train::era::EraBatch,
    steps: u64,
) -> eraengine::Result<StepResult> {
    use eraengine::params::{Adam, Params};
    use eraengine::train::{train_step, TrainOptions, Trained};
    let tensors = eraengine::model::init_params(cfg, 11);
    let params = Params::from_host(dev, &tensors)?;
    let model = eraengine::model::EraTransformer::new(cfg.clone(), &params)?;
    let mut m = Trained {
        model,
        params,
        features: (0..cfg.n_features).map(|i| format!("f{i}")).collect(),
        targets: (0..cfg.n_targets).map(|i| format!("t{i}")).collect(),
        // a fixed standardisation (mean 0.1, std 0.5 per statistic) when the model has an era context
        context: (cfg.context_dim > 0).then(|| eraengine::train::context::ContextNorm {
            mean: vec![0.1; 2 * cfg.n_features],
            std: vec![0.5; 2 * cfg.n_features],
        }),
    };
    let opts = TrainOptions {
        epochs: 1,
        seed: 5,
        lr: 1e-3,
        weight_decay: 0.01,
        clip: 1.0,
        max_steps: None,
        patience: 1,
        threshold_warmup: 0,
        out: None,
        grads_out: None,
        quiet: true,
        resume: None,
        ..TrainOptions::default()
    };
    let mut adam = Adam::new(dev, &m.params, opts.lr, opts.weight_decay)?;
    let mut losses = Vec::new();
    for step in 0..steps {
        let (parts, _g) = train_step(dev, &mut m, &mut adam, batch, &opts, step)?;
        losses.push([parts.loss, parts.mse, parts.sparsity, parts.count]);
    }
    let grads = m
        .params
        .grads
        .iter()
        .map(|g| dev.download(g))
        .collect::<eraengine::Result<Vec<_>>>()?;
    let values = m
        .params
        .values
        .iter()
        .map(|v| dev.download(v))
        .collect::<eraengine::Result<Vec<_>>>()?;
    Ok((losses, grads, values))
}

fn tiny_batch(n: usize, f: usize, t: usize) -> eraengine::train::era::EraBatch {
    // features on the preprocessed grid −1..1 (rows differ, so attention matters), targets in
    // [0, 1] with one missing
    let x: Vec<f32> = (0..n * f)
        .map(|i| {
            let (r, c) = (i / f, i % f);
            ((r * 3 + c * c + r * c + 1) % 5) as f32 * 0.5 - 1.0
        })
        .collect();
    let mut y: Vec<f32> = (0..n * t)
        .map(|i| ((i * 3 + 1) % 5) as f32 * 0.25)
        .collect();
    y[2] = f32::NAN;
    eraengine::train::era::EraBatch {
        name: "era0001".into(),
        n,
        f,
        t,
        x,
        codes: None,
        y,
        mask: vec![1.0; n],
        col_sums: None,
        stats: None,
    }
}

/// d 8, 2 heads, 1 layer, F 5, n 7, with dropout: three training steps on the emulated GPU and on the
/// CPU agree. Losses to 1e-5 relative; gradients to 1e-5 + 1e-3·|cpu|; parameters (after three
/// AdamW steps of lr 1e-3, each moving a parameter by about lr) to 2e-6 absolute, except where the
/// gradient is zero up to rounding (see below). The second configuration switches every option that
/// has its own kernel: softmax attention, positional encoding, top-k selection, the static gate;
/// the third the correlation loss and the era context with FiLM (docs/model.md).
fn one_training_step_of_the_model_matches_cpu<B: Backend>(dev: &B) -> TestCaseResult {
    use eraengine::model::{Attention, Config};
    let (n, f, t) = (7usize, 5usize, 2usize);
    let batch = tiny_batch(n, f, t);
    let mut base = Config::new(f, t);
    base.d_model = 8;
    base.heads = 2;
    base.layers = 1;
    base.d_ff = 16;
    base.gate_rank = 2;
    let mut variant = base.clone();
    variant.attention = Attention::Softmax;
    variant.pos_enc = true;
    variant.top_k = Some(3);
    variant.gate_rank = 0;
    // the options of docs/model.md: the correlation loss and the era context with FiLM (noised)
    let mut quality = base.clone();
    quality.corr_weight = 1.0;
    quality.context_dim = 3;
    quality.context_noise = 0.5;
    for (name, cfg) in [
        ("linear attention", base),
        ("softmax, pos-enc, top-k, static gate", variant),
        ("correlation loss, era context with FiLM", quality),
    ] {
        let cpu = train_steps(&Cpu, &cfg, &batch, 3).unwrap();
        {
            let gpu = train_steps(dev, &cfg, &batch, 3).unwrap();
            for (s, (g, c)) in gpu.0.iter().zip(&cpu.0).enumerate() {
                for k in 0..4 {
                    assert!(
                        (g[k] - c[k]).abs() <= 1e-5 * c[k].abs().max(1e-3),
                        "{name} step {s} loss part {k}: {} vs {}",
                        g[k],
                        c[k]
                    );
                }
            }
            for (p, (g, c)) in gpu.1.iter().zip(&cpu.1).enumerate() {
                for (i, (a, b)) in g.iter().zip(c).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 + 1e-3 * b.abs(),
                        "{name} grad {p}[{i}]: {a} vs {b}"
                    );
                }
            }
            for (p, (g, c)) in gpu.2.iter().zip(&cpu.2).enumerate() {
                for (i, (a, b)) in g.iter().zip(c).enumerate() {
                    // a gradient that is zero up to rounding (the key bias of softmax attention:
                    // softmax ignores a shift shared by all keys) is normalised by Adam into a step
                    // of ±lr whose sign is noise on both devices: only the size of the move is bound
                    let noise = cpu.1[p][i].abs() < 1e-7;
                    let tol = if noise { 3.0 * 3e-3 } else { 2e-6 };
                    assert!((a - b).abs() <= tol, "{name} param {p}[{i}]: {a} vs {b}");
                }
            }
        }
    }
    Ok(())
}
gpu_test!(
    one_training_step_of_the_model_matches_cpu,
    [Order::Forward, Order::Reverse]
);
