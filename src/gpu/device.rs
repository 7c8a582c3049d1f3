//! `impl Backend for GpuBackend`: buffer plumbing here, every op one call into its recipe in
//! `crate::ops::<op>::gpu`.

use super::backend::{GpuBackend, GpuBuf};
use super::params::kernel;
use super::Launcher;
use crate::device::Backend;
use crate::ops::attention::gpu as attention;
use crate::ops::elementwise::gpu as elementwise;
use crate::ops::elementwise::unary::Unary;
use crate::ops::gate::gpu as gate;
use crate::ops::gate::select::GateSelect;
use crate::ops::layer_norm::gpu as layer_norm;
use crate::ops::linear::gpu as linear;
use crate::ops::loss::gpu as loss;
use crate::ops::loss::parts::LossParts;
use crate::ops::optim::gpu as optim;
use crate::ops::optim::AdamArgs;
use crate::rng::DropoutKey;
use crate::Result;

#[allow(clippy::too_many_arguments)]
impl<L: Launcher> Backend for GpuBackend<L> {
    type Buf = GpuBuf<L>;

    fn name(&self) -> String {
        format!("gpu/{}", self.launcher().name())
    }
    fn len(&self, buf: &GpuBuf<L>) -> usize {
        buf.len()
    }
    fn zeros(&self, len: usize) -> Result<GpuBuf<L>> {
        self.alloc_f32(len)
    }
    fn upload(&self, host: &[f32]) -> Result<GpuBuf<L>> {
        let mut b = self.zeros(host.len())?;
        self.write(&mut b, host)?;
        Ok(b)
    }
    fn download(&self, buf: &GpuBuf<L>) -> Result<Vec<f32>> {
        self.download_cached(buf)
    }
    fn fill_zero(&self, buf: &mut GpuBuf<L>) -> Result<()> {
        self.zero(buf)
    }
    fn copy(&self, dst: &mut GpuBuf<L>, src: &GpuBuf<L>) -> Result<()> {
        self.copy_dev(dst, src)
    }

    fn linear_fwd(
        &self,
        out: &mut GpuBuf<L>,
        inp: &GpuBuf<L>,
        w: &GpuBuf<L>,
        b: Option<&GpuBuf<L>>,
        n: usize,
        k: usize,
        m: usize,
    ) -> Result<()> {
        linear::linear_fwd(self, out, inp, w, b, n, k, m)
    }
    fn linear_bwd(
        &self,
        dinp: Option<&mut GpuBuf<L>>,
        dw: &mut GpuBuf<L>,
        db: Option<&mut GpuBuf<L>>,
        dout: &GpuBuf<L>,
        inp: &GpuBuf<L>,
        w: &GpuBuf<L>,
        n: usize,
        k: usize,
        m: usize,
    ) -> Result<()> {
        linear::linear_bwd(self, dinp, dw, db, dout, inp, w, n, k, m)
    }
    fn layer_norm_fwd(
        &self,
        out: &mut GpuBuf<L>,
        mean: &mut GpuBuf<L>,
        rstd: &mut GpuBuf<L>,
        inp: &GpuBuf<L>,
        gamma: &GpuBuf<L>,
        beta: &GpuBuf<L>,
        n: usize,
        d: usize,
    ) -> Result<()> {
        layer_norm::layer_norm_fwd(self, out, mean, rstd, inp, gamma, beta, n, d)
    }
    fn layer_norm_bwd(
        &self,
        dinp: &mut GpuBuf<L>,
        dgamma: &mut GpuBuf<L>,
        dbeta: &mut GpuBuf<L>,
        dout: &GpuBuf<L>,
        inp: &GpuBuf<L>,
        mean: &GpuBuf<L>,
        rstd: &GpuBuf<L>,
        gamma: &GpuBuf<L>,
        n: usize,
        d: usize,
    ) -> Result<()> {
        layer_norm::layer_norm_bwd(
            self, dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, n, d,
        )
    }
    fn gelu_fwd(&self, out: &mut GpuBuf<L>, inp: &GpuBuf<L>) -> Result<()> {
        elementwise::elementwise(self, kernel::GELU_FWD_F32, out, inp, None)
    }
    fn gelu_bwd(&self, dinp: &mut GpuBuf<L>, dout: &GpuBuf<L>, inp: &GpuBuf<L>) -> Result<()> {
        elementwise::elementwise(self, kernel::GELU_BWD_F32, dinp, inp, Some(dout))
    }
    fn unary_fwd(&self, op: Unary, out: &mut GpuBuf<L>, inp: &GpuBuf<L>) -> Result<()> {
        elementwise::unary_fwd(self, op, out, inp)
    }
    fn unary_bwd(
        &self,
        op: Unary,
        dinp: &mut GpuBuf<L>,
        dout: &GpuBuf<L>,
        inp: &GpuBuf<L>,
    ) -> Result<()> {
        elementwise::unary_bwd(self, op, dinp, dout, inp)
    }
    fn add_fwd(&self, out: &mut GpuBuf<L>, a: &GpuBuf<L>, b: &GpuBuf<L>) -> Result<()> {
        elementwise::elementwise(self, kernel::ADD_FWD_F32, out, a, Some(b))
    }
    fn accumulate(&self, dst: &mut GpuBuf<L>, src: &GpuBuf<L>) -> Result<()> {
        elementwise::elementwise(self, kernel::ACCUMULATE_FWD_F32, dst, src, None)
    }
    fn ema_update(&self, ema: &mut GpuBuf<L>, w: &GpuBuf<L>, decay: f32) -> Result<()> {
        elementwise::ema(self, ema, w, decay)
    }
    fn dropout_fwd(
        &self,
        out: &mut GpuBuf<L>,
        inp: &GpuBuf<L>,
        p: f32,
        key: DropoutKey,
    ) -> Result<()> {
        elementwise::dropout(self, kernel::DROPOUT_FWD_F32, out, inp, p, key)
    }
    fn dropout_bwd(
        &self,
        dinp: &mut GpuBuf<L>,
        dout: &GpuBuf<L>,
        p: f32,
        key: DropoutKey,
    ) -> Result<()> {
        elementwise::dropout(self, kernel::DROPOUT_BWD_F32, dinp, dout, p, key)
    }
    fn pos_enc_add(&self, h: &mut GpuBuf<L>, n: usize, d: usize) -> Result<()> {
        elementwise::pos_enc_add(self, h, n, d)
    }
    fn linear_attention_fwd(
        &self,
        out: &mut GpuBuf<L>,
        s: &mut GpuBuf<L>,
        z: &mut GpuBuf<L>,
        q: &GpuBuf<L>,
        k: &GpuBuf<L>,
        v: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        n: usize,
        d: usize,
        h: usize,
    ) -> Result<()> {
        attention::linear_attention_fwd(self, out, s, z, q, k, v, mask, n, d, h)
    }
    fn linear_attention_bwd(
        &self,
        dq: &mut GpuBuf<L>,
        dk: &mut GpuBuf<L>,
        dv: &mut GpuBuf<L>,
        dout: &GpuBuf<L>,
        q: &GpuBuf<L>,
        k: &GpuBuf<L>,
        v: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        s: &GpuBuf<L>,
        z: &GpuBuf<L>,
        n: usize,
        d: usize,
        h: usize,
    ) -> Result<()> {
        attention::linear_attention_bwd(self, dq, dk, dv, dout, q, k, v, mask, s, z, n, d, h)
    }
    fn softmax_attention_fwd(
        &self,
        out: &mut GpuBuf<L>,
        lse: &mut GpuBuf<L>,
        q: &GpuBuf<L>,
        k: &GpuBuf<L>,
        v: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        nq: usize,
        nk: usize,
        d: usize,
        h: usize,
    ) -> Result<()> {
        attention::softmax_attention_fwd(self, out, lse, q, k, v, mask, nq, nk, d, h)
    }
    fn softmax_attention_bwd(
        &self,
        dq: &mut GpuBuf<L>,
        dk: &mut GpuBuf<L>,
        dv: &mut GpuBuf<L>,
        dout: &GpuBuf<L>,
        out: &GpuBuf<L>,
        lse: &GpuBuf<L>,
        q: &GpuBuf<L>,
        k: &GpuBuf<L>,
        v: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        nq: usize,
        nk: usize,
        d: usize,
        h: usize,
    ) -> Result<()> {
        attention::softmax_attention_bwd(
            self, dq, dk, dv, dout, out, lse, q, k, v, mask, nq, nk, d, h,
        )
    }
    fn gate_fwd(
        &self,
        xt: Option<&mut GpuBuf<L>>,
        g: &mut GpuBuf<L>,
        keep: &mut GpuBuf<L>,
        xbar: &mut GpuBuf<L>,
        u: &mut GpuBuf<L>,
        x: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        // x̄ comes from x on the device (the sums would have to cross the bus)
        _sums: Option<&[f64]>,
        w: &GpuBuf<L>,
        a: &GpuBuf<L>,
        b: &GpuBuf<L>,
        select: GateSelect,
        n: usize,
        f: usize,
        r: usize,
    ) -> Result<()> {
        gate::gate_fwd(
            self, xt, g, keep, xbar, u, x, mask, w, a, b, select, n, f, r,
        )
    }
    fn gate_bwd(
        &self,
        dw: &mut GpuBuf<L>,
        da: &mut GpuBuf<L>,
        db: &mut GpuBuf<L>,
        dg: &mut GpuBuf<L>,
        dxt: &GpuBuf<L>,
        x: &GpuBuf<L>,
        xbar: &GpuBuf<L>,
        u: &GpuBuf<L>,
        g: &GpuBuf<L>,
        keep: &GpuBuf<L>,
        b: &GpuBuf<L>,
        n: usize,
        f: usize,
        r: usize,
    ) -> Result<()> {
        gate::gate_bwd(self, dw, da, db, dg, dxt, x, xbar, u, g, keep, b, n, f, r)
    }
    fn mse_sparsity_fwd(
        &self,
        yhat: &GpuBuf<L>,
        y: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        g: &GpuBuf<L>,
        lambda: f32,
        n: usize,
        t: usize,
    ) -> Result<LossParts> {
        loss::mse_sparsity_fwd(self, yhat, y, mask, g, lambda, n, t, &[])
    }
    fn mse_sparsity_fwd_with(
        &self,
        yhat: &GpuBuf<L>,
        y: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        g: &GpuBuf<L>,
        lambda: f32,
        n: usize,
        t: usize,
        also: &[&GpuBuf<L>],
    ) -> Result<LossParts> {
        loss::mse_sparsity_fwd(self, yhat, y, mask, g, lambda, n, t, also)
    }
    fn mse_sparsity_bwd(
        &self,
        dyhat: &mut GpuBuf<L>,
        dg: &mut GpuBuf<L>,
        yhat: &GpuBuf<L>,
        y: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        lambda: f32,
        n: usize,
        t: usize,
    ) -> Result<()> {
        loss::mse_sparsity_bwd(self, dyhat, dg, yhat, y, mask, lambda, n, t)
    }
    fn corr_loss_fwd(
        &self,
        stats: &mut GpuBuf<L>,
        yhat: &GpuBuf<L>,
        y: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        n: usize,
        t: usize,
    ) -> Result<crate::ops::corr_loss::CorrParts> {
        crate::ops::corr_loss::gpu::corr_loss_fwd(self, stats, yhat, y, mask, n, t)
    }
    fn corr_loss_fwd_dev(
        &self,
        stats: &mut GpuBuf<L>,
        parts: &mut GpuBuf<L>,
        yhat: &GpuBuf<L>,
        y: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        n: usize,
        t: usize,
    ) -> Result<()> {
        crate::ops::corr_loss::gpu::corr_loss_fwd_dev(self, stats, parts, yhat, y, mask, n, t)
    }
    fn corr_loss_bwd(
        &self,
        dyhat: &mut GpuBuf<L>,
        yhat: &GpuBuf<L>,
        y: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        stats: &GpuBuf<L>,
        weight: f32,
        n: usize,
        t: usize,
    ) -> Result<()> {
        crate::ops::corr_loss::gpu::corr_loss_bwd(self, dyhat, yhat, y, mask, stats, weight, n, t)
    }
    fn ortho_loss_fwd(
        &self,
        stats: &mut GpuBuf<L>,
        gmat: &mut GpuBuf<L>,
        h: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        weight: f32,
        n: usize,
        d: usize,
    ) -> Result<f32> {
        crate::ops::ortho_loss::gpu::ortho_loss_fwd(self, stats, gmat, h, mask, weight, n, d)
    }
    fn ortho_loss_bwd(
        &self,
        dh: &mut GpuBuf<L>,
        h: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        stats: &GpuBuf<L>,
        gmat: &GpuBuf<L>,
        n: usize,
        d: usize,
    ) -> Result<()> {
        crate::ops::ortho_loss::gpu::ortho_loss_bwd(self, dh, h, mask, stats, gmat, n, d)
    }
    fn mask_fill_fwd(
        &self,
        out: &mut GpuBuf<L>,
        x: &GpuBuf<L>,
        fill: &GpuBuf<L>,
        mv: &GpuBuf<L>,
        n: usize,
        f: usize,
    ) -> Result<()> {
        crate::ops::mask_fill::gpu::mask_fill_fwd(self, out, x, fill, mv, n, f)
    }
    fn mask_fill_bwd(
        &self,
        dx: Option<&mut GpuBuf<L>>,
        dmv: &mut GpuBuf<L>,
        dout: &GpuBuf<L>,
        fill: &GpuBuf<L>,
        n: usize,
        f: usize,
    ) -> Result<()> {
        crate::ops::mask_fill::gpu::mask_fill_bwd(self, dx, dmv, dout, fill, n, f)
    }
    fn codes_fwd(&self, packed: &Self::Buf, n: usize) -> Result<Self::Buf> {
        crate::ops::codes::gpu::codes_fwd(self, packed, n)
    }
    fn prefers_codes(&self) -> bool {
        true
    }
    fn wait_idle(&self) -> Result<()> {
        self.launcher().synchronize()
    }
    fn col_scale_fwd(
        &self,
        out: &mut GpuBuf<L>,
        w: &GpuBuf<L>,
        g: &GpuBuf<L>,
        keep: &GpuBuf<L>,
        m: usize,
        k: usize,
    ) -> Result<()> {
        crate::ops::col_scale::gpu::col_scale_fwd(self, out, w, g, keep, m, k)
    }
    fn col_scale_bwd(
        &self,
        dw: &mut GpuBuf<L>,
        dg: &mut GpuBuf<L>,
        dout: &GpuBuf<L>,
        w: &GpuBuf<L>,
        g: &GpuBuf<L>,
        keep: &GpuBuf<L>,
        m: usize,
        k: usize,
    ) -> Result<()> {
        crate::ops::col_scale::gpu::col_scale_bwd(self, dw, dg, dout, w, g, keep, m, k)
    }
    fn film_fwd(
        &self,
        out: &mut GpuBuf<L>,
        inp: &GpuBuf<L>,
        gamma: &GpuBuf<L>,
        beta: &GpuBuf<L>,
        n: usize,
        d: usize,
    ) -> Result<()> {
        crate::ops::film::gpu::film_fwd(self, out, inp, gamma, beta, n, d)
    }
    fn film_bwd(
        &self,
        dinp: &mut GpuBuf<L>,
        dgamma: &mut GpuBuf<L>,
        dbeta: &mut GpuBuf<L>,
        dout: &GpuBuf<L>,
        inp: &GpuBuf<L>,
        gamma: &GpuBuf<L>,
        n: usize,
        d: usize,
    ) -> Result<()> {
        crate::ops::film::gpu::film_bwd(self, dinp, dgamma, dbeta, dout, inp, gamma, n, d)
    }
    fn glu_fwd(
        &self,
        out: &mut GpuBuf<L>,
        a: &GpuBuf<L>,
        b: &GpuBuf<L>,
        n: usize,
        m: usize,
    ) -> Result<()> {
        crate::ops::glu::gpu::glu_fwd(self, out, a, b, n, m)
    }
    fn glu_bwd(
        &self,
        da: &mut GpuBuf<L>,
        db: &mut GpuBuf<L>,
        dout: &GpuBuf<L>,
        a: &GpuBuf<L>,
        b: &GpuBuf<L>,
        n: usize,
        m: usize,
    ) -> Result<()> {
        crate::ops::glu::gpu::glu_bwd(self, da, db, dout, a, b, n, m)
    }
    fn row_add_fwd(
        &self,
        out: &mut GpuBuf<L>,
        x: &GpuBuf<L>,
        r: &GpuBuf<L>,
        n: usize,
        m: usize,
    ) -> Result<()> {
        crate::ops::row_add::gpu::row_add_fwd(self, out, x, r, n, m)
    }
    fn row_add_bwd(
        &self,
        dx: Option<&mut GpuBuf<L>>,
        dr: &mut GpuBuf<L>,
        dout: &GpuBuf<L>,
        n: usize,
        m: usize,
    ) -> Result<()> {
        crate::ops::row_add::gpu::row_add_bwd(self, dx, dr, dout, n, m)
    }
    fn vsn_fwd(
        &self,
        xt: &mut GpuBuf<L>,
        v: &mut GpuBuf<L>,
        m: &mut GpuBuf<L>,
        keep: &mut GpuBuf<L>,
        s: &mut GpuBuf<L>,
        wsum: &mut GpuBuf<L>,
        z: &GpuBuf<L>,
        x: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        select: GateSelect,
        n: usize,
        f: usize,
    ) -> Result<()> {
        crate::ops::vsn::gpu::vsn_fwd(self, xt, v, m, keep, s, wsum, z, x, mask, select, n, f)
    }
    fn vsn_bwd(
        &self,
        dz: &mut GpuBuf<L>,
        dxt: &GpuBuf<L>,
        dm: &GpuBuf<L>,
        ds: &GpuBuf<L>,
        x: &GpuBuf<L>,
        v: &GpuBuf<L>,
        m: &GpuBuf<L>,
        keep: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        wsum: &GpuBuf<L>,
        n: usize,
        f: usize,
    ) -> Result<()> {
        crate::ops::vsn::gpu::vsn_bwd(self, dz, dxt, dm, ds, x, v, m, keep, mask, wsum, n, f)
    }
    fn sum_squares(&self, g: &GpuBuf<L>) -> Result<f64> {
        optim::sum_squares(self, g)
    }
    fn sum_squares_each(&self, gs: &[&GpuBuf<L>]) -> Result<Vec<f64>> {
        optim::sum_squares_each(self, gs)
    }
    fn adam_step(
        &self,
        p: &mut GpuBuf<L>,
        g: &GpuBuf<L>,
        m: &mut GpuBuf<L>,
        v: &mut GpuBuf<L>,
        args: &AdamArgs,
    ) -> Result<()> {
        optim::adam_step(self, p, g, m, v, args)
    }
    fn clipped_adam(
        &self,
        ps: &mut [GpuBuf<L>],
        gs: &[GpuBuf<L>],
        ms: &mut [GpuBuf<L>],
        vs: &mut [GpuBuf<L>],
        args: &AdamArgs,
        clip: f32,
        eras: usize,
        sums: &mut GpuBuf<L>,
    ) -> Result<Option<Vec<f64>>> {
        optim::clipped_adam(self, ps, gs, ms, vs, args, clip, eras, sums)?;
        Ok(None)
    }
}
