//! Devices. One trait lists every op a backend implements, with the same names as `crate::ops`
//! (candle's `backend.rs` habit); the tape, the model and the training loop are generic over it and
//! never branch on the device.
//!
//! Buffers are f32 and owned by the backend (`Backend::Buf`). Every op has the semantics of the CPU
//! function of the same name in `crate::ops` (shapes, saved tensors, `+=` in backwards): the CPU
//! backend calls those functions; the CUDA backend launches the kernels in `kernels/`.

use crate::ops::elementwise::DropoutKey;
use crate::ops::gate::GateSelect;
use crate::ops::loss::LossParts;
use crate::ops::optim::AdamArgs;
use crate::Result;

pub mod cpu;

pub use cpu::Cpu;

fn missing<T>(dev: &str, op: &str) -> Result<T> {
    Err(crate::Error::device(format!(
        "{op} has no kernel on device {dev} yet"
    )))
}

/// Every op a device must provide. Default bodies say the op is missing on that device (an error,
/// never a silent fallback); the CPU backend implements all of them.
#[allow(clippy::too_many_arguments)]
pub trait Backend {
    type Buf;

    fn name(&self) -> String;
    fn len(&self, buf: &Self::Buf) -> usize;
    fn zeros(&self, len: usize) -> Result<Self::Buf>;
    fn upload(&self, host: &[f32]) -> Result<Self::Buf>;
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>>;
    fn fill_zero(&self, buf: &mut Self::Buf) -> Result<()>;
    /// dst = src (same length).
    fn copy(&self, dst: &mut Self::Buf, src: &Self::Buf) -> Result<()>;
    /// Hands a buffer that is no longer needed back for reuse by a later `zeros` (the default just
    /// drops it).
    fn recycle(&self, buf: Self::Buf) {
        drop(buf);
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
    ) -> Result<()> {
        let _ = (out, inp, w, b, n, k, m);
        missing(&self.name(), "linear_fwd")
    }
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
    ) -> Result<()> {
        let _ = (dinp, dw, db, dout, inp, w, n, k, m);
        missing(&self.name(), "linear_bwd")
    }
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
    ) -> Result<()> {
        let _ = (out, mean, rstd, inp, gamma, beta, n, d);
        missing(&self.name(), "layer_norm_fwd")
    }
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
    ) -> Result<()> {
        let _ = (dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, n, d);
        missing(&self.name(), "layer_norm_bwd")
    }
    fn gelu_fwd(&self, out: &mut Self::Buf, inp: &Self::Buf) -> Result<()> {
        let _ = (out, inp);
        missing(&self.name(), "gelu_fwd")
    }
    fn gelu_bwd(&self, dinp: &mut Self::Buf, dout: &Self::Buf, inp: &Self::Buf) -> Result<()> {
        let _ = (dinp, dout, inp);
        missing(&self.name(), "gelu_bwd")
    }
    fn elu1_fwd(&self, out: &mut Self::Buf, inp: &Self::Buf) -> Result<()> {
        let _ = (out, inp);
        missing(&self.name(), "elu1_fwd")
    }
    fn elu1_bwd(&self, dinp: &mut Self::Buf, dout: &Self::Buf, inp: &Self::Buf) -> Result<()> {
        let _ = (dinp, dout, inp);
        missing(&self.name(), "elu1_bwd")
    }
    fn add_fwd(&self, out: &mut Self::Buf, a: &Self::Buf, b: &Self::Buf) -> Result<()> {
        let _ = (out, a, b);
        missing(&self.name(), "add_fwd")
    }
    /// dst += src
    fn accumulate(&self, dst: &mut Self::Buf, src: &Self::Buf) -> Result<()> {
        let _ = (dst, src);
        missing(&self.name(), "accumulate")
    }
    fn dropout_fwd(
        &self,
        out: &mut Self::Buf,
        inp: &Self::Buf,
        p: f32,
        key: DropoutKey,
    ) -> Result<()> {
        let _ = (out, inp, p, key);
        missing(&self.name(), "dropout_fwd")
    }
    fn dropout_bwd(
        &self,
        dinp: &mut Self::Buf,
        dout: &Self::Buf,
        p: f32,
        key: DropoutKey,
    ) -> Result<()> {
        let _ = (dinp, dout, p, key);
        missing(&self.name(), "dropout_bwd")
    }
    fn pos_enc_add(&self, h: &mut Self::Buf, n: usize, d: usize) -> Result<()> {
        let _ = (h, n, d);
        missing(&self.name(), "pos_enc_add")
    }
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
    ) -> Result<()> {
        let _ = (out, s, z, q, k, v, mask, n, d, h);
        missing(&self.name(), "linear_attention_fwd")
    }
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
    ) -> Result<()> {
        let _ = (dq, dk, dv, dout, q, k, v, mask, s, z, n, d, h);
        missing(&self.name(), "linear_attention_bwd")
    }
    fn softmax_attention_fwd(
        &self,
        out: &mut Self::Buf,
        lse: &mut Self::Buf,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        mask: &Self::Buf,
        n: usize,
        d: usize,
        h: usize,
    ) -> Result<()> {
        let _ = (out, lse, q, k, v, mask, n, d, h);
        missing(&self.name(), "softmax_attention_fwd")
    }
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
        n: usize,
        d: usize,
        h: usize,
    ) -> Result<()> {
        let _ = (dq, dk, dv, dout, out, lse, q, k, v, mask, n, d, h);
        missing(&self.name(), "softmax_attention_bwd")
    }
    fn gate_fwd(
        &self,
        xt: &mut Self::Buf,
        g: &mut Self::Buf,
        keep: &mut Self::Buf,
        xbar: &mut Self::Buf,
        u: &mut Self::Buf,
        x: &Self::Buf,
        mask: &Self::Buf,
        w: &Self::Buf,
        a: &Self::Buf,
        b: &Self::Buf,
        select: GateSelect,
        n: usize,
        f: usize,
        r: usize,
    ) -> Result<()> {
        let _ = (xt, g, keep, xbar, u, x, mask, w, a, b, select, n, f, r);
        missing(&self.name(), "gate_fwd")
    }
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
    ) -> Result<()> {
        let _ = (dw, da, db, dg, dxt, x, xbar, u, g, keep, b, n, f, r);
        missing(&self.name(), "gate_bwd")
    }
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
    ) -> Result<LossParts> {
        let _ = (yhat, y, mask, g, lambda, n, t);
        missing(&self.name(), "mse_sparsity_fwd")
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
    ) -> Result<()> {
        let _ = (dyhat, dg, yhat, y, mask, lambda, n, t);
        missing(&self.name(), "mse_sparsity_bwd")
    }
    fn sum_squares(&self, g: &Self::Buf) -> Result<f64> {
        let _ = g;
        missing(&self.name(), "sum_squares")
    }
    fn adam_step(
        &self,
        p: &mut Self::Buf,
        g: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        args: &AdamArgs,
    ) -> Result<()> {
        let _ = (p, g, m, v, args);
        missing(&self.name(), "adam_step")
    }
}
