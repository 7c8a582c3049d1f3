//! One optimizer step, split so several eras can share it (`--eras-per-step K`):
//! `accumulate` runs forward, loss and backward for one era and adds its gradients (`+=`) into the
//! parameter gradients; `apply` checks, clips and takes one Adam step with what was accumulated
//! (the caller zeroes the gradients before each group).
//!
//! Loss scaling: each era's loss is its usual per-era mean (every era weighs the same whatever its
//! row count). The K eras' gradients are summed on the device and multiplied by 1/K inside the Adam
//! step (its `grad_scale`), so Adam sees the mean gradient of the group and `--clip` bounds the norm
//! of that mean. With K = 1 the scale is exactly 1 and the step is the one-era step bit for bit.

use super::era::EraBatch;
use super::{TrainOptions, Trained};
use crate::device::Backend;
use crate::model::TrainCtx;
use crate::ops::corr_loss::CorrParts;
use crate::ops::loss::LossParts;
use crate::params::Adam;
use crate::tape::Tape;
use crate::{Error, Result};

/// Forward + loss + backward for one era, adding its gradients into `m.params.grads`.
/// `step` keys the dropout masks. Returns the loss parts and the gate values.
///
/// The step's one host wait is the loss read-back: it also brings back the correlation loss's
/// value, the gate values and the previous Adam step's gradient norms (checked here, see
/// [`Adam::check_pending`]).
pub fn accumulate<B: Backend>(
    dev: &B,
    m: &mut Trained<B>,
    adam: &mut Adam<B>,
    batch: &EraBatch,
    seed: u64,
    step: u64,
) -> Result<(LossParts, Vec<f32>)> {
    let mut tape = Tape::new();
    let inputs = m.inputs(dev, &mut tape, batch, Some((seed, step)))?;
    accumulate_on(dev, m, adam, tape, inputs, batch.n, seed, step)
}

/// [`accumulate`] on an era the caller is done with (the training loop's): its features move
/// onto the tape instead of being copied there ([`Trained::inputs_owned`]).
pub fn accumulate_owned<B: Backend>(
    dev: &B,
    m: &mut Trained<B>,
    adam: &mut Adam<B>,
    mut batch: EraBatch,
    seed: u64,
    step: u64,
) -> Result<(LossParts, Vec<f32>)> {
    let mut tape = Tape::new();
    let inputs = m.inputs_owned(dev, &mut tape, &mut batch, Some((seed, step)))?;
    accumulate_on(dev, m, adam, tape, inputs, batch.n, seed, step)
}

/// [`accumulate`] from the era's inputs on `tape` (`n` rows).
#[allow(clippy::too_many_arguments)]
fn accumulate_on<B: Backend>(
    dev: &B,
    m: &mut Trained<B>,
    adam: &mut Adam<B>,
    mut tape: Tape<B>,
    inputs: crate::model::EraInputs,
    n: usize,
    seed: u64,
    step: u64,
) -> Result<(LossParts, Vec<f32>)> {
    let ctx = TrainCtx {
        seed,
        step: step as u32,
    };
    let out = m
        .model
        .forward(dev, &mut tape, &m.params, &inputs, Some(ctx))?;
    let cfg = &m.model.cfg;
    // The per-era correlation loss w · (1 − corr) (docs/model.md), recorded before the MSE loss,
    // which stays the root of the tape.
    let corr = if cfg.corr_weight > 0.0 {
        Some(tape.corr_loss(
            dev,
            out.yhat,
            inputs.y,
            inputs.mask,
            cfg.corr_weight,
            n,
            cfg.n_targets,
        )?)
    } else {
        None
    };
    // The orthogonal-embedding loss w · ‖C − I‖²_F / d² over the final hidden states
    // (docs/model.md), also before the root.
    let ortho = if cfg.ortho_weight > 0.0 {
        Some(tape.ortho_loss(
            dev,
            out.hidden,
            inputs.mask,
            cfg.ortho_weight,
            n,
            cfg.d_model,
        )?)
    } else {
        None
    };
    let pending: Vec<&B::Buf> = adam.pending_sums().into_iter().collect();
    let mut parts = tape.loss_with(
        dev,
        out.yhat,
        inputs.y,
        inputs.mask,
        out.sparsity,
        cfg.lambda_sparsity,
        n,
        cfg.n_targets,
        &corr.into_iter().collect::<Vec<_>>(),
        &pending,
    )?;
    adam.check_pending(dev, &m.params)?;
    if let Some(c) = corr {
        let c = CorrParts::from_host(&tape.download(dev, c)?)?;
        parts.loss += cfg.corr_weight * (1.0 - c.corr);
    }
    if let Some(o) = ortho {
        parts.ortho = o;
        parts.loss += cfg.ortho_weight * o;
    }
    if !parts.loss.is_finite() {
        return Err(Error::Numeric {
            step,
            tensor: "loss".into(),
            msg: format!(
                "loss is {} (mse {}, sparsity {}, ortho {})",
                parts.loss, parts.mse, parts.sparsity, parts.ortho
            ),
        });
    }
    let g = tape.download(dev, out.g)?;
    tape.backward(dev, &mut m.params)?;
    tape.release(dev);
    Ok((parts, g))
}

/// One clipped Adam step with the gradients of `eras` accumulated eras (mean gradient, see the
/// module doc). The gradients stay (for `--grads-out`); zero them before the next group.
/// `step` names the step in errors.
pub fn apply<B: Backend>(
    dev: &B,
    m: &mut Trained<B>,
    adam: &mut Adam<B>,
    clip: f32,
    eras: usize,
    step: u64,
) -> Result<()> {
    adam.clipped_update(dev, &mut m.params, clip, eras, step)
}

/// Forward + loss + backward + clipped Adam for one era. Returns the loss parts and the gate values.
pub fn train_step<B: Backend>(
    dev: &B,
    m: &mut Trained<B>,
    adam: &mut Adam<B>,
    batch: &EraBatch,
    opts: &TrainOptions,
    step: u64,
) -> Result<(LossParts, Vec<f32>)> {
    m.params.zero_grads(dev)?;
    let (parts, g) = accumulate(dev, m, adam, batch, opts.seed, step)?;
    apply(dev, m, adam, opts.clip, 1, step)?;
    Ok((parts, g))
}

/// [`train_step`] on an era the caller is done with ([`accumulate_owned`]: the training loop's
/// step, which copies nothing of the era on the CPU).
pub fn train_step_owned<B: Backend>(
    dev: &B,
    m: &mut Trained<B>,
    adam: &mut Adam<B>,
    batch: EraBatch,
    opts: &TrainOptions,
    step: u64,
) -> Result<(LossParts, Vec<f32>)> {
    m.params.zero_grads(dev)?;
    let (parts, g) = accumulate_owned(dev, m, adam, batch, opts.seed, step)?;
    apply(dev, m, adam, opts.clip, 1, step)?;
    Ok((parts, g))
}
