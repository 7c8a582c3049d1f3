//! The feature gate and the MSE + sparsity loss against the f64 oracle: forward, selection
//! (threshold, top-k with ties to the lower index), backward with keep held constant, the `+=` rule,
//! masking.

mod oracle;

use eraengine::ops::gate::{gate_bwd, gate_fwd, GateSelect};
use eraengine::ops::loss::{mse_sparsity_bwd, mse_sparsity_fwd};
use oracle::*;
use proptest::prelude::*;

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

fn run_gate(c: &GateCase, select: GateSelect) -> GateRun {
    let (n, f, r) = (c.n, c.f, c.r);
    let mut o = GateRun {
        xt: vec![7.0; n * f],
        g: vec![7.0; f],
        keep: vec![7.0; f],
        xbar: vec![7.0; f],
        u: vec![7.0; r],
    };
    gate_fwd(
        &mut o.xt,
        &mut o.g,
        &mut o.keep,
        &mut o.xbar,
        &mut o.u,
        &c.x,
        &c.mask,
        &c.w,
        &c.a,
        &c.b,
        select,
        n,
        f,
        r,
    );
    o
}

fn oracle_gate(c: &GateCase, w: &[f64], a: &[f64], b: &[f64], keep: Keep) -> GateOut {
    gate(&f64s(&c.x), &c.mask, w, a, b, keep, c.n, c.f, c.r)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn gate_matches_oracle(n in 1usize..7, f in 1usize..9, r in 0usize..4, mk in 0u8..4,
                           tau in prop_oneof![Just(0.0f32), 0.0f32..1.0], seed: u64) {
        let mut gen = Gen::new(seed);
        let c = gate_case(n, f, r, mk, &mut gen);
        let o = run_gate(&c, GateSelect::Threshold(tau));
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
        gate_bwd(&mut dw, &mut da, &mut db, &mut dg, &cx, &c.x, &o.xbar, &o.u, &o.g, &o.keep, &c.b, n, f, r);
        close("dw", &added(&dw, &dw0), &fd_grad(&w, |v| loss(v, &a, &b)), BWD_RTOL, BWD_ATOL)?;
        close("da", &added(&da, &da0), &fd_grad(&a, |v| loss(&w, v, &b)), BWD_RTOL, BWD_ATOL)?;
        close("db", &added(&db, &db0), &fd_grad(&b, |v| loss(&w, &a, v)), BWD_RTOL, BWD_ATOL)?;
        // dg now holds the whole gradient reaching g: cg + keep ⊙ Σ_i cx ⊙ x
        let want_dg: Vec<f64> = (0..f)
            .map(|ff| cg[ff] as f64 + keep64[ff] * (0..n).map(|i| cx[i * f + ff] as f64 * c.x[i * f + ff] as f64).sum::<f64>())
            .collect();
        close("dg", &dg, &want_dg, FWD_RTOL, FWD_ATOL)?;
    }

    #[test]
    fn gate_top_k_keeps_the_k_largest_ties_to_lower_index(n in 1usize..5, f in 1usize..12, k in 0usize..14,
                                                          levels in 1usize..4, seed: u64) {
        let mut gen = Gen::new(seed);
        let mut c = gate_case(n, f, 0, 0, &mut gen);
        // few distinct w values, so ties are common (r = 0: g = sigmoid(w) exactly per level)
        c.w = (0..f).map(|_| gen.below(levels) as f32 - 1.0).collect();
        let o = run_gate(&c, GateSelect::TopK(k));
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
    }

    #[test]
    fn gate_padding_rows_do_not_change_xbar_or_real_rows(n in 2usize..8, f in 1usize..8, r in 0usize..3, seed: u64) {
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
        let a = run_gate(&c, GateSelect::Threshold(0.3));
        let b = run_gate(&other, GateSelect::Threshold(0.3));
        prop_assert_eq!(&a.xbar, &b.xbar);
        prop_assert_eq!(&a.g, &b.g);
        for i in (0..n).filter(|&i| c.mask[i] != 0.0) {
            prop_assert_eq!(&a.xt[i * f..(i + 1) * f], &b.xt[i * f..(i + 1) * f]);
        }
    }

    #[test]
    fn loss_matches_oracle(n in 1usize..7, t in 1usize..4, mk in 0u8..4, f in 0usize..6,
                           nan_share in 0usize..3, lambda in 0.0f32..0.1, seed: u64) {
        let mut gen = Gen::new(seed);
        let m = mask(mk, n, &mut gen);
        let yhat = gen.vec(n * t, 0.0, 1.0);
        let y: Vec<f32> = (0..n * t)
            .map(|_| if gen.below(3) < nan_share { f32::NAN } else { gen.below(5) as f32 / 4.0 })
            .collect();
        let g = gen.vec(f, 0.0, 1.0);
        let parts = mse_sparsity_fwd(&yhat, &y, &m, &g, lambda, n, t);
        let (loss, mse, sparsity, count) = mse_sparsity(&f64s(&yhat), &y, &m, &f64s(&g), lambda as f64, n, t);
        close("loss", &[parts.loss], &[loss], FWD_RTOL, FWD_ATOL)?;
        close("mse", &[parts.mse], &[mse], FWD_RTOL, FWD_ATOL)?;
        close("sparsity", &[parts.sparsity], &[sparsity], FWD_RTOL, FWD_ATOL)?;
        prop_assert_eq!(parts.count as f64, count);

        let dy0 = gen.vec(n * t, -1.0, 1.0);
        let dg0 = gen.vec(f, -1.0, 1.0);
        let (mut dy, mut dg) = (dy0.clone(), dg0.clone());
        mse_sparsity_bwd(&mut dy, &mut dg, &yhat, &y, &m, lambda, n, t);
        let g64 = f64s(&g);
        let want_dy = fd_grad(&f64s(&yhat), |v| mse_sparsity(v, &y, &m, &g64, lambda as f64, n, t).0);
        let want_dg = fd_grad(&g64, |v| mse_sparsity(&f64s(&yhat), &y, &m, v, lambda as f64, n, t).0);
        close("dyhat", &added(&dy, &dy0), &want_dy, BWD_RTOL, BWD_ATOL)?;
        close("dg", &added(&dg, &dg0), &want_dg, BWD_RTOL, BWD_ATOL)?;
        // the sparsity gradient is λ/F for every gate
        for v in added(&dg, &dg0) {
            prop_assert!((v as f64 - lambda as f64 / f as f64).abs() < 1e-6);
        }
    }

    #[test]
    fn loss_ignores_padding_rows(n in 2usize..8, t in 1usize..3, seed: u64) {
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
        prop_assert_eq!(mse_sparsity_fwd(&yhat, &y, &m, &g, 0.01, n, t), mse_sparsity_fwd(&yhat2, &y2, &m, &g, 0.01, n, t));
        let mut d1 = vec![0.0; n * t];
        let mut d2 = vec![0.0; n * t];
        mse_sparsity_bwd(&mut d1, &mut [0.0; 2], &yhat, &y, &m, 0.01, n, t);
        mse_sparsity_bwd(&mut d2, &mut [0.0; 2], &yhat2, &y2, &m, 0.01, n, t);
        prop_assert_eq!(d1, d2);
    }
}

#[test]
fn gate_without_real_rows_has_zero_context() {
    let mut gen = Gen::new(5);
    let c = gate_case(4, 5, 3, 2, &mut gen);
    let o = run_gate(&c, GateSelect::Threshold(0.0));
    assert!(o.xbar.iter().chain(&o.u).all(|&v| v == 0.0));
    // with x̄ = 0 the logits are w alone
    for ff in 0..5 {
        assert!((o.g[ff] as f64 - sigmoid(c.w[ff] as f64)).abs() < 1e-6);
    }
}

#[test]
fn all_nan_targets_give_zero_mse_count_and_gradients() {
    let (n, t) = (5, 3);
    let yhat: Vec<f32> = (0..n * t).map(|i| i as f32 / 10.0).collect();
    let y = vec![f32::NAN; n * t];
    let m = vec![1.0; n];
    let g = [0.2f32, 0.4, 0.6, 0.8];
    let parts = mse_sparsity_fwd(&yhat, &y, &m, &g, 0.5, n, t);
    assert_eq!(parts.mse, 0.0);
    assert_eq!(parts.count, 0.0);
    assert!((parts.sparsity - 0.5).abs() < 1e-7);
    assert!((parts.loss - 0.25).abs() < 1e-7);
    let mut dy = vec![0.0; n * t];
    let mut dg = vec![0.0; 4];
    mse_sparsity_bwd(&mut dy, &mut dg, &yhat, &y, &m, 0.5, n, t);
    assert!(dy.iter().all(|&v| v == 0.0));
    assert!(dg.iter().all(|&v| (v - 0.125).abs() < 1e-7));
}

#[test]
fn top_k_breaks_exact_ties_toward_the_lower_index() {
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
    let o = run_gate(&c, GateSelect::TopK(3));
    assert_eq!(o.keep, vec![1.0, 1.0, 0.0, 1.0, 0.0]);
    assert_eq!(o.xt[2], 0.0);
    assert_eq!(o.xt[0], 0.5);
}
