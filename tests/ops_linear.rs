//! linear and layer_norm against the f64 oracle: forward values, backward against central finite
//! differences of Σ c·out, and the `+=` rule (gradients land on top of what the buffers held).

mod oracle;

use eraengine::ops::layer_norm::{layer_norm_bwd, layer_norm_fwd};
use eraengine::ops::linear::{linear_bwd, linear_fwd};
use oracle::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn linear_matches_oracle(n in 1usize..10, k in 0usize..20, m in 1usize..20, bias: bool, seed: u64) {
        let mut g = Gen::new(seed);
        let inp = g.vec(n * k, -1.0, 1.0);
        let w = g.vec(m * k, -1.0, 1.0);
        let b = g.vec(m, -1.0, 1.0);
        let bo = if bias { Some(&b[..]) } else { None };
        let mut out = g.vec(n * m, -5.0, 5.0); // garbage: the forward overwrites
        linear_fwd(&mut out, &inp, &w, bo, n, k, m);
        let (inp64, w64, b64) = (f64s(&inp), f64s(&w), f64s(&b));
        let b64o = if bias { Some(&b64[..]) } else { None };
        close("out", &out, &linear(&inp64, &w64, b64o, n, k, m), FWD_RTOL, FWD_ATOL)?;

        // backward into non-zero buffers
        let c = g.vec(n * m, -1.0, 1.0);
        let dinp0 = g.vec(n * k, -1.0, 1.0);
        let dw0 = g.vec(m * k, -1.0, 1.0);
        let db0 = g.vec(m, -1.0, 1.0);
        let (mut dinp, mut dw, mut db) = (dinp0.clone(), dw0.clone(), db0.clone());
        linear_bwd(Some(&mut dinp), &mut dw, if bias { Some(&mut db) } else { None }, &c, &inp, &w, n, k, m);
        let want_dinp = fd_grad(&inp64, |x| functional(&c, &linear(x, &w64, b64o, n, k, m)));
        let want_dw = fd_grad(&w64, |x| functional(&c, &linear(&inp64, x, b64o, n, k, m)));
        close("dinp", &added(&dinp, &dinp0), &want_dinp, BWD_RTOL, BWD_ATOL)?;
        close("dw", &added(&dw, &dw0), &want_dw, BWD_RTOL, BWD_ATOL)?;
        if bias {
            let want_db = fd_grad(&b64, |x| functional(&c, &linear(&inp64, &w64, Some(x), n, k, m)));
            close("db", &added(&db, &db0), &want_db, BWD_RTOL, BWD_ATOL)?;
        } else {
            prop_assert_eq!(&db, &db0);
        }
        // without dinp the weight gradient is the same
        let mut dw2 = dw0.clone();
        linear_bwd(None, &mut dw2, None, &c, &inp, &w, n, k, m);
        prop_assert_eq!(&dw2, &dw);
    }

    #[test]
    fn layer_norm_matches_oracle(n in 1usize..6, d in 1usize..10, seed: u64, spread in 0.1f32..4.0) {
        let mut g = Gen::new(seed);
        let inp = g.vec(n * d, -spread, spread);
        let gamma = g.vec(d, 0.5, 1.5);
        let beta = g.vec(d, -0.5, 0.5);
        let mut out = vec![9.0; n * d];
        let mut mean = vec![9.0; n];
        let mut rstd = vec![9.0; n];
        layer_norm_fwd(&mut out, &mut mean, &mut rstd, &inp, &gamma, &beta, n, d);
        let (x64, g64, b64) = (f64s(&inp), f64s(&gamma), f64s(&beta));
        close("out", &out, &layer_norm(&x64, &g64, &b64, n, d), FWD_RTOL, FWD_ATOL)?;
        for i in 0..n {
            let row = &x64[i * d..(i + 1) * d];
            let mu = row.iter().sum::<f64>() / d as f64;
            let var = row.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / d as f64;
            close("mean", &mean[i..i + 1], &[mu], FWD_RTOL, FWD_ATOL)?;
            close("rstd", &rstd[i..i + 1], &[1.0 / (var + LN_EPS).sqrt()], FWD_RTOL, FWD_ATOL)?;
        }

        let c = g.vec(n * d, -1.0, 1.0);
        let dinp0 = g.vec(n * d, -1.0, 1.0);
        let dgamma0 = g.vec(d, -1.0, 1.0);
        let dbeta0 = g.vec(d, -1.0, 1.0);
        let (mut dinp, mut dgamma, mut dbeta) = (dinp0.clone(), dgamma0.clone(), dbeta0.clone());
        layer_norm_bwd(&mut dinp, &mut dgamma, &mut dbeta, &c, &inp, &mean, &rstd, &gamma, n, d);
        let want_dinp = fd_grad(&x64, |x| functional(&c, &layer_norm(x, &g64, &b64, n, d)));
        let want_dgamma = fd_grad(&g64, |x| functional(&c, &layer_norm(&x64, x, &b64, n, d)));
        let want_dbeta = fd_grad(&b64, |x| functional(&c, &layer_norm(&x64, &g64, x, n, d)));
        close("dinp", &added(&dinp, &dinp0), &want_dinp, BWD_RTOL, BWD_ATOL)?;
        close("dgamma", &added(&dgamma, &dgamma0), &want_dgamma, BWD_RTOL, BWD_ATOL)?;
        close("dbeta", &added(&dbeta, &dbeta0), &want_dbeta, BWD_RTOL, BWD_ATOL)?;
    }
}

/// Shapes big enough to cross the threading threshold, so the split over rows is exercised.
/// Shapes crossing the register tile (4 rows × 8 or 16 columns, with leftovers) and the
/// 256-long inner blocks (k = 300 in the forward, n = 601 in dw).
#[test]
fn linear_agrees_with_oracle_on_tiled_and_blocked_shapes() {
    for (n, k, m) in [(300, 37, 29), (601, 300, 17), (9, 5, 64), (2, 1, 1)] {
        check_linear_large(n, k, m);
    }
}

fn check_linear_large(n: usize, k: usize, m: usize) {
    let mut g = Gen::new(7 + n as u64);
    let inp = g.vec(n * k, -1.0, 1.0);
    let w = g.vec(m * k, -1.0, 1.0);
    let b = g.vec(m, -1.0, 1.0);
    let mut out = vec![0.0; n * m];
    linear_fwd(&mut out, &inp, &w, Some(&b), n, k, m);
    let (inp64, w64) = (f64s(&inp), f64s(&w));
    close(
        "out",
        &out,
        &linear(&inp64, &w64, Some(&f64s(&b)), n, k, m),
        FWD_RTOL,
        FWD_ATOL,
    )
    .unwrap();

    // analytic gradients of Σ c·out: dinp = c·w, dw = cᵀ·inp, db = Σ_rows c
    let c = g.vec(n * m, -1.0, 1.0);
    let (mut dinp, mut dw, mut db) = (vec![0.0; n * k], vec![0.0; m * k], vec![0.0; m]);
    linear_bwd(
        Some(&mut dinp),
        &mut dw,
        Some(&mut db),
        &c,
        &inp,
        &w,
        n,
        k,
        m,
    );
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
    close("dinp", &dinp, &want_dinp, FWD_RTOL, FWD_ATOL).unwrap();
    close("dw", &dw, &want_dw, FWD_RTOL, FWD_ATOL).unwrap();
    close("db", &db, &want_db, FWD_RTOL, FWD_ATOL).unwrap();
}

#[test]
fn layer_norm_agrees_with_oracle_when_threaded() {
    let (n, d) = (300, 64);
    let mut g = Gen::new(8);
    let x = g.vec(n * d, -2.0, 2.0);
    let gamma = g.vec(d, 0.5, 1.5);
    let beta = g.vec(d, -0.5, 0.5);
    let (mut y, mut mean, mut rstd) = (vec![0.0; n * d], vec![0.0; n], vec![0.0; n]);
    layer_norm_fwd(&mut y, &mut mean, &mut rstd, &x, &gamma, &beta, n, d);
    let want = layer_norm(&f64s(&x), &f64s(&gamma), &f64s(&beta), n, d);
    close("ln out", &y, &want, FWD_RTOL, FWD_ATOL).unwrap();
}
