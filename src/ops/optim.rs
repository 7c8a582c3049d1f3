//! Adam / AdamW (decoupled weight decay) and global-norm gradient clipping.
//! m = β1 m + (1−β1) g'; v = β2 v + (1−β2) g'²; p −= lr (m̂ / (√v̂ + ε) + wd · p), g' = g · scale.

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
    todo!()
}

/// Σ g² in f64.
pub fn sum_squares(g: &[f32]) -> f64 {
    todo!()
}
