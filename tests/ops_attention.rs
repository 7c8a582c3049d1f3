//! Masked multi-head linear and softmax attention against the f64 oracle (the oracle's softmax
//! builds the n × n score matrix) on every device (cpu, emu, cuda; see tests/gpu_common): forward,
//! backward against central finite differences for q, k and v, the `+=` rule, and padding never
//! changing real rows.

#[macro_use]
mod gpu_common;
mod oracle;

use eraengine::device::Backend;
use eraengine::gpu::Order;
use gpu_common::threaded;
use oracle::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

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

/// q, k, v and the mask on the device.
struct DevCase<B: Backend> {
    q: B::Buf,
    k: B::Buf,
    v: B::Buf,
    mask: B::Buf,
}

fn upload<B: Backend>(dev: &B, cs: &Case) -> DevCase<B> {
    DevCase {
        q: dev.upload(&cs.q).unwrap(),
        k: dev.upload(&cs.k).unwrap(),
        v: dev.upload(&cs.v).unwrap(),
        mask: dev.upload(&cs.mask).unwrap(),
    }
}

/// Linear attention forward: (out, s, z) on the device.
fn run_linear<B: Backend>(dev: &B, cs: &Case, x: &DevCase<B>) -> [B::Buf; 3] {
    let (n, d, h) = (cs.n, cs.d, cs.h);
    let dh = d / h;
    // garbage: the forward overwrites
    let mut out = dev.upload(&vec![7.0; n * d]).unwrap();
    let mut s = dev.upload(&vec![7.0; h * dh * dh]).unwrap();
    let mut z = dev.upload(&vec![7.0; h * dh]).unwrap();
    dev.linear_attention_fwd(&mut out, &mut s, &mut z, &x.q, &x.k, &x.v, &x.mask, n, d, h)
        .unwrap();
    [out, s, z]
}

/// Softmax attention forward: (out, lse) on the device.
fn run_softmax<B: Backend>(dev: &B, cs: &Case, x: &DevCase<B>) -> [B::Buf; 2] {
    let (n, d, h) = (cs.n, cs.d, cs.h);
    let mut out = dev.upload(&vec![7.0; n * d]).unwrap();
    let mut lse = dev.upload(&vec![7.0; h * n]).unwrap();
    dev.softmax_attention_fwd(&mut out, &mut lse, &x.q, &x.k, &x.v, &x.mask, n, n, d, h)
        .unwrap();
    [out, lse]
}

/// The three gradient buffers after a backward `bwd(dq, dk, dv)` that started from `d0`.
fn grads<B: Backend>(
    dev: &B,
    d0: [&[f32]; 3],
    bwd: impl FnOnce(&mut B::Buf, &mut B::Buf, &mut B::Buf) -> eraengine::Result<()>,
) -> [Vec<f32>; 3] {
    let (mut dq, mut dk, mut dv) = (
        dev.upload(d0[0]).unwrap(),
        dev.upload(d0[1]).unwrap(),
        dev.upload(d0[2]).unwrap(),
    );
    bwd(&mut dq, &mut dk, &mut dv).unwrap();
    [
        dev.download(&dq).unwrap(),
        dev.download(&dk).unwrap(),
        dev.download(&dv).unwrap(),
    ]
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

/// n, heads, head width, mask kind, data seed
type AttnCase = (usize, usize, usize, u8, u64);

fn attn_case() -> impl Strategy<Value = AttnCase> {
    (1usize..7, 1usize..4, 1usize..4, 0u8..4, any::<u64>())
}

fn linear_attention_matches_oracle<B: Backend>(
    dev: &B,
    &(n, h, dh, mk, seed): &AttnCase,
) -> TestCaseResult {
    let (cs, mut g) = case(n, h, dh, mk, seed);
    let x = upload(dev, &cs);
    let [outb, sb, zb] = run_linear(dev, &cs, &x);
    let (out, s, z) = (
        dev.download(&outb).unwrap(),
        dev.download(&sb).unwrap(),
        dev.download(&zb).unwrap(),
    );
    let want = linear_attention(
        &f64s(&cs.q),
        &f64s(&cs.k),
        &f64s(&cs.v),
        &cs.mask,
        n,
        cs.d,
        h,
    );
    close("out", &out, &want, FWD_RTOL, FWD_ATOL)?;
    if cs.mask.iter().all(|&m| m == 0.0) {
        prop_assert!(out.iter().all(|&o| o == 0.0));
        prop_assert!(s.iter().chain(&z).all(|&o| o == 0.0));
    }

    let c = g.vec(n * cs.d, -1.0, 1.0);
    let d0: Vec<Vec<f32>> = (0..3).map(|_| g.vec(n * cs.d, -1.0, 1.0)).collect();
    let cb = dev.upload(&c).unwrap();
    let [dq, dk, dv] = grads(dev, [&d0[0], &d0[1], &d0[2]], |dq, dk, dv| {
        dev.linear_attention_bwd(
            dq, dk, dv, &cb, &x.q, &x.k, &x.v, &x.mask, &sb, &zb, n, cs.d, h,
        )
    });
    let [wq, wk, wv] = fd_qkv(&cs, &c, linear_attention);
    close("dq", &added(&dq, &d0[0]), &wq, BWD_RTOL, BWD_ATOL)?;
    close("dk", &added(&dk, &d0[1]), &wk, BWD_RTOL, BWD_ATOL)?;
    close("dv", &added(&dv, &d0[2]), &wv, BWD_RTOL, BWD_ATOL)
}
device_proptest!(48, linear_attention_matches_oracle, attn_case());

fn softmax_attention_matches_oracle<B: Backend>(
    dev: &B,
    &(n, h, dh, mk, seed): &AttnCase,
) -> TestCaseResult {
    let (cs, mut g) = case(n, h, dh, mk, seed);
    let x = upload(dev, &cs);
    let [outb, lseb] = run_softmax(dev, &cs, &x);
    let (out, lse) = (dev.download(&outb).unwrap(), dev.download(&lseb).unwrap());
    let want = softmax_attention(
        &f64s(&cs.q),
        &f64s(&cs.k),
        &f64s(&cs.v),
        &cs.mask,
        n,
        cs.d,
        h,
    );
    close("out", &out, &want, FWD_RTOL, FWD_ATOL)?;
    prop_assert!(lse.iter().all(|l| l.is_finite()));
    if cs.mask.iter().all(|&m| m == 0.0) {
        prop_assert!(out.iter().all(|&o| o == 0.0));
    }

    let c = g.vec(n * cs.d, -1.0, 1.0);
    let d0: Vec<Vec<f32>> = (0..3).map(|_| g.vec(n * cs.d, -1.0, 1.0)).collect();
    let cb = dev.upload(&c).unwrap();
    let [dq, dk, dv] = grads(dev, [&d0[0], &d0[1], &d0[2]], |dq, dk, dv| {
        dev.softmax_attention_bwd(
            dq, dk, dv, &cb, &outb, &lseb, &x.q, &x.k, &x.v, &x.mask, n, n, cs.d, h,
        )
    });
    let [wq, wk, wv] = fd_qkv(&cs, &c, softmax_attention);
    close("dq", &added(&dq, &d0[0]), &wq, BWD_RTOL, BWD_ATOL)?;
    close("dk", &added(&dk, &d0[1]), &wk, BWD_RTOL, BWD_ATOL)?;
    close("dv", &added(&dv, &d0[2]), &wv, BWD_RTOL, BWD_ATOL)
}
device_proptest!(48, softmax_attention_matches_oracle, attn_case());

fn padded_rows_do_not_change_real_rows<B: Backend>(
    dev: &B,
    &(n, h, dh, seed): &(usize, usize, usize, u64),
) -> TestCaseResult {
    let (cs, mut g) = case(n, h, dh, 1, seed);
    let other = repad(&cs, &mut g);
    let d = cs.d;
    let (xa, xb) = (upload(dev, &cs), upload(dev, &other));
    let a = dev.download(&run_linear(dev, &cs, &xa)[0]).unwrap();
    let b = dev.download(&run_linear(dev, &other, &xb)[0]).unwrap();
    prop_assert_eq!(real_rows(&a, &cs.mask, d), real_rows(&b, &cs.mask, d));
    let a = dev.download(&run_softmax(dev, &cs, &xa)[0]).unwrap();
    let b = dev.download(&run_softmax(dev, &other, &xb)[0]).unwrap();
    prop_assert_eq!(real_rows(&a, &cs.mask, d), real_rows(&b, &cs.mask, d));
    Ok(())
}
device_proptest!(
    48,
    padded_rows_do_not_change_real_rows,
    (2usize..9, 1usize..4, 1usize..4, any::<u64>())
);

/// Long enough to cross the CPU's threading threshold (asserted there: every forward and backward
/// split its work) and to span several online-softmax key blocks.
fn attention_agrees_with_oracle_when_threaded<B: Backend>(dev: &B) -> TestCaseResult {
    let (cs, mut g) = case(300, 4, 8, 1, 11);
    let (n, d, h) = (cs.n, cs.d, cs.h);
    let (q, k, v) = (f64s(&cs.q), f64s(&cs.k), f64s(&cs.v));
    let x = upload(dev, &cs);
    let [outb, sb, zb] = threaded(dev, "linear_attention_fwd", 1, || run_linear(dev, &cs, &x));
    close(
        "linear out",
        &dev.download(&outb).unwrap(),
        &linear_attention(&q, &k, &v, &cs.mask, n, d, h),
        FWD_RTOL,
        FWD_ATOL,
    )?;
    let [soutb, lseb] = threaded(dev, "softmax_attention_fwd", 1, || {
        run_softmax(dev, &cs, &x)
    });
    close(
        "softmax out",
        &dev.download(&soutb).unwrap(),
        &softmax_attention(&q, &k, &v, &cs.mask, n, d, h),
        FWD_RTOL,
        FWD_ATOL,
    )?;

    // backward: a few finite-difference probes per input (the full gradient costs too much here)
    let c = g.vec(n * d, -1.0, 1.0);
    let cb = dev.upload(&c).unwrap();
    let z = vec![0.0; n * d];
    let lin = threaded(dev, "linear_attention_bwd", 1, || {
        grads(dev, [&z, &z, &z], |dq, dk, dv| {
            dev.linear_attention_bwd(
                dq, dk, dv, &cb, &x.q, &x.k, &x.v, &x.mask, &sb, &zb, n, d, h,
            )
        })
    });
    let smx = threaded(dev, "softmax_attention_bwd", 1, || {
        grads(dev, [&z, &z, &z], |dq, dk, dv| {
            dev.softmax_attention_bwd(
                dq, dk, dv, &cb, &soutb, &lseb, &x.q, &x.k, &x.v, &x.mask, n, n, d, h,
            )
        })
    });
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
            close(name, &got[which][e..e + 1], &[want], 1e-3, 1e-4)?;
        }
    }
    Ok(())
}
device_test!(attention_agrees_with_oracle_when_threaded, [Order::Forward]);

/// exp_f32's scale 2ⁿ comes from the bits of x·log₂e + 1.5·2²³ (so the loop vectorises); it must
/// be the 2ⁿ of the plain formula with `n as i32` for every input, extremes included. (The plain
/// formula's reduction and polynomial are the same fused multiply-adds.)
#[test]
fn exp_f32_equals_the_plain_formula_bit_for_bit() {
    use eraengine::ops::attention::exp_f32;
    fn plain(x: f32) -> f32 {
        let x = x.clamp(-87.3, 88.7);
        let n = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
        let r = (-n).mul_add(-2.121_944_4e-4, (-n).mul_add(0.693_359_4, x));
        let mut y: f32 = 1.987_569_2e-4;
        for c in [
            1.398_2e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ] {
            y = y.mul_add(r, c);
        }
        let y = (y * r).mul_add(r, r + 1.0);
        y * f32::from_bits(((n as i32 + 127).clamp(1, 254) as u32) << 23)
    }
    // every 211th f32 between −100 and 100, and the edges of the clamps
    let (lo, hi) = ((-100f32).to_bits(), 100f32.to_bits());
    let negs = (0x8000_0000u32..=lo).step_by(211).map(f32::from_bits);
    let poss = (0..=hi).step_by(211).map(f32::from_bits);
    let edges = [-87.3f32, -87.29, 88.7, 88.69, -1e30, 1e30, 0.0, -0.0];
    for x in negs.chain(poss).chain(edges) {
        assert_eq!(exp_f32(x).to_bits(), plain(x).to_bits(), "x = {x:e}");
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
