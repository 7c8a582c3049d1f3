//! The ops of TFT's gated residual network and variable selection network (docs/model.md):
//! the ELU map, the GLU, the row-broadcast add and the VSN op against naive f64 oracles and their
//! central differences on every device (CPU, the emulated kernels in every thread order, a GPU when
//! present); the emulator against the CPU; wrong lengths as `Error::Shape`; and the whole model
//! with `--ffn grn` / `--selection vsn`: CPU ≡ emulator, gradients against finite differences,
//! checkpoint round trips.

#[macro_use]
mod gpu_common;
mod common;
mod oracle;

use common::TempDir;
use eraengine::checkpoint::Checkpoint;
use eraengine::device::{Backend, Cpu};
use eraengine::model::{
    buffer_specs, init_params, param_specs, Config, EraInputs, EraTransformer, Ffn, Selection,
};
use eraengine::ops::elementwise::{unary_bwd, unary_fwd, Unary};
use eraengine::ops::gate::GateSelect;
use eraengine::params::Params;
use eraengine::rng::Rng;
use eraengine::tape::Tape;
use eraengine::Error;
use gpu_common::{matches_ref, orders, Emu};
use oracle::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

fn elu(x: f64) -> f64 {
    if x > 0.0 {
        x
    } else {
        x.exp() - 1.0
    }
}

// ---- ELU -----------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn elu_matches_the_oracle_and_its_gradient(len in 1usize..300, seed: u64, spread in 0.1f32..30.0) {
        let mut g = Gen::new(seed);
        // keep away from the kink at 0, where central differences straddle two branches
        let x: Vec<f32> = g
            .vec(len, -spread, spread)
            .into_iter()
            .map(|v| if v.abs() < 1e-3 { 0.5 } else { v })
            .collect();
        let x64 = f64s(&x);
        let c = g.vec(len, -1.0, 1.0);
        let mut y = vec![7.0; len];
        unary_fwd(Unary::Elu, &mut y, &x);
        close("elu", &y, &map(&x64, elu), FWD_RTOL, FWD_ATOL)?;
        let d0 = g.vec(len, -1.0, 1.0);
        let mut d = d0.clone();
        unary_bwd(Unary::Elu, &mut d, &c, &x);
        let want = fd_grad(&x64, |v| functional(&c, &map(v, elu)));
        close("elu dinp", &added(&d, &d0), &want, BWD_RTOL, BWD_ATOL)?;
    }

    #[test]
    fn elu_emulated_kernels_match_the_cpu(len in 1usize..2000, seed: u64, spread in 0.1f32..100.0) {
        let mut g = Gen::new(seed);
        let x = g.vec(len, -spread, spread);
        let dout = g.vec(len, -1.0, 1.0);
        let d0 = g.vec(len, -1.0, 1.0);
        let (mut want_y, mut want_d) = (vec![0.0; len], d0.clone());
        Cpu.unary_fwd(Unary::Elu, &mut want_y, &x).unwrap();
        Cpu.unary_bwd(Unary::Elu, &mut want_d, &dout, &x).unwrap();
        for order in orders(seed) {
            let b = Emu::new(order);
            let (xb, gb) = (b.upload(&x).unwrap(), b.upload(&dout).unwrap());
            let mut y = b.zeros(len).unwrap();
            b.unary_fwd(Unary::Elu, &mut y, &xb).unwrap();
            matches_ref("elu fwd", &b.download(&y).unwrap(), &want_y, 2e-7, 2e-6)?;
            let mut d = b.upload(&d0).unwrap();
            b.unary_bwd(Unary::Elu, &mut d, &gb, &xb).unwrap();
            matches_ref("elu bwd", &b.download(&d).unwrap(), &want_d, 2e-7, 2e-6)?;
        }
    }
}

#[test]
fn elu_extremes_stay_finite_and_nan_stays_nan() {
    let x = [-1e4f32, -88.0, -1.0, 0.0, 1.0, 1e4, f32::NAN];
    let mut y = [0.0f32; 7];
    unary_fwd(Unary::Elu, &mut y, &x);
    let mut d = [0.0f32; 7];
    unary_bwd(Unary::Elu, &mut d, &[1.0; 7], &x);
    assert_eq!(y[0], -1.0);
    assert_eq!(y[3], 0.0);
    assert_eq!(d[5], 1.0);
    assert!((y[2] as f64 - elu(-1.0)).abs() < 1e-6);
    assert!(y[6].is_nan() && d[6].is_nan());
    assert!(d[..6].iter().all(|v| v.is_finite() && *v >= 0.0), "{d:?}");
}

// ---- GLU and the row-broadcast add ---------------------------------------------------------

fn glu_oracle(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(&a, &b)| sigmoid(a) * b).collect()
}

fn glu_matches_oracle_and_its_gradient<B: Backend>(
    dev: &B,
    c: &(usize, usize, f32, u64),
) -> TestCaseResult {
    let &(n, m, spread, seed) = c;
    let mut g = Gen::new(seed);
    let (a, b) = (g.vec(n * m, -spread, spread), g.vec(n * m, -2.0, 2.0));
    let (ab, bb) = (dev.upload(&a)?, dev.upload(&b)?);
    let mut out = dev.upload(&vec![7.0; n * m])?;
    dev.glu_fwd(&mut out, &ab, &bb, n, m)?;
    let (a64, b64) = (f64s(&a), f64s(&b));
    close(
        "glu",
        &dev.download(&out)?,
        &glu_oracle(&a64, &b64),
        FWD_RTOL,
        FWD_ATOL,
    )?;
    let cf = g.vec(n * m, -1.0, 1.0);
    let (da0, db0) = (g.vec(n * m, -1.0, 1.0), g.vec(n * m, -1.0, 1.0));
    let (mut da, mut db) = (dev.upload(&da0)?, dev.upload(&db0)?);
    dev.glu_bwd(&mut da, &mut db, &dev.upload(&cf)?, &ab, &bb, n, m)?;
    let want_a = fd_grad(&a64, |v| functional(&cf, &glu_oracle(v, &b64)));
    let want_b = fd_grad(&b64, |v| functional(&cf, &glu_oracle(&a64, v)));
    close(
        "glu da",
        &added(&dev.download(&da)?, &da0),
        &want_a,
        BWD_RTOL,
        BWD_ATOL,
    )?;
    close(
        "glu db",
        &added(&dev.download(&db)?, &db0),
        &want_b,
        BWD_RTOL,
        BWD_ATOL,
    )
}
device_proptest!(
    48,
    glu_matches_oracle_and_its_gradient,
    (1usize..20, 1usize..19, 0.1f32..12.0, any::<u64>())
);

fn row_add_oracle(x: &[f64], r: &[f64], m: usize) -> Vec<f64> {
    x.iter().enumerate().map(|(e, &v)| v + r[e % m]).collect()
}

fn row_add_matches_oracle_and_its_gradient<B: Backend>(
    dev: &B,
    c: &(usize, usize, bool, u64),
) -> TestCaseResult {
    let &(n, m, with_dx, seed) = c;
    let mut g = Gen::new(seed);
    let (x, r) = (g.vec(n * m, -2.0, 2.0), g.vec(m, -2.0, 2.0));
    let (xb, rb) = (dev.upload(&x)?, dev.upload(&r)?);
    let mut out = dev.upload(&vec![7.0; n * m])?;
    dev.row_add_fwd(&mut out, &xb, &rb, n, m)?;
    let (x64, r64) = (f64s(&x), f64s(&r));
    close(
        "row_add",
        &dev.download(&out)?,
        &row_add_oracle(&x64, &r64, m),
        FWD_RTOL,
        FWD_ATOL,
    )?;
    let cf = g.vec(n * m, -1.0, 1.0);
    let (dx0, dr0) = (g.vec(n * m, -1.0, 1.0), g.vec(m, -1.0, 1.0));
    let (mut dx, mut dr) = (dev.upload(&dx0)?, dev.upload(&dr0)?);
    let dout = dev.upload(&cf)?;
    dev.row_add_bwd(with_dx.then_some(&mut dx), &mut dr, &dout, n, m)?;
    let want_x = fd_grad(&x64, |v| functional(&cf, &row_add_oracle(v, &r64, m)));
    let want_r = fd_grad(&r64, |v| functional(&cf, &row_add_oracle(&x64, v, m)));
    if with_dx {
        close(
            "row_add dx",
            &added(&dev.download(&dx)?, &dx0),
            &want_x,
            BWD_RTOL,
            BWD_ATOL,
        )?;
    } else {
        prop_assert_eq!(dev.download(&dx)?, dx0, "dx untouched without it");
    }
    close(
        "row_add dr",
        &added(&dev.download(&dr)?, &dr0),
        &want_r,
        BWD_RTOL,
        BWD_ATOL,
    )
}
device_proptest!(
    48,
    row_add_matches_oracle_and_its_gradient,
    (1usize..40, 1usize..19, any::<bool>(), any::<u64>())
);

// ---- VSN -----------------------------------------------------------------------------------

/// The VSN forward in f64 with a given keep (docs/model.md): (xt, v, m, s).
fn vsn_oracle(
    z: &[f64],
    x: &[f32],
    mask: &[f32],
    keep: &[f32],
    n: usize,
    f: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; n * f];
    for i in 0..n {
        let row = &z[i * f..(i + 1) * f];
        let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|&q| (q - mx).exp()).sum();
        for j in 0..f {
            v[i * f + j] = (row[j] - mx).exp() / sum;
        }
    }
    let w: f64 = mask.iter().map(|&q| q as f64).sum();
    let m: Vec<f64> = (0..f)
        .map(|j| {
            if w > 0.0 {
                (0..n).map(|i| mask[i] as f64 * v[i * f + j]).sum::<f64>() / w
            } else {
                0.0
            }
        })
        .collect();
    let s: Vec<f64> = m
        .iter()
        .map(|&mv| {
            if f > 1 {
                -(f as f64) * mv * (mv + 1e-12).ln() / (f as f64).ln()
            } else {
                0.0
            }
        })
        .collect();
    let xt: Vec<f64> = (0..n * f)
        .map(|e| x[e] as f64 * f as f64 * v[e] * keep[e % f] as f64)
        .collect();
    (xt, v, m, s)
}

/// One VSN case: n, F, mask kind (0 all real, 1 random, 2 all padding, 3 one row), selection
/// (0 threshold 0, 1 threshold τ, 2 top-k), logit spread, seed.
type VsnCase = (usize, usize, u8, u8, f32, u64);

fn vsn_select(sel: u8, f: usize, g: &mut Gen) -> GateSelect {
    match sel % 3 {
        0 => GateSelect::Threshold(0.0),
        1 => GateSelect::Threshold(g.f32(0.0, 1.0)),
        _ => GateSelect::TopK(1 + g.below(f)),
    }
}

struct VsnRun {
    xt: Vec<f32>,
    m: Vec<f32>,
    keep: Vec<f32>,
    s: Vec<f32>,
    dz: Vec<f32>,
}

#[allow(clippy::too_many_arguments)]
fn run_vsn<B: Backend>(
    dev: &B,
    z: &[f32],
    x: &[f32],
    mask: &[f32],
    sel: GateSelect,
    grads: (&[f32], &[f32], &[f32], &[f32]),
    n: usize,
    f: usize,
) -> Result<VsnRun, Error> {
    let (zb, xb, mb) = (dev.upload(z)?, dev.upload(x)?, dev.upload(mask)?);
    let mut xt = dev.upload(&vec![7.0; n * f])?;
    let mut v = dev.upload(&vec![7.0; n * f])?;
    let (mut m, mut keep, mut s) = (dev.zeros(f)?, dev.zeros(f)?, dev.zeros(f)?);
    let mut wsum = dev.zeros(1)?;
    dev.vsn_fwd(
        &mut xt, &mut v, &mut m, &mut keep, &mut s, &mut wsum, &zb, &xb, &mb, sel, n, f,
    )?;
    let (dxt, dm, ds, dz0) = grads;
    let mut dz = dev.upload(dz0)?;
    dev.vsn_bwd(
        &mut dz,
        &dev.upload(dxt)?,
        &dev.upload(dm)?,
        &dev.upload(ds)?,
        &xb,
        &v,
        &m,
        &keep,
        &mb,
        &wsum,
        n,
        f,
    )?;
    Ok(VsnRun {
        xt: dev.download(&xt)?,
        m: dev.download(&m)?,
        keep: dev.download(&keep)?,
        s: dev.download(&s)?,
        dz: dev.download(&dz)?,
    })
}

fn vsn_data(c: &VsnCase) -> (Vec<f32>, Vec<f32>, Vec<f32>, GateSelect, Gen) {
    let &(n, f, mk, sel, spread, seed) = c;
    let mut g = Gen::new(seed);
    let mask = mask(mk, n, &mut g);
    let z = g.vec(n * f, -spread, spread);
    let x = g.vec(n * f, -1.0, 1.0);
    let sel = vsn_select(sel, f, &mut g);
    (z, x, mask, sel, g)
}

fn vsn_matches_oracle_and_its_gradient<B: Backend>(dev: &B, c: &VsnCase) -> TestCaseResult {
    let &(n, f, ..) = c;
    let (z, x, mask, sel, mut g) = vsn_data(c);
    let (cx, cm, cs) = (
        g.vec(n * f, -1.0, 1.0),
        g.vec(f, -1.0, 1.0),
        g.vec(f, -1.0, 1.0),
    );
    let dz0 = g.vec(n * f, -1.0, 1.0);
    let r = run_vsn(dev, &z, &x, &mask, sel, (&cx, &cm, &cs, &dz0), n, f)?;
    let z64 = f64s(&z);
    let (xt, _, m, s) = vsn_oracle(&z64, &x, &mask, &r.keep, n, f);
    close("m", &r.m, &m, FWD_RTOL, FWD_ATOL)?;
    close("s", &r.s, &s, FWD_RTOL, FWD_ATOL)?;
    close("xt", &r.xt, &xt, FWD_RTOL, FWD_ATOL)?;
    // keep follows the rule on the op's own m
    let fm = &r.m;
    match sel {
        GateSelect::Threshold(tau) => {
            for (j, &mj) in fm.iter().enumerate() {
                let want = if mj >= tau / f as f32 { 1.0 } else { 0.0 };
                prop_assert_eq!(
                    r.keep[j],
                    want,
                    "keep[{}] with m {} τ/F {}",
                    j,
                    mj,
                    tau / f as f32
                );
            }
        }
        GateSelect::TopK(k) => {
            prop_assert_eq!(r.keep.iter().filter(|&&q| q == 1.0).count(), k);
            let lo = (0..f)
                .filter(|&j| r.keep[j] == 1.0)
                .map(|j| fm[j])
                .fold(f32::INFINITY, f32::min);
            let hi = (0..f)
                .filter(|&j| r.keep[j] == 0.0)
                .map(|j| fm[j])
                .fold(f32::NEG_INFINITY, f32::max);
            prop_assert!(lo >= hi, "kept min {} < dropped max {}", lo, hi);
        }
    }
    if mask.iter().all(|&q| q == 0.0) {
        prop_assert!(
            r.m.iter().all(|&q| q == 0.0),
            "fully masked era: m = {:?}",
            r.m
        );
    }
    // backward of Σ cx·xt + Σ cm·m + Σ cs·s with keep held
    let want = fd_grad(&z64, |zz| {
        let (xt, _, m, s) = vsn_oracle(zz, &x, &mask, &r.keep, n, f);
        functional(&cx, &xt) + functional(&cm, &m) + functional(&cs, &s)
    });
    close("dz", &added(&r.dz, &dz0), &want, 1e-3, 2e-4)
}
device_proptest!(
    64,
    vsn_matches_oracle_and_its_gradient,
    (
        1usize..24,
        1usize..14,
        0u8..4,
        0u8..3,
        0.1f32..4.0,
        any::<u64>()
    )
);

/// The emulated kernels against the CPU op, under every thread order (wider shapes than the
/// oracle property: F up to 100, rows spanning several blocks).
fn vsn_emulator_matches_the_cpu<B: Backend>(dev: &B, c: &VsnCase) -> TestCaseResult {
    let &(n, f, ..) = c;
    let (z, x, mask, sel, mut g) = vsn_data(c);
    let grads = (
        g.vec(n * f, -1.0, 1.0),
        g.vec(f, -1.0, 1.0),
        g.vec(f, -1.0, 1.0),
    );
    let dz0 = g.vec(n * f, -1.0, 1.0);
    let gr = (&grads.0[..], &grads.1[..], &grads.2[..], &dz0[..]);
    let want = run_vsn(&Cpu, &z, &x, &mask, sel, gr, n, f)?;
    let got = run_vsn(dev, &z, &x, &mask, sel, gr, n, f)?;
    matches_ref("m", &got.m, &want.m, 1e-7, 1e-5)?;
    matches_ref("s", &got.s, &want.s, 1e-6, 1e-5)?;
    // keep may differ only where m sits on the threshold within rounding
    for j in 0..f {
        if got.keep[j] != want.keep[j] {
            prop_assert!(
                matches!(sel, GateSelect::Threshold(_)),
                "top-k keep differs at {}",
                j
            );
            let GateSelect::Threshold(tau) = sel else {
                unreachable!()
            };
            prop_assert!(
                (want.m[j] - tau / f as f32).abs() <= 1e-6,
                "keep[{}] differs",
                j
            );
            return Ok(());
        }
    }
    matches_ref("xt", &got.xt, &want.xt, 1e-6, 1e-5)?;
    matches_ref("dz", &got.dz, &want.dz, 1e-6, 1e-4)
}
gpu_proptest!(
    32,
    vsn_emulator_matches_the_cpu,
    (
        1usize..70,
        1usize..100,
        0u8..4,
        0u8..3,
        0.1f32..6.0,
        any::<u64>()
    )
);

#[test]
fn uniform_weights_change_nothing() {
    let (n, f) = (5, 7);
    let mut g = Gen::new(11);
    let x = g.vec(n * f, -1.0, 1.0);
    let z = vec![0.3; n * f];
    let zeros = vec![0.0; n * f];
    let r = run_vsn(
        &Cpu,
        &z,
        &x,
        &[1.0; 5],
        GateSelect::Threshold(0.5),
        (&zeros, &[0.0; 7], &[0.0; 7], &zeros),
        n,
        f,
    )
    .unwrap();
    for (a, b) in r.xt.iter().zip(&x) {
        assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
    }
    // the normalised entropy of uniform weights is 1
    let mean_s: f32 = r.s.iter().sum::<f32>() / f as f32;
    assert!((mean_s - 1.0).abs() < 1e-5, "mean s {mean_s}");
    assert!(r.keep.iter().all(|&k| k == 1.0));
}

fn wrong_lengths_are_shape_errors<B: Backend>(dev: &B) -> TestCaseResult {
    let (n, m) = (3usize, 4usize);
    let full = dev.upload(&vec![0.5; n * m])?;
    let short = dev.upload(&vec![0.5; n * m - 1])?;
    let mut out = dev.zeros(n * m)?;
    let r = dev.glu_fwd(&mut out, &full, &short, n, m);
    prop_assert!(matches!(r, Err(Error::Shape(_))), "glu fwd: {:?}", r.err());
    let (mut da, mut db) = (dev.zeros(n * m)?, dev.zeros(n * m - 1)?);
    let r = dev.glu_bwd(&mut da, &mut db, &full, &full, &full, n, m);
    prop_assert!(matches!(r, Err(Error::Shape(_))), "glu bwd: {:?}", r.err());
    let row = dev.upload(&vec![0.5; m + 1])?;
    let r = dev.row_add_fwd(&mut out, &full, &row, n, m);
    prop_assert!(
        matches!(r, Err(Error::Shape(_))),
        "row_add fwd: {:?}",
        r.err()
    );
    let mut dr = dev.zeros(m - 1)?;
    let r = dev.row_add_bwd(None, &mut dr, &full, n, m);
    prop_assert!(
        matches!(r, Err(Error::Shape(_))),
        "row_add bwd: {:?}",
        r.err()
    );
    // VSN: a mask of the wrong length, then an m of the wrong length
    let (f, mask) = (m, dev.upload(&vec![1.0; n + 1])?);
    let mut xt = dev.zeros(n * f)?;
    let mut v = dev.zeros(n * f)?;
    let (mut mm, mut keep, mut s, mut w) =
        (dev.zeros(f)?, dev.zeros(f)?, dev.zeros(f)?, dev.zeros(1)?);
    let sel = GateSelect::Threshold(0.0);
    let r = dev.vsn_fwd(
        &mut xt, &mut v, &mut mm, &mut keep, &mut s, &mut w, &full, &full, &mask, sel, n, f,
    );
    prop_assert!(matches!(r, Err(Error::Shape(_))), "vsn fwd: {:?}", r.err());
    let good_mask = dev.upload(&vec![1.0; n])?;
    let bad_m = dev.zeros(f + 2)?;
    let mut dz = dev.zeros(n * f)?;
    let r = dev.vsn_bwd(
        &mut dz, &full, &bad_m, &s, &full, &v, &mm, &keep, &good_mask, &w, n, f,
    );
    prop_assert!(matches!(r, Err(Error::Shape(_))), "vsn bwd: {:?}", r.err());
    Ok(())
}
device_test!(wrong_lengths_are_shape_errors);

// ---- the whole model -----------------------------------------------------------------------

fn tiny(ffn: Ffn, selection: Selection, context_dim: usize, top_k: Option<usize>) -> Config {
    let mut cfg = Config::new(6, 2);
    cfg.d_model = 8;
    cfg.heads = 2;
    cfg.layers = 2;
    cfg.d_ff = 12;
    cfg.gate_rank = 2;
    cfg.dropout = 0.0;
    cfg.lambda_sparsity = 0.05;
    cfg.context_dim = context_dim;
    cfg.ffn = ffn;
    cfg.selection = selection;
    cfg.top_k = top_k;
    cfg
}

struct ModelData {
    n: usize,
    x: Vec<f32>,
    y: Vec<f32>,
    mask: Vec<f32>,
    ctx: Vec<f32>,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

fn model_data(cfg: &Config, seed: u64, n: usize, pad: usize) -> ModelData {
    let mut rng = Rng::new(seed, 9);
    let total = n + pad;
    let f = cfg.n_features;
    let x = (0..total * f)
        .map(|_| ((rng.next_u32() % 5) as f32 - 2.0) / 2.0)
        .collect();
    let y = (0..total * cfg.n_targets)
        .map(|e| {
            if e % 7 == 3 {
                f32::NAN
            } else {
                (rng.next_u32() % 5) as f32 / 4.0
            }
        })
        .collect();
    let mask = (0..total).map(|i| if i < n { 1.0 } else { 0.0 }).collect();
    let ctx = (0..2 * f).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let mut tensors = init_params(cfg, seed);
    // move every bias and FiLM off its initial value, so each path carries gradient
    for (name, _, v) in tensors.iter_mut() {
        if name.ends_with(".bias") || name.contains(".film.") {
            for e in v.iter_mut() {
                *e += rng.uniform(-0.3, 0.3);
            }
        }
    }
    ModelData {
        n: total,
        x,
        y,
        mask,
        ctx,
        tensors,
    }
}

/// (yhat, g, keep, loss, grads) of one forward + loss (sparsity from `Outputs.sparsity`) + backward.
#[allow(clippy::type_complexity)]
fn run_model<B: Backend>(
    dev: &B,
    cfg: &Config,
    d: &ModelData,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>, f32, Vec<(String, Vec<f32>)>), Error> {
    let mut params = Params::from_host(dev, tensors)?;
    let model = EraTransformer::new(cfg.clone(), &params)?;
    let mut tape = Tape::new();
    let inputs = EraInputs {
        x: tape.input(dev, &d.x)?,
        codes: None,
        mask: tape.input(dev, &d.mask)?,
        y: tape.input(dev, &d.y)?,
        n: d.n,
        ctx: if cfg.context_dim > 0 {
            Some(tape.input(dev, &d.ctx)?)
        } else {
            None
        },
        col_sums: None,
    };
    let out = model.forward(dev, &mut tape, &params, &inputs, None)?;
    let yhat = tape.download(dev, out.yhat)?;
    let g = tape.download(dev, out.g)?;
    let keep = tape.download(dev, out.keep)?;
    let parts = tape.loss(
        dev,
        out.yhat,
        inputs.y,
        inputs.mask,
        out.sparsity,
        cfg.lambda_sparsity,
        d.n,
        cfg.n_targets,
    )?;
    tape.backward(dev, &mut params)?;
    let grads = params
        .grads_to_host(dev)?
        .into_iter()
        .map(|(n, _, g)| (n, g))
        .collect();
    tape.release(dev);
    Ok((yhat, g, keep, parts.loss, grads))
}

fn configs() -> Vec<(&'static str, Config)> {
    vec![
        ("ffn grn", tiny(Ffn::Grn, Selection::Gate, 0, None)),
        (
            "ffn grn + context",
            tiny(Ffn::Grn, Selection::Gate, 3, None),
        ),
        ("selection vsn", tiny(Ffn::Gelu, Selection::Vsn, 0, None)),
        (
            "selection vsn + context + top-k",
            tiny(Ffn::Gelu, Selection::Vsn, 3, Some(4)),
        ),
        ("both", tiny(Ffn::Grn, Selection::Vsn, 3, None)),
    ]
}

/// CPU ≡ emulator for the whole model with each option (outputs, loss, every gradient).
fn model_emulator_matches_the_cpu<B: Backend>(dev: &B) -> TestCaseResult {
    for (what, cfg) in configs() {
        let d = model_data(&cfg, 5, 9, 3);
        let (y0, g0, k0, l0, gr0) = run_model(&Cpu, &cfg, &d, &d.tensors)?;
        let (y1, g1, k1, l1, gr1) = run_model(dev, &cfg, &d, &d.tensors)?;
        matches_ref(&format!("{what}: yhat"), &y1, &y0, 1e-5, 1e-4)?;
        matches_ref(&format!("{what}: g"), &g1, &g0, 1e-6, 1e-4)?;
        prop_assert_eq!(k1, k0, "{}: keep", what);
        matches_ref(&format!("{what}: loss"), &[l1], &[l0], 1e-6, 1e-5)?;
        for ((name, a), (_, b)) in gr1.iter().zip(&gr0) {
            matches_ref(&format!("{what}: d {name}"), a, b, 1e-5, 2e-3)?;
        }
    }
    Ok(())
}
gpu_test!(
    model_emulator_matches_the_cpu,
    [
        eraengine::gpu::Order::Forward,
        eraengine::gpu::Order::Shuffle(7)
    ]
);

/// Every GRN/VSN parameter element (and a few others) against central differences of the f32 loss.
fn model_gradients_match_finite_differences<B: Backend>(dev: &B) -> TestCaseResult {
    // every element costs two whole-model runs: the emulator (each kernel a C++ call, ~150 s for
    // the CPU's count) checks a third as many; model_emulator_matches_the_cpu ties its gradients
    // to the CPU's elementwise
    let (per_tensor, min_checked) = if dev.name() == "cpu" {
        (6, 30)
    } else {
        (2, 10)
    };
    for (what, cfg) in configs() {
        let d = model_data(&cfg, 3, 7, 2);
        let (_, _, _, _, grads) = run_model(dev, &cfg, &d, &d.tensors)?;
        let mut checked = 0;
        for (ti, (name, shape, _)) in d.tensors.iter().enumerate() {
            let ours = name.contains(".grn.") || name.starts_with("vsn.") || name.contains("norm2");
            if !ours && !name.starts_with("mapper.0") {
                continue;
            }
            let len: usize = shape.iter().product();
            let grad = &grads.iter().find(|(n, _)| n == name).expect("grad").1;
            // a spread of elements per tensor keeps the test fast
            for e in (0..len).step_by((len / per_tensor).max(1)) {
                let h = 2e-3f32;
                let mut t = d.tensors.clone();
                t[ti].2[e] += h;
                let up = run_model(dev, &cfg, &d, &t)?.3 as f64;
                t[ti].2[e] -= 2.0 * h;
                let down = run_model(dev, &cfg, &d, &t)?.3 as f64;
                let fd = (up - down) / (2.0 * h as f64);
                let ana = grad[e] as f64;
                prop_assert!(
                    (ana - fd).abs() <= 2e-3 + 3e-2 * fd.abs(),
                    "{}: d loss / d {}[{}]: tape {:.6e}, finite differences {:.6e}",
                    what,
                    name,
                    e,
                    ana,
                    fd
                );
                checked += 1;
            }
        }
        prop_assert!(
            checked > min_checked,
            "{}: only {} elements checked",
            what,
            checked
        );
    }
    Ok(())
}
device_test!(
    model_gradients_match_finite_differences,
    [eraengine::gpu::Order::Reverse]
);

#[test]
fn parameter_names_follow_the_options() {
    let names =
        |cfg: &Config| -> Vec<String> { param_specs(cfg).into_iter().map(|(n, _)| n).collect() };
    let grn = names(&tiny(Ffn::Grn, Selection::Gate, 3, None));
    assert!(!grn.iter().any(|n| n.contains(".ffn.")), "{grn:?}");
    for l in 0..2 {
        for w in ["w1", "w2", "w3", "w4", "w5"] {
            for p in ["weight", "bias"] {
                assert!(
                    grn.contains(&format!("layers.{l}.grn.{w}.{p}")),
                    "{l} {w} {p}"
                );
            }
        }
        assert!(grn.contains(&format!("layers.{l}.norm2.weight")));
    }
    let no_ctx = names(&tiny(Ffn::Grn, Selection::Gate, 0, None));
    assert!(!no_ctx.iter().any(|n| n.contains(".w3.")), "{no_ctx:?}");
    let vsn = names(&tiny(Ffn::Gelu, Selection::Vsn, 3, None));
    assert!(!vsn.iter().any(|n| n.starts_with("gate.")), "{vsn:?}");
    for n in [
        "vsn.w1.weight",
        "vsn.w3.weight",
        "vsn.w5.bias",
        "vsn.norm.weight",
        "vsn.norm.bias",
    ] {
        assert!(vsn.contains(&n.to_string()), "{n}");
    }
    let shape = |cfg: &Config, name: &str| {
        param_specs(cfg)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    };
    let c = tiny(Ffn::Grn, Selection::Vsn, 3, None);
    assert_eq!(shape(&c, "layers.0.grn.w2.weight"), Some(vec![12, 8]));
    assert_eq!(shape(&c, "layers.0.grn.w3.weight"), Some(vec![12, 3]));
    assert_eq!(shape(&c, "layers.0.grn.w1.weight"), Some(vec![8, 12]));
    assert_eq!(shape(&c, "layers.0.grn.w4.weight"), Some(vec![8, 8]));
    assert_eq!(shape(&c, "vsn.w2.weight"), Some(vec![8, 6]));
    assert_eq!(shape(&c, "vsn.w4.weight"), Some(vec![6, 8]));
    assert_eq!(shape(&c, "vsn.norm.weight"), Some(vec![6]));
}

#[test]
fn checkpoints_round_trip_with_each_option() {
    let dir = TempDir::new("grnvsn");
    for (i, (what, cfg)) in configs().into_iter().enumerate() {
        let mut tensors = init_params(&cfg, 4);
        for (name, shape) in buffer_specs(&cfg) {
            let len = shape.iter().product();
            tensors.push((name, shape, vec![0.5; len]));
        }
        let ck = Checkpoint {
            features: (0..cfg.n_features)
                .map(|j| format!("feature_{j}"))
                .collect(),
            targets: vec!["target".into(), "target_aux".into()],
            config: cfg.clone(),
            tensors,
            head_blend: None,
        };
        let path = dir.join(format!("m{i}.safetensors"));
        ck.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back.config, ck.config, "{what}");
        assert_eq!(back.config.ffn, cfg.ffn, "{what}");
        assert_eq!(back.config.selection, cfg.selection, "{what}");
        assert_eq!(back.tensors, ck.tensors, "{what}");
        // the loaded tensors bind to the model
        let params = Params::from_host(&Cpu, &back.tensors).unwrap();
        EraTransformer::new(back.config.clone(), &params).unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}
