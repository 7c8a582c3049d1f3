//! GELU, add, the weights' moving average, dropout and positional encoding against the f64 oracle on every device (cpu, emu,
//! cuda; see tests/gpu_common); dropout's mask properties (p = 0, determinism per key, keep rate).
//! ELU+1 is a CPU helper of linear attention (no device op): its scalar functions are checked here
//! on the CPU.

#[macro_use]
mod gpu_common;
mod oracle;

use eraengine::device::Backend;
use eraengine::gpu::Order;
use eraengine::ops::elementwise::{elu1 as elu1_f32, elu1_grad, DropoutKey};
use eraengine::rng::dropout_uniform;
use gpu_common::threaded;
use oracle::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

/// y = op(x) on the device, for a unary forward `op(dev, out, inp)`.
fn unary<B: Backend>(
    dev: &B,
    x: &[f32],
    op: impl FnOnce(&B, &mut B::Buf, &B::Buf) -> eraengine::Result<()>,
) -> Vec<f32> {
    let xb = dev.upload(x).unwrap();
    // garbage: the forward overwrites
    let mut out = dev.upload(&vec![7.0; x.len()]).unwrap();
    op(dev, &mut out, &xb).unwrap();
    dev.download(&out).unwrap()
}

/// d0 + (the backward `op(dev, d, c, x)` accumulated into d0) on the device.
fn backward<B: Backend>(
    dev: &B,
    d0: &[f32],
    c: &[f32],
    x: &[f32],
    op: impl FnOnce(&B, &mut B::Buf, &B::Buf, &B::Buf) -> eraengine::Result<()>,
) -> Vec<f32> {
    let (cb, xb) = (dev.upload(c).unwrap(), dev.upload(x).unwrap());
    let mut d = dev.upload(d0).unwrap();
    op(dev, &mut d, &cb, &xb).unwrap();
    dev.download(&d).unwrap()
}

fn gelu_matches_oracle<B: Backend>(
    dev: &B,
    &(len, seed, spread): &(usize, u64, f32),
) -> TestCaseResult {
    let mut g = Gen::new(seed);
    let x = g.vec(len, -spread, spread);
    let x64 = f64s(&x);
    let c = g.vec(len, -1.0, 1.0);
    let y = unary(dev, &x, |d, o, i| d.gelu_fwd(o, i));
    close("gelu", &y, &map(&x64, gelu), FWD_RTOL, FWD_ATOL)?;
    let d0 = g.vec(len, -1.0, 1.0);
    let d = backward(dev, &d0, &c, &x, |dv, d, c, x| dv.gelu_bwd(d, c, x));
    let want = fd_grad(&x64, |v| functional(&c, &map(v, gelu)));
    close("gelu dinp", &added(&d, &d0), &want, BWD_RTOL, BWD_ATOL)
}
device_proptest!(
    48,
    gelu_matches_oracle,
    (1usize..40, any::<u64>(), 0.1f32..6.0)
);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// φ = ELU + 1 and φ' (the CPU scalar functions linear attention uses).
    #[test]
    fn elu1_matches_oracle(len in 1usize..40, seed: u64, spread in 0.1f32..6.0) {
        let mut g = Gen::new(seed);
        let x = g.vec(len, -spread, spread);
        let x64 = f64s(&x);
        let c = g.vec(len, -1.0, 1.0);
        let y: Vec<f32> = x.iter().map(|&v| elu1_f32(v)).collect();
        close("elu1", &y, &map(&x64, elu1), FWD_RTOL, FWD_ATOL)?;
        prop_assert!(y.iter().all(|&v| v > 0.0));
        let grad: Vec<f32> = x.iter().zip(&c).map(|(&v, &cc)| cc * elu1_grad(v)).collect();
        let want = fd_grad(&x64, |v| functional(&c, &map(v, elu1)));
        close("elu1 dinp", &grad, &want, BWD_RTOL, BWD_ATOL)?;
    }
}

/// add, and its backward as the tape runs it: `accumulate` of the output gradient into each input's.
fn add_matches_oracle<B: Backend>(dev: &B, &(len, seed): &(usize, u64)) -> TestCaseResult {
    let mut g = Gen::new(seed);
    let a = g.vec(len, -2.0, 2.0);
    let b = g.vec(len, -2.0, 2.0);
    let (ab, bb) = (dev.upload(&a).unwrap(), dev.upload(&b).unwrap());
    let mut y = dev.upload(&vec![7.0; len]).unwrap();
    dev.add_fwd(&mut y, &ab, &bb).unwrap();
    close(
        "add",
        &dev.download(&y).unwrap(),
        &add(&f64s(&a), &f64s(&b)),
        FWD_RTOL,
        FWD_ATOL,
    )?;
    let c = g.vec(len, -1.0, 1.0);
    let da0 = g.vec(len, -1.0, 1.0);
    let db0 = g.vec(len, -1.0, 1.0);
    let da = backward(dev, &da0, &c, &a, |dv, d, c, _| dv.accumulate(d, c));
    let db = backward(dev, &db0, &c, &b, |dv, d, c, _| dv.accumulate(d, c));
    let b64 = f64s(&b);
    let a64 = f64s(&a);
    close(
        "da",
        &added(&da, &da0),
        &fd_grad(&a64, |v| functional(&c, &add(v, &b64))),
        BWD_RTOL,
        BWD_ATOL,
    )?;
    close(
        "db",
        &added(&db, &db0),
        &fd_grad(&b64, |v| functional(&c, &add(&a64, v))),
        BWD_RTOL,
        BWD_ATOL,
    )
}
device_proptest!(48, add_matches_oracle, (1usize..40, any::<u64>()));

/// The weights' moving average in place (`--ema`): against the f64 formula, and bit for bit against
/// the host definition `train::ema::update_slice` (each product and the sum rounded on their own),
/// over several updates.
fn ema_update_matches_oracle<B: Backend>(
    dev: &B,
    &(len, seed, decay): &(usize, u64, f32),
) -> TestCaseResult {
    let mut g = Gen::new(seed);
    let start = g.vec(len, -2.0, 2.0);
    let mut host = start.clone();
    let mut e = dev.upload(&start).unwrap();
    let mut want: Vec<f64> = f64s(&start);
    for _ in 0..3 {
        let w = g.vec(len, -2.0, 2.0);
        dev.ema_update(&mut e, &dev.upload(&w).unwrap(), decay)
            .unwrap();
        eraengine::train::ema::update_slice(&mut host, &w, decay);
        let d = decay as f64;
        for (x, &wi) in want.iter_mut().zip(&w) {
            *x = d * *x + (1.0 - d) * wi as f64;
        }
    }
    let got = dev.download(&e).unwrap();
    close("ema", &got, &want, FWD_RTOL, FWD_ATOL)?;
    prop_assert!(
        got.iter()
            .zip(&host)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "ema differs from the host definition"
    );
    let short = dev.upload(&vec![0.0; len + 1]).unwrap();
    prop_assert!(dev.ema_update(&mut e, &short, decay).is_err());
    Ok(())
}
device_proptest!(
    32,
    ema_update_matches_oracle,
    (1usize..3000, any::<u64>(), 0.5f32..0.9999)
);

/// len, p, data seed, step, tensor
type DropCase = (usize, f32, u64, u32, u32);

fn dropout_matches_oracle<B: Backend>(
    dev: &B,
    &(len, p, seed, step, tensor): &DropCase,
) -> TestCaseResult {
    let mut g = Gen::new(seed);
    let key = DropoutKey {
        seed: g.next_u64(),
        step,
        tensor,
    };
    let x = g.vec(len, -2.0, 2.0);
    let x64 = f64s(&x);
    let y = unary(dev, &x, |d, o, i| d.dropout_fwd(o, i, p, key));
    close(
        "dropout",
        &y,
        &dropout(&x64, p as f64, key),
        FWD_RTOL,
        FWD_ATOL,
    )?;
    for (e, (&yv, &xv)) in y.iter().zip(&x).enumerate() {
        let kept = dropout_uniform(key, e as u64) >= p;
        prop_assert_eq!(yv == 0.0, !kept || xv == 0.0);
    }
    let c = g.vec(len, -1.0, 1.0);
    let d0 = g.vec(len, -1.0, 1.0);
    let d = backward(dev, &d0, &c, &x, |dv, d, c, _| dv.dropout_bwd(d, c, p, key));
    let want = fd_grad(&x64, |v| functional(&c, &dropout(v, p as f64, key)));
    close("dropout dinp", &added(&d, &d0), &want, BWD_RTOL, BWD_ATOL)
}
device_proptest!(
    48,
    dropout_matches_oracle,
    (
        // past 64, the CPU's vectorised Philox (16 counters at a time) and its scalar tail
        1usize..300,
        0.0f32..0.95,
        any::<u64>(),
        any::<u32>(),
        any::<u32>()
    )
);

fn dropout_with_p_zero_is_identity<B: Backend>(
    dev: &B,
    &(len, seed): &(usize, u64),
) -> TestCaseResult {
    let mut g = Gen::new(seed);
    let key = DropoutKey {
        seed,
        step: 3,
        tensor: 1,
    };
    let x = g.vec(len, -2.0, 2.0);
    let y = unary(dev, &x, |d, o, i| d.dropout_fwd(o, i, 0.0, key));
    prop_assert_eq!(&y, &x);
    let c = g.vec(len, -1.0, 1.0);
    let d = backward(dev, &vec![0.0; len], &c, &x, |dv, d, c, _| {
        dv.dropout_bwd(d, c, 0.0, key)
    });
    prop_assert_eq!(&d, &c);
    Ok(())
}
device_proptest!(
    48,
    dropout_with_p_zero_is_identity,
    (1usize..100, any::<u64>())
);

fn pos_enc_adds_the_sinusoid<B: Backend>(
    dev: &B,
    &(n, d, seed): &(usize, usize, u64),
) -> TestCaseResult {
    let mut g = Gen::new(seed);
    let h0 = g.vec(n * d, -1.0, 1.0);
    let mut h = dev.upload(&h0).unwrap();
    dev.pos_enc_add(&mut h, n, d).unwrap();
    close(
        "pe",
        &added(&dev.download(&h).unwrap(), &h0),
        &pos_enc(n, d),
        FWD_RTOL,
        FWD_ATOL,
    )
}
device_proptest!(
    48,
    pos_enc_adds_the_sinusoid,
    (1usize..20, 1usize..17, any::<u64>())
);

fn mask_of<B: Backend>(dev: &B, len: usize, p: f32, key: DropoutKey) -> Vec<bool> {
    let y = unary(dev, &vec![1.0; len], |d, o, i| d.dropout_fwd(o, i, p, key));
    y.iter().map(|&v| v != 0.0).collect()
}

/// Large enough to be split over threads on the CPU (asserted there).
fn dropout_mask_is_deterministic_per_key_and_differs_across_steps_and_tensors<B: Backend>(
    dev: &B,
) -> TestCaseResult {
    let len = 100_003;
    let key = DropoutKey {
        seed: 0x1234_5678_9ABC,
        step: 5,
        tensor: 2,
    };
    let a = threaded(dev, "dropout_fwd", 1, || mask_of(dev, len, 0.3, key));
    prop_assert_eq!(&a, &mask_of(dev, len, 0.3, key));
    for other in [
        DropoutKey { step: 6, ..key },
        DropoutKey { tensor: 3, ..key },
        DropoutKey {
            seed: key.seed + 1,
            ..key
        },
    ] {
        let b = mask_of(dev, len, 0.3, other);
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / len as f64;
        // independent masks with keep rate 0.7 agree on 0.7² + 0.3² = 58% of elements
        prop_assert!((same - 0.58).abs() < 0.02, "{:?} agrees on {}", other, same);
    }
    // element e's decision does not depend on the buffer length (prefix property)
    prop_assert_eq!(&mask_of(dev, 1001, 0.3, key)[..], &a[..1001]);
    // and is element e's Philox draw, in every thread's chunk and in the tail
    for e in (0..len).step_by(97).chain(len - 70..len) {
        prop_assert_eq!(a[e], dropout_uniform(key, e as u64) >= 0.3, "element {}", e);
    }
    Ok(())
}
device_test!(
    dropout_mask_is_deterministic_per_key_and_differs_across_steps_and_tensors,
    [Order::Forward]
);

fn dropout_keep_rate_is_one_minus_p_and_scale_keeps_the_mean<B: Backend>(
    dev: &B,
) -> TestCaseResult {
    let len = 200_000;
    for p in [0.1f32, 0.5, 0.9] {
        let key = DropoutKey {
            seed: 99,
            step: 1,
            tensor: 7,
        };
        let y = unary(dev, &vec![1.0f32; len], |d, o, i| {
            d.dropout_fwd(o, i, p, key)
        });
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / len as f64;
        // binomial standard error ≤ 0.0012
        prop_assert!(
            (kept - (1.0 - p as f64)).abs() < 0.006,
            "p = {}: kept {}",
            p,
            kept
        );
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
        prop_assert!((mean - 1.0).abs() < 0.06, "p = {}: mean {}", p, mean);
        prop_assert!(y
            .iter()
            .all(|&v| v == 0.0 || (v as f64 - 1.0 / (1.0 - p as f64)).abs() < 1e-5));
    }
    // p = 1 drops everything without producing NaN
    let key = DropoutKey {
        seed: 1,
        step: 1,
        tensor: 1,
    };
    let xb = dev.upload(&[1.0; 16]).unwrap();
    let mut y = dev.upload(&[5.0; 16]).unwrap();
    dev.dropout_fwd(&mut y, &xb, 1.0, key).unwrap();
    prop_assert!(dev.download(&y).unwrap().iter().all(|&v| v == 0.0));
    Ok(())
}
device_test!(
    dropout_keep_rate_is_one_minus_p_and_scale_keeps_the_mean,
    [Order::Forward]
);

/// Big enough that the CPU splits the work over threads (asserted there).
fn elementwise_ops_agree_with_oracle_when_threaded<B: Backend>(dev: &B) -> TestCaseResult {
    let len = 50_001;
    let mut g = Gen::new(3);
    let x = g.vec(len, -4.0, 4.0);
    let y = threaded(dev, "gelu_fwd", 1, || {
        unary(dev, &x, |d, o, i| d.gelu_fwd(o, i))
    });
    close("gelu", &y, &map(&f64s(&x), gelu), FWD_RTOL, FWD_ATOL)?;
    let (n, d) = (2000, 48);
    let mut h = dev.zeros(n * d).unwrap();
    threaded(dev, "pos_enc_add", 1, || {
        dev.pos_enc_add(&mut h, n, d).unwrap()
    });
    close(
        "pe",
        &dev.download(&h).unwrap(),
        &pos_enc(n, d),
        FWD_RTOL,
        FWD_ATOL,
    )
}
device_test!(
    elementwise_ops_agree_with_oracle_when_threaded,
    [Order::Forward]
);

#[test]
fn elu1_agrees_with_oracle_over_a_wide_range() {
    let mut g = Gen::new(3);
    let x = g.vec(50_001, -4.0, 4.0);
    let y: Vec<f32> = x.iter().map(|&v| elu1_f32(v)).collect();
    close("elu1", &y, &map(&f64s(&x), elu1), FWD_RTOL, FWD_ATOL).unwrap();
}

fn nan_inputs_stay_nan<B: Backend>(dev: &B) -> TestCaseResult {
    let x = [f32::NAN, 1.0, -1.0];
    let y = unary(dev, &x, |d, o, i| d.gelu_fwd(o, i));
    prop_assert!(y[0].is_nan() && y[1].is_finite());
    Ok(())
}
device_test!(nan_inputs_stay_nan);

#[test]
fn elu1_keeps_nan() {
    let x = [f32::NAN, 1.0, -1.0];
    let y: Vec<f32> = x.iter().map(|&v| elu1_f32(v)).collect();
    assert!(y[0].is_nan() && y[1] == 2.0 && (y[2] - (-1f32).exp()).abs() < 1e-7);
    let d: Vec<f32> = x.iter().map(|&v| elu1_grad(v)).collect();
    assert!(d[0].is_nan() && d[1] == 1.0);
}

/// The elementwise maps run on the widest SIMD path the CPU has (AVX-512, AVX2 + FMA, else the
/// baseline). Every path must give the very same bits as the baseline (the same IEEE operations
/// per element), over lengths that are not multiples of any vector width; forced on each path.
fn every_simd_path_of_the_maps_gives_identical_bits(len: usize, seed: u64) -> TestCaseResult {
    use eraengine::ops::elementwise::unary::{acc_on, map_on, Unary};
    use eraengine::ops::gemm::Simd;
    let mut g = Gen::new(seed);
    let x = g.vec(len, -12.0, 12.0);
    let dy = g.vec(len, -2.0, 2.0);
    let acc0 = g.vec(len, -1.0, 1.0);
    for op in Unary::ALL {
        let mut base = vec![0f32; len];
        map_on(Simd::Portable, &mut base, &x, &|v| op.f(v));
        let mut gbase = acc0.clone();
        acc_on(Simd::Portable, &mut gbase, &dy, &x, &|d, v| d * op.grad(v));
        for simd in Simd::ALL.into_iter().filter(|s| s.available()) {
            let mut y = vec![0f32; len];
            map_on(simd, &mut y, &x, &|v| op.f(v));
            let mut gy = acc0.clone();
            acc_on(simd, &mut gy, &dy, &x, &|d, v| d * op.grad(v));
            for i in 0..len {
                prop_assert_eq!(
                    y[i].to_bits(),
                    base[i].to_bits(),
                    "{:?} {} f [{}]",
                    op,
                    simd.name(),
                    i
                );
                prop_assert_eq!(
                    gy[i].to_bits(),
                    gbase[i].to_bits(),
                    "{:?} {} grad [{}]",
                    op,
                    simd.name(),
                    i
                );
            }
        }
        // and the baseline is the map itself (against f64 in the other tests of this file)
        for i in 0..len {
            prop_assert_eq!(base[i].to_bits(), op.f(x[i]).to_bits());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn simd_paths_of_the_maps(len in 0usize..300, seed in any::<u64>()) {
        every_simd_path_of_the_maps_gives_identical_bits(len, seed)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// The 16-lane Philox (the CPU's dropout) is the scalar Philox, lane by lane, word by word.
    #[test]
    fn philox_lanes_equal_the_scalar_philox(
        c0 in proptest::array::uniform16(any::<u32>()),
        c1 in proptest::array::uniform16(any::<u32>()),
        c2 in any::<u32>(),
        c3 in any::<u32>(),
        key in proptest::array::uniform2(any::<u32>()),
    ) {
        use eraengine::rng::{philox4x32_10, philox4x32_10_lanes};
        let r = philox4x32_10_lanes(c0, c1, c2, c3, key);
        for l in 0..16 {
            let want = philox4x32_10([c0[l], c1[l], c2, c3], key);
            for w in 0..4 {
                prop_assert_eq!(r[w][l], want[w], "lane {} word {}", l, w);
            }
        }
    }
}

/// Dropout on every SIMD path (forced) draws the scalar Philox mask of `dropout_uniform`, bit for
/// bit, forward and accumulated backward, over lengths that are not multiples of the 64-element
/// groups and long enough to split across threads.
fn every_simd_path_of_dropout_draws_the_scalar_mask(
    len: usize,
    p: f32,
    seed: u64,
    key: DropoutKey,
) -> TestCaseResult {
    use eraengine::ops::elementwise::dropout_apply_on;
    use eraengine::ops::gemm::Simd;
    let mut g = Gen::new(seed);
    let x = g.vec(len, -3.0, 3.0);
    let acc0 = g.vec(len, -1.0, 1.0);
    let scale = 1.0 / (1.0 - p);
    let y: Vec<f32> = (0..len)
        .map(|e| {
            if dropout_uniform(key, e as u64) >= p {
                x[e] * scale
            } else {
                0.0
            }
        })
        .collect();
    for simd in Simd::ALL.into_iter().filter(|s| s.available()) {
        let mut out = vec![7.0f32; len];
        dropout_apply_on(simd, &mut out, &x, p, key, false);
        let mut acc = acc0.clone();
        dropout_apply_on(simd, &mut acc, &x, p, key, true);
        for e in 0..len {
            prop_assert_eq!(
                out[e].to_bits(),
                y[e].to_bits(),
                "{} fwd [{}]",
                simd.name(),
                e
            );
            prop_assert_eq!(
                acc[e].to_bits(),
                (acc0[e] + y[e]).to_bits(),
                "{} bwd [{}]",
                simd.name(),
                e
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn simd_paths_of_dropout(
        len in prop_oneof![0usize..300, 60_000usize..70_000],
        p in 0.01f32..0.9,
        seed in any::<u64>(),
        kseed in any::<u64>(),
        step in any::<u32>(),
        tensor in any::<u32>(),
    ) {
        let key = DropoutKey { seed: kseed, step, tensor };
        every_simd_path_of_dropout_draws_the_scalar_mask(len, p, seed, key)?;
    }

    /// The AVX-512 and AVX2 groups of 16 counters, including groups whose counter's low word
    /// wraps (the carry into word 1), are the scalar Philox word for word (each path this CPU
    /// has; the portable path calls the scalar function's lane loop, checked above).
    #[test]
    fn simd_philox_groups_are_the_scalar_philox(
        g in prop_oneof![any::<u64>(), (0u64..1 << 20).prop_map(|d| (1u64 << 32) - 8 + d % 16)],
        kseed in any::<u64>(),
        step in any::<u32>(),
        tensor in any::<u32>(),
    ) {
        use eraengine::ops::elementwise::{dropout_avx2, dropout_avx512};
        use eraengine::ops::gemm::Simd;
        use eraengine::rng::{dropout_counter, philox4x32_10};
        let g = g.min(u64::MAX / 4 - 16);
        let key = DropoutKey { seed: kseed, step, tensor };
        let groups = [
            (Simd::Avx512, dropout_avx512::philox_group(g, key)),
            (Simd::Avx2, dropout_avx2::philox_group(g, key)),
        ];
        for (simd, words) in groups {
            // a path the CPU has must answer; one it lacks must not
            prop_assert_eq!(words.is_some(), simd.available(), "{}", simd.name());
            let Some(words) = words else { continue };
            for l in 0..16u64 {
                let (ctr, k) = dropout_counter(key, 4 * (g + l));
                let want = philox4x32_10(ctr, k);
                for w in 0..4 {
                    prop_assert_eq!(
                        words[(4 * l) as usize + w], want[w],
                        "{} counter {} word {}", simd.name(), l, w
                    );
                }
            }
        }
    }
}
