//! GELU, ELU+1, add, dropout and positional encoding against the f64 oracle; dropout's mask
//! properties (p = 0, determinism per key, keep rate).

mod oracle;

use eraengine::ops::elementwise::{
    add_bwd, add_fwd, dropout_bwd, dropout_fwd, elu1_bwd, elu1_fwd, gelu_bwd, gelu_fwd,
    pos_enc_add, DropoutKey,
};
use eraengine::rng::dropout_uniform;
use oracle::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn gelu_and_elu1_match_oracle(len in 1usize..40, seed: u64, spread in 0.1f32..6.0) {
        let mut g = Gen::new(seed);
        let x = g.vec(len, -spread, spread);
        let x64 = f64s(&x);
        let c = g.vec(len, -1.0, 1.0);

        let mut y = vec![7.0; len];
        gelu_fwd(&mut y, &x);
        close("gelu", &y, &map(&x64, gelu), FWD_RTOL, FWD_ATOL)?;
        let d0 = g.vec(len, -1.0, 1.0);
        let mut d = d0.clone();
        gelu_bwd(&mut d, &c, &x);
        let want = fd_grad(&x64, |v| functional(&c, &map(v, gelu)));
        close("gelu dinp", &added(&d, &d0), &want, BWD_RTOL, BWD_ATOL)?;

        elu1_fwd(&mut y, &x);
        close("elu1", &y, &map(&x64, elu1), FWD_RTOL, FWD_ATOL)?;
        prop_assert!(y.iter().all(|&v| v > 0.0));
        let mut d = d0.clone();
        elu1_bwd(&mut d, &c, &x);
        let want = fd_grad(&x64, |v| functional(&c, &map(v, elu1)));
        close("elu1 dinp", &added(&d, &d0), &want, BWD_RTOL, BWD_ATOL)?;
    }

    #[test]
    fn add_matches_oracle(len in 1usize..40, seed: u64) {
        let mut g = Gen::new(seed);
        let a = g.vec(len, -2.0, 2.0);
        let b = g.vec(len, -2.0, 2.0);
        let mut y = vec![7.0; len];
        add_fwd(&mut y, &a, &b);
        close("add", &y, &add(&f64s(&a), &f64s(&b)), FWD_RTOL, FWD_ATOL)?;
        let c = g.vec(len, -1.0, 1.0);
        let da0 = g.vec(len, -1.0, 1.0);
        let db0 = g.vec(len, -1.0, 1.0);
        let (mut da, mut db) = (da0.clone(), db0.clone());
        add_bwd(&mut da, &mut db, &c);
        let b64 = f64s(&b);
        let a64 = f64s(&a);
        close("da", &added(&da, &da0), &fd_grad(&a64, |v| functional(&c, &add(v, &b64))), BWD_RTOL, BWD_ATOL)?;
        close("db", &added(&db, &db0), &fd_grad(&b64, |v| functional(&c, &add(&a64, v))), BWD_RTOL, BWD_ATOL)?;
    }

    #[test]
    fn dropout_matches_oracle(len in 1usize..60, p in 0.0f32..0.95, seed: u64, step: u32, tensor: u32) {
        let mut g = Gen::new(seed);
        let key = DropoutKey { seed: g.next_u64(), step, tensor };
        let x = g.vec(len, -2.0, 2.0);
        let x64 = f64s(&x);
        let mut y = vec![7.0; len];
        dropout_fwd(&mut y, &x, p, key);
        close("dropout", &y, &dropout(&x64, p as f64, key), FWD_RTOL, FWD_ATOL)?;
        for (e, (&yv, &xv)) in y.iter().zip(&x).enumerate() {
            let kept = dropout_uniform(key, e as u64) >= p;
            prop_assert_eq!(yv == 0.0, !kept || xv == 0.0);
        }
        let c = g.vec(len, -1.0, 1.0);
        let d0 = g.vec(len, -1.0, 1.0);
        let mut d = d0.clone();
        dropout_bwd(&mut d, &c, p, key);
        let want = fd_grad(&x64, |v| functional(&c, &dropout(v, p as f64, key)));
        close("dropout dinp", &added(&d, &d0), &want, BWD_RTOL, BWD_ATOL)?;
    }

    #[test]
    fn dropout_with_p_zero_is_identity(len in 1usize..100, seed: u64) {
        let mut g = Gen::new(seed);
        let key = DropoutKey { seed, step: 3, tensor: 1 };
        let x = g.vec(len, -2.0, 2.0);
        let mut y = vec![0.0; len];
        dropout_fwd(&mut y, &x, 0.0, key);
        prop_assert_eq!(&y, &x);
        let c = g.vec(len, -1.0, 1.0);
        let mut d = vec![0.0; len];
        dropout_bwd(&mut d, &c, 0.0, key);
        prop_assert_eq!(&d, &c);
    }

    #[test]
    fn pos_enc_adds_the_sinusoid(n in 1usize..20, d in 1usize..17, seed: u64) {
        let mut g = Gen::new(seed);
        let h0 = g.vec(n * d, -1.0, 1.0);
        let mut h = h0.clone();
        pos_enc_add(&mut h, n, d);
        close("pe", &added(&h, &h0), &pos_enc(n, d), FWD_RTOL, FWD_ATOL)?;
    }
}

fn mask_of(len: usize, p: f32, key: DropoutKey) -> Vec<bool> {
    let x = vec![1.0; len];
    let mut y = vec![0.0; len];
    dropout_fwd(&mut y, &x, p, key);
    y.iter().map(|&v| v != 0.0).collect()
}

#[test]
fn dropout_mask_is_deterministic_per_key_and_differs_across_steps_and_tensors() {
    // large enough to be split over threads
    let len = 100_003;
    let key = DropoutKey {
        seed: 0x1234_5678_9ABC,
        step: 5,
        tensor: 2,
    };
    let a = mask_of(len, 0.3, key);
    assert_eq!(a, mask_of(len, 0.3, key));
    for other in [
        DropoutKey { step: 6, ..key },
        DropoutKey { tensor: 3, ..key },
        DropoutKey {
            seed: key.seed + 1,
            ..key
        },
    ] {
        let b = mask_of(len, 0.3, other);
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / len as f64;
        // independent masks with keep rate 0.7 agree on 0.7² + 0.3² = 58% of elements
        assert!((same - 0.58).abs() < 0.02, "{other:?} agrees on {same}");
    }
    // element e's decision does not depend on the buffer length (prefix property)
    assert_eq!(mask_of(1001, 0.3, key)[..], a[..1001]);
}

#[test]
fn dropout_keep_rate_is_one_minus_p_and_scale_keeps_the_mean() {
    let len = 200_000;
    for p in [0.1f32, 0.5, 0.9] {
        let key = DropoutKey {
            seed: 99,
            step: 1,
            tensor: 7,
        };
        let x = vec![1.0f32; len];
        let mut y = vec![0.0; len];
        dropout_fwd(&mut y, &x, p, key);
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / len as f64;
        // binomial standard error ≤ 0.0012
        assert!(
            (kept - (1.0 - p as f64)).abs() < 0.006,
            "p = {p}: kept {kept}"
        );
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
        assert!((mean - 1.0).abs() < 0.06, "p = {p}: mean {mean}");
        assert!(y
            .iter()
            .all(|&v| v == 0.0 || (v as f64 - 1.0 / (1.0 - p as f64)).abs() < 1e-5));
    }
    // p = 1 drops everything without producing NaN
    let mut y = vec![5.0; 16];
    dropout_fwd(
        &mut y,
        &[1.0; 16],
        1.0,
        DropoutKey {
            seed: 1,
            step: 1,
            tensor: 1,
        },
    );
    assert!(y.iter().all(|&v| v == 0.0));
}

#[test]
fn elementwise_ops_agree_with_oracle_when_threaded() {
    let len = 50_001;
    let mut g = Gen::new(3);
    let x = g.vec(len, -4.0, 4.0);
    let mut y = vec![0.0; len];
    gelu_fwd(&mut y, &x);
    close("gelu", &y, &map(&f64s(&x), gelu), FWD_RTOL, FWD_ATOL).unwrap();
    elu1_fwd(&mut y, &x);
    close("elu1", &y, &map(&f64s(&x), elu1), FWD_RTOL, FWD_ATOL).unwrap();
    let (n, d) = (2000, 48);
    let mut h = vec![0.0; n * d];
    pos_enc_add(&mut h, n, d);
    close("pe", &h, &pos_enc(n, d), FWD_RTOL, FWD_ATOL).unwrap();
}
