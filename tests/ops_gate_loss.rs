//! The feature gate and the MSE + sparsity loss against the f64 oracle on every device (cpu, emu,
//! cuda; see tests/gpu_common): forward, selection (threshold, top-k with ties to the lower index),
//! backward with keep held constant, the `+=` rule, masking.

#[macro_use]
mod gpu_common;
mod oracle;

use eraengine::device::Backend;
use eraengine::ops::gate::GateSelect;
use eraengine::ops::loss::LossParts;
use oracle::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

struct GateCase {
    n: usize,
    f: usize,
    r: usize,
    x: Vec<f32>,
    mask: Vec<f32>,
    w: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
}

fn gate_case(n: usize, f: usize, r: usize, mk: u8, g: &mut Gen) -> GateCase {
    GateCase {
        n,
        f,
        r,
        x: g.vec(n * f, -1.0, 1.0),
        mask: mask(mk, n, g),
        w: g.vec(f, -2.0, 2.0),
        a: g.vec(f * r, -1.0, 1.0),
        b: g.vec(f * r, -1.0, 1.0),
    }
}

struct GateRun {
    xt: Vec<f32>,
    g: Vec<f32>,
    keep: Vec<f32>,
    xbar: Vec<f32>,
    u: Vec<f32>,
}

/// The gate forward on the device (outputs pre-filled with garbage: the forward overwrites).
fn run_gate<B: Backend>(dev: &B, c: &GateCase, select: GateSelect) -> GateRun {
    let (n, f, r) = (c.n, c.f, c.r);
    let up = |v: &[f32]| dev.upload(v).unwrap();
    let (mut xt, mut g, mut keep, mut xbar) = (
        up(&vec![7.0; n * f]),
        up(&vec![7.0; f]),
        up(&vec![7.0; f]),
        up(&vec![7.0; f]),
    );
    // u as the tape allocates it (at least one element)
    let mut u = up(&vec![7.0; r.max(1)]);
    dev.gate_fwd(
        Some(&mut xt),
        &mut g,
        &mut keep,
        &mut xbar,
        &mut u,
        &up(&c.x),
        &up(&c.mask),
        None,
        &up(&c.w),
        &up(&c.a),
        &up(&c.b),
        select,
        n,
        f,
        r,
    )
    .unwrap();
    let down = |b: &B::Buf| dev.download(b).unwrap();
    GateRun {
        xt: down(&xt),
        g: down(&g),
        keep: down(&keep),
        xbar: down(&xbar),
        u: down(&u)[..r].to_vec(),
    }
}

/// The gate backward on the device into (dw, da, db, dg) pre-filled with the given values.
#[allow(clippy::too_many_arguments)]
fn gate_bwd<B: Backend>(
    dev: &B,
    (dw, da, db, dg): (&mut Vec<f32>, &mut Vec<f32>, &mut Vec<f32>, &mut Vec<f32>),
    dxt: &[f32],
    c: &GateCase,
    o: &GateRun,
) {
    let up = |v: &[f32]| dev.upload(v).unwrap();
    let (mut dwb, mut dab, mut dbb, mut dgb) = (up(dw), up(da), up(db), up(dg));
    let mut u = o.u.clone();
    u.resize(c.r.max(1), 0.0);
    dev.gate_bwd(
        &mut dwb,
        &mut dab,
        &mut dbb,
        &mut dgb,
        &up(dxt),
        &up(&c.x),
        &up(&o.xbar),
        &up(&u),
        &up(&o.g),
        &up(&o.keep),
        &up(&c.b),
        c.n,
        c.f,
        c.r,
    )
    .unwrap();
    *dw = dev.download(&dwb).unwrap();
    *da = dev.download(&dab).unwrap();
    *db = dev.download(&dbb).unwrap();
    *dg = dev.download(&dgb).unwrap();
}

#[allow(clippy::too_many_arguments)]
fn loss_fwd<B: Backend>(
    dev: &B,
    yhat: &[f32],
    y: &[f32],
    mask: &[f32],
    g: &[f32],
    lambda: f32,
    n: usize,
    t: usize,
) -> LossParts {
    let up = |v: &[f32]| dev.upload(v).unwrap();
    dev.mse_sparsity_fwd(&up(yhat), &up(y), &up(mask), &up(g), lambda, n, t)
        .unwrap()
}

/// (dyhat, dg) after the loss backward into buffers pre-filled with dy0 and dg0.
#[allow(clippy::too_many_arguments)]
fn loss_bwd<B: Backend>(
    dev: &B,
    (dy0, dg0): (&[f32], &[f32]),
    yhat: &[f32],
    y: &[f32],
    mask: &[f32],
    lambda: f32,
    n: usize,
    t: usize,
) -> (Vec<f32>, Vec<f32>) {
    let up = |v: &[f32]| dev.upload(v).unwrap();
    let (mut dy, mut dg) = (up(dy0), up(dg0));
    dev.mse_sparsity_bwd(&mut dy, &mut dg, &up(yhat), &up(y), &up(mask), lambda, n, t)
        .unwrap();
    (dev.download(&dy).unwrap(), dev.download(&dg).unwrap())
}

fn oracle_gate(c: &GateCase, w: &[f64], a: &[f64], b: &[f64], keep: Keep) -> GateOut {
    gate(&f64s(&c.x), &c.mask, w, a, b, keep, c.n, c.f, c.r)
}

fn gate_matches_oracle<B: Backend>(
    dev: &B,
    &(n, f, r, mk, tau, seed): &(usize, usize, usize, u8, f32, u64),
) -> TestCaseResult {
    let mut gen = Gen::new(seed);
    let c = gate_case(n, f, r, mk, &mut gen);
    let o = run_gate(dev, &c, GateSelect::Threshold(tau));
    let (w, a, b) = (f64s(&c.w), f64s(&c.a), f64s(&c.b));
    let want = oracle_gate(&c, &w, &a, &b, Keep::Threshold(tau as f64));
    close("xbar", &o.xbar, &want.xbar, FWD_RTOL, FWD_ATOL)?;
    close("u", &o.u, &want.u, FWD_RTOL, FWD_ATOL)?;
    close("g", &o.g, &want.g, FWD_RTOL, FWD_ATOL)?;
    // selection from the f32 gates themselves (the oracle's g may sit on the other side of τ)
    for ff in 0..f {
        prop_assert_eq!(o.keep[ff], if o.g[ff] >= tau { 1.0 } else { 0.0 });
    }
    if tau == 0.0 {
        prop_assert!(o.keep.iter().all(|&k| k == 1.0));
    }
    let keep64 = f64s(&o.keep);
    let want = oracle_gate(&c, &w, &a, &b, Keep::Fixed(&keep64));
    close("xt", &o.xt, &want.xt, FWD_RTOL, FWD_ATOL)?;

    // backward of Σ c·xt + Σ cg·g, keep held constant; cg arrives through dg
    let cx = gen.vec(n * f, -1.0, 1.0);
    let cg = gen.vec(f, -1.0, 1.0);
    let loss = |w: &[f64], a: &[f64], b: &[f64]| {
        let out = oracle_gate(&c, w, a, b, Keep::Fixed(&keep64));
        functional(&cx, &out.xt) + functional(&cg, &out.g)
    };
    let dw0 = gen.vec(f, -1.0, 1.0);
    let da0 = gen.vec(f * r, -1.0, 1.0);
    let db0 = gen.vec(f * r, -1.0, 1.0);
    let (mut dw, mut da, mut db, mut dg) = (dw0.clone(), da0.clone(), db0.clone(), cg.clone());
    gate_bwd(dev, (&mut dw, &mut da, &mut db, &mut dg), &cx, &c, &o);
    close(
        "dw",
        &added(&dw, &dw0),
        &fd_grad(&w, |v| loss(v, &a, &b)),
        BWD_RTOL,
        BWD_ATOL,
    )?;
    close(
        "da",
        &added(&da, &da0),
        &fd_grad(&a, |v| loss(&w, v, &b)),
        BWD_RTOL,
        BWD_ATOL,
    )?;
    close(
        "db",
        &added(&db, &db0),
        &fd_grad(&b, |v| loss(&w, &a, v)),
        BWD_RTOL,
        BWD_ATOL,
    )?;
    // dg now holds the whole gradient reaching g: cg + keep ⊙ Σ_i cx ⊙ x
    let want_dg: Vec<f64> = (0..f)
        .map(|ff| {
            cg[ff] as f64
                + keep64[ff]
                    * (0..n)
                        .map(|i| cx[i * f + ff] as f64 * c.x[i * f + ff] as f64)
                        .sum::<f64>()
        })
        .collect();
    close("dg", &dg, &want_dg, FWD_RTOL, FWD_ATOL)?;
    Ok(())
}
device_proptest!(
    48,
    gate_matches_oracle,
    (
        1usize..7,
        1usize..9,
        0usize..4,
        0u8..4,
        prop_oneof![Just(0.0f32), 0.0f32..1.0],
        any::<u64>()
    )
);

fn gate_top_k_keeps_the_k_largest_ties_to_lower_index<B: Backend>(
    dev: &B,
    &(n, f, k, levels, seed): &(usize, usize, usize, usize, u64),
) -> TestCaseResult {
    let mut gen = Gen::new(seed);
    let mut c = gate_case(n, f, 0, 0, &mut gen);
    // few distinct w values, so ties are common (r = 0: g = sigmoid(w) exactly per level)
    c.w = (0..f).map(|_| gen.below(levels) as f32 - 1.0).collect();
    let o = run_gate(dev, &c, GateSelect::TopK(k));
    let want = oracle_gate(&c, &f64s(&c.w), &[], &[], Keep::TopK(k));
    prop_assert_eq!(o.keep.iter().filter(|&&v| v == 1.0).count(), k.min(f));
    prop_assert_eq!(&f64s(&o.keep), &want.keep);
    // every kept gate ≥ every dropped one; among equal gates the kept ones come first
    for i in 0..f {
        for j in 0..f {
            if o.keep[i] == 1.0 && o.keep[j] == 0.0 {
                prop_assert!(o.g[i] > o.g[j] || (o.g[i] == o.g[j] && i < j));
            }
        }
    }
    Ok(())
}
device_proptest!(
    48,
    gate_top_k_keeps_the_k_largest_ties_to_lower_index,
    (1usize..5, 1usize..12, 0usize..14, 1usize..4, any::<u64>())
);

fn gate_padding_rows_do_not_change_xbar_or_real_rows<B: Backend>(
    dev: &B,
    &(n, f, r, seed): &(usize, usize, usize, u64),
) -> TestCaseResult {
    let mut gen = Gen::new(seed);
    let c = gate_case(n, f, r, 1, &mut gen);
    let mut other = gate_case(n, f, r, 0, &mut gen);
    other.mask = c.mask.clone();
    other.w = c.w.clone();
    other.a = c.a.clone();
    other.b = c.b.clone();
    other.x = c.x.clone();
    for i in 0..n {
        if c.mask[i] == 0.0 {
            for ff in 0..f {
                other.x[i * f + ff] = gen.f32(-1.0, 1.0);
            }
        }
    }
    let a = run_gate(dev, &c, GateSelect::Threshold(0.3));
    let b = run_gate(dev, &other, GateSelect::Threshold(0.3));
    prop_assert_eq!(&a.xbar, &b.xbar);
    prop_assert_eq!(&a.g, &b.g);
    for i in (0..n).filter(|&i| c.mask[i] != 0.0) {
        prop_assert_eq!(&a.xt[i * f..(i + 1) * f], &b.xt[i * f..(i + 1) * f]);
    }
    Ok(())
}
device_proptest!(
    48,
    gate_padding_rows_do_not_change_xbar_or_real_rows,
    (2usize..8, 1usize..8, 0usize..3, any::<u64>())
);

fn loss_matches_oracle<B: Backend>(
    dev: &B,
    &(n, t, mk, f, nan_share, lambda, seed): &(usize, usize, u8, usize, usize, f32, u64),
) -> TestCaseResult {
    let mut gen = Gen::new(seed);
    let m = mask(mk, n, &mut gen);
    let yhat = gen.vec(n * t, 0.0, 1.0);
    let y: Vec<f32> = (0..n * t)
        .map(|_| {
            if gen.below(3) < nan_share {
                f32::NAN
            } else {
                gen.below(5) as f32 / 4.0
            }
        })
        .collect();
    let g = gen.vec(f, 0.0, 1.0);
    let parts = loss_fwd(dev, &yhat, &y, &m, &g, lambda, n, t);
    let (loss, mse, sparsity, count) =
        mse_sparsity(&f64s(&yhat), &y, &m, &f64s(&g), lambda as f64, n, t);
    close("loss", &[parts.loss], &[loss], FWD_RTOL, FWD_ATOL)?;
    close("mse", &[parts.mse], &[mse], FWD_RTOL, FWD_ATOL)?;
    close(
        "sparsity",
        &[parts.sparsity],
        &[sparsity],
        FWD_RTOL,
        FWD_ATOL,
    )?;
    prop_assert_eq!(parts.count as f64, count);

    let dy0 = gen.vec(n * t, -1.0, 1.0);
    let dg0 = gen.vec(f, -1.0, 1.0);
    let (dy, dg) = loss_bwd(dev, (&dy0, &dg0), &yhat, &y, &m, lambda, n, t);
    let g64 = f64s(&g);
    let want_dy = fd_grad(&f64s(&yhat), |v| {
        mse_sparsity(v, &y, &m, &g64, lambda as f64, n, t).0
    });
    let want_dg = fd_grad(&g64, |v| {
        mse_sparsity(&f64s(&yhat), &y, &m, v, lambda as f64, n, t).0
    });
    close("dyhat", &added(&dy, &dy0), &want_dy, BWD_RTOL, BWD_ATOL)?;
    close("dg", &added(&dg, &dg0), &want_dg, BWD_RTOL, BWD_ATOL)?;
    // the sparsity gradient is λ/F for every gate
    for v in added(&dg, &dg0) {
        prop_assert!((v as f64 - lambda as f64 / f as f64).abs() < 1e-6);
    }
    Ok(())
}
device_proptest!(
    48,
    loss_matches_oracle,
    (
        1usize..7,
        1usize..4,
        0u8..4,
        0usize..6,
        0usize..3,
        0.0f32..0.1,
        any::<u64>()
    )
);

fn loss_ignores_padding_rows<B: Backend>(
    dev: &B,
    &(n, t, seed): &(usize, usize, u64),
) -> TestCaseResult {
    let mut gen = Gen::new(seed);
    let m = mask(1, n, &mut gen);
    let yhat = gen.vec(n * t, 0.0, 1.0);
    let y = gen.vec(n * t, 0.0, 1.0);
    let (mut yhat2, mut y2) = (yhat.clone(), y.clone());
    for i in (0..n).filter(|&i| m[i] == 0.0) {
        for c in 0..t {
            yhat2[i * t + c] = gen.f32(-5.0, 5.0);
            y2[i * t + c] = if gen.below(2) == 0 { f32::NAN } else { 3.0 };
        }
    }
    let g = [0.5f32, 0.25];
    prop_assert_eq!(
        loss_fwd(dev, &yhat, &y, &m, &g, 0.01, n, t),
        loss_fwd(dev, &yhat2, &y2, &m, &g, 0.01, n, t)
    );
    let z = vec![0.0; n * t];
    let (d1, _) = loss_bwd(dev, (&z, &[0.0; 2]), &yhat, &y, &m, 0.01, n, t);
    let (d2, _) = loss_bwd(dev, (&z, &[0.0; 2]), &yhat2, &y2, &m, 0.01, n, t);
    prop_assert_eq!(d1, d2);
    Ok(())
}
device_proptest!(
    48,
    loss_ignores_padding_rows,
    (2usize..8, 1usize..3, any::<u64>())
);

fn gate_without_real_rows_has_zero_context<B: Backend>(dev: &B) -> TestCaseResult {
    let mut gen = Gen::new(5);
    let c = gate_case(4, 5, 3, 2, &mut gen);
    let o = run_gate(dev, &c, GateSelect::Threshold(0.0));
    prop_assert!(o.xbar.iter().chain(&o.u).all(|&v| v == 0.0));
    // with x̄ = 0 the logits are w alone
    for ff in 0..5 {
        prop_assert!((o.g[ff] as f64 - sigmoid(c.w[ff] as f64)).abs() < 1e-6);
    }
    Ok(())
}
device_test!(gate_without_real_rows_has_zero_context);

fn all_nan_targets_give_zero_mse_count_and_gradients<B: Backend>(dev: &B) -> TestCaseResult {
    let (n, t) = (5, 3);
    let yhat: Vec<f32> = (0..n * t).map(|i| i as f32 / 10.0).collect();
    let y = vec![f32::NAN; n * t];
    let m = vec![1.0; n];
    let g = [0.2f32, 0.4, 0.6, 0.8];
    let parts = loss_fwd(dev, &yhat, &y, &m, &g, 0.5, n, t);
    prop_assert_eq!(parts.mse, 0.0);
    prop_assert_eq!(parts.count, 0.0);
    prop_assert!((parts.sparsity - 0.5).abs() < 1e-7);
    prop_assert!((parts.loss - 0.25).abs() < 1e-7);
    let (dy, dg) = loss_bwd(
        dev,
        (&vec![0.0; n * t], &[0.0; 4]),
        &yhat,
        &y,
        &m,
        0.5,
        n,
        t,
    );
    prop_assert!(dy.iter().all(|&v| v == 0.0));
    prop_assert!(dg.iter().all(|&v| (v - 0.125).abs() < 1e-7));
    Ok(())
}
device_test!(all_nan_targets_give_zero_mse_count_and_gradients);

fn top_k_breaks_exact_ties_toward_the_lower_index<B: Backend>(dev: &B) -> TestCaseResult {
    // four equal gates (w = 0 → g = 0.5) and one larger: top-3 keeps the larger and indices 0, 1
    let c = GateCase {
        n: 1,
        f: 5,
        r: 0,
        x: vec![1.0; 5],
        mask: vec![1.0],
        w: vec![0.0, 0.0, 0.0, 3.0, 0.0],
        a: vec![],
        b: vec![],
    };
    let o = run_gate(dev, &c, GateSelect::TopK(3));
    prop_assert_eq!(o.keep, vec![1.0, 1.0, 0.0, 1.0, 0.0]);
    prop_assert_eq!(o.xt[2], 0.0);
    prop_assert_eq!(o.xt[0], 0.5);
    Ok(())
}
device_test!(top_k_breaks_exact_ties_toward_the_lower_index);
