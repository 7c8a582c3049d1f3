//! The worked example of docs/architecture.md: the `sigmoid` unary map on every path — the CPU
//! op against the f64 oracle and central differences, the emulated kernels against the CPU under
//! every thread order, the tape's recorded backward against finite differences of the whole
//! tape, and wrong lengths as `Error::Shape` on every device.

mod gpu_common;
mod oracle;

use eraengine::device::{Backend, Cpu};
use eraengine::ops::elementwise::{unary_bwd, unary_fwd, Unary};
use eraengine::tape::Tape;
use eraengine::Error;
use gpu_common::{orders, Emu};
use oracle::*;
use proptest::prelude::*;

const OP: Unary = Unary::Sigmoid;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn sigmoid_matches_the_oracle_and_its_gradient(
        len in 1usize..300, seed: u64, spread in 0.1f32..30.0,
    ) {
        let mut g = Gen::new(seed);
        let x = g.vec(len, -spread, spread);
        let x64 = f64s(&x);
        let c = g.vec(len, -1.0, 1.0);
        let mut y = vec![7.0; len];
        unary_fwd(OP, &mut y, &x);
        close("sigmoid", &y, &map(&x64, sigmoid), FWD_RTOL, FWD_ATOL)?;
        // the backward accumulates onto what was there
        let d0 = g.vec(len, -1.0, 1.0);
        let mut d = d0.clone();
        unary_bwd(OP, &mut d, &c, &x);
        let want = fd_grad(&x64, |v| functional(&c, &map(v, sigmoid)));
        close("sigmoid dinp", &added(&d, &d0), &want, BWD_RTOL, BWD_ATOL)?;
    }

    #[test]
    fn emulated_kernels_match_the_cpu(len in 1usize..2000, seed: u64, spread in 0.1f32..100.0) {
        let mut g = Gen::new(seed);
        let x = g.vec(len, -spread, spread);
        let dout = g.vec(len, -1.0, 1.0);
        let d0 = g.vec(len, -1.0, 1.0);
        let (mut want_y, mut want_d) = (vec![0.0; len], d0.clone());
        Cpu.unary_fwd(OP, &mut want_y, &x).unwrap();
        Cpu.unary_bwd(OP, &mut want_d, &dout, &x).unwrap();
        for order in orders(seed) {
            let b = Emu::new(order);
            let (xb, gb) = (b.upload(&x).unwrap(), b.upload(&dout).unwrap());
            let mut y = b.zeros(len).unwrap();
            b.unary_fwd(OP, &mut y, &xb).unwrap();
            gpu_common::matches_ref("sigmoid fwd", &b.download(&y).unwrap(), &want_y, 1e-7, 2e-6)?;
            let mut d = b.upload(&d0).unwrap();
            b.unary_bwd(OP, &mut d, &gb, &xb).unwrap();
            gpu_common::matches_ref("sigmoid bwd", &b.download(&d).unwrap(), &want_d, 1e-7, 2e-6)?;
        }
    }
}

/// Σ c·σ(x) through the tape (a loss over a sigmoid node) and its gradient w.r.t. the leaf x,
/// against central differences of the same recorded forward.
fn tape_grad_matches_fd<B: Backend>(dev: &B) {
    let n = 5;
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 1.3 - 2.6).collect();
    let y: Vec<f32> = (0..n).map(|i| (i % 3) as f32 * 0.25).collect();
    let mask = vec![1.0f32; n];
    let loss_at = |xv: &[f32]| -> (f32, Vec<f32>) {
        let mut tape: Tape<B> = Tape::new();
        let mut params = eraengine::params::Params::<B>::from_host(dev, &[]).unwrap();
        let xt = tape.leaf(dev, xv).unwrap();
        let s = tape.unary(dev, OP, xt).unwrap();
        let yt = tape.input(dev, &y).unwrap();
        let m = tape.input(dev, &mask).unwrap();
        let g = tape.input(dev, &[]).unwrap();
        let parts = tape.loss(dev, s, yt, m, g, 0.0, n, 1).unwrap();
        tape.backward(dev, &mut params).unwrap();
        (parts.loss, tape.grad(dev, xt).unwrap())
    };
    let (_, grad) = loss_at(&x);
    for i in 0..n {
        let h = 1e-2f32;
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[i] += h;
        xm[i] -= h;
        let fd = (loss_at(&xp).0 as f64 - loss_at(&xm).0 as f64) / (2.0 * h as f64);
        assert!(
            (grad[i] as f64 - fd).abs() <= 2e-3 * fd.abs().max(0.05),
            "{}: dL/dx[{i}] = {}, finite differences {fd}",
            dev.name(),
            grad[i]
        );
    }
}

#[test]
fn tape_gradient_matches_finite_differences_on_cpu() {
    tape_grad_matches_fd(&Cpu);
}

#[test]
fn tape_gradient_matches_finite_differences_on_the_emulator() {
    tape_grad_matches_fd(&Emu::new(eraengine::gpu::Order::Reverse));
}

#[test]
fn tape_gradient_matches_finite_differences_on_cuda() {
    if let Some(dev) = gpu_common::cuda("tape_gradient_matches_finite_differences_on_cuda") {
        tape_grad_matches_fd(&dev);
    }
}

fn wrong_lengths_are_shape_errors<B: Backend>(dev: &B) {
    let x = dev.upload(&[0.5; 4]).unwrap();
    let mut short = dev.zeros(3).unwrap();
    let r = dev.unary_fwd(OP, &mut short, &x);
    assert!(matches!(r, Err(Error::Shape(_))), "{}: {r:?}", dev.name());
    let dout = dev.upload(&[1.0; 5]).unwrap();
    let mut d = dev.zeros(4).unwrap();
    let r = dev.unary_bwd(OP, &mut d, &dout, &x);
    assert!(matches!(r, Err(Error::Shape(_))), "{}: {r:?}", dev.name());
}

#[test]
fn wrong_lengths_are_shape_errors_on_every_device() {
    wrong_lengths_are_shape_errors(&Cpu);
    wrong_lengths_are_shape_errors(&Emu::new(eraengine::gpu::Order::Forward));
}

#[test]
fn wrong_lengths_are_shape_errors_on_cuda() {
    if let Some(dev) = gpu_common::cuda("wrong_lengths_are_shape_errors_on_cuda") {
        wrong_lengths_are_shape_errors(&dev);
    }
}

#[test]
fn extremes_stay_finite_and_nan_stays_nan() {
    let x = [-1e4f32, -88.0, -20.0, 0.0, 20.0, 88.0, 1e4, f32::NAN];
    let mut y = [0.0f32; 8];
    unary_fwd(OP, &mut y, &x);
    let mut d = [0.0f32; 8];
    unary_bwd(OP, &mut d, &[1.0; 8], &x);
    for i in 0..7 {
        assert!((0.0..=1.0).contains(&y[i]), "σ({}) = {}", x[i], y[i]);
        assert!(d[i].is_finite() && d[i] >= 0.0, "σ'({}) = {}", x[i], d[i]);
    }
    assert_eq!(y[3], 0.5);
    assert!(y[7].is_nan() && d[7].is_nan());
    // the emulated kernels agree on the same extremes
    let b = Emu::new(eraengine::gpu::Order::Forward);
    let xb = b.upload(&x).unwrap();
    let mut yb = b.zeros(8).unwrap();
    b.unary_fwd(OP, &mut yb, &xb).unwrap();
    let got = b.download(&yb).unwrap();
    for i in 0..7 {
        assert!(
            (got[i] - y[i]).abs() <= 1e-6,
            "emu σ({}) = {}, cpu {}",
            x[i],
            got[i],
            y[i]
        );
    }
    assert!(got[7].is_nan());
}
