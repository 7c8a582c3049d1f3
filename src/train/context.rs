//! The era context's standardisation (docs/model.md, "Era context and FiLM"): per-component mean
//! and standard deviation of the era statistics over the training eras, kept in the checkpoint as
//! the tensors `context.mean` and `context.std` (not trained), and the standardised, optionally
//! noised input s̃ that the model compresses.

use super::era::{ColumnMap, EraBatch, EraSource};
use super::Trained;
use crate::data::Store;
use crate::device::Backend;
use crate::model::{Config, EraInputs};
use crate::rng::Rng;
use crate::tape::Tape;
use crate::{Error, Result};

/// A model with an era context needs its standardisation, of length 2F.
pub fn check(cfg: &Config, norm: Option<&ContextNorm>) -> Result<()> {
    if cfg.context_dim == 0 {
        return Ok(());
    }
    match norm {
        Some(c) if c.mean.len() == 2 * cfg.n_features && c.std.len() == 2 * cfg.n_features => Ok(()),
        _ => Err(Error::shape(format!(
            "the model has an era context: tensors '{MEAN_TENSOR}' and '{STD_TENSOR}' of length {} are needed",
            2 * cfg.n_features
        ))),
    }
}

/// Checkpoint names of the standardisation (`crate::model::buffer_specs`).
pub const MEAN_TENSOR: &str = "context.mean";
pub const STD_TENSOR: &str = "context.std";
/// Added to the standard deviation before dividing (docs/model.md).
pub const STD_FLOOR: f32 = 1e-3;

#[derive(Clone, Debug, PartialEq)]
pub struct ContextNorm {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl ContextNorm {
    /// Mean and std (ddof 0) of each era statistic over the store's eras that have real rows
    /// (read from each era's codes: x is never made).
    pub fn fit(store: &Store, map: &ColumnMap) -> Result<Self> {
        Self::fit_with(store, store.n_eras(), |i| {
            EraBatch::load_codes(store, i, map)
        })
    }

    /// [`ContextNorm::fit`] over every era of a training source.
    pub fn fit_source(src: &EraSource) -> Result<Self> {
        Self::fit_with(src.first(), src.n_eras(), |i| src.load_codes(i))
    }

    fn fit_with(
        store: &Store,
        n_eras: usize,
        load: impl Fn(usize) -> Result<EraBatch>,
    ) -> Result<Self> {
        let mut sum: Vec<f64> = Vec::new();
        let mut sq: Vec<f64> = Vec::new();
        let mut eras = 0f64;
        for i in 0..n_eras {
            let b = load(i)?;
            if b.n == 0 {
                continue;
            }
            let s = b.context_stats();
            if sum.is_empty() {
                sum = vec![0.0; s.len()];
                sq = vec![0.0; s.len()];
            }
            for ((a, q), &v) in sum.iter_mut().zip(sq.iter_mut()).zip(&s) {
                *a += v as f64;
                *q += v as f64 * v as f64;
            }
            eras += 1.0;
        }
        if eras == 0.0 {
            return Err(Error::usage(format!(
                "{}: no era with rows to fit the era context on",
                store.path().display()
            )));
        }
        let mean: Vec<f64> = sum.iter().map(|a| a / eras).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| ((q / eras - m * m).max(0.0)).sqrt() as f32)
            .collect();
        Ok(ContextNorm {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        })
    }

    /// s̃ = (s − M) / (D + 1e-3), plus ν·N(0, 1) noise in training (keyed by seed and step).
    pub fn input(&self, batch: &EraBatch, noise: Option<(f32, u64, u64)>) -> Result<Vec<f32>> {
        let s = batch.context_stats();
        if s.len() != self.mean.len() {
            return Err(Error::shape(format!(
                "era context: {} statistics, the model was fitted on {}",
                s.len(),
                self.mean.len()
            )));
        }
        let mut out: Vec<f32> = s
            .iter()
            .zip(&self.mean)
            .zip(&self.std)
            .map(|((&v, &m), &d)| (v - m) / (d + STD_FLOOR))
            .collect();
        if let Some((nu, seed, step)) = noise {
            if nu > 0.0 {
                let mut rng = Rng::new(seed ^ step.wrapping_mul(0xD6E8_FEB8_6659_FD93), 1000);
                for v in out.iter_mut() {
                    *v += nu * rng.normal();
                }
            }
        }
        Ok(out)
    }

    /// The two checkpoint tensors.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        vec![
            (MEAN_TENSOR.into(), vec![self.mean.len()], self.mean.clone()),
            (STD_TENSOR.into(), vec![self.std.len()], self.std.clone()),
        ]
    }

    /// Splits `context.mean` / `context.std` out of checkpoint tensors.
    #[allow(clippy::type_complexity)]
    pub fn split(
        tensors: &[(String, Vec<usize>, Vec<f32>)],
    ) -> (Option<Self>, Vec<(String, Vec<usize>, Vec<f32>)>) {
        let find = |n: &str| tensors.iter().find(|t| t.0 == n).map(|t| t.2.clone());
        let norm = match (find(MEAN_TENSOR), find(STD_TENSOR)) {
            (Some(mean), Some(std)) => Some(ContextNorm { mean, std }),
            _ => None,
        };
        let rest = tensors
            .iter()
            .filter(|t| t.0 != MEAN_TENSOR && t.0 != STD_TENSOR)
            .cloned()
            .collect();
        (norm, rest)
    }
}

impl<B: Backend> Trained<B> {
    /// The era's inputs on the tape, with the standardised era statistics when the model has an
    /// era context (noised in training, when `train` gives (seed, step)).
    pub fn inputs(
        &self,
        dev: &B,
        tape: &mut Tape<B>,
        batch: &EraBatch,
        train: Option<(u64, u64)>,
    ) -> Result<EraInputs> {
        let ctx = self.context_input(batch, train)?;
        let inputs = batch.to_tape(dev, tape)?;
        self.with_context(dev, tape, inputs, ctx)
    }

    /// [`Trained::inputs`] of an era the caller is done with: its features move onto the tape
    /// ([`EraBatch::move_to_tape`]); `batch.x` is left empty.
    pub fn inputs_owned(
        &self,
        dev: &B,
        tape: &mut Tape<B>,
        batch: &mut EraBatch,
        train: Option<(u64, u64)>,
    ) -> Result<EraInputs> {
        let ctx = self.context_input(batch, train)?;
        let inputs = batch.move_to_tape(dev, tape)?;
        self.with_context(dev, tape, inputs, ctx)
    }

    /// The era context input (host values), when the model has one.
    fn context_input(
        &self,
        batch: &EraBatch,
        train: Option<(u64, u64)>,
    ) -> Result<Option<Vec<f32>>> {
        match (self.model.cfg.context_dim > 0, &self.context) {
            (true, Some(c)) => {
                let noise = train.map(|(seed, step)| (self.model.cfg.context_noise, seed, step));
                Ok(Some(c.input(batch, noise)?))
            }
            _ => Ok(None),
        }
    }

    /// `inputs` with the era context `ctx` on the tape (after the era's own inputs).
    fn with_context(
        &self,
        dev: &B,
        tape: &mut Tape<B>,
        mut inputs: EraInputs,
        ctx: Option<Vec<f32>>,
    ) -> Result<EraInputs> {
        if let Some(s) = ctx {
            inputs.ctx = Some(tape.input(dev, &s)?);
        }
        Ok(inputs)
    }
}
