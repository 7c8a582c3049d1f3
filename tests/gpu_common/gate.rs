//! The gate forward and backward on a device, and their comparison with the CPU reference
//! (shared by the gate tests of gpu_ops2 and gpu_ops3, which draw different shapes).

use eraengine::device::{Backend, Cpu};
use eraengine::ops::gate::GateSelect;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

use super::matches_ref;

/// n, f, r, select, x, mask, w, a, b, dxt, initial grads (dw | da | db | dg)
pub type GateCase = (
    usize,
    usize,
    usize,
    GateSelect,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
);

#[allow(clippy::too_many_arguments)]
pub fn gate_run<B: Backend>(
    dev: &B,
    (n, f, r): (usize, usize, usize),
    select: GateSelect,
    x: &[f32],
    mask: &[f32],
    w: &[f32],
    a: &[f32],
    b: &[f32],
    dxt: &[f32],
    g0: &[f32],
) -> eraengine::Result<[Vec<f32>; 9]> {
    let (xb, mb, wb, ab, bb) = (
        dev.upload(x)?,
        dev.upload(mask)?,
        dev.upload(w)?,
        dev.upload(a)?,
        dev.upload(b)?,
    );
    let mut xt = dev.upload(&vec![5.0; n * f])?;
    let mut g = dev.zeros(f)?;
    let mut keep = dev.zeros(f)?;
    let mut xbar = dev.zeros(f)?;
    let mut u = dev.zeros(r.max(1))?; // as the tape allocates it
    dev.gate_fwd(
        Some(&mut xt),
        &mut g,
        &mut keep,
        &mut xbar,
        &mut u,
        &xb,
        &mb,
        None,
        &wb,
        &ab,
        &bb,
        select,
        n,
        f,
        r,
    )?;
    let fr = f * r;
    let mut dw = dev.upload(&g0[..f])?;
    let mut da = dev.upload(&g0[f..f + fr])?;
    let mut db = dev.upload(&g0[f + fr..f + 2 * fr])?;
    let mut dg = dev.upload(&g0[f + 2 * fr..])?;
    let dy = dev.upload(dxt)?;
    dev.gate_bwd(
        &mut dw, &mut da, &mut db, &mut dg, &dy, &xb, &xbar, &u, &g, &keep, &bb, n, f, r,
    )?;
    Ok([
        dev.download(&xt)?,
        dev.download(&g)?,
        dev.download(&keep)?,
        dev.download(&xbar)?,
        dev.download(&u)?[..r].to_vec(),
        dev.download(&dw)?,
        dev.download(&da)?,
        dev.download(&db)?,
        dev.download(&dg)?,
    ])
}

/// Both devices compute x̄, u, ℓ and the backward sums in f64 and round once: 1e-6 + 1e-6·|cpu|;
/// keep (threshold and top-k with ties) must match exactly.
pub fn gate_matches_cpu<B: Backend>(
    dev: &B,
    (n, f, r, select, x, mask, w, a, b, dxt, g0): &GateCase,
) -> TestCaseResult {
    let (n, f, r, select) = (*n, *f, *r, *select);
    let cpu = gate_run(&Cpu, (n, f, r), select, x, mask, w, a, b, dxt, g0).unwrap();
    let got = gate_run(dev, (n, f, r), select, x, mask, w, a, b, dxt, g0).unwrap();
    prop_assert_eq!(&got[2], &cpu[2], "keep ({:?})", select);
    for (j, name) in ["xt", "g", "keep", "xbar", "u", "dw", "da", "db", "dg"]
        .iter()
        .enumerate()
    {
        matches_ref(
            &format!("{name} n={n} f={f} r={r} {select:?}"),
            &got[j],
            &cpu[j],
            1e-6,
            1e-6,
        )?;
    }
    Ok(())
}
