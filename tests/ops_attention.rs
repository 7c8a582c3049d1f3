//! Masked multi-head linear and softmax attention against the f64 oracle (the oracle's softmax
//! builds the n × n score matrix): forward, backward against central finite differences for q, k
//! and v, the `+=` rule, and padding never changing real rows.

mod oracle;

use eraengine::ops::attention::{
    linear_attention_bwd, linear_attention_fwd, softmax_attention_bwd, softmax_attention_fwd,
};
use oracle::*;
use proptest::prelude::*;

struct Case {
    n: usize,
    d: usize,
    h: usize,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    mask: Vec<f32>,
}

/// h heads of width dh (so h = 1 and h = d both occur), n rows, a mask of the given kind.
fn case(n: usize, h: usize, dh: usize, mask_kind: u8, seed: u64) -> (Case, Gen) {
    let mut g = Gen::new(seed);
    let d = h * dh;
    let q = g.vec(n * d, -1.5, 1.5);
    let k = g.vec(n * d, -1.5, 1.5);
    let v = g.vec(n * d, -1.5, 1.5);
    let mask = mask(mask_kind, n, &mut g);
    (
        Case {
            n,
            d,
            h,
            q,
            k,
            v,
            mask,
        },
        g,
    )
}

type Fwd = fn(&[f64], &[f64], &[f64], &[f32], usize, usize, usize) -> Vec<f64>;

/// dq, dk, dv of Σ c·out by central differences of the oracle.
fn fd_qkv(cs: &Case, c: &[f32], f: Fwd) -> [Vec<f64>; 3] {
    let (q, k, v) = (f64s(&cs.q), f64s(&cs.k), f64s(&cs.v));
    let (n, d, h, m) = (cs.n, cs.d, cs.h, &cs.mask);
    [
        fd_grad(&q, |x| functional(c, &f(x, &k, &v, m, n, d, h))),
        fd_grad(&k, |x| functional(c, &f(&q, x, &v, m, n, d, h))),
        fd_grad(&v, |x| functional(c, &f(&q, &k, x, m, n, d, h))),
    ]
}

fn run_linear(cs: &Case) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (n, d, h) = (cs.n, cs.d, cs.h);
    let dh = d / h;
    let mut out = vec![7.0; n * d];
    let mut s = vec![7.0; h * dh * dh];
    let mut z = vec![7.0; h * dh];
    linear_attention_fwd(
        &mut out, &mut s, &mut z, &cs.q, &cs.k, &cs.v, &cs.mask, n, d, h,
    );
    (out, s, z)
}

fn run_softmax(cs: &Case) -> (Vec<f32>, Vec<f32>) {
    let (n, d, h) = (cs.n, cs.d, cs.h);
    let mut out = vec![7.0; n * d];
    let mut lse = vec![7.0; h * n];
    softmax_attention_fwd(&mut out, &mut lse, &cs.q, &cs.k, &cs.v, &cs.mask, n, d, h);
    (out, lse)
}

/// Padding rows' q, k, v replaced by other values.
fn repad(cs: &Case, g: &mut Gen) -> Case {
    let mut q = cs.q.clone();
    let mut k = cs.k.clone();
    let mut v = cs.v.clone();
    for i in 0..cs.n {
        if cs.mask[i] == 0.0 {
            for c in 0..cs.d {
                q[i * cs.d + c] = g.f32(-3.0, 3.0);
                k[i * cs.d + c] = g.f32(-3.0, 3.0);
                v[i * cs.d + c] = g.f32(-3.0, 3.0);
            }
        }
    }
    Case {
        q,
        k,
        v,
        mask: cs.mask.clone(),
        ..*cs
    }
}

fn real_rows(x: &[f32], mask: &[f32], d: usize) -> Vec<f32> {
    x.chunks(d)
        .zip(mask)
        .filter(|(_, &m)| m != 0.0)
        .flat_map(|(r, _)| r.to_vec())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn linear_attention_matches_oracle(n in 1usize..7, h in 1usize..4, dh in 1usize..4, mk in 0u8..4, seed: u64) {
        let (cs, mut g) = case(n, h, dh, mk, seed);
        let (out, s, z) = run_linear(&cs);
        let want = linear_attention(&f64s(&cs.q), &f64s(&cs.k), &f64s(&cs.v), &cs.mask, n, cs.d, h);
        close("out", &out, &want, FWD_RTOL, FWD_ATOL)?;
        if cs.mask.iter().all(|&m| m == 0.0) {
            prop_assert!(out.iter().all(|&o| o == 0.0));
            prop_assert!(s.iter().chain(&z).all(|&o| o == 0.0));
        }

        let c = g.vec(n * cs.d, -1.0, 1.0);
        let d0: Vec<Vec<f32>> = (0..3).map(|_| g.vec(n * cs.d, -1.0, 1.0)).collect();
        let (mut dq, mut dk, mut dv) = (d0[0].clone(), d0[1].clone(), d0[2].clone());
        linear_attention_bwd(&mut dq, &mut dk, &mut dv, &c, &cs.q, &cs.k, &cs.v, &cs.mask, &s, &z, n, cs.d, h);
        let [wq, wk, wv] = fd_qkv(&cs, &c, linear_attention);
        close("dq", &added(&dq, &d0[0]), &wq, BWD_RTOL, BWD_ATOL)?;
        close("dk", &added(&dk, &d0[1]), &wk, BWD_RTOL, BWD_ATOL)?;
        close("dv", &added(&dv, &d0[2]), &wv, BWD_RTOL, BWD_ATOL)?;
    }

    #[test]
    fn softmax_attention_matches_oracle(n in 1usize..7, h in 1usize..4, dh in 1usize..4, mk in 0u8..4, seed: u64) {
        let (cs, mut g) = case(n, h, dh, mk, seed);
        let (out, lse) = run_softmax(&cs);
        let want = softmax_attention(&f64s(&cs.q), &f64s(&cs.k), &f64s(&cs.v), &cs.mask, n, cs.d, h);
        close("out", &out, &want, FWD_RTOL, FWD_ATOL)?;
        prop_assert!(lse.iter().all(|l| l.is_finite()));
        if cs.mask.iter().all(|&m| m == 0.0) {
            prop_assert!(out.iter().all(|&o| o == 0.0));
        }

        let c = g.vec(n * cs.d, -1.0, 1.0);
        let d0: Vec<Vec<f32>> = (0..3).map(|_| g.vec(n * cs.d, -1.0, 1.0)).collect();
        let (mut dq, mut dk, mut dv) = (d0[0].clone(), d0[1].clone(), d0[2].clone());
        softmax_attention_bwd(&mut dq, &mut dk, &mut dv, &c, &out, &lse, &cs.q, &cs.k, &cs.v, &cs.mask, n, cs.d, h);
        let [wq, wk, wv] = fd_qkv(&cs, &c, softmax_attention);
        close("dq", &added(&dq, &d0[0]), &wq, BWD_RTOL, BWD_ATOL)?;
        close("dk", &added(&dk, &d0[1]), &wk, BWD_RTOL, BWD_ATOL)?;
        close("dv", &added(&dv, &d0[2]), &wv, BWD_RTOL, BWD_ATOL)?;
    }

    #[test]
    fn padded_rows_do_not_change_real_rows(n in 2usize..9, h in 1usize..4, dh in 1usize..4, seed: u64) {
        let (cs, mut g) = case(n, h, dh, 1, seed);
        let other = repad(&cs, &mut g);
        let d = cs.d;
        let (a, ..) = run_linear(&cs);
        let (b, ..) = run_linear(&other);
        prop_assert_eq!(real_rows(&a, &cs.mask, d), real_rows(&b, &cs.mask, d));
        let (a, _) = run_softmax(&cs);
        let (b, _) = run_softmax(&other);
        prop_assert_eq!(real_rows(&a, &cs.mask, d), real_rows(&b, &cs.mask, d));
    }
}

/// Long enough to cross the threading threshold and to span several online-softmax key blocks.
#[test]
fn attention_agrees_with_oracle_when_threaded() {
    let (cs, mut g) = case(300, 4, 8, 1, 11);
    let (n, d, h) = (cs.n, cs.d, cs.h);
    let (q, k, v) = (f64s(&cs.q), f64s(&cs.k), f64s(&cs.v));
    let (out, s, z) = run_linear(&cs);
    close(
        "linear out",
        &out,
        &linear_attention(&q, &k, &v, &cs.mask, n, d, h),
        FWD_RTOL,
        FWD_ATOL,
    )
    .unwrap();
    let (sout, lse) = run_softmax(&cs);
    close(
        "softmax out",
        &sout,
        &softmax_attention(&q, &k, &v, &cs.mask, n, d, h),
        FWD_RTOL,
        FWD_ATOL,
    )
    .unwrap();

    // backward: a few finite-difference probes per input (the full gradient costs too much here)
    let c = g.vec(n * d, -1.0, 1.0);
    let mut lin = [vec![0.0; n * d], vec![0.0; n * d], vec![0.0; n * d]];
    let [a, b, cc] = &mut lin;
    linear_attention_bwd(a, b, cc, &c, &cs.q, &cs.k, &cs.v, &cs.mask, &s, &z, n, d, h);
    let mut smx = [vec![0.0; n * d], vec![0.0; n * d], vec![0.0; n * d]];
    let [a, b, cc] = &mut smx;
    softmax_attention_bwd(
        a, b, cc, &c, &sout, &lse, &cs.q, &cs.k, &cs.v, &cs.mask, n, d, h,
    );
    let eps = 1e-6;
    for probe in 0..6 {
        let which = probe % 3;
        // a real row so k and v probes have a gradient
        let row = (0..n)
            .filter(|&i| cs.mask[i] != 0.0)
            .nth(probe * 7)
            .unwrap();
        let e = row * d + g.below(d);
        for (f, got, name) in [
            (linear_attention as Fwd, &lin, "linear"),
            (softmax_attention as Fwd, &smx, "softmax"),
        ] {
            let mut x = [q.clone(), k.clone(), v.clone()];
            x[which][e] += eps;
            let fp = functional(&c, &f(&x[0], &x[1], &x[2], &cs.mask, n, d, h));
            x[which][e] -= 2.0 * eps;
            let fm = functional(&c, &f(&x[0], &x[1], &x[2], &cs.mask, n, d, h));
            let want = (fp - fm) / (2.0 * eps);
            close(name, &got[which][e..e + 1], &[want], 1e-3, 1e-4).unwrap();
        }
    }
}

#[test]
fn exp_f32_is_within_a_few_ulp_of_exp() {
    use eraengine::ops::attention::exp_f32;
    let mut worst = 0f64;
    let mut x = -87.0f64;
    while x <= 88.0 {
        let got = exp_f32(x as f32) as f64;
        let want = (x as f32 as f64).exp();
        worst = worst.max((got - want).abs() / want);
        x += 0.001_37;
    }
    // 2 ulp of f32 is 2.4e-7 relative
    assert!(worst < 2.5e-7, "worst relative error {worst:e}");
    assert_eq!(exp_f32(0.0), 1.0);
    assert!(exp_f32(f32::NAN).is_nan());
    // far below the range it stays a tiny positive number, never NaN or negative
    let tiny = exp_f32(-1e30);
    assert!((0.0..1e-37).contains(&tiny));
    assert!(exp_f32(f32::NEG_INFINITY) < 1e-37);
}
