//! The tape's core types: tensors [`T`], the op records [`Node`] and the [`Tape`] that owns the
//! buffers. Op folders (`crate::ops::<op>`) use this file to record their forward and run their
//! backward; `tape/mod.rs` walks the records. This file uses no op, so there is no import circle.

use crate::device::Backend;
use crate::ops::elementwise::unary::Unary;
use crate::params::ParamId;
use crate::rng::DropoutKey;
use crate::{Error, Result};

/// A tensor on the tape (index into its buffers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct T(pub usize);

/// One recorded op: enough to run its backward.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Linear {
        out: T,
        inp: T,
        w: ParamId,
        b: ParamId,
        n: usize,
        k: usize,
        m: usize,
    },
    LayerNorm {
        out: T,
        mean: T,
        rstd: T,
        inp: T,
        gamma: ParamId,
        beta: ParamId,
        n: usize,
        d: usize,
    },
    Gelu {
        out: T,
        inp: T,
    },
    /// A map of the [`Unary`] table.
    Unary {
        op: Unary,
        out: T,
        inp: T,
    },
    Add {
        out: T,
        a: T,
        b: T,
    },
    Dropout {
        out: T,
        inp: T,
        p: f32,
        key: DropoutKey,
    },
    LinearAttention {
        out: T,
        s: T,
        z: T,
        q: T,
        k: T,
        v: T,
        mask: T,
        n: usize,
        d: usize,
        h: usize,
    },
    /// Softmax cross-attention: out, q [nq, d], k, v [nk, d], key mask [nk], lse [h·nq]
    /// (self-attention: nq = nk).
    SoftmaxAttention {
        out: T,
        lse: T,
        q: T,
        k: T,
        v: T,
        mask: T,
        nq: usize,
        nk: usize,
        d: usize,
        h: usize,
    },
    /// xt is None for `Tape::gate_select` (no x̃; the gate is folded into the next weight)
    Gate {
        xt: Option<T>,
        g: T,
        keep: T,
        xbar: T,
        u: T,
        x: T,
        mask: T,
        w: ParamId,
        a: Option<ParamId>,
        b: Option<ParamId>,
        n: usize,
        f: usize,
        r: usize,
    },
    Loss {
        yhat: T,
        y: T,
        mask: T,
        g: T,
        lambda: f32,
        n: usize,
        t: usize,
    },
    CorrLoss {
        yhat: T,
        y: T,
        mask: T,
        stats: T,
        weight: f32,
        n: usize,
        t: usize,
    },
    /// The orthogonal-embedding loss term (src/ops/ortho_loss)
    OrthoLoss {
        h: T,
        mask: T,
        stats: T,
        gmat: T,
        n: usize,
        d: usize,
    },
    /// The pretraining input: masked entries replaced by a learned value (src/ops/mask_fill)
    MaskFill {
        out: T,
        x: T,
        fill: T,
        mv: ParamId,
        n: usize,
        f: usize,
    },
    /// out = x (W ⊙ (g ⊙ keep))ᵀ + b (`ops::col_scale`); ws holds W ⊙ (g ⊙ keep); `codes`, when
    /// given, is x as its era codes, which the weight gradient reads instead of x
    GatedLinear {
        out: T,
        x: T,
        codes: Option<T>,
        ws: T,
        g: T,
        keep: T,
        w: ParamId,
        b: ParamId,
        n: usize,
        k: usize,
        m: usize,
    },
    Film {
        out: T,
        inp: T,
        gamma: T,
        beta: T,
        n: usize,
        d: usize,
    },
    /// A parameter used as a tape tensor ([`Tape::param`]): out is a copy of parameter `id`; the
    /// backward adds out's gradient into the parameter's gradient.
    Param {
        out: T,
        id: ParamId,
    },
    /// GLU σ(a) ⊙ b (`ops::glu`)
    Glu {
        out: T,
        a: T,
        b: T,
        n: usize,
        m: usize,
    },
    /// out = x + r per row (`ops::row_add`)
    RowAdd {
        out: T,
        x: T,
        r: T,
        n: usize,
        m: usize,
    },
    /// Variable selection (`ops::vsn`)
    Vsn {
        xt: T,
        m: T,
        keep: T,
        s: T,
        v: T,
        wsum: T,
        z: T,
        x: T,
        mask: T,
        n: usize,
        f: usize,
    },
}

pub struct Tape<B: Backend> {
    pub nodes: Vec<Node>,
    bufs: Vec<Option<B::Buf>>,
    grads: Vec<Option<B::Buf>>,
    requires_grad: Vec<bool>,
    lens: Vec<usize>,
    backward_done: bool,
}

impl<B: Backend> Default for Tape<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend> Tape<B> {
    pub fn new() -> Self {
        Tape {
            nodes: Vec::new(),
            bufs: Vec::new(),
            grads: Vec::new(),
            requires_grad: Vec::new(),
            lens: Vec::new(),
            backward_done: false,
        }
    }

    pub(crate) fn push(&mut self, buf: B::Buf, len: usize, requires_grad: bool) -> T {
        self.bufs.push(Some(buf));
        self.grads.push(None);
        self.requires_grad.push(requires_grad);
        self.lens.push(len);
        T(self.bufs.len() - 1)
    }

    /// A constant input (data, mask, targets): no gradient flows into it.
    pub fn input(&mut self, dev: &B, host: &[f32]) -> Result<T> {
        let b = dev.upload(host)?;
        Ok(self.push(b, host.len(), false))
    }

    /// [`Tape::input`] of a buffer the caller gives up ([`Backend::upload_owned`]: on the CPU the
    /// tape keeps the buffer itself and hands it to the buffer pool when released).
    pub fn input_owned(&mut self, dev: &B, host: Vec<f32>) -> Result<T> {
        let len = host.len();
        let b = dev.upload_owned(host)?;
        Ok(self.push(b, len, false))
    }

    /// An input decoded on the device from `n` codes packed four to a word (src/ops/codes: an
    /// era's features as a quarter of their f32 bytes).
    pub fn input_codes(&mut self, dev: &B, packed: &[f32], n: usize) -> Result<T> {
        let p = dev.upload(packed)?;
        let x = dev.codes_fwd(&p, n);
        dev.recycle(p);
        Ok(self.push(x?, n, false))
    }

    /// A leaf that receives a gradient (used by tests to differentiate w.r.t. inputs).
    pub fn leaf(&mut self, dev: &B, host: &[f32]) -> Result<T> {
        let b = dev.upload(host)?;
        Ok(self.push(b, host.len(), true))
    }

    /// A tensor the op recording it overwrites entirely (contents unspecified until then; see
    /// [`Backend::unset`]).
    pub(crate) fn new_tensor(&mut self, dev: &B, len: usize) -> Result<T> {
        let b = dev.unset(len)?;
        Ok(self.push(b, len, true))
    }

    pub fn buf(&self, t: T) -> Result<&B::Buf> {
        self.bufs
            .get(t.0)
            .and_then(|b| b.as_ref())
            .ok_or_else(|| Error::device(format!("tape tensor {} was already freed", t.0)))
    }

    pub(crate) fn buf_mut(&mut self, t: T) -> Result<&mut B::Buf> {
        self.bufs
            .get_mut(t.0)
            .and_then(|b| b.as_mut())
            .ok_or_else(|| Error::device(format!("tape tensor {} was already freed", t.0)))
    }

    pub fn len_of(&self, t: T) -> usize {
        self.lens[t.0]
    }

    pub fn download(&self, dev: &B, t: T) -> Result<Vec<f32>> {
        dev.download(self.buf(t)?)
    }

    /// The gradient of a leaf after `backward` (zeros if nothing flowed into it).
    pub fn grad(&self, dev: &B, t: T) -> Result<Vec<f32>> {
        match &self.grads[t.0] {
            Some(g) => dev.download(g),
            None => Ok(vec![0.0; self.lens[t.0]]),
        }
    }

    /// Records `node` (called by the op folders after their forward ran).
    pub(crate) fn record(&mut self, node: Node) {
        self.nodes.push(node);
    }

    /// Whether `t` receives a gradient.
    pub(crate) fn requires_grad(&self, t: T) -> bool {
        self.requires_grad[t.0]
    }

    /// Takes the gradient of `t` out of the tape if anything flowed into it.
    pub(crate) fn take_grad_if_any(&mut self, t: T) -> Option<B::Buf> {
        self.grads[t.0].take()
    }

    /// Whether `backward` already ran on this recording.
    pub(crate) fn backward_done(&self) -> bool {
        self.backward_done
    }

    pub(crate) fn mark_backward_done(&mut self) {
        self.backward_done = true;
    }

    pub(crate) fn take(&mut self, t: T) -> Result<B::Buf> {
        self.bufs[t.0]
            .take()
            .ok_or_else(|| Error::device(format!("tape tensor {} was already freed", t.0)))
    }

    pub(crate) fn put(&mut self, t: T, b: B::Buf) {
        self.bufs[t.0] = Some(b);
    }

    /// The gradient buffer of `t`, allocated (zeroed) on first use, taken out of the tape.
    pub(crate) fn take_grad(&mut self, dev: &B, t: T) -> Result<B::Buf> {
        match self.grads[t.0].take() {
            Some(g) => Ok(g),
            None => dev.zeros(self.lens[t.0]),
        }
    }

    /// The gradient buffer of `t` taken out of the tape, and whether it is fresh: nothing has
    /// flowed into it yet, so it comes from `unset` with unspecified contents, for an op's
    /// `*_bwd_fresh` to write rather than add to (saving the zero fill).
    pub(crate) fn take_grad_fresh(&mut self, dev: &B, t: T) -> Result<(B::Buf, bool)> {
        match self.grads[t.0].take() {
            Some(g) => Ok((g, false)),
            None => Ok((dev.unset(self.lens[t.0])?, true)),
        }
    }

    pub(crate) fn put_grad(&mut self, t: T, g: B::Buf) {
        self.grads[t.0] = Some(g);
    }

    /// Frees a tensor produced by a node whose backward has run.
    pub(crate) fn free(&mut self, dev: &B, t: T) {
        if let Some(b) = self.bufs[t.0].take() {
            dev.recycle(b);
        }
        if let Some(g) = self.grads[t.0].take() {
            dev.recycle(g);
        }
    }

    /// Hands every buffer still on the tape back to the device for reuse (end of a step).
    pub fn release(mut self, dev: &B) {
        for b in self.bufs.drain(..).chain(self.grads.drain(..)).flatten() {
            dev.recycle(b);
        }
    }
}

pub(crate) fn two_mut<X>(v: &mut [X], i: usize, j: usize) -> Result<(&mut X, &mut X)> {
    if i == j || i >= v.len() || j >= v.len() {
        return Err(Error::device(format!(
            "parameter ids {i} and {j} must differ and exist"
        )));
    }
    if i < j {
        let (lo, hi) = v.split_at_mut(j);
        Ok((&mut lo[i], &mut hi[0]))
    } else {
        let (lo, hi) = v.split_at_mut(i);
        Ok((&mut hi[0], &mut lo[j]))
    }
}

pub(crate) fn three_mut<X>(
    v: &mut [X],
    i: usize,
    j: usize,
    k: usize,
) -> Result<(&mut X, &mut X, &mut X)> {
    if i == j || j == k || i == k || i.max(j).max(k) >= v.len() {
        return Err(Error::device(format!(
            "parameter ids {i}, {j}, {k} must differ and exist"
        )));
    }
    let mut refs: Vec<Option<&mut X>> = v.iter_mut().map(Some).collect();
    let a = refs[i].take();
    let b = refs[j].take();
    let c = refs[k].take();
    match (a, b, c) {
        (Some(a), Some(b), Some(c)) => Ok((a, b, c)),
        _ => Err(Error::device("parameter borrow failed".to_string())),
    }
}
