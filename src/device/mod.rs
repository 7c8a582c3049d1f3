//! Devices. One trait lists every op a backend implements, with the same names as `crate::ops`
//! (candle's `backend.rs` habit); the tape, the model and the training loop are generic over it and
//! never branch on the device.
//!
//! Buffers are f32 and owned by the backend (`Backend::Buf`). Every op has the semantics of the CPU
//! function of the same name in `crate::ops` (shapes, saved tensors, `+=` in backwards, `=` in the
//! `*_bwd_fresh` twins, whose gradient buffer starts unspecified): the CPU
//! backend calls those functions; the CUDA backend launches the kernels in `kernels/`.

use crate::ops::corr_loss::parts::CorrParts;
use crate::ops::elementwise::unary::Unary;
use crate::ops::gate::select::GateSelect;
use crate::ops::loss::parts::LossParts;
use crate::ops::optim::AdamArgs;
use crate::rng::DropoutKey;
use crate::Result;

pub mod cpu;
pub(crate) mod cpu_pool;

pub use cpu::Cpu;

/// Every op a device must provide; the CPU and GPU backends implement all of them (an op is done
/// only when forward and backward exist on every device).
#[allow(clippy::too_many_arguments)]
pub trait Backend {
    type Buf;

    fn name(&self) -> String;
    fn len(&self, buf: &Self::Buf) -> usize;
    fn zeros(&self, len: usize) -> Result<Self::Buf>;
    /// A buffer of `len` floats for an op to overwrite entirely; its contents are unspecified
    /// (the default zeroes it; the CPU hands back a pooled buffer as it was left, or NaN).
    fn unset(&self, len: usize) -> Result<Self::Buf> {
        self.zeros(len)
    }
    fn upload(&self, host: &[f32]) -> Result<Self::Buf>;
    /// [`Backend::upload`] of a host buffer the caller gives up: the host backend keeps the
    /// buffer itself (no copy); a device copies it across as usual.
    fn upload_owned(&self, host: Vec<f32>) -> Result<Self::Buf> {
        self.upload(&host)
    }
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>>;
    /// Returns once every operation queued so far has finished. A timing aid (`bench` stops a
    /// step's clock after it): results never need it, since reading a buffer back waits for what
    /// wrote it. The host's operations are done when they return, so the default does nothing.
    fn wait_idle(&self) -> Result<()> {
        Ok(())
    }
    fn fill_zero(&self, buf: &mut Self::Buf) -> Result<()>;
    /// dst = src (same length).
    fn copy(&self, dst: &mut Self::Buf, src: &Self::Buf) -> Result<()>;
    /// Hands a buffer that is no longer needed back for reuse by a later `zeros` (the default just
    /// drops it).
    fn recycle(&self, buf: Self::Buf) {
        drop(buf);
    }
    /// Model inputs x = (c − 2) / 2 [n] from `n` era codes packed four to a word in `packed`
    /// (⌈n / 4⌉ words, src/ops/codes): an era crosses to the device as a quarter of its f32
    /// bytes. The default decodes on the host (download, decode, upload); the GPU backend runs a
    /// kernel.
    fn codes_fwd(&self, packed: &Self::Buf, n: usize) -> Result<Self::Buf> {
        let host = self.download(packed)?;
        self.upload(&crate::ops::codes::fwd_checked(&host, n)?)
    }
    /// Whether an era should reach this device as its codes ([`Backend::codes_fwd`]: a device
    /// across a bus, where bytes cost time) rather than as its f32 inputs (the host itself, where
    /// x is already in memory). `EraBatch::to_tape` asks.
    fn prefers_codes(&self) -> bool {
        false
    }
    /// Whether this device's weight gradients read an f32-resident era's codes themselves
    /// ([`Backend::linear_bwd_codes`]: the CPU, where they are a quarter of x's memory traffic), so
    /// the era puts its codes on the tape next to x (`EraBatch::to_tape`).
    fn linear_bwd_reads_codes(&self) -> bool {
        false
    }
    /// [`Backend::linear_bwd`] without an input gradient, inp given as `n·k` era codes packed four
    /// to a word (src/ops/codes), bit for bit the gradients on the decoded inp (`w` as there,
    /// unread). The default decodes them ([`Backend::codes_fwd`]).
    #[allow(clippy::too_many_arguments)]
    fn linear_bwd_codes(
        &self,
        dw: &mut Self::Buf,
        db: Option<&mut Self::Buf>,
        dout: &Self::Buf,
        packed: &Self::Buf,
        w: &Self::Buf,
        n: usize,
        k: usize,
        m: usize,
    ) -> Result<()> {
        let x = self.codes_fwd(packed, n * k)?;
        self.linear_bwd(None, dw, db, dout, &x, w, n, k, m)
    }

    fn linear_fwd(
        &self,
        out: &mut Self::Buf,
        inp: &Self::Buf,
        w: &Self::Buf,
        b: Option<&Self::Buf>,
        n: usize,
        k: usize,
        m: usize,
    ) -> Result<()>;
    fn linear_bwd(
        &self,
        dinp: Option<&mut Self::Buf>,
        dw: &mut Self::Buf,
        db: Option<&mut Self::Buf>,
        dout: &Self::Buf,
        inp: &Self::Buf,
        w: &Self::Buf,
        n: usize,
        k: usize,
        m: usize,
    ) -> Result<()>;
    fn layer_norm_fwd(
        &self,
        out: &mut Self::Buf,
        mean: &mut Self::Buf,
        rstd: &mut Self::Buf,
        inp: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        n: usize,
        d: usize,
    ) -> Result<()>;
    fn layer_norm_bwd(
        &self,
        dinp: &mut Self::Buf,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
        dout: &Self::Buf,
        inp: &Self::Buf,
        mean: &Self::Buf,
        rstd: &Self::Buf,
        gamma: &Self::Buf,
        n: usize,
        d: usize,
    ) -> Result<()>;
    fn gelu_fwd(&self, out: &mut Self::Buf, inp: &Self::Buf) -> Result<()>;
    fn gelu_bwd(&self, dinp: &mut Self::Buf, dout: &Self::Buf, inp: &Self::Buf) -> Result<()>;
    /// out = f(inp) for a map of the [`Unary`] table.
    fn unary_fwd(&self, op: Unary, out: &mut Self::Buf, inp: &Self::Buf) -> Result<()>;
    /// dinp += dout · f'(inp).
    fn unary_bwd(
        &self,
        op: Unary,
        dinp: &mut Self::Buf,
        dout: &Self::Buf,
        inp: &Self::Buf,
    ) -> Result<()>;
    fn add_fwd(&self, out: &mut Self::Buf, a: &Self::Buf, b: &Self::Buf) -> Result<()>;
    /// dst += src
    fn accumulate(&self, dst: &mut Self::Buf, src: &Self::Buf) -> Result<()>;
    /// The weights' moving average, in place: ema = decay · ema + (1 − decay) · w
    /// (src/train/ema.rs; `ema_fwd_f32` on a GPU).
    fn ema_update(&self, ema: &mut Self::Buf, w: &Self::Buf, decay: f32) -> Result<()>;
    fn dropout_fwd(
        &self,
        out: &mut Self::Buf,
        inp: &Self::Buf,
        p: f32,
        key: DropoutKey,
    ) -> Result<()>;
    fn dropout_bwd(
        &self,
        dinp: &mut Self::Buf,
        dout: &Self::Buf,
        p: f32,
        key: DropoutKey,
    ) -> Result<()>;
    // Backwards into a *fresh* input gradient, one nothing has flowed into yet (`Tape::take_grad`
    // says which): its buffer comes from `unset`, its contents are unspecified, and the op writes
    // the gradient instead of adding it, which saves zeroing it and reading the zeros back (the
    // CPU). The defaults zero it and accumulate: a device need not specialise them.
    /// [`Backend::linear_bwd`] with dinp written: dinp = dout · w.
    fn linear_bwd_fresh(
        &self,
        dinp: &mut Self::Buf,
        dw: &mut Self::Buf,
        db: Option<&mut Self::Buf>,
        dout: &Self::Buf,
        inp: &Self::Buf,
        w: &Self::Buf,
        n: usize,
        k: usize,
        m: usize,
    ) -> Result<()> {
        self.fill_zero(dinp)?;
        self.linear_bwd(Some(dinp), dw, db, dout, inp, w, n, k, m)
    }
    /// [`Backend::layer_norm_bwd`] with dinp written.
    fn layer_norm_bwd_fresh(
        &self,
        dinp: &mut Self::Buf,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
        dout: &Self::Buf,
        inp: &Self::Buf,
        mean: &Self::Buf,
        rstd: &Self::Buf,
        gamma: &Self::Buf,
        n: usize,
        d: usize,
    ) -> Result<()> {
        self.fill_zero(dinp)?;
        self.layer_norm_bwd(dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, n, d)
    }
    /// [`Backend::gelu_bwd`] with dinp written: dinp = dout · GELU'(inp).
    fn gelu_bwd_fresh(
        &self,
        dinp: &mut Self::Buf,
        dout: &Self::Buf,
        inp: &Self::Buf,
    ) -> Result<()> {
        self.fill_zero(dinp)?;
        self.gelu_bwd(dinp, dout, inp)
    }
    /// [`Backend::dropout_bwd`] with dinp written: the forward's mask applied to dout.
    fn dropout_bwd_fresh(
        &self,
        dinp: &mut Self::Buf,
        dout: &Self::Buf,
        p: f32,
        key: DropoutKey,
    ) -> Result<()> {
        self.fill_zero(dinp)?;
        self.dropout_bwd(dinp, dout, p, key)
    }
    fn pos_enc_add(&self, h: &mut Self::Buf, n: usize, d: usize) -> Result<()>;
    fn linear_attention_fwd(
        &self,
        out: &mut Self::Buf,
        s: &mut Self::Buf,
        z: &mut Self::Buf,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        mask: &Self::Buf,
        n: usize,
        d: usize,
        h: usize,
    ) -> Result<()>;
    fn linear_attention_bwd(
        &self,
        dq: &mut Self::Buf,
        dk: &mut Self::Buf,
        dv: &mut Self::Buf,
        dout: &Self::Buf,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        mask: &Self::Buf,
        s: &Self::Buf,
        z: &Self::Buf,
        n: usize,
        d: usize,
        h: usize,
    ) -> Result<()>;
    fn softmax_attention_fwd(
        &self,
        out: &mut Self::Buf,
        lse: &mut Self::Buf,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        mask: &Self::Buf,
        nq: usize,
        nk: usize,
        d: usize,
        h: usize,
    ) -> Result<()>;
    fn softmax_attention_bwd(
        &self,
        dq: &mut Self::Buf,
        dk: &mut Self::Buf,
        dv: &mut Self::Buf,
        dout: &Self::Buf,
        out: &Self::Buf,
        lse: &Self::Buf,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        mask: &Self::Buf,
        nq: usize,
        nk: usize,
        d: usize,
        h: usize,
    ) -> Result<()>;
    /// The feature gate's forward; `xt` = x ⊙ (g ⊙ keep) when given (None: the caller folds the
    /// gate into the next weight instead, src/ops/col_scale). `sums`, when given, are x's column
    /// sums Σ_i m_i x_i (f64, row order, [f]) as the era loader found them: the host backend uses
    /// them for x̄ instead of reading x again; a device computes its own.
    fn gate_fwd(
        &self,
        xt: Option<&mut Self::Buf>,
        g: &mut Self::Buf,
        keep: &mut Self::Buf,
        xbar: &mut Self::Buf,
        u: &mut Self::Buf,
        x: &Self::Buf,
        mask: &Self::Buf,
        sums: Option<&[f64]>,
        w: &Self::Buf,
        a: &Self::Buf,
        b: &Self::Buf,
        select: GateSelect,
        n: usize,
        f: usize,
        r: usize,
    ) -> Result<()>;
    fn gate_bwd(
        &self,
        dw: &mut Self::Buf,
        da: &mut Self::Buf,
        db: &mut Self::Buf,
        dg: &mut Self::Buf,
        dxt: &Self::Buf,
        x: &Self::Buf,
        xbar: &Self::Buf,
        u: &Self::Buf,
        g: &Self::Buf,
        keep: &Self::Buf,
        b: &Self::Buf,
        n: usize,
        f: usize,
        r: usize,
    ) -> Result<()>;
    /// The one host read-back of a training step (loss parts).
    fn mse_sparsity_fwd(
        &self,
        yhat: &Self::Buf,
        y: &Self::Buf,
        mask: &Self::Buf,
        g: &Self::Buf,
        lambda: f32,
        n: usize,
        t: usize,
    ) -> Result<LossParts>;
    /// [`Backend::mse_sparsity_fwd`] with every buffer of `also` read back in the same host wait:
    /// a backend that keeps buffers away from the host serves the next `download` of `g` and of
    /// each of `also` from that copy, so a training step waits on the host once. The default
    /// ignores `also` (its downloads are plain copies).
    #[allow(clippy::too_many_arguments)]
    fn mse_sparsity_fwd_with(
        &self,
        yhat: &Self::Buf,
        y: &Self::Buf,
        mask: &Self::Buf,
        g: &Self::Buf,
        lambda: f32,
        n: usize,
        t: usize,
        also: &[&Self::Buf],
    ) -> Result<LossParts> {
        let _ = also;
        self.mse_sparsity_fwd(yhat, y, mask, g, lambda, n, t)
    }
    fn mse_sparsity_bwd(
        &self,
        dyhat: &mut Self::Buf,
        dg: &mut Self::Buf,
        yhat: &Self::Buf,
        y: &Self::Buf,
        mask: &Self::Buf,
        lambda: f32,
        n: usize,
        t: usize,
    ) -> Result<()>;
    /// Per-era correlation loss (docs/model.md): fills stats [t·4], returns the mean correlation.
    fn corr_loss_fwd(
        &self,
        stats: &mut Self::Buf,
        yhat: &Self::Buf,
        y: &Self::Buf,
        mask: &Self::Buf,
        n: usize,
        t: usize,
    ) -> Result<CorrParts>;
    /// [`Backend::corr_loss_fwd`] leaving (corr, K) in `parts` [2] for a later download instead
    /// of returning them (no host wait on a GPU). The default uploads what `corr_loss_fwd` returns.
    #[allow(clippy::too_many_arguments)]
    fn corr_loss_fwd_dev(
        &self,
        stats: &mut Self::Buf,
        parts: &mut Self::Buf,
        yhat: &Self::Buf,
        y: &Self::Buf,
        mask: &Self::Buf,
        n: usize,
        t: usize,
    ) -> Result<()> {
        crate::ops::shape::expect_len("corr_loss", "parts", self.len(parts), 2)?;
        let p = self.corr_loss_fwd(stats, yhat, y, mask, n, t)?;
        *parts = self.upload(&[p.corr, p.heads])?;
        Ok(())
    }
    /// dyhat += ∂(w · (1 − corr))/∂ŷ
    fn corr_loss_bwd(
        &self,
        dyhat: &mut Self::Buf,
        yhat: &Self::Buf,
        y: &Self::Buf,
        mask: &Self::Buf,
        stats: &Self::Buf,
        weight: f32,
        n: usize,
        t: usize,
    ) -> Result<()>;
    /// out = w ⊙ (g ⊙ keep) per row of w [m, k] (src/ops/col_scale: the gate folded into the
    /// mapper's weight)
    fn col_scale_fwd(
        &self,
        out: &mut Self::Buf,
        w: &Self::Buf,
        g: &Self::Buf,
        keep: &Self::Buf,
        m: usize,
        k: usize,
    ) -> Result<()>;
    /// dw += dout ⊙ (g ⊙ keep); dg += keep ⊙ Σ_rows dout ⊙ w (f64 sums in row order)
    #[allow(clippy::too_many_arguments)]
    fn col_scale_bwd(
        &self,
        dw: &mut Self::Buf,
        dg: &mut Self::Buf,
        dout: &Self::Buf,
        w: &Self::Buf,
        g: &Self::Buf,
        keep: &Self::Buf,
        m: usize,
        k: usize,
    ) -> Result<()>;
    /// out = inp ⊙ (1 + γ) + β per row (docs/model.md, FiLM)
    fn film_fwd(
        &self,
        out: &mut Self::Buf,
        inp: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        n: usize,
        d: usize,
    ) -> Result<()>;
    fn film_bwd(
        &self,
        dinp: &mut Self::Buf,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
        dout: &Self::Buf,
        inp: &Self::Buf,
        gamma: &Self::Buf,
        n: usize,
        d: usize,
    ) -> Result<()>;
    /// Orthogonal-embedding loss (src/ops/ortho_loss): fills stats [2d+1] and gmat [d·d],
    /// returns the unweighted penalty P.
    #[allow(clippy::too_many_arguments)]
    fn ortho_loss_fwd(
        &self,
        stats: &mut Self::Buf,
        gmat: &mut Self::Buf,
        h: &Self::Buf,
        mask: &Self::Buf,
        weight: f32,
        n: usize,
        d: usize,
    ) -> Result<f32>;
    /// dh += ∂(w · P)/∂h
    #[allow(clippy::too_many_arguments)]
    fn ortho_loss_bwd(
        &self,
        dh: &mut Self::Buf,
        h: &Self::Buf,
        mask: &Self::Buf,
        stats: &Self::Buf,
        gmat: &Self::Buf,
        n: usize,
        d: usize,
    ) -> Result<()>;
    /// out = (1 − fill) x + fill · mv (src/ops/mask_fill)
    fn mask_fill_fwd(
        &self,
        out: &mut Self::Buf,
        x: &Self::Buf,
        fill: &Self::Buf,
        mv: &Self::Buf,
        n: usize,
        f: usize,
    ) -> Result<()>;
    /// dx += (1 − fill) dout (when given), dmv += Σ_i fill · dout
    fn mask_fill_bwd(
        &self,
        dx: Option<&mut Self::Buf>,
        dmv: &mut Self::Buf,
        dout: &Self::Buf,
        fill: &Self::Buf,
        n: usize,
        f: usize,
    ) -> Result<()>;
    /// GLU: out = σ(a) ⊙ b over [n, m] (docs/model.md)
    fn glu_fwd(
        &self,
        out: &mut Self::Buf,
        a: &Self::Buf,
        b: &Self::Buf,
        n: usize,
        m: usize,
    ) -> Result<()>;
    /// da += dout ⊙ b ⊙ σ'(a), db += dout ⊙ σ(a)
    fn glu_bwd(
        &self,
        da: &mut Self::Buf,
        db: &mut Self::Buf,
        dout: &Self::Buf,
        a: &Self::Buf,
        b: &Self::Buf,
        n: usize,
        m: usize,
    ) -> Result<()>;
    /// out = x + r per row, x: [n, m], r: [m]
    fn row_add_fwd(
        &self,
        out: &mut Self::Buf,
        x: &Self::Buf,
        r: &Self::Buf,
        n: usize,
        m: usize,
    ) -> Result<()>;
    /// dx += dout (when given), dr += Σ_i dout_i
    fn row_add_bwd(
        &self,
        dx: Option<&mut Self::Buf>,
        dr: &mut Self::Buf,
        dout: &Self::Buf,
        n: usize,
        m: usize,
    ) -> Result<()>;
    /// Variable selection from per-row logits (docs/model.md, `ops::vsn`)
    fn vsn_fwd(
        &self,
        xt: &mut Self::Buf,
        v: &mut Self::Buf,
        m: &mut Self::Buf,
        keep: &mut Self::Buf,
        s: &mut Self::Buf,
        wsum: &mut Self::Buf,
        z: &Self::Buf,
        x: &Self::Buf,
        mask: &Self::Buf,
        select: GateSelect,
        n: usize,
        f: usize,
    ) -> Result<()>;
    /// dz += ∂/∂z of the VSN outputs given dxt, dm, ds
    fn vsn_bwd(
        &self,
        dz: &mut Self::Buf,
        dxt: &Self::Buf,
        dm: &Self::Buf,
        ds: &Self::Buf,
        x: &Self::Buf,
        v: &Self::Buf,
        m: &Self::Buf,
        keep: &Self::Buf,
        mask: &Self::Buf,
        wsum: &Self::Buf,
        n: usize,
        f: usize,
    ) -> Result<()>;
    fn sum_squares(&self, g: &Self::Buf) -> Result<f64>;
    /// Σ g² of each buffer (f64), read back together (one host sync on a GPU); the default calls
    /// `sum_squares` per buffer.
    fn sum_squares_each(&self, gs: &[&Self::Buf]) -> Result<Vec<f64>> {
        gs.iter().map(|g| self.sum_squares(g)).collect()
    }
    fn adam_step(
        &self,
        p: &mut Self::Buf,
        g: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        args: &AdamArgs,
    ) -> Result<()>;
    /// One Adam step of every tensor with global-norm clipping ([`crate::ops::optim::clip_scale`]
    /// of the gradients' Σg², over `eras` summed eras; `args.grad_scale` is ignored). Returns
    /// every Σg² when they were computed on the host: a non-finite one means nothing was updated.
    /// None when they were left in `sums` (2 f32 words per tensor, each pair one f64) on the
    /// device: the scale was decided there, a non-finite Σg² skipped the step on the device, and
    /// the caller reads `sums` later (a GPU never waits for the norm). The default computes them
    /// on the host.
    #[allow(clippy::too_many_arguments)]
    fn clipped_adam(
        &self,
        ps: &mut [Self::Buf],
        gs: &[Self::Buf],
        ms: &mut [Self::Buf],
        vs: &mut [Self::Buf],
        args: &AdamArgs,
        clip: f32,
        eras: usize,
        sums: &mut Self::Buf,
    ) -> Result<Option<Vec<f64>>> {
        let _ = sums;
        crate::ops::shape::expect_all(
            "clipped_adam",
            &[("grads", gs.len()), ("m", ms.len()), ("v", vs.len())],
            ps.len(),
        )?;
        let refs: Vec<&Self::Buf> = gs.iter().collect();
        let s = self.sum_squares_each(&refs)?;
        let Some(scale) = crate::ops::optim::clip_scale(&s, clip, eras) else {
            return Ok(Some(s));
        };
        let a = AdamArgs {
            grad_scale: scale,
            ..*args
        };
        for (((p, g), m), v) in ps.iter_mut().zip(gs).zip(ms.iter_mut()).zip(vs.iter_mut()) {
            self.adam_step(p, g, m, v, &a)?;
        }
        Ok(Some(s))
    }
}
