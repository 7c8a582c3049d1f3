//! Adam / AdamW (decoupled weight decay) and global-norm gradient clipping.
//! m = β1 m + (1−β1) g'; v = β2 v + (1−β2) g'²; p −= lr (m̂ / (√v̂ + ε) + wd · p), g' = g · scale.
//!
//! m̂ = m / (1 − β1^step), v̂ = v / (1 − β2^step); step 0 is treated as step 1.

use super::par;
use super::shape::expect_all;
use crate::Result;

pub(crate) mod gpu;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamArgs {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1-based step count, for bias correction
    pub step: u32,
    /// multiplies every gradient (global-norm clipping: min(1, clip / norm))
    pub grad_scale: f32,
}

pub fn adam_step(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], args: &AdamArgs) {
    let len = p.len().min(g.len()).min(m.len()).min(v.len());
    if len == 0 {
        return;
    }
    let step = args.step.max(1) as i32;
    let bc1 = (1.0 - (args.beta1 as f64).powi(step)) as f32;
    let bc2 = (1.0 - (args.beta2 as f64).powi(step)) as f32;
    let a = *args;
    let chunk = par::chunk_rows(len, 16);
    let items = p[..len]
        .chunks_mut(chunk)
        .zip(m[..len].chunks_mut(chunk))
        .zip(v[..len].chunks_mut(chunk))
        .zip(g[..len].chunks(chunk));
    par::run(items, |(((pc, mc), vc), gc)| {
        for (((pv, mv), vv), &gv) in pc.iter_mut().zip(mc).zip(vc).zip(gc) {
            let gs = gv * a.grad_scale;
            *mv = a.beta1 * *mv + (1.0 - a.beta1) * gs;
            *vv = a.beta2 * *vv + (1.0 - a.beta2) * gs * gs;
            let mhat = *mv / bc1;
            let vhat = *vv / bc2;
            *pv -= a.lr * (mhat / (vhat.sqrt() + a.eps) + a.weight_decay * *pv);
        }
    });
}

/// Σ g² in f64.
pub fn sum_squares(g: &[f32]) -> f64 {
    g.iter().map(|&x| x as f64 * x as f64).sum()
}

/// The gradient scale of one clipped step from every tensor's Σg² (f64, in tensor order), or None
/// when one is not finite (the step must not be taken). `eras` gradients were summed: the clip
/// bounds the norm of their mean, and the scale includes the 1/`eras` of that mean (exactly 1/1
/// for one era). `kernels/optim.cu`'s `clip_scale_fwd_f32` does these operations in this order.
pub fn clip_scale(sums: &[f64], clip: f32, eras: usize) -> Option<f32> {
    let mut total = 0.0f64;
    for &s in sums {
        if !s.is_finite() {
            return None;
        }
        total += s;
    }
    let k = eras.max(1) as f64;
    let mean_norm = total.sqrt() / k;
    let c = if clip > 0.0 && mean_norm > clip as f64 {
        (clip as f64 / mean_norm) as f32
    } else {
        1.0
    };
    Some(if eras <= 1 { c } else { c / eras as f32 })
}

/// Shape rule of the Adam step on every device: g, m, v as long as p.
pub fn check_adam(p: usize, g: usize, m: usize, v: usize) -> Result<()> {
    expect_all("adam_step", &[("g", g), ("m", m), ("v", v)], p)
}
