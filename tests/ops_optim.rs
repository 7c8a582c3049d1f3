//! Adam / AdamW against a hand-written f64 step, and sum_squares.

mod oracle;

use eraengine::ops::optim::{adam_step, sum_squares, AdamArgs};
use oracle::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn adam_step_matches_f64_adam(len in 1usize..50, step in 1u32..2000, wd in prop_oneof![Just(0.0f32), 0.0f32..0.1],
                                  scale in prop_oneof![Just(1.0f32), 0.01f32..1.0], seed: u64) {
        let mut g = Gen::new(seed);
        let p0 = g.vec(len, -1.0, 1.0);
        let grad = g.vec(len, -2.0, 2.0);
        let m0 = g.vec(len, -0.1, 0.1);
        let v0 = g.vec(len, 0.0, 0.01);
        let args = AdamArgs { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: wd, step, grad_scale: scale };
        let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
        adam_step(&mut p, &grad, &mut m, &mut v, &args);
        let (wp, wm, wv) = adam(&f64s(&p0), &f64s(&grad), &f64s(&m0), &f64s(&v0),
                                // the f32 hyperparameters exactly (0.999f32 ≠ 0.999)
                                args.lr as f64, args.beta1 as f64, args.beta2 as f64, args.eps as f64,
                                wd as f64, step as i32, scale as f64);
        close("m", &m, &wm, FWD_RTOL, 1e-7)?;
        close("v", &v, &wv, FWD_RTOL, 1e-9)?;
        // the update is ~lr = 1e-2; p is compared to within a few f32 ulps of |p| ≤ 1.01
        close("p", &p, &wp, 0.0, 3e-7)?;
    }

    #[test]
    fn sum_squares_matches_f64(len in 0usize..5000, seed: u64) {
        let mut g = Gen::new(seed);
        let x = g.vec(len, -3.0, 3.0);
        let want: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
        prop_assert!((sum_squares(&x) - want).abs() <= 1e-12 * want.max(1.0));
    }
}

#[test]
fn first_adam_step_moves_each_weight_by_about_lr_against_its_gradient() {
    // at step 1, m̂ = g and v̂ = g², so the step is lr · g/(|g| + ε) = ±lr
    let mut p = vec![0.5f32, -0.5, 0.25];
    let grad = [0.3f32, -2.0, 1e-3];
    let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
    let args = AdamArgs {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        step: 1,
        grad_scale: 1.0,
    };
    adam_step(&mut p, &grad, &mut m, &mut v, &args);
    for (got, want) in p.iter().zip([0.49f32, -0.49, 0.24]) {
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
    // AdamW shrinks weights with a zero gradient by lr · wd · p
    let mut p = vec![2.0f32];
    let (mut m, mut v) = (vec![0.0], vec![0.0]);
    adam_step(
        &mut p,
        &[0.0],
        &mut m,
        &mut v,
        &AdamArgs {
            weight_decay: 0.1,
            ..args
        },
    );
    assert!((p[0] - (2.0 - 0.01 * 0.1 * 2.0)).abs() < 1e-6, "{}", p[0]);
}

#[test]
fn adam_agrees_with_oracle_when_threaded() {
    let len = 100_000;
    let mut g = Gen::new(9);
    let p0 = g.vec(len, -1.0, 1.0);
    let grad = g.vec(len, -1.0, 1.0);
    let args = AdamArgs {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step: 3,
        grad_scale: 0.5,
    };
    let (mut p, mut m, mut v) = (p0.clone(), vec![0.0; len], vec![0.0; len]);
    adam_step(&mut p, &grad, &mut m, &mut v, &args);
    let z = vec![0.0; len];
    let (wp, ..) = adam(
        &f64s(&p0),
        &f64s(&grad),
        &z,
        &z,
        args.lr as f64,
        args.beta1 as f64,
        args.beta2 as f64,
        args.eps as f64,
        args.weight_decay as f64,
        3,
        0.5,
    );
    close("p", &p, &wp, 0.0, 3e-7).unwrap();
}
