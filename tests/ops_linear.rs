//! linear and layer_norm against the f64 oracle on every device (cpu, emu, cuda; see
//! tests/gpu_common): forward values, backward against central finite differences of Σ c·out, and
//! the `+=` rule (gradients land on top of what the buffers held).

#[macro_use]
mod gpu_common;
mod oracle;

use eraengine::device::Backend;
use gpu_common::threaded;
use oracle::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

/// n, k, m, bias, data seed
type LinCase = (usize, usize, usize, bool, u64);

fn lin_case() -> impl Strategy<Value = LinCase> {
    (
        1usize..10,
        0usize..20,
        1usize..20,
        any::<bool>(),
        any::<u64>(),
    )
}

fn linear_matches_oracle<B: Backend>(dev: &B, &(n, k, m, bias, seed): &LinCase) -> TestCaseResult {
    let mut g = Gen::new(seed);
    let inp = g.vec(n * k, -1.0, 1.0);
    let w = g.vec(m * k, -1.0, 1.0);
    let b = g.vec(m, -1.0, 1.0);
    let (xb, wb, bb) = (
        dev.upload(&inp).unwrap(),
        dev.upload(&w).unwrap(),
        dev.upload(&b).unwrap(),
    );
    // garbage: the forward overwrites
    let mut out = dev.upload(&g.vec(n * m, -5.0, 5.0)).unwrap();
    dev.linear_fwd(&mut out, &xb, &wb, bias.then_some(&bb), n, k, m)
        .unwrap();
    let (inp64, w64, b64) = (f64s(&inp), f64s(&w), f64s(&b));
    let b64o = if bias { Some(&b64[..]) } else { None };
    let out = dev.download(&out).unwrap();
    close(
        "out",
        &out,
        &linear(&inp64, &w64, b64o, n, k, m),
        FWD_RTOL,
        FWD_ATOL,
    )?;

    // backward into non-zero buffers
    let c = g.vec(n * m, -1.0, 1.0);
    let dinp0 = g.vec(n * k, -1.0, 1.0);
    let dw0 = g.vec(m * k, -1.0, 1.0);
    let db0 = g.vec(m, -1.0, 1.0);
    let cb = dev.upload(&c).unwrap();
    let (mut dinp, mut dw, mut db) = (
        dev.upload(&dinp0).unwrap(),
        dev.upload(&dw0).unwrap(),
        dev.upload(&db0).unwrap(),
    );
    dev.linear_bwd(
        Some(&mut dinp),
        &mut dw,
        bias.then_some(&mut db),
        &cb,
        &xb,
        &wb,
        n,
        k,
        m,
    )
    .unwrap();
    let (dinp, dw, db) = (
        dev.download(&dinp).unwrap(),
        dev.download(&dw).unwrap(),
        dev.download(&db).unwrap(),
    );
    let want_dinp = fd_grad(&inp64, |x| functional(&c, &linear(x, &w64, b64o, n, k, m)));
    let want_dw = fd_grad(&w64, |x| functional(&c, &linear(&inp64, x, b64o, n, k, m)));
    close(
        "dinp",
        &added(&dinp, &dinp0),
        &want_dinp,
        BWD_RTOL,
        BWD_ATOL,
    )?;
    close("dw", &added(&dw, &dw0), &want_dw, BWD_RTOL, BWD_ATOL)?;
    if bias {
        let want_db = fd_grad(&b64, |x| {
            functional(&c, &linear(&inp64, &w64, Some(x), n, k, m))
        });
        close("db", &added(&db, &db0), &want_db, BWD_RTOL, BWD_ATOL)?;
    } else {
        prop_assert_eq!(&db, &db0);
    }
    // without dinp the weight gradient is the same
    let mut dw2 = dev.upload(&dw0).unwrap();
    dev.linear_bwd(None, &mut dw2, None, &cb, &xb, &wb, n, k, m)
        .unwrap();
    prop_assert_eq!(&dev.download(&dw2).unwrap(), &dw);
    Ok(())
}
device_proptest!(48, linear_matches_oracle, lin_case());

/// n, d, data seed, spread of the inputs
type LnCase = (usize, usize, u64, f32);

fn ln_case() -> impl Strategy<Value = LnCase> {
    (1usize..6, 1usize..10, any::<u64>(), 0.1f32..4.0)
}

fn layer_norm_matches_oracle<B: Backend>(
    dev: &B,
    &(n, d, seed, spread): &LnCase,
) -> TestCaseResult {
    let mut g = Gen::new(seed);
    let inp = g.vec(n * d, -spread, spread);
    let gamma = g.vec(d, 0.5, 1.5);
    let beta = g.vec(d, -0.5, 0.5);
    let (xb, gb, bb) = (
        dev.upload(&inp).unwrap(),
        dev.upload(&gamma).unwrap(),
        dev.upload(&beta).unwrap(),
    );
    let mut out = dev.upload(&vec![9.0; n * d]).unwrap();
    let mut mean = dev.upload(&vec![9.0; n]).unwrap();
    let mut rstd = dev.upload(&vec![9.0; n]).unwrap();
    dev.layer_norm_fwd(&mut out, &mut mean, &mut rstd, &xb, &gb, &bb, n, d)
        .unwrap();
    let (x64, g64, b64) = (f64s(&inp), f64s(&gamma), f64s(&beta));
    let (outh, meanh, rstdh) = (
        dev.download(&out).unwrap(),
        dev.download(&mean).unwrap(),
        dev.download(&rstd).unwrap(),
    );
    close(
        "out",
        &outh,
        &layer_norm(&x64, &g64, &b64, n, d),
        FWD_RTOL,
        FWD_ATOL,
    )?;
    for i in 0..n {
        let row = &x64[i * d..(i + 1) * d];
        let mu = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / d as f64;
        close("mean", &meanh[i..i + 1], &[mu], FWD_RTOL, FWD_ATOL)?;
        close(
            "rstd",
            &rstdh[i..i + 1],
            &[1.0 / (var + LN_EPS).sqrt()],
            FWD_RTOL,
            FWD_ATOL,
        )?;
    }

    let c = g.vec(n * d, -1.0, 1.0);
    let dinp0 = g.vec(n * d, -1.0, 1.0);
    let dgamma0 = g.vec(d, -1.0, 1.0);
    let dbeta0 = g.vec(d, -1.0, 1.0);
    let cb = dev.upload(&c).unwrap();
    let (mut dinp, mut dgamma, mut dbeta) = (
        dev.upload(&dinp0).unwrap(),
        dev.upload(&dgamma0).unwrap(),
        dev.upload(&dbeta0).unwrap(),
    );
    dev.layer_norm_bwd(
        &mut dinp,
        &mut dgamma,
        &mut dbeta,
        &cb,
        &xb,
        &mean,
        &rstd,
        &gb,
        n,
        d,
    )
    .unwrap();
    let want_dinp = fd_grad(&x64, |x| functional(&c, &layer_norm(x, &g64, &b64, n, d)));
    let want_dgamma = fd_grad(&g64, |x| functional(&c, &layer_norm(&x64, x, &b64, n, d)));
    let want_dbeta = fd_grad(&b64, |x| functional(&c, &layer_norm(&x64, &g64, x, n, d)));
    close(
        "dinp",
        &added(&dev.download(&dinp).unwrap(), &dinp0),
        &want_dinp,
        BWD_RTOL,
        BWD_ATOL,
    )?;
    close(
        "dgamma",
        &added(&dev.download(&dgamma).unwrap(), &dgamma0),
        &want_dgamma,
        BWD_RTOL,
        BWD_ATOL,
    )?;
    close(
        "dbeta",
        &added(&dev.download(&dbeta).unwrap(), &dbeta0),
        &want_dbeta,
        BWD_RTOL,
        BWD_ATOL,
    )?;
    Ok(())
}
device_proptest!(48, layer_norm_matches_oracle, ln_case());

/// Shapes crossing the GEMM's register tiles (12 × 32 / 6 × 16 / 4 × 16, with leftovers), its
/// 256-deep k slices (k = 300 in the forward) and the 512-row blocks of dw (n = 601, 1100, 2000),
/// and an input wide enough (k = 700) that dw is split by columns, into ranges that are not whole
/// panels; the first three are big enough to cross the GEMM's threading threshold (4 Mflop), and
/// on the CPU the test asserts that both passes were split.
fn linear_agrees_with_oracle_on_tiled_and_blocked_shapes<B: Backend>(dev: &B) -> TestCaseResult {
    for (n, k, m, split) in [
        (2000, 37, 29, 1),
        (601, 300, 17, 1),
        (1100, 700, 45, 1),
        (9, 5, 64, 0),
        (2, 1, 1, 0),
    ] {
        check_linear_large(dev, n, k, m, split)?;
    }
    Ok(())
}
device_test!(
    linear_agrees_with_oracle_on_tiled_and_blocked_shapes,
    [eraengine::gpu::Order::Forward]
);

fn check_linear_large<B: Backend>(
    dev: &B,
    n: usize,
    k: usize,
    m: usize,
    split: u64,
) -> TestCaseResult {
    let mut g = Gen::new(7 + n as u64);
    let inp = g.vec(n * k, -1.0, 1.0);
    let w = g.vec(m * k, -1.0, 1.0);
    let b = g.vec(m, -1.0, 1.0);
    let (xb, wb, bb) = (
        dev.upload(&inp).unwrap(),
        dev.upload(&w).unwrap(),
        dev.upload(&b).unwrap(),
    );
    let mut out = dev.zeros(n * m).unwrap();
    threaded(dev, &format!("linear_fwd {n}x{k}x{m}"), split, || {
        dev.linear_fwd(&mut out, &xb, &wb, Some(&bb), n, k, m)
            .unwrap()
    });
    let (inp64, w64) = (f64s(&inp), f64s(&w));
    close(
        "out",
        &dev.download(&out).unwrap(),
        &linear(&inp64, &w64, Some(&f64s(&b)), n, k, m),
        FWD_RTOL,
        FWD_ATOL,
    )?;

    // analytic gradients of Σ c·out: dinp = c·w, dw = cᵀ·inp, db = Σ_rows c
    let c = g.vec(n * m, -1.0, 1.0);
    let cb = dev.upload(&c).unwrap();
    let (mut dinp, mut dw, mut db) = (
        dev.zeros(n * k).unwrap(),
        dev.zeros(m * k).unwrap(),
        dev.zeros(m).unwrap(),
    );
    threaded(dev, &format!("linear_bwd {n}x{k}x{m}"), split, || {
        dev.linear_bwd(
            Some(&mut dinp),
            &mut dw,
            Some(&mut db),
            &cb,
            &xb,
            &wb,
            n,
            k,
            m,
        )
        .unwrap()
    });
    let c64 = f64s(&c);
    let mut want_dinp = vec![0.0; n * k];
    let mut want_dw = vec![0.0; m * k];
    let mut want_db = vec![0.0; m];
    for i in 0..n {
        for j in 0..m {
            want_db[j] += c64[i * m + j];
            for kk in 0..k {
                want_dinp[i * k + kk] += c64[i * m + j] * w64[j * k + kk];
                want_dw[j * k + kk] += c64[i * m + j] * inp64[i * k + kk];
            }
        }
    }
    close(
        "dinp",
        &dev.download(&dinp).unwrap(),
        &want_dinp,
        FWD_RTOL,
        FWD_ATOL,
    )?;
    close(
        "dw",
        &dev.download(&dw).unwrap(),
        &want_dw,
        FWD_RTOL,
        FWD_ATOL,
    )?;
    close(
        "db",
        &dev.download(&db).unwrap(),
        &want_db,
        FWD_RTOL,
        FWD_ATOL,
    )?;
    Ok(())
}

/// Big enough that the CPU splits the rows over threads (asserted there).
fn layer_norm_agrees_with_oracle_when_threaded<B: Backend>(dev: &B) -> TestCaseResult {
    let (n, d) = (300, 64);
    let mut g = Gen::new(8);
    let x = g.vec(n * d, -2.0, 2.0);
    let gamma = g.vec(d, 0.5, 1.5);
    let beta = g.vec(d, -0.5, 0.5);
    let (xb, gb, bb) = (
        dev.upload(&x).unwrap(),
        dev.upload(&gamma).unwrap(),
        dev.upload(&beta).unwrap(),
    );
    let (mut y, mut mean, mut rstd) = (
        dev.zeros(n * d).unwrap(),
        dev.zeros(n).unwrap(),
        dev.zeros(n).unwrap(),
    );
    threaded(dev, "layer_norm_fwd", 1, || {
        dev.layer_norm_fwd(&mut y, &mut mean, &mut rstd, &xb, &gb, &bb, n, d)
            .unwrap()
    });
    let want = layer_norm(&f64s(&x), &f64s(&gamma), &f64s(&beta), n, d);
    close(
        "ln out",
        &dev.download(&y).unwrap(),
        &want,
        FWD_RTOL,
        FWD_ATOL,
    )
}
device_test!(
    layer_norm_agrees_with_oracle_when_threaded,
    [eraengine::gpu::Order::Forward]
);

/// Layer norm's CPU loops run on the widest SIMD path the CPU has; forced on each path, forward
/// and backward give the very same bits as the baseline (same operations, same order), over row
/// widths that are not multiples of the 8 partial sums, and the baseline matches the f64 oracle.
fn layer_norm_simd_paths_give_identical_bits(n: usize, d: usize, seed: u64) -> TestCaseResult {
    use eraengine::ops::gemm::Simd;
    use eraengine::ops::layer_norm::{layer_norm_bwd_on, layer_norm_fwd_on};
    let mut g = Gen::new(seed);
    let x = g.vec(n * d, -3.0, 3.0);
    let gamma = g.vec(d, 0.5, 1.5);
    let beta = g.vec(d, -0.5, 0.5);
    let dout = g.vec(n * d, -1.0, 1.0);
    let run = |simd: Simd| {
        let (mut o, mut mu, mut rs) = (vec![0f32; n * d], vec![0f32; n], vec![0f32; n]);
        layer_norm_fwd_on(simd, &mut o, &mut mu, &mut rs, &x, &gamma, &beta, n, d);
        let (mut dx, mut dg, mut db) = (vec![0.25f32; n * d], vec![0f32; d], vec![0f32; d]);
        layer_norm_bwd_on(
            simd, true, &mut dx, &mut dg, &mut db, &dout, &x, &mu, &rs, &gamma, n, d,
        );
        // into a fresh gradient (contents unspecified: NaN here) dx is written, not added: the
        // bits of dx accumulated into zeros
        let (mut fresh, mut zeroed) = (vec![f32::NAN; n * d], vec![0f32; n * d]);
        for (buf, acc) in [(&mut fresh, false), (&mut zeroed, true)] {
            let (mut g2, mut b2) = (vec![0f32; d], vec![0f32; d]);
            layer_norm_bwd_on(
                simd, acc, buf, &mut g2, &mut b2, &dout, &x, &mu, &rs, &gamma, n, d,
            );
        }
        [o, mu, rs, dx, dg, db, fresh, zeroed]
    };
    let base = run(Simd::Portable);
    for simd in Simd::ALL.into_iter().filter(|s| s.available()) {
        let got = run(simd);
        let (fresh, zeroed) = (&got[6], &got[7]);
        let same = fresh.iter().zip(zeroed).all(|(u, v)| u == v && !u.is_nan());
        prop_assert!(
            same,
            "{}: the fresh gradient differs from zeros + dx",
            simd.name()
        );
        for (k, (a, b)) in got.iter().zip(&base).enumerate() {
            let same = a.iter().zip(b).all(|(u, v)| u.to_bits() == v.to_bits());
            prop_assert!(
                same,
                "{} output {} differs from the baseline",
                simd.name(),
                k
            );
        }
    }
    close(
        "layer_norm (baseline path)",
        &base[0],
        &layer_norm(&f64s(&x), &f64s(&gamma), &f64s(&beta), n, d),
        FWD_RTOL,
        FWD_ATOL,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn layer_norm_simd_paths(n in 1usize..40, d in 1usize..70, seed in any::<u64>()) {
        layer_norm_simd_paths_give_identical_bits(n, d, seed)?;
    }
}
