#![allow(
    clippy::too_many_arguments,
    clippy::type_complexity,
    clippy::needless_range_loop
)]
//! The whole model against a naive f64 oracle written straight from SPEC §3 (built from the op
//! oracles of tests/oracle), on every device (cpu, emu, cuda; see tests/gpu_common): forward values,
//! every parameter's gradient against central finite differences, padding invariance, and the
//! tape's rules (sum over paths, backward twice is an error).

#[macro_use]
mod gpu_common;
mod oracle;

use eraengine::device::Backend;
use eraengine::gpu::Order;
use eraengine::model::{init_params, Attention, Config, EraInputs, EraTransformer, TrainCtx};
use eraengine::ops::elementwise::DropoutKey;
use eraengine::params::Params;
use eraengine::rng::Rng;
use eraengine::tape::Tape;
use oracle::{f64s, gelu};
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;
use std::collections::HashMap;

/// The op oracles of tests/oracle, which this model oracle is built from.
mod ops {
    pub use super::oracle::{dropout, layer_norm, linear, linear_attention, softmax_attention};
}

type P = HashMap<String, (Vec<usize>, Vec<f64>)>;

fn lin(x: &[f64], n: usize, k: usize, p: &P, name: &str) -> Vec<f64> {
    let w = &p[&format!("{name}.weight")].1;
    let b = &p[&format!("{name}.bias")].1;
    ops::linear(x, w, Some(b), n, k, b.len())
}

fn layer_norm(x: &[f64], n: usize, d: usize, p: &P, name: &str) -> Vec<f64> {
    let g = &p[&format!("{name}.weight")].1;
    let b = &p[&format!("{name}.bias")].1;
    ops::layer_norm(x, g, b, n, d)
}

fn attention(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    mask: &[f64],
    n: usize,
    d: usize,
    h: usize,
    kind: Attention,
) -> Vec<f64> {
    let mask: Vec<f32> = mask.iter().map(|&m| m as f32).collect();
    match kind {
        Attention::Linear => ops::linear_attention(q, k, v, &mask, n, d, h),
        Attention::Softmax => ops::softmax_attention(q, k, v, &mask, n, d, h),
        // its oracle (with the inducing points) is in tests/ops_cross_attention.rs
        Attention::Induced => panic!("tests/model.rs has no induced-attention cases"),
    }
}

fn dropout(x: &mut Vec<f64>, p: f64, key: Option<DropoutKey>) {
    if let Some(key) = key {
        *x = ops::dropout(x, p, key);
    }
}

/// The f64 oracle: returns (yhat [n,T], g [F], loss).
fn oracle(
    cfg: &Config,
    p: &P,
    x: &[f64],
    y: &[f64],
    mask: &[f64],
    n: usize,
    train: Option<TrainCtx>,
) -> (Vec<f64>, Vec<f64>, f64) {
    let (f, d, r, t) = (cfg.n_features, cfg.d_model, cfg.gate_rank, cfg.n_targets);
    let msum: f64 = mask.iter().sum();
    let xbar: Vec<f64> = (0..f)
        .map(|j| {
            if msum > 0.0 {
                (0..n).map(|i| mask[i] * x[i * f + j]).sum::<f64>() / msum
            } else {
                0.0
            }
        })
        .collect();
    let w = &p["gate.w"].1;
    let mut g = vec![0.0; f];
    for j in 0..f {
        let mut l = w[j];
        if r > 0 {
            let (a, b) = (&p["gate.a"].1, &p["gate.b"].1);
            for q in 0..r {
                let u: f64 = (0..f).map(|ff| a[ff * r + q] * xbar[ff]).sum();
                l += b[j * r + q] * u;
            }
        }
        g[j] = 1.0 / (1.0 + (-l).exp());
    }
    let s: Vec<f64> = g
        .iter()
        .map(|&gv| if gv >= cfg.threshold as f64 { gv } else { 0.0 })
        .collect();
    let xt: Vec<f64> = (0..n * f).map(|e| x[e] * s[e % f]).collect();
    let mut h = lin(&lin(&xt, n, f, p, "mapper.0"), n, d, p, "mapper.1");
    if cfg.pos_enc {
        for i in 0..n {
            for j in 0..d {
                let pair = (j / 2) as f64;
                let ang = i as f64 / 10000f64.powf(2.0 * pair / d as f64);
                h[i * d + j] += if j % 2 == 0 { ang.sin() } else { ang.cos() };
            }
        }
    }
    let key = |tensor: u32| {
        train.filter(|_| cfg.dropout > 0.0).map(|c| DropoutKey {
            seed: c.seed,
            step: c.step,
            tensor,
        })
    };
    for l in 0..cfg.layers {
        let q = lin(&h, n, d, p, &format!("layers.{l}.attn.q"));
        let k = lin(&h, n, d, p, &format!("layers.{l}.attn.k"));
        let v = lin(&h, n, d, p, &format!("layers.{l}.attn.v"));
        let att = attention(&q, &k, &v, mask, n, d, cfg.heads, cfg.attention);
        let a = lin(&att, n, d, p, &format!("layers.{l}.attn.o"));
        let r1: Vec<f64> = h.iter().zip(&a).map(|(x, y)| x + y).collect();
        let mut h1 = layer_norm(&r1, n, d, p, &format!("layers.{l}.norm1"));
        dropout(&mut h1, cfg.dropout as f64, key(2 * l as u32));
        let f0: Vec<f64> = lin(&h1, n, d, p, &format!("layers.{l}.ffn.0"))
            .into_iter()
            .map(gelu)
            .collect();
        let f1 = lin(&f0, n, cfg.d_ff, p, &format!("layers.{l}.ffn.1"));
        let r2: Vec<f64> = h1.iter().zip(&f1).map(|(x, y)| x + y).collect();
        h = layer_norm(&r2, n, d, p, &format!("layers.{l}.norm2"));
        dropout(&mut h, cfg.dropout as f64, key(2 * l as u32 + 1));
    }
    let o: Vec<f64> = lin(&h, n, d, p, "head.0").into_iter().map(gelu).collect();
    let yhat = lin(&o, n, d, p, "head.1");
    let (mut se, mut cnt) = (0.0, 0.0);
    for i in 0..n {
        for k in 0..t {
            let yy = y[i * t + k];
            if mask[i] > 0.0 && !yy.is_nan() {
                se += (yhat[i * t + k] - yy).powi(2);
                cnt += 1.0;
            }
        }
    }
    let mse = if cnt > 0.0 { se / cnt } else { 0.0 };
    let loss = mse + cfg.lambda_sparsity as f64 * g.iter().sum::<f64>() / f as f64;
    (yhat, g, loss)
}

struct Case {
    cfg: Config,
    n: usize,
    x: Vec<f32>,
    y: Vec<f32>,
    mask: Vec<f32>,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

fn case(
    seed: u64,
    n: usize,
    pad: usize,
    attention: Attention,
    heads: usize,
    rank: usize,
    dropout: f32,
    pos_enc: bool,
) -> Case {
    let mut cfg = Config::new(5, 2);
    cfg.d_model = 8;
    cfg.heads = heads;
    cfg.layers = 2;
    cfg.d_ff = 12;
    cfg.gate_rank = rank;
    cfg.dropout = dropout;
    cfg.attention = attention;
    cfg.pos_enc = pos_enc;
    cfg.lambda_sparsity = 0.05;
    let mut rng = Rng::new(seed, 9);
    let total = n + pad;
    let x: Vec<f32> = (0..total * 5)
        .map(|_| ((rng.next_u32() % 5) as f32 - 2.0) / 2.0)
        .collect();
    let y: Vec<f32> = (0..total * 2)
        .map(|e| {
            if e % 7 == 3 {
                f32::NAN
            } else {
                (rng.next_u32() % 5) as f32 / 4.0
            }
        })
        .collect();
    let mask: Vec<f32> = (0..total).map(|i| if i < n { 1.0 } else { 0.0 }).collect();
    let mut tensors = init_params(&cfg, seed);
    // Perturb B (zero at init) and every bias so that every path carries gradient.
    for (name, _, v) in tensors.iter_mut() {
        if name == "gate.b" || name.ends_with(".bias") {
            for e in v.iter_mut() {
                *e += rng.uniform(-0.3, 0.3);
            }
        }
        if name == "gate.w" {
            for e in v.iter_mut() {
                *e = rng.uniform(-1.0, 1.0);
            }
        }
    }
    Case {
        cfg,
        n: total,
        x,
        y,
        mask,
        tensors,
    }
}

fn to_p(t: &[(String, Vec<usize>, Vec<f32>)]) -> P {
    t.iter()
        .map(|(n, s, v)| {
            (
                n.clone(),
                (s.clone(), v.iter().map(|&x| x as f64).collect()),
            )
        })
        .collect()
}

/// Runs the f32 model on the tape: (yhat, g, loss, grads by name).
fn run_model<B: Backend>(
    dev: &B,
    c: &Case,
    train: Option<TrainCtx>,
) -> (Vec<f32>, Vec<f32>, f32, Vec<(String, Vec<f32>)>) {
    let mut params = Params::from_host(dev, &c.tensors).unwrap();
    let model = EraTransformer::new(c.cfg.clone(), &params).unwrap();
    let mut tape = Tape::new();
    let inputs = EraInputs {
        x: tape.input(dev, &c.x).unwrap(),
        codes: None,
        mask: tape.input(dev, &c.mask).unwrap(),
        y: tape.input(dev, &c.y).unwrap(),
        n: c.n,
        ctx: None,
        col_sums: None,
    };
    let out = model
        .forward(dev, &mut tape, &params, &inputs, train)
        .unwrap();
    let yhat = tape.download(dev, out.yhat).unwrap();
    let g = tape.download(dev, out.g).unwrap();
    let parts = tape
        .loss(
            dev,
            out.yhat,
            inputs.y,
            inputs.mask,
            out.g,
            c.cfg.lambda_sparsity,
            c.n,
            c.cfg.n_targets,
        )
        .unwrap();
    tape.backward(dev, &mut params).unwrap();
    let grads = params
        .grads_to_host(dev)
        .unwrap()
        .into_iter()
        .map(|(n, _, g)| (n, g))
        .collect();
    (yhat, g, parts.loss, grads)
}

fn check_case<B: Backend>(dev: &B, c: &Case, train: Option<TrainCtx>) -> TestCaseResult {
    let (yhat, g, loss, grads) = run_model(dev, c, train);
    let p = to_p(&c.tensors);
    let (x, y, m) = (f64s(&c.x), f64s(&c.y), f64s(&c.mask));
    let (oy, og, oloss) = oracle(&c.cfg, &p, &x, &y, &m, c.n, train);
    prop_assert_eq!(yhat.len(), oy.len());
    for (i, (a, b)) in yhat.iter().zip(&oy).enumerate() {
        prop_assert!(
            (*a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()),
            "yhat[{}] {} vs oracle {}",
            i,
            a,
            b
        );
    }
    prop_assert_eq!(g.len(), og.len());
    for (a, b) in g.iter().zip(&og) {
        prop_assert!((*a as f64 - b).abs() <= 1e-5, "gate {} vs {}", a, b);
    }
    prop_assert!(
        (loss as f64 - oloss).abs() <= 1e-4 * (1.0 + oloss.abs()),
        "loss {} vs {}",
        loss,
        oloss
    );
    // Every parameter element: analytic gradient vs central differences of the f64 oracle.
    let eps = 1e-6;
    for (name, grad) in &grads {
        for e in 0..grad.len() {
            let mut pp = p.clone();
            pp.get_mut(name).unwrap().1[e] += eps;
            let up = oracle(&c.cfg, &pp, &x, &y, &m, c.n, train).2;
            pp.get_mut(name).unwrap().1[e] -= 2.0 * eps;
            let down = oracle(&c.cfg, &pp, &x, &y, &m, c.n, train).2;
            let num = (up - down) / (2.0 * eps);
            let ana = grad[e] as f64;
            prop_assert!(
                (ana - num).abs() <= 2e-3 * num.abs().max(1e-2),
                "d loss / d {}[{}]: tape {:.6e}, finite differences {:.6e}",
                name,
                e,
                ana,
                num
            );
        }
    }
    Ok(())
}

fn model_matches_oracle_and_finite_differences_linear_attention<B: Backend>(
    dev: &B,
) -> TestCaseResult {
    check_case(
        dev,
        &case(1, 7, 0, Attention::Linear, 2, 3, 0.0, false),
        None,
    )
}
device_test!(
    model_matches_oracle_and_finite_differences_linear_attention,
    [Order::Forward, Order::Reverse]
);

fn model_gradients_with_dropout_padding_and_pos_enc<B: Backend>(dev: &B) -> TestCaseResult {
    let c = case(2, 6, 3, Attention::Linear, 4, 2, 0.25, true);
    check_case(dev, &c, Some(TrainCtx { seed: 11, step: 5 }))
}
device_test!(
    model_gradients_with_dropout_padding_and_pos_enc,
    [Order::Forward, Order::Reverse]
);

fn model_gradients_softmax_attention_static_gate<B: Backend>(dev: &B) -> TestCaseResult {
    check_case(
        dev,
        &case(3, 5, 2, Attention::Softmax, 1, 0, 0.0, false),
        None,
    )
}
device_test!(
    model_gradients_softmax_attention_static_gate,
    [Order::Forward, Order::Reverse]
);

fn model_gradients_one_row_era_heads_equal_d<B: Backend>(dev: &B) -> TestCaseResult {
    check_case(
        dev,
        &case(4, 1, 0, Attention::Linear, 8, 2, 0.0, false),
        None,
    )
}
device_test!(
    model_gradients_one_row_era_heads_equal_d,
    [Order::Forward, Order::Reverse]
);

/// Padding rows (mask 0) never change real rows' outputs or any gradient.
fn padded_rows_do_not_change_real_rows<B: Backend>(
    dev: &B,
    &(seed, n, pad, soft): &(u64, usize, usize, bool),
) -> TestCaseResult {
    let kind = if soft {
        Attention::Softmax
    } else {
        Attention::Linear
    };
    let padded = case(seed, n, pad, kind, 2, 2, 0.0, false);
    let mut plain = case(seed, n, pad, kind, 2, 2, 0.0, false);
    plain.n = n;
    plain.x.truncate(n * 5);
    plain.y.truncate(n * 2);
    plain.mask.truncate(n);
    let (ya, ga, la, gra) = run_model(dev, &padded, None);
    let (yb, gb, lb, grb) = run_model(dev, &plain, None);
    for i in 0..n * 2 {
        prop_assert!(
            (ya[i] - yb[i]).abs() <= 1e-5 * (1.0 + yb[i].abs()),
            "yhat[{}] {} vs {}",
            i,
            ya[i],
            yb[i]
        );
    }
    for (x, y) in ga.iter().zip(&gb) {
        prop_assert!((x - y).abs() <= 1e-6, "gate {} vs {}", x, y);
    }
    prop_assert!((la - lb).abs() <= 1e-5 * (1.0 + lb.abs()));
    for ((name, a), (_, b)) in gra.iter().zip(&grb) {
        for (x, y) in a.iter().zip(b) {
            prop_assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "grad {} {} vs {}",
                name,
                x,
                y
            );
        }
    }
    Ok(())
}
device_proptest!(
    12,
    padded_rows_do_not_change_real_rows,
    (0u64..1000, 1usize..9, 1usize..5, any::<bool>())
);

fn parameter_used_twice_gets_the_sum_over_paths<B: Backend>(dev: &B) -> TestCaseResult {
    // h = x W1ᵀ + b1, then the same linear map again: dW = sum of both uses.
    let w: Vec<f32> = vec![0.5, -0.25, 0.75, 0.1];
    let b: Vec<f32> = vec![0.05, -0.02];
    let tensors = vec![
        ("l.weight".to_string(), vec![2, 2], w.clone()),
        ("l.bias".to_string(), vec![2], b.clone()),
    ];
    let mut params = Params::from_host(dev, &tensors).unwrap();
    let (wid, bid) = (params.id("l.weight").unwrap(), params.id("l.bias").unwrap());
    let x = [1.0f32, 2.0, -1.0, 0.5, 0.3, -0.7];
    let y = [0.2f32, -0.1, 0.4, 0.0, 0.1, 0.3];
    let run = |w: &[f32], b: &[f32]| -> f64 {
        // f64 reference of loss = mean((x W W ...)²) through two applications.
        let ap = |inp: &[f64]| -> Vec<f64> {
            (0..3)
                .flat_map(|i| (0..2).map(move |o| (i, o)))
                .map(|(i, o)| {
                    b[o] as f64
                        + (0..2)
                            .map(|k| inp[i * 2 + k] * w[o * 2 + k] as f64)
                            .sum::<f64>()
                })
                .collect()
        };
        let h2 = ap(&ap(&x.iter().map(|&v| v as f64).collect::<Vec<_>>()));
        h2.iter()
            .zip(&y)
            .map(|(a, t)| (a - *t as f64).powi(2))
            .sum::<f64>()
            / 6.0
    };
    let mut tape: Tape<B> = Tape::new();
    let xi = tape.input(dev, &x).unwrap();
    let yi = tape.input(dev, &y).unwrap();
    let mask = tape.input(dev, &[1.0; 3]).unwrap();
    let g = tape.input(dev, &[0.0]).unwrap();
    let h1 = tape.linear(dev, &params, xi, wid, bid, 3, 2, 2).unwrap();
    let h2 = tape.linear(dev, &params, h1, wid, bid, 3, 2, 2).unwrap();
    tape.loss(dev, h2, yi, mask, g, 0.0, 3, 2).unwrap();
    tape.backward(dev, &mut params).unwrap();
    let grads = params.grads_to_host(dev).unwrap();
    for e in 0..4 {
        let (mut wp, mut wm) = (w.clone(), w.clone());
        wp[e] += 1e-3;
        wm[e] -= 1e-3;
        let num = (run(&wp, &b) - run(&wm, &b)) / 2e-3;
        prop_assert!(
            (grads[0].2[e] as f64 - num).abs() < 1e-3,
            "dW[{}] {} vs {}",
            e,
            grads[0].2[e],
            num
        );
    }
    // Backward twice on one recording is an error, not a wrong answer.
    let err = tape.backward(dev, &mut params).unwrap_err();
    prop_assert!(err.to_string().contains("backward called twice"), "{}", err);
    Ok(())
}
device_test!(parameter_used_twice_gets_the_sum_over_paths);

#[test]
fn init_is_deterministic_and_follows_the_spec() {
    let cfg = Config::new(10, 3);
    let a = init_params(&cfg, 7);
    let b = init_params(&cfg, 7);
    let c = init_params(&cfg, 8);
    assert_eq!(a, b);
    assert_ne!(a, c);
    for (name, shape, v) in &a {
        match name.as_str() {
            "gate.w" => assert!(v.iter().all(|&x| x == 2.0)),
            "gate.b" => assert!(v.iter().all(|&x| x == 0.0)),
            "gate.a" => assert!(v.iter().all(|&x| x.abs() < 0.06) && v.iter().any(|&x| x != 0.0)),
            n if n.contains("norm") && n.ends_with("weight") => {
                assert!(v.iter().all(|&x| x == 1.0))
            }
            n if n.contains("norm") => assert!(v.iter().all(|&x| x == 0.0)),
            n => {
                let fan_in = a
                    .iter()
                    .find(|(m, _, _)| *m == n.replace(".bias", ".weight"))
                    .unwrap()
                    .1[1];
                let bound = 1.0 / (fan_in as f32).sqrt();
                assert!(
                    v.iter().all(|&x| x.abs() <= bound),
                    "{n} exceeds U(-1/sqrt({fan_in}))"
                );
                assert_eq!(v.len(), shape.iter().product::<usize>());
            }
        }
    }
}
