//! The per-era correlation loss and FiLM against a naive f64 oracle written from docs/model.md, on
//! every device (CPU, the emulated kernels in every thread order, a GPU when present):
//! forwards, backwards by central finite differences, the `+=` rule, masking and NaN targets,
//! columns that do not count (fewer than two scored rows, constant target).

#[macro_use]
mod gpu_common;
mod oracle;

use eraengine::device::Backend;
use eraengine::ops::corr_loss::{corr_loss_bwd, corr_loss_fwd, CORR_STATS};
use eraengine::Error;
use oracle::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

/// Mean Pearson correlation over counted columns, straight from the definition (f64).
fn corr_oracle(yhat: &[f64], y: &[f32], mask: &[f32], n: usize, t: usize) -> (f64, usize) {
    let eps = 1e-8;
    let (mut sum, mut heads) = (0.0, 0usize);
    for k in 0..t {
        let rows: Vec<usize> = (0..n)
            .filter(|&i| mask[i] != 0.0 && !y[i * t + k].is_nan())
            .collect();
        if rows.len() < 2 {
            continue;
        }
        let c = rows.len() as f64;
        let mp = rows.iter().map(|&i| yhat[i * t + k]).sum::<f64>() / c;
        let my = rows.iter().map(|&i| y[i * t + k] as f64).sum::<f64>() / c;
        let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
        for &i in &rows {
            let a = yhat[i * t + k] - mp;
            let b = y[i * t + k] as f64 - my;
            sab += a * b;
            saa += a * a;
            sbb += b * b;
        }
        if sbb <= 0.0 {
            continue;
        }
        sum += sab / ((saa + eps).sqrt() * (sbb + eps).sqrt());
        heads += 1;
    }
    (if heads > 0 { sum / heads as f64 } else { 0.0 }, heads)
}

fn targets(n: usize, t: usize, nan_every: usize, g: &mut Gen) -> Vec<f32> {
    (0..n * t)
        .map(|_| {
            if nan_every > 0 && g.below(nan_every) == 0 {
                f32::NAN
            } else {
                // five bins, as Numerai's targets
                (g.below(5) as f32) * 0.25
            }
        })
        .collect()
}

/// One correlation-loss case: shapes, mask kind, NaN rate, weight, data seed.
type CorrCase = (usize, usize, u8, usize, f32, u64);

/// Forward against the f64 oracle and the backward against its central differences, through the
/// `Backend` trait (so the same property holds on the CPU, the emulated kernels and a GPU).
fn corr_loss_matches_oracle_and_its_gradient<B: Backend>(dev: &B, c: &CorrCase) -> TestCaseResult {
    let &(n, t, mk, nan_every, w, seed) = c;
    let mut g = Gen::new(seed);
    let mask = mask(mk, n, &mut g);
    let y = targets(n, t, nan_every, &mut g);
    // a spread well above f32 rounding: with two scored rows the gradient's two terms are large
    // and cancel, so near-equal predictions would measure f32 cancellation, not the formula
    let yhat = g.vec(n * t, -1.0, 1.0);
    let (yh, yy, m) = (dev.upload(&yhat)?, dev.upload(&y)?, dev.upload(&mask)?);
    let mut stats = dev.upload(&vec![7.0; t * CORR_STATS])?;
    let parts = dev.corr_loss_fwd(&mut stats, &yh, &yy, &m, n, t)?;
    let (want, heads) = corr_oracle(&f64s(&yhat), &y, &mask, n, t);
    prop_assert_eq!(parts.heads as usize, heads);
    close("corr", &[parts.corr], &[want], FWD_RTOL, FWD_ATOL)?;
    // backward of w · (1 − corr), accumulated onto a pre-filled buffer
    let before = g.vec(n * t, -1.0, 1.0);
    let mut dy = dev.upload(&before)?;
    dev.corr_loss_bwd(&mut dy, &yh, &yy, &m, &stats, w, n, t)?;
    let fd = fd_grad(&f64s(&yhat), |p| {
        w as f64 * (1.0 - corr_oracle(p, &y, &mask, n, t).0)
    });
    // the correlation's gradient scales like 1/(s_a s_b): compare relative to its size
    close(
        "dyhat",
        &added(&dev.download(&dy)?, &before),
        &fd,
        1e-3,
        2e-4,
    )
}
device_proptest!(
    64,
    corr_loss_matches_oracle_and_its_gradient,
    (
        1usize..40,
        1usize..4,
        0u8..4,
        0usize..5,
        0.1f32..3.0,
        proptest::prelude::any::<u64>()
    )
);

fn film_matches_oracle_and_its_gradient<B: Backend>(
    dev: &B,
    c: &(usize, usize, u64),
) -> TestCaseResult {
    let &(n, d, seed) = c;
    let mut g = Gen::new(seed);
    let inp = g.vec(n * d, -2.0, 2.0);
    let gamma = g.vec(d, -1.0, 1.0);
    let beta = g.vec(d, -1.0, 1.0);
    let fwd = |x: &[f64], ga: &[f64], be: &[f64]| -> Vec<f64> {
        (0..n * d)
            .map(|e| x[e] * (1.0 + ga[e % d]) + be[e % d])
            .collect()
    };
    let (xi, gi, bi) = (dev.upload(&inp)?, dev.upload(&gamma)?, dev.upload(&beta)?);
    let mut out = dev.upload(&vec![7.0; n * d])?;
    dev.film_fwd(&mut out, &xi, &gi, &bi, n, d)?;
    let want = fwd(&f64s(&inp), &f64s(&gamma), &f64s(&beta));
    close("out", &dev.download(&out)?, &want, FWD_RTOL, FWD_ATOL)?;

    let c = g.vec(n * d, -1.0, 1.0);
    let (b_in, b_g, b_b) = (
        g.vec(n * d, -1.0, 1.0),
        g.vec(d, -1.0, 1.0),
        g.vec(d, -1.0, 1.0),
    );
    let (mut di, mut dg, mut db) = (dev.upload(&b_in)?, dev.upload(&b_g)?, dev.upload(&b_b)?);
    let dout = dev.upload(&c)?;
    dev.film_bwd(&mut di, &mut dg, &mut db, &dout, &xi, &gi, n, d)?;
    let (x64, g64, b64) = (f64s(&inp), f64s(&gamma), f64s(&beta));
    let want_i = fd_grad(&x64, |x| functional(&c, &fwd(x, &g64, &b64)));
    let want_g = fd_grad(&g64, |ga| functional(&c, &fwd(&x64, ga, &b64)));
    let want_b = fd_grad(&b64, |be| functional(&c, &fwd(&x64, &g64, be)));
    close(
        "dinp",
        &added(&dev.download(&di)?, &b_in),
        &want_i,
        BWD_RTOL,
        BWD_ATOL,
    )?;
    close(
        "dgamma",
        &added(&dev.download(&dg)?, &b_g),
        &want_g,
        BWD_RTOL,
        BWD_ATOL,
    )?;
    close(
        "dbeta",
        &added(&dev.download(&db)?, &b_b),
        &want_b,
        BWD_RTOL,
        BWD_ATOL,
    )
}
device_proptest!(
    64,
    film_matches_oracle_and_its_gradient,
    (1usize..20, 1usize..17, proptest::prelude::any::<u64>())
);

fn wrong_lengths_are_shape_errors<B: Backend>(dev: &B) -> TestCaseResult {
    let (n, t, d) = (4usize, 2usize, 3usize);
    let short = dev.upload(&vec![0.5; n * t - 1])?;
    let full = dev.upload(&vec![0.5; n * t])?;
    let mask = dev.upload(&[1.0; 4])?;
    let mut stats = dev.upload(&vec![0.0; t * CORR_STATS])?;
    let r = dev.corr_loss_fwd(&mut stats, &short, &full, &mask, n, t);
    prop_assert!(
        matches!(r, Err(Error::Shape(_))),
        "corr_loss: {:?}",
        r.err()
    );
    let mut out = dev.upload(&vec![0.0; n * d])?;
    let x = dev.upload(&vec![0.0; n * d])?;
    let g = dev.upload(&vec![0.0; d - 1])?;
    let r = dev.film_fwd(&mut out, &x, &g, &g, n, d);
    prop_assert!(matches!(r, Err(Error::Shape(_))), "film: {:?}", r.err());
    Ok(())
}
device_test!(wrong_lengths_are_shape_errors);

#[test]
fn corr_loss_is_scale_and_shift_invariant_and_one_for_a_perfect_prediction() {
    let mut g = Gen::new(3);
    let (n, t) = (50, 2);
    let y = targets(n, t, 0, &mut g);
    let mask = vec![1.0; n];
    let mut stats = vec![0.0; t * CORR_STATS];
    let perfect: Vec<f32> = y.iter().map(|&v| 3.0 * v - 1.0).collect();
    let p = corr_loss_fwd(&mut stats, &perfect, &y, &mask, n, t);
    assert!((p.corr - 1.0).abs() < 1e-5, "corr {}", p.corr);
    let yhat = g.vec(n * t, -1.0, 1.0);
    let moved: Vec<f32> = yhat.iter().map(|&v| 0.5 * v + 10.0).collect();
    let a = corr_loss_fwd(&mut stats, &yhat, &y, &mask, n, t).corr;
    let b = corr_loss_fwd(&mut stats, &moved, &y, &mask, n, t).corr;
    assert!((a - b).abs() < 1e-4, "{a} vs {b}");
}

#[test]
fn constant_targets_and_single_rows_do_not_count_and_give_no_gradient() {
    let (n, t) = (6, 2);
    // column 0 constant, column 1 one present row
    let mut y = vec![0.5f32; n * t];
    for i in 1..n {
        y[i * t + 1] = f32::NAN;
    }
    let mask = vec![1.0; n];
    let yhat: Vec<f32> = (0..n * t).map(|e| e as f32 * 0.1).collect();
    let mut stats = vec![7.0; t * CORR_STATS];
    let p = corr_loss_fwd(&mut stats, &yhat, &y, &mask, n, t);
    assert_eq!(p.heads, 0.0);
    assert_eq!(p.corr, 0.0);
    let mut d = vec![0.0; n * t];
    corr_loss_bwd(&mut d, &yhat, &y, &mask, &stats, 1.0, n, t);
    assert!(d.iter().all(|&v| v == 0.0), "{d:?}");
}
