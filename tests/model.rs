#![allow(
    clippy::too_many_arguments,
    clippy::type_complexity,
    clippy::needless_range_loop
)]
//! The whole model against a naive f64 oracle written straight from SPEC §3: forward values,
//! every parameter's gradient against central finite differences, padding invariance, and the
//! tape's rules (sum over paths, backward twice is an error).

use eraengine::device::Cpu;
use eraengine::model::{init_params, Attention, Config, EraInputs, EraTransformer, TrainCtx};
use eraengine::ops::elementwise::DropoutKey;
use eraengine::params::Params;
use eraengine::rng::{dropout_uniform, Rng};
use eraengine::tape::Tape;
use proptest::prelude::*;
use std::collections::HashMap;

type P = HashMap<String, (Vec<usize>, Vec<f64>)>;

fn lin(x: &[f64], n: usize, k: usize, p: &P, name: &str) -> Vec<f64> {
    let w = &p[&format!("{name}.weight")].1;
    let b = &p[&format!("{name}.bias")].1;
    let m = b.len();
    let mut out = vec![0.0; n * m];
    for i in 0..n {
        for o in 0..m {
            let mut s = b[o];
            for j in 0..k {
                s += x[i * k + j] * w[o * k + j];
            }
            out[i * m + o] = s;
        }
    }
    out
}

fn layer_norm(x: &[f64], n: usize, d: usize, p: &P, name: &str) -> Vec<f64> {
    let g = &p[&format!("{name}.weight")].1;
    let b = &p[&format!("{name}.bias")].1;
    let mut out = vec![0.0; n * d];
    for i in 0..n {
        let row = &x[i * d..(i + 1) * d];
        let mu = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / d as f64;
        for j in 0..d {
            out[i * d + j] = (row[j] - mu) / (var + 1e-5).sqrt() * g[j] + b[j];
        }
    }
    out
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

fn phi(x: f64) -> f64 {
    if x > 0.0 {
        x + 1.0
    } else {
        x.exp()
    }
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
    let dh = d / h;
    let mut out = vec![0.0; n * d];
    for hd in 0..h {
        let c = |i: usize, j: usize| i * d + hd * dh + j;
        for i in 0..n {
            match kind {
                Attention::Linear => {
                    let mut den = 1e-6;
                    let mut num = vec![0.0; dh];
                    for jr in 0..n {
                        let mut qk = 0.0;
                        for a in 0..dh {
                            qk += phi(q[c(i, a)]) * phi(k[c(jr, a)]);
                        }
                        den += mask[jr] * qk;
                        for b in 0..dh {
                            num[b] += mask[jr] * qk * v[c(jr, b)];
                        }
                    }
                    for b in 0..dh {
                        out[c(i, b)] = num[b] / den;
                    }
                }
                Attention::Softmax => {
                    let scores: Vec<f64> = (0..n)
                        .map(|jr| {
                            (0..dh).map(|a| q[c(i, a)] * k[c(jr, a)]).sum::<f64>()
                                / (dh as f64).sqrt()
                        })
                        .collect();
                    let mx = (0..n)
                        .filter(|&jr| mask[jr] > 0.0)
                        .map(|jr| scores[jr])
                        .fold(f64::NEG_INFINITY, f64::max);
                    if mx == f64::NEG_INFINITY {
                        continue;
                    }
                    let z: f64 = (0..n)
                        .filter(|&jr| mask[jr] > 0.0)
                        .map(|jr| (scores[jr] - mx).exp())
                        .sum();
                    for jr in (0..n).filter(|&jr| mask[jr] > 0.0) {
                        let wgt = (scores[jr] - mx).exp() / z;
                        for b in 0..dh {
                            out[c(i, b)] += wgt * v[c(jr, b)];
                        }
                    }
                }
            }
        }
    }
    out
}

fn dropout(x: &mut [f64], p: f64, key: Option<DropoutKey>) {
    if let Some(key) = key {
        for (e, v) in x.iter_mut().enumerate() {
            let keep = dropout_uniform(key, e as u64) as f64 >= p;
            *v = if keep { *v / (1.0 - p) } else { 0.0 };
        }
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

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Runs the f32 model on the tape: (yhat, g, loss, grads by name).
fn run_model(
    c: &Case,
    train: Option<TrainCtx>,
) -> (Vec<f32>, Vec<f32>, f32, Vec<(String, Vec<f32>)>) {
    let dev = Cpu;
    let mut params = Params::from_host(&dev, &c.tensors).unwrap();
    let model = EraTransformer::new(c.cfg.clone(), &params).unwrap();
    let mut tape = Tape::new();
    let inputs = EraInputs {
        x: tape.input(&dev, &c.x).unwrap(),
        mask: tape.input(&dev, &c.mask).unwrap(),
        y: tape.input(&dev, &c.y).unwrap(),
        n: c.n,
    };
    let out = model
        .forward(&dev, &mut tape, &params, &inputs, train)
        .unwrap();
    let yhat = tape.download(&dev, out.yhat).unwrap();
    let g = tape.download(&dev, out.g).unwrap();
    let parts = tape
        .loss(
            &dev,
            out.yhat,
            inputs.y,
            inputs.mask,
            out.g,
            c.cfg.lambda_sparsity,
            c.n,
            c.cfg.n_targets,
        )
        .unwrap();
    tape.backward(&dev, &mut params).unwrap();
    let grads = params
        .grads_to_host(&dev)
        .unwrap()
        .into_iter()
        .map(|(n, _, g)| (n, g))
        .collect();
    (yhat, g, parts.loss, grads)
}

fn check_case(c: &Case, train: Option<TrainCtx>) {
    let (yhat, g, loss, grads) = run_model(c, train);
    let p = to_p(&c.tensors);
    let (x, y, m) = (f64s(&c.x), f64s(&c.y), f64s(&c.mask));
    let (oy, og, oloss) = oracle(&c.cfg, &p, &x, &y, &m, c.n, train);
    for (i, (a, b)) in yhat.iter().zip(&oy).enumerate() {
        assert!(
            (*a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()),
            "yhat[{i}] {a} vs oracle {b}"
        );
    }
    for (a, b) in g.iter().zip(&og) {
        assert!((*a as f64 - b).abs() <= 1e-5, "gate {a} vs {b}");
    }
    assert!(
        (loss as f64 - oloss).abs() <= 1e-4 * (1.0 + oloss.abs()),
        "loss {loss} vs {oloss}"
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
            assert!(
                (ana - num).abs() <= 2e-3 * num.abs().max(1e-2),
                "d loss / d {name}[{e}]: tape {ana:.6e}, finite differences {num:.6e}"
            );
        }
    }
}

#[test]
fn model_matches_oracle_and_finite_differences_linear_attention() {
    check_case(&case(1, 7, 0, Attention::Linear, 2, 3, 0.0, false), None);
}

#[test]
fn model_gradients_with_dropout_padding_and_pos_enc() {
    let c = case(2, 6, 3, Attention::Linear, 4, 2, 0.25, true);
    check_case(&c, Some(TrainCtx { seed: 11, step: 5 }));
}

#[test]
fn model_gradients_softmax_attention_static_gate() {
    check_case(&case(3, 5, 2, Attention::Softmax, 1, 0, 0.0, false), None);
}

#[test]
fn model_gradients_one_row_era_heads_equal_d() {
    check_case(&case(4, 1, 0, Attention::Linear, 8, 2, 0.0, false), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    /// Padding rows (mask 0) never change real rows' outputs or any gradient.
    #[test]
    fn padded_rows_do_not_change_real_rows(seed in 0u64..1000, n in 1usize..9, pad in 1usize..5, soft in any::<bool>()) {
        let kind = if soft { Attention::Softmax } else { Attention::Linear };
        let padded = case(seed, n, pad, kind, 2, 2, 0.0, false);
        let mut plain = case(seed, n, pad, kind, 2, 2, 0.0, false);
        plain.n = n;
        plain.x.truncate(n * 5);
        plain.y.truncate(n * 2);
        plain.mask.truncate(n);
        let (ya, ga, la, gra) = run_model(&padded, None);
        let (yb, gb, lb, grb) = run_model(&plain, None);
        for i in 0..n * 2 {
            prop_assert!((ya[i] - yb[i]).abs() <= 1e-5 * (1.0 + yb[i].abs()), "yhat[{}] {} vs {}", i, ya[i], yb[i]);
        }
        for (x, y) in ga.iter().zip(&gb) {
            prop_assert!((x - y).abs() <= 1e-6, "gate {} vs {}", x, y);
        }
        prop_assert!((la - lb).abs() <= 1e-5 * (1.0 + lb.abs()));
        for ((name, a), (_, b)) in gra.iter().zip(&grb) {
            for (x, y) in a.iter().zip(b) {
                prop_assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "grad {} {} vs {}", name, x, y);
            }
        }
    }
}

#[test]
fn parameter_used_twice_gets_the_sum_over_paths() {
    // h = x W1ᵀ + b1, then the same linear map again: dW = sum of both uses.
    let dev = Cpu;
    let w: Vec<f32> = vec![0.5, -0.25, 0.75, 0.1];
    let b: Vec<f32> = vec![0.05, -0.02];
    let tensors = vec![
        ("l.weight".to_string(), vec![2, 2], w.clone()),
        ("l.bias".to_string(), vec![2], b.clone()),
    ];
    let mut params = Params::from_host(&dev, &tensors).unwrap();
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
    let mut tape: Tape<Cpu> = Tape::new();
    let xi = tape.input(&dev, &x).unwrap();
    let yi = tape.input(&dev, &y).unwrap();
    let mask = tape.input(&dev, &[1.0; 3]).unwrap();
    let g = tape.input(&dev, &[0.0]).unwrap();
    let h1 = tape.linear(&dev, &params, xi, wid, bid, 3, 2, 2).unwrap();
    let h2 = tape.linear(&dev, &params, h1, wid, bid, 3, 2, 2).unwrap();
    tape.loss(&dev, h2, yi, mask, g, 0.0, 3, 2).unwrap();
    tape.backward(&dev, &mut params).unwrap();
    let grads = params.grads_to_host(&dev).unwrap();
    for e in 0..4 {
        let (mut wp, mut wm) = (w.clone(), w.clone());
        wp[e] += 1e-3;
        wm[e] -= 1e-3;
        let num = (run(&wp, &b) - run(&wm, &b)) / 2e-3;
        assert!(
            (grads[0].2[e] as f64 - num).abs() < 1e-3,
            "dW[{e}] {} vs {num}",
            grads[0].2[e]
        );
    }
    // Backward twice on one recording is an error, not a wrong answer.
    let err = tape.backward(&dev, &mut params).unwrap_err();
    assert!(err.to_string().contains("backward called twice"), "{err}");
}

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
