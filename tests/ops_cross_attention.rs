#![allow(clippy::too_many_arguments, clippy::type_complexity)]
//! Softmax cross-attention (nq queries over nk keys with a key mask) and induced set attention
//! (docs/model.md) on every device (cpu, the emulated kernels in several thread orders, a
//! GPU when present): the op against an f64 oracle, its backward against central differences, the
//! `+=` rule, fully masked keys (zero output, zero gradient), the emulator against the CPU, wrong
//! shapes; `Tape::param`'s gradient; the whole induced model against an f64 oracle of its math with
//! every parameter's gradient checked by finite differences, CPU ≡ emulator, checkpoints.

#[macro_use]
mod gpu_common;
mod common;
mod oracle;

use common::TempDir;
use eraengine::checkpoint::{from_bytes, to_bytes, Checkpoint};
use eraengine::device::{Backend, Cpu};
use eraengine::gpu::Order;
use eraengine::model::{init_params, param_specs, Attention, Config, EraInputs, EraTransformer};
use eraengine::params::Params;
use eraengine::rng::Rng;
use eraengine::tape::Tape;
use eraengine::Error;
use gpu_common::{matches_ref, on_emu};
use oracle::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;
use std::collections::HashMap;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// the op

/// Cross-attention straight from the definition (f64): per head, scores s_ij = Q_i·K_j/√dh over
/// the keys with mask ≠ 0, O_i = Σ_j softmax_j(s_ij) V_j; a query with no valid key outputs 0.
fn cross_oracle(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    mask: &[f32],
    nq: usize,
    nk: usize,
    d: usize,
    h: usize,
) -> Vec<f64> {
    let dh = d / h;
    let mut out = vec![0.0; nq * d];
    for hd in 0..h {
        let c = |i: usize, a: usize| i * d + hd * dh + a;
        for i in 0..nq {
            let keys: Vec<usize> = (0..nk).filter(|&j| mask[j] != 0.0).collect();
            if keys.is_empty() {
                continue;
            }
            let s: Vec<f64> = keys
                .iter()
                .map(|&j| {
                    (0..dh).map(|a| q[c(i, a)] * k[c(j, a)]).sum::<f64>() / (dh as f64).sqrt()
                })
                .collect();
            let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
            let tot: f64 = e.iter().sum();
            for b in 0..dh {
                out[c(i, b)] = keys
                    .iter()
                    .zip(&e)
                    .map(|(&j, w)| w / tot * v[c(j, b)])
                    .sum();
            }
        }
    }
    out
}

/// nq, nk, heads, head width, key-mask kind (0 all valid, 1 random, 2 none, 3 one), data seed
type CrossCase = (usize, usize, usize, usize, u8, u64);

fn cross_case() -> impl Strategy<Value = CrossCase> {
    (
        1usize..9,
        1usize..9,
        1usize..4,
        1usize..4,
        0u8..4,
        any::<u64>(),
    )
}

struct Data {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    mask: Vec<f32>,
}

fn data(nq: usize, nk: usize, d: usize, mk: u8, g: &mut Gen) -> Data {
    Data {
        q: g.vec(nq * d, -1.5, 1.5),
        k: g.vec(nk * d, -1.5, 1.5),
        v: g.vec(nk * d, -1.5, 1.5),
        mask: mask(mk, nk, g),
    }
}

/// Forward and backward on a device: (out, lse, [dq, dk, dv] increments over pre-filled buffers).
fn run_cross<B: Backend>(
    dev: &B,
    x: &Data,
    c: &[f32],
    d0: [&[f32]; 3],
    nq: usize,
    nk: usize,
    d: usize,
    h: usize,
) -> eraengine::Result<(Vec<f32>, Vec<f32>, [Vec<f32>; 3])> {
    let (q, k, v, m) = (
        dev.upload(&x.q)?,
        dev.upload(&x.k)?,
        dev.upload(&x.v)?,
        dev.upload(&x.mask)?,
    );
    // garbage: the forward overwrites
    let mut out = dev.upload(&vec![7.0; nq * d])?;
    let mut lse = dev.upload(&vec![7.0; h * nq])?;
    dev.softmax_attention_fwd(&mut out, &mut lse, &q, &k, &v, &m, nq, nk, d, h)?;
    let cb = dev.upload(c)?;
    let (mut dq, mut dk, mut dv) = (dev.upload(d0[0])?, dev.upload(d0[1])?, dev.upload(d0[2])?);
    dev.softmax_attention_bwd(
        &mut dq, &mut dk, &mut dv, &cb, &out, &lse, &q, &k, &v, &m, nq, nk, d, h,
    )?;
    let inc = [
        added(&dev.download(&dq)?, d0[0]),
        added(&dev.download(&dk)?, d0[1]),
        added(&dev.download(&dv)?, d0[2]),
    ];
    Ok((dev.download(&out)?, dev.download(&lse)?, inc))
}

fn cross_attention_matches_oracle_and_its_gradient<B: Backend>(
    dev: &B,
    &(nq, nk, h, dh, mk, seed): &CrossCase,
) -> TestCaseResult {
    let d = h * dh;
    let mut g = Gen::new(seed);
    let x = data(nq, nk, d, mk, &mut g);
    let c = g.vec(nq * d, -1.0, 1.0);
    let d0 = [
        g.vec(nq * d, -1.0, 1.0),
        g.vec(nk * d, -1.0, 1.0),
        g.vec(nk * d, -1.0, 1.0),
    ];
    let (out, lse, [dq, dk, dv]) = run_cross(dev, &x, &c, [&d0[0], &d0[1], &d0[2]], nq, nk, d, h)?;
    let (q, k, v) = (f64s(&x.q), f64s(&x.k), f64s(&x.v));
    let m = &x.mask;
    close(
        "out",
        &out,
        &cross_oracle(&q, &k, &v, m, nq, nk, d, h),
        FWD_RTOL,
        FWD_ATOL,
    )?;
    prop_assert!(lse.iter().all(|l| l.is_finite()));
    if m.iter().all(|&w| w == 0.0) {
        // no valid key: output 0, lse 0, and no gradient anywhere (exactly)
        prop_assert!(out.iter().chain(&lse).all(|&o| o == 0.0));
        prop_assert!(dq.iter().chain(&dk).chain(&dv).all(|&o| o == 0.0));
    }
    for (j, &w) in m.iter().enumerate() {
        if w == 0.0 {
            // a masked key never receives gradient
            prop_assert!(dk[j * d..(j + 1) * d].iter().all(|&o| o == 0.0));
            prop_assert!(dv[j * d..(j + 1) * d].iter().all(|&o| o == 0.0));
        }
    }
    let f =
        |q: &[f64], k: &[f64], v: &[f64]| functional(&c, &cross_oracle(q, k, v, m, nq, nk, d, h));
    close(
        "dq",
        &dq,
        &fd_grad(&q, |p| f(p, &k, &v)),
        BWD_RTOL,
        BWD_ATOL,
    )?;
    close(
        "dk",
        &dk,
        &fd_grad(&k, |p| f(&q, p, &v)),
        BWD_RTOL,
        BWD_ATOL,
    )?;
    close(
        "dv",
        &dv,
        &fd_grad(&v, |p| f(&q, &k, p)),
        BWD_RTOL,
        BWD_ATOL,
    )
}
device_proptest!(
    64,
    cross_attention_matches_oracle_and_its_gradient,
    cross_case()
);

/// Larger shapes than the oracle test (several shared-memory tiles of keys and of queries, M > n
/// and M < n, odd widths): the emulated kernels against the CPU op, in every thread order.
fn cross_attention_emulator_matches_cpu<B: Backend>(
    dev: &B,
    &(nq, nk, h, dh, mk, seed): &CrossCase,
) -> TestCaseResult {
    let d = h * dh;
    let mut g = Gen::new(seed);
    let x = data(nq, nk, d, mk, &mut g);
    let c = g.vec(nq * d, -1.0, 1.0);
    let d0 = [
        g.vec(nq * d, -1.0, 1.0),
        g.vec(nk * d, -1.0, 1.0),
        g.vec(nk * d, -1.0, 1.0),
    ];
    let d0r = [&d0[0][..], &d0[1][..], &d0[2][..]];
    let (co, cl, cg) = run_cross(&Cpu, &x, &c, d0r, nq, nk, d, h)?;
    let (go, gl, gg) = run_cross(dev, &x, &c, d0r, nq, nk, d, h)?;
    // online softmax per key (kernel) vs per 64-key block (CPU), both f32
    matches_ref("out", &go, &co, 1e-5, 1e-4)?;
    matches_ref("lse", &gl, &cl, 1e-5, 1e-5)?;
    for (name, a, b) in [
        ("dq", &gg[0], &cg[0]),
        ("dk", &gg[1], &cg[1]),
        ("dv", &gg[2], &cg[2]),
    ] {
        matches_ref(name, a, b, 1e-4, 1e-3)?;
    }
    Ok(())
}
gpu_proptest!(
    16,
    cross_attention_emulator_matches_cpu,
    (
        1usize..80,
        1usize..80,
        1usize..3,
        1usize..6,
        0u8..4,
        any::<u64>()
    )
);

fn wrong_shapes_are_shape_errors<B: Backend>(dev: &B) -> TestCaseResult {
    let (nq, nk, d, h) = (3usize, 5usize, 4usize, 2usize);
    let z = |len: usize| dev.zeros(len).unwrap();
    let is_shape = |what: &str, r: eraengine::Result<()>| -> TestCaseResult {
        prop_assert!(
            matches!(r, Err(Error::Shape(_))),
            "{}: expected Error::Shape, got {:?}",
            what,
            r.err()
        );
        Ok(())
    };
    // (out, lse, q, k, v, mask) lengths, each wrong in one place
    let good = [nq * d, h * nq, nq * d, nk * d, nk * d, nk];
    let bad = [nk * d, h * nk, nk * d, nq * d, nq * d, nq];
    for i in 0..6 {
        let mut l = good;
        l[i] = bad[i];
        let r = dev.softmax_attention_fwd(
            &mut z(l[0]),
            &mut z(l[1]),
            &z(l[2]),
            &z(l[3]),
            &z(l[4]),
            &z(l[5]),
            nq,
            nk,
            d,
            h,
        );
        is_shape(&format!("fwd, argument {i}"), r)?;
    }
    // heads that do not divide d
    let r = dev.softmax_attention_fwd(
        &mut z(nq * d),
        &mut z(3 * nq),
        &z(nq * d),
        &z(nk * d),
        &z(nk * d),
        &z(nk),
        nq,
        nk,
        d,
        3,
    );
    is_shape("fwd, heads", r)?;
    // backward: (dq, dk, dv, dout, out, q, k, v, lse, mask)
    let good = [
        nq * d,
        nk * d,
        nk * d,
        nq * d,
        nq * d,
        nq * d,
        nk * d,
        nk * d,
        h * nq,
        nk,
    ];
    let bad = [
        nk * d,
        nq * d,
        nq * d,
        nk * d,
        nk * d,
        nk * d,
        nq * d,
        nq * d,
        h * nk,
        nq,
    ];
    for i in 0..10 {
        let mut l = good;
        l[i] = bad[i];
        let r = dev.softmax_attention_bwd(
            &mut z(l[0]),
            &mut z(l[1]),
            &mut z(l[2]),
            &z(l[3]),
            &z(l[4]),
            &z(l[8]),
            &z(l[5]),
            &z(l[6]),
            &z(l[7]),
            &z(l[9]),
            nq,
            nk,
            d,
            h,
        );
        is_shape(&format!("bwd, argument {i}"), r)?;
    }
    Ok(())
}
device_test!(wrong_shapes_are_shape_errors);

/// Self-attention is the case nq = nk = n: the tape's `softmax_attention` and `cross_attention`
/// record the same computation (bit-identical outputs).
fn self_attention_is_cross_attention_with_nq_eq_nk<B: Backend>(dev: &B) -> TestCaseResult {
    let (n, d, h) = (11usize, 6usize, 2usize);
    let mut g = Gen::new(5);
    let x = data(n, n, d, 1, &mut g);
    let mut tape = Tape::<B>::new();
    let (q, k, v, m) = (
        tape.input(dev, &x.q)?,
        tape.input(dev, &x.k)?,
        tape.input(dev, &x.v)?,
        tape.input(dev, &x.mask)?,
    );
    let a = tape.softmax_attention(dev, q, k, v, m, n, d, h)?;
    let b = tape.cross_attention(dev, q, k, v, m, n, n, d, h)?;
    prop_assert_eq!(tape.download(dev, a)?, tape.download(dev, b)?);
    tape.release(dev);
    Ok(())
}
device_test!(self_attention_is_cross_attention_with_nq_eq_nk);

// ---------------------------------------------------------------------------------------------
// Tape::param

/// A parameter P [3, 4] read twice through `Tape::param` into y = (P + P) Wᵀ + b, MSE against
/// targets: P's gradient is the sum over both reads, against finite differences of the f64 loss.
fn param_leaf_gradient_flows_into_the_parameter<B: Backend>(dev: &B) -> TestCaseResult {
    let (n, k, m) = (3usize, 4usize, 2usize);
    let mut g = Gen::new(17);
    let (pv, wv, bv, yv) = (
        g.vec(n * k, -1.0, 1.0),
        g.vec(m * k, -1.0, 1.0),
        g.vec(m, -1.0, 1.0),
        g.vec(n * m, -1.0, 1.0),
    );
    let tensors = vec![
        ("p".to_string(), vec![n, k], pv.clone()),
        ("lin.weight".to_string(), vec![m, k], wv.clone()),
        ("lin.bias".to_string(), vec![m], bv.clone()),
    ];
    let mut params = Params::from_host(dev, &tensors)?;
    let (pid, wid, bid) = (
        params.id("p").unwrap(),
        params.id("lin.weight").unwrap(),
        params.id("lin.bias").unwrap(),
    );
    let mut tape = Tape::<B>::new();
    let p1 = tape.param(dev, &params, pid)?;
    prop_assert_eq!(tape.download(dev, p1)?, pv.clone());
    let p2 = tape.param(dev, &params, pid)?;
    let s = tape.add(dev, p1, p2)?;
    let yhat = tape.linear(dev, &params, s, wid, bid, n, k, m)?;
    let y = tape.input(dev, &yv)?;
    let mask = tape.input(dev, &vec![1.0; n])?;
    let gate = tape.input(dev, &[0.0])?;
    tape.loss(dev, yhat, y, mask, gate, 0.0, n, m)?;
    tape.backward(dev, &mut params)?;
    let got = &params.grads_to_host(dev)?[pid.0].2;
    let loss = |p: &[f64]| -> f64 {
        let mut se = 0.0;
        for i in 0..n {
            for o in 0..m {
                let yh: f64 = (0..k)
                    .map(|c| 2.0 * p[i * k + c] * wv[o * k + c] as f64)
                    .sum::<f64>()
                    + bv[o] as f64;
                se += (yh - yv[i * m + o] as f64).powi(2);
            }
        }
        se / (n * m) as f64
    };
    close("dP", got, &fd_grad(&f64s(&pv), loss), BWD_RTOL, BWD_ATOL)?;
    tape.release(dev);
    Ok(())
}
device_test!(param_leaf_gradient_flows_into_the_parameter);

// ---------------------------------------------------------------------------------------------
// the induced model

type P = HashMap<String, Vec<f64>>;

fn lin(x: &[f64], n: usize, k: usize, p: &P, name: &str) -> Vec<f64> {
    let b = &p[&format!("{name}.bias")];
    linear(x, &p[&format!("{name}.weight")], Some(b), n, k, b.len())
}

/// The whole model with `--attention induced`, no dropout, no positional encoding, gate rank 0,
/// written from docs/model.md and docs/model.md: returns (yhat, loss).
fn model_oracle(
    cfg: &Config,
    p: &P,
    x: &[f64],
    y: &[f64],
    mask: &[f32],
    n: usize,
) -> (Vec<f64>, f64) {
    let (f, d, t, h, mi) = (
        cfg.n_features,
        cfg.d_model,
        cfg.n_targets,
        cfg.heads,
        cfg.inducing,
    );
    let g: Vec<f64> = p["gate.w"]
        .iter()
        .map(|&w| 1.0 / (1.0 + (-w).exp()))
        .collect();
    let s: Vec<f64> = g
        .iter()
        .map(|&v| if v >= cfg.threshold as f64 { v } else { 0.0 })
        .collect();
    let xt: Vec<f64> = (0..n * f).map(|e| x[e] * s[e % f]).collect();
    let mut hs = lin(&lin(&xt, n, f, p, "mapper.0"), n, d, p, "mapper.1");
    let ones = vec![1.0f32; mi];
    let ln = |x: &[f64], name: &str| {
        layer_norm(
            x,
            &p[&format!("{name}.weight")],
            &p[&format!("{name}.bias")],
            n,
            d,
        )
    };
    for l in 0..cfg.layers {
        let a = |x: &str| format!("layers.{l}.attn.{x}");
        let q = lin(&hs, n, d, p, &a("q"));
        let k = lin(&hs, n, d, p, &a("k"));
        let v = lin(&hs, n, d, p, &a("v"));
        let iq = lin(&p[&a("inducing")], mi, d, p, &a("iq"));
        let hm = cross_oracle(&iq, &k, &v, mask, mi, n, d, h);
        let ik = lin(&hm, mi, d, p, &a("ik"));
        let iv = lin(&hm, mi, d, p, &a("iv"));
        let att = cross_oracle(&q, &ik, &iv, &ones, n, mi, d, h);
        let o = lin(&att, n, d, p, &a("o"));
        let r1: Vec<f64> = hs.iter().zip(&o).map(|(x, y)| x + y).collect();
        let h1 = ln(&r1, &format!("layers.{l}.norm1"));
        let f0: Vec<f64> = lin(&h1, n, d, p, &format!("layers.{l}.ffn.0"))
            .into_iter()
            .map(gelu)
            .collect();
        let f1 = lin(&f0, n, cfg.d_ff, p, &format!("layers.{l}.ffn.1"));
        let r2: Vec<f64> = h1.iter().zip(&f1).map(|(x, y)| x + y).collect();
        hs = ln(&r2, &format!("layers.{l}.norm2"));
    }
    let o: Vec<f64> = lin(&hs, n, d, p, "head.0").into_iter().map(gelu).collect();
    let yhat = lin(&o, n, d, p, "head.1");
    let (mut se, mut cnt) = (0.0, 0.0);
    for i in 0..n {
        for k in 0..t {
            if mask[i] != 0.0 && !y[i * t + k].is_nan() {
                se += (yhat[i * t + k] - y[i * t + k]).powi(2);
                cnt += 1.0;
            }
        }
    }
    let mse = if cnt > 0.0 { se / cnt } else { 0.0 };
    (
        yhat,
        mse + cfg.lambda_sparsity as f64 * g.iter().sum::<f64>() / f as f64,
    )
}

struct ModelCase {
    cfg: Config,
    n: usize,
    x: Vec<f32>,
    y: Vec<f32>,
    mask: Vec<f32>,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

/// `real` rows then `pad` padding rows; M inducing points; biases perturbed so every path carries
/// gradient.
fn model_case(seed: u64, real: usize, pad: usize, m: usize, layers: usize) -> ModelCase {
    let mut cfg = Config::new(3, 2);
    cfg.d_model = 4;
    cfg.heads = 2;
    cfg.layers = layers;
    cfg.d_ff = 6;
    cfg.gate_rank = 0;
    cfg.dropout = 0.0;
    cfg.attention = Attention::Induced;
    cfg.inducing = m;
    cfg.lambda_sparsity = 0.05;
    let mut rng = Rng::new(seed, 9);
    let n = real + pad;
    let x = (0..n * 3)
        .map(|_| ((rng.next_u32() % 5) as f32 - 2.0) / 2.0)
        .collect();
    let y = (0..n * 2)
        .map(|e| {
            if e % 7 == 3 {
                f32::NAN
            } else {
                (rng.next_u32() % 5) as f32 / 4.0
            }
        })
        .collect();
    let mask = (0..n).map(|i| if i < real { 1.0 } else { 0.0 }).collect();
    let mut tensors = init_params(&cfg, seed);
    for (name, _, v) in tensors.iter_mut() {
        if name.ends_with(".bias") || name == "gate.w" {
            for e in v.iter_mut() {
                *e += rng.uniform(-0.3, 0.3);
            }
        }
    }
    ModelCase {
        cfg,
        n,
        x,
        y,
        mask,
        tensors,
    }
}

/// The f32 model on the tape: (yhat, loss, gradients by name).
fn run_model<B: Backend>(
    dev: &B,
    c: &ModelCase,
) -> eraengine::Result<(Vec<f32>, f32, Vec<(String, Vec<f32>)>)> {
    let mut params = Params::from_host(dev, &c.tensors)?;
    let model = EraTransformer::new(c.cfg.clone(), &params)?;
    let mut tape = Tape::new();
    let inputs = EraInputs {
        x: tape.input(dev, &c.x)?,
        codes: None,
        mask: tape.input(dev, &c.mask)?,
        y: tape.input(dev, &c.y)?,
        n: c.n,
        ctx: None,
        col_sums: None,
    };
    let out = model.forward(dev, &mut tape, &params, &inputs, None)?;
    let yhat = tape.download(dev, out.yhat)?;
    let (nt, lam) = (c.cfg.n_targets, c.cfg.lambda_sparsity);
    let parts = tape.loss(dev, out.yhat, inputs.y, inputs.mask, out.g, lam, c.n, nt)?;
    tape.backward(dev, &mut params)?;
    let grads = params
        .grads_to_host(dev)?
        .into_iter()
        .map(|(n, _, g)| (n, g))
        .collect();
    tape.release(dev);
    Ok((yhat, parts.loss, grads))
}

/// The induced model's forward against the f64 oracle and every parameter's gradient against
/// central differences of the oracle's loss (M < n with padding, M > n, one real row).
fn induced_model_matches_oracle_and_finite_differences<B: Backend>(dev: &B) -> TestCaseResult {
    for (seed, real, pad, m, layers) in [(1, 5, 2, 3, 1), (2, 2, 1, 6, 2), (3, 1, 0, 2, 1)] {
        let c = model_case(seed, real, pad, m, layers);
        let (yhat, loss, grads) = run_model(dev, &c)?;
        let p: P = c
            .tensors
            .iter()
            .map(|(n, _, v)| (n.clone(), f64s(v)))
            .collect();
        let (x, y) = (f64s(&c.x), f64s(&c.y));
        let (oy, oloss) = model_oracle(&c.cfg, &p, &x, &y, &c.mask, c.n);
        close("yhat", &yhat, &oy, 1e-4, 1e-5)?;
        close("loss", &[loss], &[oloss], 1e-4, 1e-5)?;
        let eps = 1e-6;
        let mut checked = 0;
        for (name, grad) in &grads {
            for (e, &ana) in grad.iter().enumerate() {
                let mut pp = p.clone();
                pp.get_mut(name).unwrap()[e] += eps;
                let up = model_oracle(&c.cfg, &pp, &x, &y, &c.mask, c.n).1;
                pp.get_mut(name).unwrap()[e] -= 2.0 * eps;
                let down = model_oracle(&c.cfg, &pp, &x, &y, &c.mask, c.n).1;
                let num = (up - down) / (2.0 * eps);
                prop_assert!(
                    (ana as f64 - num).abs() <= 2e-3 * num.abs().max(1e-2),
                    "case {}: d loss / d {}[{}]: tape {:.6e}, finite differences {:.6e}",
                    seed,
                    name,
                    e,
                    ana,
                    num
                );
                checked += 1;
            }
        }
        // the inducing points and the induced maps were among them, and got gradient (with one
        // valid row, step 1's softmax has one key: its weight is 1 whatever the points are)
        let names: &[&str] = if real > 1 {
            &[
                "layers.0.attn.inducing",
                "layers.0.attn.iq.weight",
                "layers.0.attn.iv.bias",
            ]
        } else {
            &["layers.0.attn.iv.bias"]
        };
        for &name in names {
            let g = &grads.iter().find(|(n, _)| n == name).unwrap().1;
            prop_assert!(g.iter().any(|&v| v != 0.0), "{} got no gradient", name);
        }
        prop_assert!(checked > 200);
    }
    Ok(())
}
device_test!(
    induced_model_matches_oracle_and_finite_differences,
    [Order::Forward]
);

/// Whole-model CPU ≡ emulator with induced attention, in two thread orders.
#[test]
fn induced_model_emulator_matches_cpu() {
    for (seed, real, pad, m) in [(4, 37, 5, 8), (5, 6, 3, 40)] {
        let mut c = model_case(seed, real, pad, m, 2);
        c.cfg.d_model = 8;
        c.tensors = init_params(&c.cfg, seed);
        let (cy, cl, cg) = run_model(&Cpu, &c).unwrap();
        gpu_common::expect_ok(on_emu(&[Order::Forward, Order::Shuffle(seed)], |dev| {
            let (ey, el, eg) = run_model(dev, &c)?;
            matches_ref("yhat", &ey, &cy, 1e-5, 1e-4)?;
            matches_ref("loss", &[el], &[cl], 1e-6, 1e-5)?;
            for ((name, a), (_, b)) in eg.iter().zip(&cg) {
                let scale = b.iter().fold(0f32, |s, v| s.max(v.abs()));
                matches_ref(name, a, b, 1e-5 + 2e-4 * scale, 1e-3)?;
            }
            Ok(())
        }));
    }
}

// ---------------------------------------------------------------------------------------------
// checkpoints

fn checkpoint(cfg: Config) -> Checkpoint {
    Checkpoint {
        features: (0..cfg.n_features)
            .map(|i| format!("feature_{i}"))
            .collect(),
        targets: (0..cfg.n_targets).map(|i| format!("target_{i}")).collect(),
        tensors: init_params(&cfg, 7),
        head_blend: None,
        config: cfg,
    }
}

#[test]
fn induced_checkpoint_round_trips_its_config_and_tensors() {
    let mut cfg = Config::new(4, 1);
    cfg.layers = 2;
    cfg.d_model = 8;
    cfg.attention = Attention::Induced;
    cfg.inducing = 5;
    let names: Vec<(String, Vec<usize>)> = param_specs(&cfg);
    for l in 0..2 {
        let has = |n: String, s: Vec<usize>| names.iter().any(|(a, b)| *a == n && *b == s);
        assert!(has(format!("layers.{l}.attn.inducing"), vec![5, 8]));
        for x in ["iq", "ik", "iv"] {
            assert!(has(format!("layers.{l}.attn.{x}.weight"), vec![8, 8]));
            assert!(has(format!("layers.{l}.attn.{x}.bias"), vec![8]));
        }
    }
    // the points start as N(0, 1)/√d: mean ≈ 0, spread ≈ 1/√8 (40 draws)
    let ck = checkpoint(cfg.clone());
    let pts = &ck
        .tensors
        .iter()
        .find(|t| t.0 == "layers.1.attn.inducing")
        .unwrap()
        .2;
    let mean = pts.iter().sum::<f32>() / pts.len() as f32;
    let sd = (pts.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / pts.len() as f32).sqrt();
    assert!(
        mean.abs() < 0.15 && (0.2..0.5).contains(&sd),
        "mean {mean}, sd {sd}"
    );
    let dir = TempDir::new("induced");
    let path = dir.join("induced.safetensors");
    ck.save(&path).unwrap();
    let back = Checkpoint::load(&path).unwrap();
    assert_eq!(back.config.attention, Attention::Induced);
    assert_eq!(back.config.inducing, 5);
    assert_eq!(back.tensors, ck.tensors);
    let (meta, _) = from_bytes(&std::fs::read(&path).unwrap(), Path::new("x")).unwrap();
    let json: serde_json::Value = serde_json::from_str(meta["config"].as_str().unwrap()).unwrap();
    assert_eq!(json["attention"], "induced");
    assert_eq!(json["inducing"], 5);
    // the loaded checkpoint builds the model
    let params = Params::from_host(&Cpu, &back.tensors).unwrap();
    EraTransformer::new(back.config, &params).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_old_checkpoint_without_the_new_keys_still_loads() {
    let mut cfg = Config::new(4, 1);
    cfg.attention = Attention::Softmax;
    let ck = checkpoint(cfg);
    let mut meta = ck.metadata();
    // an older writer: no "inducing" key in the config
    let mut json: serde_json::Value =
        serde_json::from_str(meta["config"].as_str().unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("inducing");
    meta.insert("config".into(), json.to_string().into());
    meta.remove("data_checksum");
    let dir = TempDir::new("induced-old");
    let path = dir.join("old.safetensors");
    std::fs::write(&path, to_bytes(&ck.tensors, &meta)).unwrap();
    let back = Checkpoint::load(&path).unwrap();
    assert_eq!(back.config.attention, Attention::Softmax);
    assert_eq!(back.config.inducing, 32);
    assert_eq!(back.tensors, ck.tensors);
    assert!(!back
        .tensors
        .iter()
        .any(|t| t.0.contains("inducing") || t.0.contains(".iq.")));
    let params = Params::from_host(&Cpu, &back.tensors).unwrap();
    EraTransformer::new(back.config, &params).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
