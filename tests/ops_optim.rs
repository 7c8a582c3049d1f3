//! Adam / AdamW against a hand-written f64 step, and sum_squares, on every device (cpu, emu, cuda;
//! see tests/gpu_common).

#[macro_use]
mod gpu_common;
mod oracle;

use eraengine::device::Backend;
use eraengine::gpu::Order;
use eraengine::ops::optim::AdamArgs;
use gpu_common::threaded;
use oracle::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

/// (p, m, v) after one step on the device.
fn step<B: Backend>(
    dev: &B,
    p0: &[f32],
    grad: &[f32],
    m0: &[f32],
    v0: &[f32],
    args: &AdamArgs,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let up = |v: &[f32]| dev.upload(v).unwrap();
    let (mut p, mut m, mut v) = (up(p0), up(m0), up(v0));
    dev.adam_step(&mut p, &up(grad), &mut m, &mut v, args)
        .unwrap();
    (
        dev.download(&p).unwrap(),
        dev.download(&m).unwrap(),
        dev.download(&v).unwrap(),
    )
}

/// len, step, weight decay, gradient scale, data seed
type AdamCase = (usize, u32, f32, f32, u64);

fn adam_step_matches_f64_adam<B: Backend>(
    dev: &B,
    &(len, step_no, wd, scale, seed): &AdamCase,
) -> TestCaseResult {
    let mut g = Gen::new(seed);
    let p0 = g.vec(len, -1.0, 1.0);
    let grad = g.vec(len, -2.0, 2.0);
    let m0 = g.vec(len, -0.1, 0.1);
    let v0 = g.vec(len, 0.0, 0.01);
    let args = AdamArgs {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: wd,
        step: step_no,
        grad_scale: scale,
    };
    let (p, m, v) = step(dev, &p0, &grad, &m0, &v0, &args);
    let (wp, wm, wv) = adam(
        &f64s(&p0),
        &f64s(&grad),
        &f64s(&m0),
        &f64s(&v0),
        // the f32 hyperparameters exactly (0.999f32 ≠ 0.999)
        args.lr as f64,
        args.beta1 as f64,
        args.beta2 as f64,
        args.eps as f64,
        wd as f64,
        step_no as i32,
        scale as f64,
    );
    close("m", &m, &wm, FWD_RTOL, 1e-7)?;
    close("v", &v, &wv, FWD_RTOL, 1e-9)?;
    // the update is ~lr = 1e-2; p is compared to within a few f32 ulps of |p| ≤ 1.01
    close("p", &p, &wp, 0.0, 3e-7)
}
device_proptest!(
    64,
    adam_step_matches_f64_adam,
    (
        1usize..50,
        1u32..2000,
        prop_oneof![Just(0.0f32), 0.0f32..0.1],
        prop_oneof![Just(1.0f32), 0.01f32..1.0],
        any::<u64>()
    )
);

fn sum_squares_matches_f64<B: Backend>(dev: &B, &(len, seed): &(usize, u64)) -> TestCaseResult {
    let mut g = Gen::new(seed);
    let x = g.vec(len, -3.0, 3.0);
    let want: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
    let got = dev.sum_squares(&dev.upload(&x).unwrap()).unwrap();
    prop_assert!(
        (got - want).abs() <= 1e-12 * want.max(1.0),
        "sum_squares {} vs {} (len {})",
        got,
        want,
        len
    );
    Ok(())
}
device_proptest!(64, sum_squares_matches_f64, (0usize..5000, any::<u64>()));

fn first_adam_step_moves_each_weight_by_about_lr_against_its_gradient<B: Backend>(
    dev: &B,
) -> TestCaseResult {
    // at step 1, m̂ = g and v̂ = g², so the step is lr · g/(|g| + ε) = ±lr
    let args = AdamArgs {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        step: 1,
        grad_scale: 1.0,
    };
    let (p, ..) = step(
        dev,
        &[0.5, -0.5, 0.25],
        &[0.3, -2.0, 1e-3],
        &[0.0; 3],
        &[0.0; 3],
        &args,
    );
    for (got, want) in p.iter().zip([0.49f32, -0.49, 0.24]) {
        prop_assert!((got - want).abs() < 1e-5, "{} vs {}", got, want);
    }
    // AdamW shrinks weights with a zero gradient by lr · wd · p
    let (p, ..) = step(
        dev,
        &[2.0],
        &[0.0],
        &[0.0],
        &[0.0],
        &AdamArgs {
            weight_decay: 0.1,
            ..args
        },
    );
    prop_assert!((p[0] - (2.0 - 0.01 * 0.1 * 2.0)).abs() < 1e-6, "{}", p[0]);
    Ok(())
}
device_test!(first_adam_step_moves_each_weight_by_about_lr_against_its_gradient);

/// Big enough that the CPU splits the step over threads (asserted there).
fn adam_agrees_with_oracle_when_threaded<B: Backend>(dev: &B) -> TestCaseResult {
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
    let z = vec![0.0; len];
    let (p, ..) = threaded(dev, "adam_step", 1, || step(dev, &p0, &grad, &z, &z, &args));
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
    close("p", &p, &wp, 0.0, 3e-7)
}
device_test!(adam_agrees_with_oracle_when_threaded, [Order::Forward]);

/// tensor lengths, clip, eras, data seed
type ClipCase = (Vec<usize>, f32, usize, u64);

/// `Adam::clipped_update` (on a GPU: the norms and the scale decided on the device) against the
/// f64 oracle: scale = min(1, clip / (‖g‖ / eras)) / eras, then the f64 Adam step of every tensor.
fn clipped_update_matches_f64_clip_and_adam<B: Backend>(
    dev: &B,
    (lens, clip, eras, seed): &ClipCase,
) -> TestCaseResult {
    let mut g = Gen::new(*seed);
    let tensors: eraengine::params::HostTensors = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("t{i}"), vec![n], g.vec(n, -1.0, 1.0)))
        .collect();
    let grads: Vec<Vec<f32>> = lens.iter().map(|&n| g.vec(n, -2.0, 2.0)).collect();
    let mut params = eraengine::params::Params::from_host(dev, &tensors).unwrap();
    for (b, h) in params.grads.iter_mut().zip(&grads) {
        *b = dev.upload(h).unwrap();
    }
    // moments of earlier steps, so the update depends on the gradient's scale
    let m0: eraengine::params::HostTensors = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("t{i}"), vec![n], g.vec(n, -0.5, 0.5)))
        .collect();
    let v0: eraengine::params::HostTensors = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("t{i}"), vec![n], g.vec(n, 0.01, 0.5)))
        .collect();
    let mut adam = eraengine::params::Adam::from_state(dev, &m0, &v0, 5, 1e-2, 0.01).unwrap();
    adam.clipped_update(dev, &mut params, *clip, *eras, 1)
        .unwrap();
    adam.check_pending(dev, &params).unwrap();
    let norm = grads
        .iter()
        .flatten()
        .map(|&v| (v as f64).powi(2))
        .sum::<f64>()
        .sqrt()
        / *eras as f64;
    let clip_factor = if *clip > 0.0 && norm > *clip as f64 {
        *clip as f64 / norm
    } else {
        1.0
    };
    let scale = clip_factor / *eras as f64;
    for (i, ((_, _, p0), gr)) in tensors.iter().zip(&grads).enumerate() {
        let got = dev.download(&params.values[i]).unwrap();
        let (bc1, bc2) = (1.0 - 0.9f64.powi(6), 1.0 - 0.999f64.powi(6));
        for (k, (&p, &gv)) in p0.iter().zip(gr).enumerate() {
            let gs = gv as f64 * scale;
            let m = 0.9 * m0[i].2[k] as f64 + 0.1 * gs;
            let v = 0.999 * v0[i].2[k] as f64 + 0.001 * gs * gs;
            let want = p as f64 - 1e-2 * ((m / bc1) / ((v / bc2).sqrt() + 1e-8) + 0.01 * p as f64);
            prop_assert!(
                (got[k] as f64 - want).abs() <= 1e-5,
                "tensor {i} [{k}]: {} vs {want} (scale {scale})",
                got[k]
            );
        }
    }
    Ok(())
}
device_proptest!(
    32,
    clipped_update_matches_f64_clip_and_adam,
    (
        prop::collection::vec(0usize..300, 1..4),
        prop_oneof![Just(0.0f32), 0.01f32..2.0, Just(1e6f32)],
        1usize..4,
        any::<u64>()
    )
);

/// A NaN gradient is an error naming its step and tensor, and nothing moves: on the CPU at the
/// update; on a GPU at the next check of the norms (the device skipped the update itself).
fn a_nan_gradient_is_an_error_naming_its_tensor_and_updates_nothing<B: Backend>(
    dev: &B,
) -> TestCaseResult {
    let tensors: eraengine::params::HostTensors = vec![
        ("a".into(), vec![3], vec![0.5, -0.5, 1.0]),
        ("b".into(), vec![2], vec![2.0, 3.0]),
    ];
    let mut params = eraengine::params::Params::from_host(dev, &tensors).unwrap();
    params.grads[0] = dev.upload(&[0.1, 0.2, 0.3]).unwrap();
    params.grads[1] = dev.upload(&[f32::NAN, 1.0]).unwrap();
    let mut adam = eraengine::params::Adam::new(dev, &params, 1e-2, 0.0).unwrap();
    let err = adam
        .clipped_update(dev, &mut params, 1.0, 1, 7)
        .and_then(|()| adam.check_pending(dev, &params))
        .expect_err("a NaN gradient must be an error");
    let msg = err.to_string();
    prop_assert!(msg.contains("b (gradient)") && msg.contains('7'), "{msg}");
    for (i, (_, _, p0)) in tensors.iter().enumerate() {
        prop_assert_eq!(&dev.download(&params.values[i]).unwrap(), p0);
        prop_assert!(dev.download(&adam.m[i]).unwrap().iter().all(|&v| v == 0.0));
        prop_assert!(dev.download(&adam.v[i]).unwrap().iter().all(|&v| v == 0.0));
    }
    // checked once: nothing is pending any more
    prop_assert!(adam.check_pending(dev, &params).is_ok());
    Ok(())
}
device_test!(a_nan_gradient_is_an_error_naming_its_tensor_and_updates_nothing);
