//! Philox4x32-10 against Random123's known answers, the dropout draw, and the init generator.

use eraengine::ops::elementwise::DropoutKey;
use eraengine::rng::{dropout_uniform, philox4x32_10, unit_f32, Rng};
use proptest::prelude::*;

#[test]
fn philox_matches_random123_known_answers() {
    assert_eq!(
        philox4x32_10([0; 4], [0; 2]),
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    );
    assert_eq!(
        philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
    );
    assert_eq!(
        philox4x32_10(
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0]
        ),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
}

#[test]
fn unit_f32_covers_zero_to_just_below_one() {
    assert_eq!(unit_f32(0), 0.0);
    assert_eq!(unit_f32(0xFF), 0.0);
    assert_eq!(unit_f32(0x100), 1.0 / 16_777_216.0);
    assert_eq!(unit_f32(u32::MAX), 1.0 - 1.0 / 16_777_216.0);
    assert!(unit_f32(u32::MAX) < 1.0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn dropout_uniform_is_philox_by_hand(seed: u64, step: u32, tensor: u32, e in 0u64..(1u64 << 40)) {
        let key = DropoutKey { seed, step, tensor };
        let g = e / 4;
        let ctr = [g as u32, (g >> 32) as u32, step, tensor];
        let k = [seed as u32, (seed >> 32) as u32];
        let want = ((philox4x32_10(ctr, k)[(e % 4) as usize] >> 8) as f64 / 16_777_216.0) as f32;
        prop_assert_eq!(dropout_uniform(key, e), want);
        prop_assert!((0.0..1.0).contains(&want));
    }

    #[test]
    fn init_rng_draws_philox_counters_in_order(seed: u64, stream: u32) {
        let mut rng = Rng::new(seed, stream);
        let k = [seed as u32, (seed >> 32) as u32];
        for i in 0u32..3 {
            let want = philox4x32_10([i, 0, stream, 0xA11CE], k);
            for w in want {
                prop_assert_eq!(rng.next_u32(), w);
            }
        }
    }

    #[test]
    fn init_rng_is_deterministic_and_streams_differ(seed: u64, stream in 0u32..1000) {
        let a: Vec<u32> = { let mut r = Rng::new(seed, stream); (0..16).map(|_| r.next_u32()).collect() };
        let b: Vec<u32> = { let mut r = Rng::new(seed, stream); (0..16).map(|_| r.next_u32()).collect() };
        let c: Vec<u32> = { let mut r = Rng::new(seed, stream + 1); (0..16).map(|_| r.next_u32()).collect() };
        let d: Vec<u32> = { let mut r = Rng::new(seed ^ 1, stream); (0..16).map(|_| r.next_u32()).collect() };
        prop_assert_eq!(&a, &b);
        prop_assert_ne!(&a, &c);
        prop_assert_ne!(&a, &d);
    }

    #[test]
    fn uniform_stays_in_range(seed: u64, lo in -10f32..10.0, width in 0.001f32..5.0) {
        let hi = lo + width;
        let mut rng = Rng::new(seed, 3);
        for _ in 0..256 {
            let x = rng.uniform(lo, hi);
            prop_assert!(x >= lo && x <= hi, "{} not in [{}, {}]", x, lo, hi);
        }
    }
}

#[test]
fn uniform_and_normal_have_the_right_moments() {
    let mut rng = Rng::new(42, 0);
    let n = 40_000;
    let u: Vec<f64> = (0..n).map(|_| rng.uniform(-1.0, 1.0) as f64).collect();
    let mean = u.iter().sum::<f64>() / n as f64;
    let var = u.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    // U(−1, 1): mean 0, variance 1/3; standard errors ≈ 0.003 and 0.0015
    assert!(mean.abs() < 0.015, "uniform mean {mean}");
    assert!((var - 1.0 / 3.0).abs() < 0.01, "uniform variance {var}");

    let z: Vec<f64> = (0..n).map(|_| rng.normal() as f64).collect();
    assert!(z.iter().all(|x| x.is_finite()));
    let mean = z.iter().sum::<f64>() / n as f64;
    let var = z.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    let within1 = z.iter().filter(|x| x.abs() < 1.0).count() as f64 / n as f64;
    assert!(mean.abs() < 0.03, "normal mean {mean}");
    assert!((var - 1.0).abs() < 0.04, "normal variance {var}");
    // P(|Z| < 1) = 0.6827
    assert!((within1 - 0.6827).abs() < 0.015, "P(|z|<1) = {within1}");
}
