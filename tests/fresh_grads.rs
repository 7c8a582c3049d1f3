//! The `*_bwd_fresh` backwards (`Backend::linear_bwd_fresh`, `layer_norm_bwd_fresh`,
//! `gelu_bwd_fresh`, `dropout_bwd_fresh`) write an input gradient that nothing has flowed into yet
//! instead of adding to it. On every device, from a buffer full of NaN (standing for `unset`'s
//! unspecified contents), each gives the values the accumulating backward gives from zeros, and
//! the same parameter gradients; including the empty product of a linear map with m = 0, whose
//! fresh dinp must come out as zeros.

use eraengine::device::Backend;
use eraengine::rng::{DropoutKey, Rng};
use proptest::test_runner::TestCaseResult;

#[macro_use]
mod gpu_common;

/// Values in [lo, hi) from the crate's Philox stream `seed`.
fn vals(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = Rng::new(seed, 7);
    (0..len).map(|_| rng.uniform(lo, hi)).collect()
}

/// Equal values (so +0 and −0 agree), no NaN left behind.
fn same(what: &str, got: &[f32], want: &[f32]) -> TestCaseResult {
    proptest::prop_assert_eq!(got.len(), want.len(), "{}: length", what);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        proptest::prop_assert!(
            g == w && !g.is_nan(),
            "{}: element {} is {} fresh, {} accumulated from zeros",
            what,
            i,
            g,
            w
        );
    }
    Ok(())
}

/// (n, k, m) for the linear map, (n, d) for layer norm; odd sizes, one row, an empty product.
const SHAPES: [(usize, usize, usize); 5] = [
    (1, 3, 2),
    (7, 5, 9),
    (33, 17, 20),
    (64, 16, 0),
    (130, 40, 24),
];

fn fresh_matches_zeros_plus<B: Backend>(dev: &B) -> TestCaseResult {
    let up = |v: &[f32]| dev.upload(v).expect("upload");
    let down = |b: &B::Buf| dev.download(b).expect("download");
    for (case, &(n, k, m)) in SHAPES.iter().enumerate() {
        let seed = case as u64 * 10;
        // linear: dinp[n,k] from dout[n,m] · w[m,k]; dw and db accumulate in both calls
        let (dout, inp, w) = (
            vals(n * m, seed + 1, -1.0, 1.0),
            vals(n * k, seed + 2, -1.0, 1.0),
            vals(m * k, seed + 3, -1.0, 1.0),
        );
        let (dout_b, inp_b, w_b) = (up(&dout), up(&inp), up(&w));
        let run = |fresh: bool| {
            let mut di = up(&vec![if fresh { f32::NAN } else { 0.0 }; n * k]);
            let (mut dw, mut db) = (up(&vec![0.5; m * k]), up(&vec![0.25; m]));
            if fresh {
                dev.linear_bwd_fresh(
                    &mut di,
                    &mut dw,
                    Some(&mut db),
                    &dout_b,
                    &inp_b,
                    &w_b,
                    n,
                    k,
                    m,
                )
            } else {
                dev.linear_bwd(
                    Some(&mut di),
                    &mut dw,
                    Some(&mut db),
                    &dout_b,
                    &inp_b,
                    &w_b,
                    n,
                    k,
                    m,
                )
            }
            .expect("linear_bwd");
            [down(&di), down(&dw), down(&db)]
        };
        let (f, z) = (run(true), run(false));
        for (name, (a, b)) in ["linear dinp", "linear dw", "linear db"]
            .iter()
            .zip(f.iter().zip(&z))
        {
            same(&format!("{name} ({n},{k},{m})"), a, b)?;
        }

        // layer norm over rows of d = k + 1
        let d = k + 1;
        let x = vals(n * d, seed + 4, -3.0, 3.0);
        let (gamma, beta) = (vals(d, seed + 5, 0.5, 1.5), vals(d, seed + 6, -0.5, 0.5));
        let g = vals(n * d, seed + 7, -1.0, 1.0);
        let (x_b, gamma_b, beta_b, g_b) = (up(&x), up(&gamma), up(&beta), up(&g));
        let (mut y, mut mu, mut rs) = (up(&vec![0.0; n * d]), up(&vec![0.0; n]), up(&vec![0.0; n]));
        dev.layer_norm_fwd(&mut y, &mut mu, &mut rs, &x_b, &gamma_b, &beta_b, n, d)
            .expect("layer_norm_fwd");
        let run = |fresh: bool| {
            let mut di = up(&vec![if fresh { f32::NAN } else { 0.0 }; n * d]);
            let (mut dg, mut dbt) = (up(&vec![0.5; d]), up(&vec![0.25; d]));
            if fresh {
                dev.layer_norm_bwd_fresh(
                    &mut di, &mut dg, &mut dbt, &g_b, &x_b, &mu, &rs, &gamma_b, n, d,
                )
            } else {
                dev.layer_norm_bwd(
                    &mut di, &mut dg, &mut dbt, &g_b, &x_b, &mu, &rs, &gamma_b, n, d,
                )
            }
            .expect("layer_norm_bwd");
            [down(&di), down(&dg), down(&dbt)]
        };
        let (f, z) = (run(true), run(false));
        for (name, (a, b)) in ["ln dinp", "ln dgamma", "ln dbeta"]
            .iter()
            .zip(f.iter().zip(&z))
        {
            same(&format!("{name} ({n},{d})"), a, b)?;
        }

        // GELU and dropout over n·d elements
        let key = DropoutKey {
            seed: seed + 8,
            step: 3,
            tensor: 1,
        };
        let run = |fresh: bool, op: usize| {
            let mut di = up(&vec![if fresh { f32::NAN } else { 0.0 }; n * d]);
            match (op, fresh) {
                (0, true) => dev.gelu_bwd_fresh(&mut di, &g_b, &x_b),
                (0, false) => dev.gelu_bwd(&mut di, &g_b, &x_b),
                (_, true) => dev.dropout_bwd_fresh(&mut di, &g_b, 0.3, key),
                (_, false) => dev.dropout_bwd(&mut di, &g_b, 0.3, key),
            }
            .expect("elementwise backward");
            down(&di)
        };
        same(&format!("gelu ({})", n * d), &run(true, 0), &run(false, 0))?;
        same(
            &format!("dropout ({})", n * d),
            &run(true, 1),
            &run(false, 1),
        )?;
    }
    Ok(())
}
device_test!(fresh_matches_zeros_plus);
