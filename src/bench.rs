//! Timing of each op and of a whole training step (forward + loss + backward + Adam) on a device.
//! Used by `eraengine bench` and `benches/train_step.rs`.

use crate::device::Backend;
use crate::model::Config;
use crate::ops::elementwise::DropoutKey;
use crate::ops::gate::GateSelect;
use crate::params::Adam;
use crate::rng::Rng;
use crate::train::era::EraBatch;
use crate::train::{train_step_owned, TrainOptions, Trained};
use crate::Result;
use serde_json::{json, Value};
use std::time::Instant;

pub struct BenchReport {
    pub device: String,
    pub cfg: Config,
    pub rows: usize,
    /// Median wall time of a step.
    pub step_ms: f64,
    /// Process CPU time (user + system, every thread) per step over the timed steps; None where
    /// the OS does not report it.
    pub step_cpu_ms: Option<f64>,
    pub ops: Vec<(String, f64)>,
    pub flops_per_step: f64,
    /// Worker threads of the CPU ops.
    pub threads: usize,
    /// GPU backends: launches, syncs, allocations, bytes per steady-state step and the H100 estimate
    pub gpu: Option<Value>,
}

impl BenchReport {
    pub fn rows_per_s(&self) -> f64 {
        self.rows as f64 / (self.step_ms / 1e3)
    }
    pub fn gflops(&self) -> f64 {
        self.flops_per_step / (self.step_ms / 1e3) / 1e9
    }
    /// The SPEC §2 `bench --json` object; every key is built here (one place to add keys).
    pub fn to_json(&self) -> Value {
        let c = &self.cfg;
        let mut v = json!({
            "device": self.device,
            "config": {"rows": self.rows, "features": c.n_features, "d_model": c.d_model,
                       "heads": c.heads, "layers": c.layers, "d_ff": c.d_ff, "dropout": short_f64(c.dropout),
                       "attention": c.attention.as_str(), "context_dim": c.context_dim,
                       "corr_weight": short_f64(c.corr_weight)},
            "threads": self.threads,
            "step_ms": self.step_ms,
            "step_cpu_ms": self.step_cpu_ms,
            "rows_per_s": self.rows_per_s(),
            "flops_per_step": self.flops_per_step,
            "gflops": self.gflops(),
            "ops": self.ops.iter().map(|(n, ms)| json!({"name": n, "ms": ms})).collect::<Vec<_>>(),
        });
        crate::gpu::stats::merge_json(&mut v, self.gpu.as_ref());
        v
    }
    pub fn table(&self) -> String {
        let mut s = format!(
            "device {}  rows {}  features {}  d_model {}  heads {}  layers {}  dropout {}  \
             era context {}  corr weight {}\n",
            self.device,
            self.rows,
            self.cfg.n_features,
            self.cfg.d_model,
            self.cfg.heads,
            self.cfg.layers,
            self.cfg.dropout,
            self.cfg.context_dim,
            self.cfg.corr_weight
        );
        s += &format!("{:<28} {:>10}\n", "op", "ms");
        for (n, ms) in &self.ops {
            s += &format!("{n:<28} {ms:>10.3}\n");
        }
        s += &format!(
            "{:<28} {:>10.3}   ({:.0} rows/s, {:.2} GFLOP/s)\n",
            "train step (fwd+bwd+adam)",
            self.step_ms,
            self.rows_per_s(),
            self.gflops()
        );
        if let Some(cpu) = self.step_cpu_ms {
            s += &format!(
                "{:<28} {:>10.3}   ({} threads)\n",
                "  cpu time per step", cpu, self.threads
            );
        }
        s
    }
}

/// Flops of one training step: 6·n·(m·k) per linear map (forward 2, backward 4), and attention
/// at forward + backward ≈ 3 × forward (linear: S and φ(Q)ᵀS, 4·d·dh per row forward; softmax:
/// QKᵀ and PV, 4·n·d per row forward, backward 2.5 × forward as in flash attention).
pub fn step_flops(cfg: &Config, n: usize) -> f64 {
    let (f, d, dff, t) = (
        cfg.n_features as f64,
        cfg.d_model as f64,
        cfg.d_ff as f64,
        cfg.n_targets as f64,
    );
    let n = n as f64;
    let dh = d / cfg.heads as f64;
    let per_layer = 4.0 * d * d + 2.0 * d * dff;
    let lin = f * d + d * d + cfg.layers as f64 * per_layer + d * d + d * t;
    let layers = cfg.layers as f64;
    let attn = match cfg.attention {
        crate::model::Attention::Linear => layers * 3.0 * 4.0 * n * d * dh,
        crate::model::Attention::Softmax => layers * 3.5 * 4.0 * n * n * d,
        // two cross-attentions of n·M pairs, and the iq, ik, iv maps on the M points
        crate::model::Attention::Induced => {
            let m = cfg.inducing as f64;
            layers * (2.0 * 3.5 * 4.0 * n * m * d + 3.0 * 6.0 * m * d * d)
        }
    };
    6.0 * n * lin + attn
}

/// CPU time (user + system, all threads) of this process in ms, from /proc/self/stat; None
/// where that file is missing or unreadable.
pub fn process_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut it = rest.split_whitespace().skip(11);
    let ut: f64 = it.next()?.parse().ok()?;
    let st: f64 = it.next()?.parse().ok()?;
    // USER_HZ is 100 on every Linux ABI
    Some((ut + st) * 10.0)
}

/// Median wall time in ms of `reps` runs of `f` after one warm-up run.
pub fn time_ms(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    time_prepared_ms(reps, || Ok(()), |()| f())
}

/// Median wall time in ms of `reps` runs of `f` after one warm-up run, each given what `prep`
/// made for it before its clock started.
pub fn time_prepared_ms<S>(
    reps: usize,
    mut prep: impl FnMut() -> Result<S>,
    mut f: impl FnMut(S) -> Result<()>,
) -> Result<f64> {
    f(prep()?)?;
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let s = prep()?;
        let t = Instant::now();
        f(s)?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Ok(v[v.len() / 2])
}

/// A copy of `b` for one training step, its x in a pooled buffer as the era loader makes it, or
/// without x (`with_x` false) as the loader makes it for a device that takes the codes.
fn step_copy(b: &EraBatch, with_x: bool) -> EraBatch {
    let x = if with_x {
        let mut x = crate::device::cpu_pool::take_any(b.x.len());
        x.copy_from_slice(&b.x);
        x
    } else {
        Vec::new()
    };
    EraBatch {
        name: b.name.clone(),
        x,
        codes: b.codes.clone(),
        y: b.y.clone(),
        mask: b.mask.clone(),
        col_sums: b.col_sums.clone(),
        stats: b.stats.clone(),
        ..*b
    }
}

/// A random era of `n` rows and `f` features with one target, all rows real.
pub fn random_era(n: usize, f: usize, seed: u64) -> EraBatch {
    let mut rng = Rng::new(seed, 77);
    let codes: Vec<u8> = (0..n * f).map(|_| (rng.next_u32() % 5) as u8).collect();
    let y = (0..n).map(|_| (rng.next_u32() % 5) as f32 / 4.0).collect();
    EraBatch::from_codes("bench".into(), n, f, 1, &codes, y)
}

/// Times each op at the model's shapes and a full training step.
pub fn run<B: Backend>(dev: &B, cfg: Config, n: usize, reps: usize) -> Result<BenchReport> {
    let (f, d, h, r, dff) = (
        cfg.n_features,
        cfg.d_model,
        cfg.heads,
        cfg.gate_rank,
        cfg.d_ff,
    );
    let mut rng = Rng::new(1, 2);
    let mut rand = |len: usize| -> Result<B::Buf> {
        let v: Vec<f32> = (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect();
        dev.upload(&v)
    };
    let (x, w_dd, b_d, h1, h2) = (
        rand(n * f)?,
        rand(d * d)?,
        rand(d)?,
        rand(n * d)?,
        rand(n * d)?,
    );
    let (gw, ga, gb) = (rand(f)?, rand(f * r.max(1))?, rand(f * r.max(1))?);
    let mask = dev.upload(&vec![1.0; n])?;
    let mut out = dev.zeros(n * d)?;
    let mut dinp = dev.zeros(n * d)?;
    let mut dw = dev.zeros(d * d)?;
    let mut db = dev.zeros(d)?;
    let mut ops = Vec::new();
    ops.push((
        "linear_fwd [n,d]x[d,d]".to_string(),
        time_ms(reps, || {
            dev.linear_fwd(&mut out, &h1, &w_dd, Some(&b_d), n, d, d)
        })?,
    ));
    ops.push((
        "linear_bwd [n,d]x[d,d]".to_string(),
        time_ms(reps, || {
            dev.linear_bwd(
                Some(&mut dinp),
                &mut dw,
                Some(&mut db),
                &h2,
                &h1,
                &w_dd,
                n,
                d,
                d,
            )
        })?,
    ));
    let (mut dq, mut dk, mut dv) = (dev.zeros(n * d)?, dev.zeros(n * d)?, dev.zeros(n * d)?);
    if cfg.attention == crate::model::Attention::Linear {
        let (mut s, mut z) = (dev.zeros(h * (d / h) * (d / h))?, dev.zeros(d)?);
        ops.push((
            "linear_attention_fwd".to_string(),
            time_ms(reps, || {
                dev.linear_attention_fwd(&mut out, &mut s, &mut z, &h1, &h2, &h1, &mask, n, d, h)
            })?,
        ));
        ops.push((
            "linear_attention_bwd".to_string(),
            time_ms(reps, || {
                dev.linear_attention_bwd(
                    &mut dq, &mut dk, &mut dv, &h2, &h1, &h2, &h1, &mask, &s, &z, n, d, h,
                )
            })?,
        ));
    } else if cfg.attention == crate::model::Attention::Softmax {
        let mut lse = dev.zeros(h * n)?;
        ops.push((
            "softmax_attention_fwd".to_string(),
            time_ms(reps, || {
                dev.softmax_attention_fwd(&mut out, &mut lse, &h1, &h2, &h1, &mask, n, n, d, h)
            })?,
        ));
        ops.push((
            "softmax_attention_bwd".to_string(),
            time_ms(reps, || {
                dev.softmax_attention_bwd(
                    &mut dq, &mut dk, &mut dv, &h2, &out, &lse, &h1, &h2, &h1, &mask, n, n, d, h,
                )
            })?,
        ));
    } else {
        // induced: the M points over the n rows, then the n rows over the M results
        let m = cfg.inducing;
        let (hm, mut om) = (rand(m * d)?, dev.zeros(m * d)?);
        let (mut lse_m, mut lse_n) = (dev.zeros(h * m)?, dev.zeros(h * n)?);
        let ones_m = dev.upload(&vec![1.0; m])?;
        let (mut dqm, mut dkm, mut dvm) = (dev.zeros(m * d)?, dev.zeros(m * d)?, dev.zeros(m * d)?);
        ops.push((
            "softmax_attention_fwd (M over n, n over M)".to_string(),
            time_ms(reps, || {
                dev.softmax_attention_fwd(&mut om, &mut lse_m, &hm, &h2, &h1, &mask, m, n, d, h)?;
                dev.softmax_attention_fwd(&mut out, &mut lse_n, &h1, &hm, &om, &ones_m, n, m, d, h)
            })?,
        ));
        ops.push((
            "softmax_attention_bwd (M over n, n over M)".to_string(),
            time_ms(reps, || {
                dev.softmax_attention_bwd(
                    &mut dq, &mut dkm, &mut dvm, &h2, &out, &lse_n, &h1, &hm, &om, &ones_m, n, m,
                    d, h,
                )?;
                dev.softmax_attention_bwd(
                    &mut dqm, &mut dk, &mut dv, &dkm, &om, &lse_m, &hm, &h2, &h1, &mask, m, n, d, h,
                )
            })?,
        ));
    }
    let (mut mean, mut rstd) = (dev.zeros(n)?, dev.zeros(n)?);
    ops.push((
        "layer_norm_fwd".to_string(),
        time_ms(reps, || {
            dev.layer_norm_fwd(&mut out, &mut mean, &mut rstd, &h1, &b_d, &b_d, n, d)
        })?,
    ));
    let (mut dg_, mut db_) = (dev.zeros(d)?, dev.zeros(d)?);
    ops.push((
        "layer_norm_bwd".to_string(),
        time_ms(reps, || {
            dev.layer_norm_bwd(
                &mut dinp, &mut dg_, &mut db_, &h2, &h1, &mean, &rstd, &b_d, n, d,
            )
        })?,
    ));
    let mut ff = dev.zeros(n * dff)?;
    let ffin = rand(n * dff)?;
    ops.push((
        "gelu_fwd [n,d_ff]".to_string(),
        time_ms(reps, || dev.gelu_fwd(&mut ff, &ffin))?,
    ));
    let key = DropoutKey {
        seed: 1,
        step: 1,
        tensor: 0,
    };
    ops.push((
        "dropout_fwd [n,d]".to_string(),
        time_ms(reps, || dev.dropout_fwd(&mut out, &h1, 0.1, key))?,
    ));
    let (mut xt, mut g, mut keep, mut xbar, mut u) = (
        dev.zeros(n * f)?,
        dev.zeros(f)?,
        dev.zeros(f)?,
        dev.zeros(f)?,
        dev.zeros(r.max(1))?,
    );
    ops.push((
        "gate_fwd".to_string(),
        time_ms(reps, || {
            dev.gate_fwd(
                Some(&mut xt),
                &mut g,
                &mut keep,
                &mut xbar,
                &mut u,
                &x,
                &mask,
                None,
                &gw,
                &ga,
                &gb,
                GateSelect::Threshold(0.0),
                n,
                f,
                r,
            )
        })?,
    ));
    // A whole step on the real model.
    let mut m = Trained::fresh(dev, &cfg, 0)?;
    if cfg.context_dim > 0 {
        // the era statistics' normalisation a run fits on its training eras: the identity here
        m.context = Some(crate::train::context::ContextNorm {
            mean: vec![0.0; 2 * f],
            std: vec![1.0; 2 * f],
        });
    }
    let mut adam = Adam::new(dev, &m.params, 1e-3, 0.0)?;
    let mut batch = random_era(n, f, 3);
    if cfg.context_dim > 0 {
        // as the training loop's loader thread finds them, off the step's clock
        batch.keep_context_stats();
    }
    let opts = TrainOptions {
        epochs: 1,
        seed: 0,
        lr: 1e-3,
        weight_decay: 0.0,
        clip: 1.0,
        max_steps: None,
        patience: 0,
        threshold_warmup: 0,
        out: None,
        grads_out: None,
        quiet: true,
        resume: None,
        ..TrainOptions::default()
    };
    let mut step = 0u64;
    let mut cpu0 = None;
    let mut after_first = crate::gpu::stats::snapshot();
    // Each step trains on its own copy of the era, made before its clock starts, which moves
    // onto the tape as in the training loop (eras come from the loader thread, the step copies
    // nothing; the CPU time below includes the copies: the codes, and x unless the device takes
    // the codes, which never reads x, as the training loader makes none for it). The clock stops
    // when the device is done: a GPU step returns with its backward still queued, which would
    // otherwise run during the next copy, off the clock.
    let with_x = !dev.prefers_codes() || batch.codes.is_none();
    let step_ms = time_prepared_ms(
        reps,
        || Ok(step_copy(&batch, with_x)),
        |b| {
            if step == 1 {
                // the warm-up step is done: time the rest
                cpu0 = process_cpu_ms();
            }
            step += 1;
            let r = train_step_owned(dev, &mut m, &mut adam, b, &opts, step)
                .and_then(|_| dev.wait_idle());
            if step == 1 {
                after_first = crate::gpu::stats::snapshot();
            }
            r
        },
    )?;
    let timed = reps.max(1) as f64;
    let step_cpu_ms = cpu0.zip(process_cpu_ms()).map(|(a, b)| (b - a) / timed);
    let gpu = crate::gpu::stats::steady_json(&dev.name(), &after_first, step - 1, step - 1);
    Ok(BenchReport {
        device: dev.name(),
        flops_per_step: step_flops(&cfg, n),
        cfg,
        rows: n,
        step_ms,
        step_cpu_ms,
        ops,
        threads: crate::ops::par::threads(),
        gpu,
    })
}

/// An f32 as the f64 with the same shortest decimal form (0.1, not 0.10000000149011612).
fn short_f64(x: f32) -> f64 {
    format!("{x}").parse().unwrap_or(x as f64)
}
