//! The autograd tape (micrograd's habit): ops are recorded in execution order as plain enum
//! records; `backward` walks the record in reverse, so the reversed record is a valid topological
//! order. Every backward accumulates (`+=`) into gradient buffers, so a tensor used twice gets the
//! sum over its paths. Once a node's backward has run, the tensors it produced (activations, saved
//! statistics, their gradients) are freed.
//!
//! The core types live in [`base`]; each op's recorder (`Tape::linear`, `Tape::gelu`, …) and its
//! backward live in the op's folder `crate::ops::<op>`. This file only dispatches: one call per
//! [`Node`] arm.

pub mod base;

pub use base::{Node, Tape, T};

use crate::device::Backend;
use crate::ops::{
    attention, col_scale, corr_loss, elementwise, film, gate, glu, layer_norm, linear, loss,
    mask_fill, ortho_loss, row_add, vsn,
};
use crate::params::{ParamId, Params};
use crate::{Error, Result};

impl<B: Backend> Tape<B> {
    /// Backpropagates from the loss (the last node, seeded with dL = 1) into `params.grads` (`+=`)
    /// and into leaves. Calling it twice on one recording is an error.
    pub fn backward(&mut self, dev: &B, params: &mut Params<B>) -> Result<()> {
        if self.backward_done() {
            return Err(Error::device(
                "backward called twice on one tape: record the forward again".to_string(),
            ));
        }
        match self.nodes.last() {
            Some(Node::Loss { .. }) => {}
            _ => {
                return Err(Error::device(
                    "backward needs a tape that ends with a loss".to_string(),
                ))
            }
        }
        self.mark_backward_done();
        let nodes = std::mem::take(&mut self.nodes);
        for node in nodes.iter().rev() {
            backward_node(self, dev, params, node)?;
        }
        self.nodes = nodes;
        Ok(())
    }
}

/// One node's backward: a call into the op's folder.
fn backward_node<B: Backend>(
    tape: &mut Tape<B>,
    dev: &B,
    p: &mut Params<B>,
    node: &Node,
) -> Result<()> {
    match *node {
        Node::Loss { .. } => loss::backward(tape, dev, node),
        Node::Linear { .. } => linear::backward(tape, dev, p, node),
        Node::LayerNorm { .. } => layer_norm::backward(tape, dev, p, node),
        Node::Gelu { .. } | Node::Add { .. } | Node::Dropout { .. } | Node::Unary { .. } => {
            elementwise::backward(tape, dev, node)
        }
        Node::LinearAttention { .. } | Node::SoftmaxAttention { .. } => {
            attention::backward(tape, dev, node)
        }
        Node::Gate { .. } => gate::backward(tape, dev, p, node),
        Node::CorrLoss { .. } => corr_loss::backward(tape, dev, node),
        Node::Film { .. } => film::backward(tape, dev, node),
        Node::GatedLinear { .. } => col_scale::backward(tape, dev, p, node),
        Node::Param { .. } => param_backward(tape, dev, p, node),
        Node::OrthoLoss { .. } => ortho_loss::backward(tape, dev, node),
        Node::MaskFill { .. } => mask_fill::backward(tape, dev, p, node),
        Node::Glu { .. } => glu::backward(tape, dev, node),
        Node::RowAdd { .. } => row_add::backward(tape, dev, node),
        Node::Vsn { .. } => vsn::backward(tape, dev, node),
    }
}

impl<B: Backend> Tape<B> {
    /// Parameter `id` as a tape tensor (e.g. the inducing points of induced attention, a learned
    /// value): a copy on the tape that any op may read; its gradient is added into
    /// `params.grads[id]` by the backward ([`Node::Param`]). Each call records its own copy, so a
    /// parameter used twice gets the sum of both gradients.
    pub fn param(&mut self, dev: &B, params: &Params<B>, id: ParamId) -> Result<T> {
        let src = params
            .values
            .get(id.0)
            .ok_or_else(|| Error::device(format!("parameter id {} does not exist", id.0)))?;
        let len = dev.len(src);
        let out = self.new_tensor(dev, len)?;
        dev.copy(self.buf_mut(out)?, src)?;
        self.record(Node::Param { out, id });
        Ok(out)
    }
}

/// Backward of [`Node::Param`]: params.grads[id] += d out.
fn param_backward<B: Backend>(
    tape: &mut Tape<B>,
    dev: &B,
    p: &mut Params<B>,
    node: &Node,
) -> Result<()> {
    let Node::Param { out, id } = *node else {
        return Err(Error::device("param_backward on another node".to_string()));
    };
    if let Some(g) = tape.take_grad_if_any(out) {
        let dst = p
            .grads
            .get_mut(id.0)
            .ok_or_else(|| Error::device(format!("parameter id {} does not exist", id.0)))?;
        let r = dev.accumulate(dst, &g);
        dev.recycle(g);
        r?;
    }
    tape.free(dev, out);
    Ok(())
}
