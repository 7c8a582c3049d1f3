//! The head blend (`train --head-blend`, docs/model.md "Head blend"): the written model's output 0
//! becomes a weighted sum of its target heads, ŷ₀' = Σ_k w_k ŷ_k with w₀ = 1, the weights chosen on
//! the validation eras by the early-stopped model, which never trained on them.
//!
//! Every head reads the same trunk, and the auxiliary targets are noisy views of nearly the same
//! signal (on Numerai: other horizons and residualisations of the target), so adding their heads to
//! output 0 averages out part of each head's own estimation error: a target ensemble at no training
//! cost. The sum is folded into the final layer (`head.1.weight` row 0 and `head.1.bias[0]`), so
//! output 0 stays the prediction as SPEC §3 writes it, and `predict`, ensembles and the PyTorch
//! twin need nothing new.
//!
//! The search is a greedy coordinate ascent over [`GRID`] for w₁ … w_{T−1} (two sweeps, a change
//! kept only when it raises the validation mean corr), starting from w = (1, 0, …, 0), so with one
//! target, or when no blend beats output 0 alone on the validation eras, nothing changes.

use super::era::ColumnMap;
use super::outputs::era_corrs;
pub use super::outputs::EraOutputs;
use super::Trained;
pub use crate::checkpoint::describe_blend as describe;
use crate::checkpoint::Checkpoint;
use crate::data::store::Store;
use crate::device::Backend;
use crate::{Error, Result};

/// The weights each auxiliary head may take.
pub const GRID: [f32; 4] = [0.0, 0.25, 0.5, 1.0];

/// Coordinate sweeps over the auxiliary heads.
pub const SWEEPS: usize = 2;

/// Every head's output on each era of `store` that has a target 0, from the model in `ck`.
pub fn outputs<B: Backend>(dev: &B, ck: &Checkpoint, store: &Store) -> Result<Vec<EraOutputs>> {
    let m = Trained::from_checkpoint(dev, ck)?;
    m.era_outputs(
        dev,
        store,
        &ColumnMap::for_model(store, &ck.features, &ck.targets)?,
    )
}

/// Mean per-era `numerai_corr` of Σ_k w_k ŷ_k against target 0 (eras without a score skipped; 0
/// when none scores).
pub fn score(eras: &[EraOutputs], w: &[f32]) -> f64 {
    let c = era_corrs(eras, w);
    if c.is_empty() {
        0.0
    } else {
        c.iter().sum::<f64>() / c.len() as f64
    }
}

/// The chosen blend: weights (w₀ = 1), and the validation mean corr of output 0 alone and of the
/// blend (the second is in-sample for the choice).
#[derive(Clone, Debug, PartialEq)]
pub struct Blend {
    pub weights: Vec<f32>,
    pub plain: f64,
    pub blended: f64,
}

impl Blend {
    /// Whether the blend changes output 0.
    pub fn is_identity(&self) -> bool {
        is_identity(&self.weights)
    }
}

/// Whether weights `w` leave output 0 as it is: (1, 0, …, 0).
pub fn is_identity(w: &[f32]) -> bool {
    w.first() == Some(&1.0) && w.iter().skip(1).all(|&x| x == 0.0)
}

/// Greedy coordinate ascent over [`GRID`] (module doc) for a model with `t` targets.
pub fn choose(eras: &[EraOutputs], t: usize) -> Blend {
    let mut w = vec![0.0f32; t.max(1)];
    w[0] = 1.0;
    let plain = score(eras, &w);
    let mut best = plain;
    for _ in 0..SWEEPS {
        for k in 1..t {
            for g in GRID {
                if g == w[k] {
                    continue;
                }
                let mut c = w.clone();
                c[k] = g;
                let s = score(eras, &c);
                if s > best {
                    best = s;
                    w = c;
                }
            }
        }
    }
    Blend {
        weights: w,
        plain,
        blended: best,
    }
}

/// Folds the blend into the final layer: row 0 of `head.1.weight` [T, d] and `head.1.bias[0]`
/// become Σ_k w_k times row k and bias k, so output 0 is Σ_k w_k ŷ_k exactly (up to f32 rounding).
pub fn fold(ck: &mut Checkpoint, w: &[f32]) -> Result<()> {
    let t = ck.config.n_targets;
    if w.len() != t {
        return Err(Error::usage(format!(
            "a head blend needs {t} weights (one per target), got {}",
            w.len()
        )));
    }
    for name in ["head.1.weight", "head.1.bias"] {
        let (_, shape, v) = ck
            .tensors
            .iter_mut()
            .find(|(n, _, _)| n == name)
            .ok_or_else(|| Error::usage(format!("the checkpoint has no tensor '{name}'")))?;
        let cols = if shape.len() == 2 { shape[1] } else { 1 };
        if shape.first() != Some(&t) || v.len() != t * cols {
            return Err(Error::usage(format!(
                "'{name}' has shape {shape:?}, not [{t}, ...]"
            )));
        }
        let row0: Vec<f32> = (0..cols)
            .map(|j| (0..t).map(|k| w[k] * v[k * cols + j]).sum())
            .collect();
        v[..cols].copy_from_slice(&row0);
    }
    Ok(())
}
