//! The orthogonal-embedding loss and the mask fill of pretraining against naive f64 oracles written
//! from docs/model.md, on every device (CPU, the emulated kernels in every thread
//! order, a GPU when present): forwards, backwards by central finite differences, the `+=` rule,
//! n = 1, odd sizes, fully masked eras, wrong shapes; and the whole model with `ortho_weight > 0`
//! trained on the emulator against the CPU.

#[macro_use]
mod gpu_common;
mod oracle;

use eraengine::device::{Backend, Cpu};
use eraengine::gpu::Order;
use eraengine::ops::ortho_loss::stats_len;
use eraengine::Error;
use oracle::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

/// w · ‖ZᵀZ/n_v − I‖²_F / d² over the counted rows, straight from the definition (f64).
fn ortho_oracle(h: &[f64], mask: &[f32], w: f64, n: usize, d: usize) -> f64 {
    let rows: Vec<usize> = (0..n).filter(|&i| mask[i] != 0.0).collect();
    let nv = rows.len() as f64;
    if rows.len() <= 1 || d == 0 {
        return 0.0;
    }
    let mut z = vec![vec![0f64; d]; rows.len()];
    for j in 0..d {
        let mu = rows.iter().map(|&i| h[i * d + j]).sum::<f64>() / nv;
        let var = rows
            .iter()
            .map(|&i| (h[i * d + j] - mu).powi(2))
            .sum::<f64>()
            / nv;
        let s = (var + 1e-5).sqrt();
        for (r, &i) in rows.iter().enumerate() {
            z[r][j] = (h[i * d + j] - mu) / s;
        }
    }
    let mut p = 0.0;
    for j in 0..d {
        for k in 0..d {
            let c = z.iter().map(|zr| zr[j] * zr[k]).sum::<f64>() / nv;
            p += (c - if j == k { 1.0 } else { 0.0 }).powi(2);
        }
    }
    w * p / (d * d) as f64
}

/// (n, d, mask kind, weight, seed)
type OrthoCase = (usize, usize, u8, f32, u64);

fn ortho_loss_matches_oracle_and_its_gradient<B: Backend>(
    dev: &B,
    c: &OrthoCase,
) -> TestCaseResult {
    let &(n, d, mk, w, seed) = c;
    let mut g = Gen::new(seed);
    let mask = mask(mk, n, &mut g);
    let h = g.vec(n * d, -2.0, 2.0);
    let (hb, mb) = (dev.upload(&h)?, dev.upload(&mask)?);
    let mut stats = dev.upload(&vec![7.0; stats_len(d)])?;
    let mut gmat = dev.upload(&vec![7.0; d * d])?;
    let p = dev.ortho_loss_fwd(&mut stats, &mut gmat, &hb, &mb, w, n, d)?;
    let want = ortho_oracle(&f64s(&h), &mask, 1.0, n, d);
    close("P", &[p], &[want], FWD_RTOL, FWD_ATOL)?;
    let before = g.vec(n * d, -1.0, 1.0);
    let mut dh = dev.upload(&before)?;
    dev.ortho_loss_bwd(&mut dh, &hb, &mb, &stats, &gmat, n, d)?;
    let fd = fd_grad(&f64s(&h), |x| ortho_oracle(x, &mask, w as f64, n, d));
    close("dh", &added(&dev.download(&dh)?, &before), &fd, 2e-3, 2e-4)
}
device_proptest!(
    48,
    ortho_loss_matches_oracle_and_its_gradient,
    (
        1usize..24,
        0usize..7,
        0u8..4,
        0.1f32..3.0,
        proptest::prelude::any::<u64>()
    )
);

/// Fully masked eras and single rows: P = 0 and the gradient adds nothing.
fn degenerate_eras_give_zero<B: Backend>(dev: &B) -> TestCaseResult {
    for (n, mask) in [
        (5usize, vec![0.0f32; 5]),
        (1, vec![1.0]),
        (4, vec![0.0, 1.0, 0.0, 0.0]),
    ] {
        let d = 3;
        let h: Vec<f32> = (0..n * d).map(|e| e as f32 * 0.3 - 1.0).collect();
        let (hb, mb) = (dev.upload(&h)?, dev.upload(&mask)?);
        let mut stats = dev.zeros(stats_len(d))?;
        let mut gmat = dev.zeros(d * d)?;
        let p = dev.ortho_loss_fwd(&mut stats, &mut gmat, &hb, &mb, 2.0, n, d)?;
        prop_assert_eq!(p, 0.0);
        let before = vec![0.25f32; n * d];
        let mut dh = dev.upload(&before)?;
        dev.ortho_loss_bwd(&mut dh, &hb, &mb, &stats, &gmat, n, d)?;
        prop_assert_eq!(dev.download(&dh)?, before);
    }
    Ok(())
}
device_test!(degenerate_eras_give_zero);

/// Orthonormal standardised columns give P ≈ 0: the ±1 columns of a Hadamard matrix.
#[test]
fn hadamard_columns_have_no_penalty() {
    let (n, d) = (8usize, 4usize);
    let h: Vec<f32> = (0..n * d)
        .map(|e| {
            let (i, j) = (e / d, e % d + 1);
            if (i & j).count_ones() % 2 == 0 {
                1.0
            } else {
                -1.0
            }
        })
        .collect();
    let mut stats = vec![0.0; stats_len(d)];
    let mut gmat = vec![0.0; d * d];
    let p =
        eraengine::ops::ortho_loss::ortho_loss_fwd(&mut stats, &mut gmat, &h, &[1.0; 8], 1.0, n, d);
    assert!(p < 1e-8, "P {p}");
}

fn mask_fill_matches_oracle_and_its_gradient<B: Backend>(
    dev: &B,
    c: &(usize, usize, u64),
) -> TestCaseResult {
    let &(n, f, seed) = c;
    let mut g = Gen::new(seed);
    let x = g.vec(n * f, -1.0, 1.0);
    let fill: Vec<f32> = (0..n * f)
        .map(|_| if g.below(4) == 0 { 1.0 } else { 0.0 })
        .collect();
    let mv = g.vec(f, -1.0, 1.0);
    let fwd = |x: &[f64], mv: &[f64]| -> Vec<f64> {
        (0..n * f)
            .map(|e| if fill[e] != 0.0 { mv[e % f] } else { x[e] })
            .collect()
    };
    let (xb, fb, mb) = (dev.upload(&x)?, dev.upload(&fill)?, dev.upload(&mv)?);
    let mut out = dev.upload(&vec![7.0; n * f])?;
    dev.mask_fill_fwd(&mut out, &xb, &fb, &mb, n, f)?;
    close(
        "out",
        &dev.download(&out)?,
        &fwd(&f64s(&x), &f64s(&mv)),
        FWD_RTOL,
        FWD_ATOL,
    )?;
    let c = g.vec(n * f, -1.0, 1.0);
    let (bx, bm) = (g.vec(n * f, -1.0, 1.0), g.vec(f, -1.0, 1.0));
    let (mut dx, mut dmv) = (dev.upload(&bx)?, dev.upload(&bm)?);
    dev.mask_fill_bwd(Some(&mut dx), &mut dmv, &dev.upload(&c)?, &fb, n, f)?;
    let (x64, m64) = (f64s(&x), f64s(&mv));
    let want_x = fd_grad(&x64, |x| functional(&c, &fwd(x, &m64)));
    let want_m = fd_grad(&m64, |m| functional(&c, &fwd(&x64, m)));
    close(
        "dx",
        &added(&dev.download(&dx)?, &bx),
        &want_x,
        BWD_RTOL,
        BWD_ATOL,
    )?;
    close(
        "dmv",
        &added(&dev.download(&dmv)?, &bm),
        &want_m,
        BWD_RTOL,
        BWD_ATOL,
    )?;
    // without dx only dmv moves
    let mut dmv2 = dev.upload(&bm)?;
    dev.mask_fill_bwd(None, &mut dmv2, &dev.upload(&c)?, &fb, n, f)?;
    close(
        "dmv (no dx)",
        &added(&dev.download(&dmv2)?, &bm),
        &want_m,
        BWD_RTOL,
        BWD_ATOL,
    )
}
device_proptest!(
    48,
    mask_fill_matches_oracle_and_its_gradient,
    (1usize..30, 1usize..13, proptest::prelude::any::<u64>())
);

fn wrong_lengths_are_shape_errors<B: Backend>(dev: &B) -> TestCaseResult {
    let (n, d) = (4usize, 3usize);
    let h = dev.upload(&vec![0.5; n * d - 1])?;
    let mask = dev.upload(&[1.0; 4])?;
    let mut stats = dev.zeros(stats_len(d))?;
    let mut gmat = dev.zeros(d * d)?;
    let r = dev.ortho_loss_fwd(&mut stats, &mut gmat, &h, &mask, 1.0, n, d);
    prop_assert!(
        matches!(r, Err(Error::Shape(_))),
        "ortho fwd: {:?}",
        r.err()
    );
    let h = dev.upload(&vec![0.5; n * d])?;
    let mut short = dev.zeros(d * d - 1)?;
    let r = dev.ortho_loss_fwd(&mut stats, &mut short, &h, &mask, 1.0, n, d);
    prop_assert!(
        matches!(r, Err(Error::Shape(_))),
        "ortho gmat: {:?}",
        r.err()
    );
    let mut dh = dev.zeros(n * d + 1)?;
    let r = dev.ortho_loss_bwd(&mut dh, &h, &mask, &stats, &gmat, n, d);
    prop_assert!(
        matches!(r, Err(Error::Shape(_))),
        "ortho bwd: {:?}",
        r.err()
    );
    let mut out = dev.zeros(n * d)?;
    let mv = dev.zeros(d + 1)?;
    let r = dev.mask_fill_fwd(&mut out, &h, &h, &mv, n, d);
    prop_assert!(
        matches!(r, Err(Error::Shape(_))),
        "mask_fill: {:?}",
        r.err()
    );
    let mut dmv = dev.zeros(d)?;
    let fill = dev.zeros(n * d - 1)?;
    let r = dev.mask_fill_bwd(None, &mut dmv, &h, &fill, n, d);
    prop_assert!(
        matches!(r, Err(Error::Shape(_))),
        "mask_fill bwd: {:?}",
        r.err()
    );
    Ok(())
}
device_test!(wrong_lengths_are_shape_errors);

// ---------------------------------------------------------------------------------------------
// the whole model with the orthogonal-embedding loss: CPU ≡ emulator

type Steps = (Vec<[f32; 4]>, Vec<Vec<f32>>);

fn train_steps<B: Backend>(
    dev: &B,
    cfg: &eraengine::model::Config,
    steps: u64,
) -> eraengine::Result<Steps> {
    use eraengine::params::{Adam, Params};
    use eraengine::train::{era::EraBatch, train_step, TrainOptions, Trained};
    let (n, f, t) = (9usize, cfg.n_features, cfg.n_targets);
    let x: Vec<f32> = (0..n * f)
        .map(|i| ((i / f * 3 + (i % f).pow(2) + (i / f) * (i % f) + 1) % 5) as f32 * 0.5 - 1.0)
        .collect();
    let y: Vec<f32> = (0..n * t)
        .map(|i| ((i * 3 + 1) % 5) as f32 * 0.25)
        .collect();
    let mut mask = vec![1.0; n];
    mask[n - 1] = 0.0; // one padding row
    let batch = EraBatch {
        name: "era1".into(),
        n,
        f,
        t,
        x,
        codes: None,
        y,
        mask,
        col_sums: None,
        stats: None,
    };
    let params = Params::from_host(dev, &eraengine::model::init_params(cfg, 11))?;
    let model = eraengine::model::EraTransformer::new(cfg.clone(), &params)?;
    let mut m = Trained {
        model,
        params,
        features: (0..f).map(|i| format!("f{i}")).collect(),
        targets: (0..t).map(|i| format!("t{i}")).collect(),
        context: None,
    };
    let opts = TrainOptions {
        seed: 5,
        lr: 1e-3,
        clip: 1.0,
        quiet: true,
        ..TrainOptions::default()
    };
    let mut adam = Adam::new(dev, &m.params, opts.lr, opts.weight_decay)?;
    let mut losses = Vec::new();
    for step in 0..steps {
        let (parts, _) = train_step(dev, &mut m, &mut adam, &batch, &opts, step)?;
        losses.push([parts.loss, parts.mse, parts.ortho, parts.sparsity]);
    }
    let grads = m
        .params
        .grads
        .iter()
        .map(|g| dev.download(g))
        .collect::<eraengine::Result<_>>()?;
    Ok((losses, grads))
}

fn the_model_with_the_ortho_loss_matches_cpu<B: Backend>(dev: &B) -> TestCaseResult {
    let mut cfg = eraengine::model::Config::new(5, 2);
    cfg.d_model = 8;
    cfg.heads = 2;
    cfg.layers = 1;
    cfg.d_ff = 16;
    cfg.ortho_weight = 1.0;
    let cpu = train_steps(&Cpu, &cfg, 2).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let gpu = train_steps(dev, &cfg, 2).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for (s, (g, c)) in gpu.0.iter().zip(&cpu.0).enumerate() {
        prop_assert!(
            c[2] > 0.0,
            "step {s}: the ortho part is reported ({})",
            c[2]
        );
        for k in 0..4 {
            prop_assert!(
                (g[k] - c[k]).abs() <= 1e-5 * c[k].abs().max(1e-3),
                "step {s} part {k}: {} vs {}",
                g[k],
                c[k]
            );
        }
    }
    for (p, (g, c)) in gpu.1.iter().zip(&cpu.1).enumerate() {
        for (i, (a, b)) in g.iter().zip(c).enumerate() {
            prop_assert!(
                (a - b).abs() <= 1e-5 + 1e-3 * b.abs(),
                "grad {p}[{i}]: {a} vs {b}"
            );
        }
    }
    // the loss holds w · P besides the MSE and λ · sparsity
    let l = cpu.0[0];
    let (a, b) = (
        l[0],
        l[1] + cfg.lambda_sparsity * l[3] + cfg.ortho_weight * l[2],
    );
    prop_assert!(
        (a - b).abs() <= 1e-5 * a.abs().max(1.0),
        "loss {a} vs mse + w P {b}"
    );
    Ok(())
}
gpu_test!(
    the_model_with_the_ortho_loss_matches_cpu,
    [Order::Forward, Order::Reverse]
);
