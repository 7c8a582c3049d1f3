//! The CPU backend: buffers are `Vec<f32>`, ops are the reference functions of `crate::ops`.

use super::cpu_pool as pool;
use super::Backend;
use crate::ops::{attention, elementwise, gate, layer_norm, linear, loss, optim};
use crate::ops::{elementwise::unary::Unary, gate::select::GateSelect, loss::parts::LossParts};
use crate::ops::{optim::AdamArgs, shape::expect_len};
use crate::rng::DropoutKey;
use crate::Result;

#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

#[allow(clippy::too_many_arguments)]
impl Backend for Cpu {
    type Buf = Vec<f32>;

    fn name(&self) -> String {
        "cpu".into()
    }
    fn len(&self, buf: &Vec<f32>) -> usize {
        buf.len()
    }
    fn zeros(&self, len: usize) -> Result<Vec<f32>> {
        Ok(pool::take(len))
    }
    fn unset(&self, len: usize) -> Result<Vec<f32>> {
        Ok(pool::take_any(len))
    }
    fn recycle(&self, buf: Vec<f32>) {
        pool::give(buf);
    }
    fn upload(&self, host: &[f32]) -> Result<Vec<f32>> {
        let mut v = pool::take_any(host.len());
        v.copy_from_slice(host);
        Ok(v)
    }
    fn upload_owned(&self, host: Vec<f32>) -> Result<Vec<f32>> {
        Ok(host)
    }
    fn download(&self, buf: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(buf.clone())
    }
    fn fill_zero(&self, buf: &mut Vec<f32>) -> Result<()> {
        pool::fill_zero(buf);
        Ok(())
    }
    fn copy(&self, dst: &mut Vec<f32>, src: &Vec<f32>) -> Result<()> {
        expect_len("copy", "src", src.len(), dst.len())?;
        pool::copy(dst, src);
        Ok(())
    }
    fn linear_fwd(
        &self,
        out: &mut Vec<f32>,
        inp: &Vec<f32>,
        w: &Vec<f32>,
        b: Option<&Vec<f32>>,
        n: usize,
        k: usize,
        m: usize,
    ) -> Result<()> {
        linear::check_fwd(out.len(), inp.len(), w.len(), b.map(|b| b.len()), n, k, m)?;
        linear::linear_fwd(out, inp, w, b.map(|x| x.as_slice()), n, k, m)
    }
    fn linear_bwd(
        &self,
        dinp: Option<&mut Vec<f32>>,
        dw: &mut Vec<f32>,
        db: Option<&mut Vec<f32>>,
        dout: &Vec<f32>,
        inp: &Vec<f32>,
        w: &Vec<f32>,
        n: usize,
        k: usize,
        m: usize,
    ) -> Result<()> {
        linear::cpu_bwd(dinp, false, dw, db, dout, inp, w, n, k, m)
    }
    fn linear_bwd_reads_codes(&self) -> bool {
        true
    }
    fn linear_bwd_codes(
        &self,
        dw: &mut Vec<f32>,
        db: Option<&mut Vec<f32>>,
        dout: &Vec<f32>,
        packed: &Vec<f32>,
        _w: &Vec<f32>,
        n: usize,
        k: usize,
        m: usize,
    ) -> Result<()> {
        crate::ops::codes::check("linear_bwd_codes", packed.len(), n * k)?;
        let codes = crate::ops::codes::bytes(packed);
        linear::linear_bwd_codes(dw, db.map(|d| d.as_mut_slice()), dout, codes, n, k, m)
    }
    fn linear_bwd_fresh(
        &self,
        dinp: &mut Vec<f32>,
        dw: &mut Vec<f32>,
        db: Option<&mut Vec<f32>>,
        dout: &Vec<f32>,
        inp: &Vec<f32>,
        w: &Vec<f32>,
        n: usize,
        k: usize,
        m: usize,
    ) -> Result<()> {
        linear::cpu_bwd(Some(dinp), true, dw, db, dout, inp, w, n, k, m)
    }
    fn layer_norm_fwd(
        &self,
        out: &mut Vec<f32>,
        mean: &mut Vec<f32>,
        rstd: &mut Vec<f32>,
        inp: &Vec<f32>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        n: usize,
        d: usize,
    ) -> Result<()> {
        layer_norm::cpu_fwd(out, mean, rstd, inp, gamma, beta, n, d)
    }
    fn layer_norm_bwd(
        &self,
        dinp: &mut Vec<f32>,
        dgamma: &mut Vec<f32>,
        dbeta: &mut Vec<f32>,
        dout: &Vec<f32>,
        inp: &Vec<f32>,
        mean: &Vec<f32>,
        rstd: &Vec<f32>,
        gamma: &Vec<f32>,
        n: usize,
        d: usize,
    ) -> Result<()> {
        layer_norm::cpu_bwd(
            dinp, false, dgamma, dbeta, dout, inp, mean, rstd, gamma, n, d,
        )
    }
    fn layer_norm_bwd_fresh(
        &self,
        dinp: &mut Vec<f32>,
        dgamma: &mut Vec<f32>,
        dbeta: &mut Vec<f32>,
        dout: &Vec<f32>,
        inp: &Vec<f32>,
        mean: &Vec<f32>,
        rstd: &Vec<f32>,
        gamma: &Vec<f32>,
        n: usize,
        d: usize,
    ) -> Result<()> {
        layer_norm::cpu_bwd(
            dinp, true, dgamma, dbeta, dout, inp, mean, rstd, gamma, n, d,
        )
    }
    fn gelu_fwd(&self, out: &mut Vec<f32>, inp: &Vec<f32>) -> Result<()> {
        elementwise::check_same("gelu_fwd", out.len(), &[("a", inp.len())])?;
        elementwise::gelu_fwd(out, inp);
        Ok(())
    }
    fn gelu_bwd(&self, dinp: &mut Vec<f32>, dout: &Vec<f32>, inp: &Vec<f32>) -> Result<()> {
        let lens = [("a", inp.len()), ("b", dout.len())];
        elementwise::check_same("gelu_bwd", dinp.len(), &lens)?;
        elementwise::gelu_bwd(dinp, dout, inp);
        Ok(())
    }
    fn gelu_bwd_fresh(&self, dinp: &mut Vec<f32>, dout: &Vec<f32>, inp: &Vec<f32>) -> Result<()> {
        let lens = [("a", inp.len()), ("b", dout.len())];
        elementwise::check_same("gelu_bwd", dinp.len(), &lens)?;
        elementwise::gelu_bwd_fresh(dinp, dout, inp);
        Ok(())
    }
    fn unary_fwd(&self, op: Unary, out: &mut Vec<f32>, inp: &Vec<f32>) -> Result<()> {
        elementwise::check_same(op.name(), out.len(), &[("a", inp.len())])?;
        elementwise::unary_fwd(op, out, inp);
        Ok(())
    }
    fn unary_bwd(
        &self,
        op: Unary,
        dinp: &mut Vec<f32>,
        dout: &Vec<f32>,
        inp: &Vec<f32>,
    ) -> Result<()> {
        let lens = [("a", inp.len()), ("b", dout.len())];
        elementwise::check_same(op.name(), dinp.len(), &lens)?;
        elementwise::unary_bwd(op, dinp, dout, inp);
        Ok(())
    }
    fn add_fwd(&self, out: &mut Vec<f32>, a: &Vec<f32>, b: &Vec<f32>) -> Result<()> {
        elementwise::check_same("add_fwd", out.len(), &[("a", a.len()), ("b", b.len())])?;
        elementwise::add_fwd(out, a, b);
        Ok(())
    }
    fn accumulate(&self, dst: &mut Vec<f32>, src: &Vec<f32>) -> Result<()> {
        elementwise::check_same("accumulate_fwd", dst.len(), &[("a", src.len())])?;
        dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
        Ok(())
    }
    fn ema_update(&self, ema: &mut Vec<f32>, w: &Vec<f32>, decay: f32) -> Result<()> {
        elementwise::check_same("ema_fwd", ema.len(), &[("w", w.len())])?;
        crate::train::ema::update_slice(ema, w, decay);
        Ok(())
    }
    fn dropout_fwd(
        &self,
        out: &mut Vec<f32>,
        inp: &Vec<f32>,
        p: f32,
        key: DropoutKey,
    ) -> Result<()> {
        elementwise::check_same("dropout_fwd", out.len(), &[("input", inp.len())])?;
        elementwise::dropout_fwd(out, inp, p, key);
        Ok(())
    }
    fn dropout_bwd(
        &self,
        dinp: &mut Vec<f32>,
        dout: &Vec<f32>,
        p: f32,
        key: DropoutKey,
    ) -> Result<()> {
        elementwise::check_same("dropout_bwd", dinp.len(), &[("input", dout.len())])?;
        elementwise::dropout_bwd(dinp, dout, p, key);
        Ok(())
    }
    fn dropout_bwd_fresh(
        &self,
        dinp: &mut Vec<f32>,
        dout: &Vec<f32>,
        p: f32,
        key: DropoutKey,
    ) -> Result<()> {
        elementwise::check_same("dropout_bwd", dinp.len(), &[("input", dout.len())])?;
        elementwise::dropout_bwd_fresh(dinp, dout, p, key);
        Ok(())
    }
    fn pos_enc_add(&self, h: &mut Vec<f32>, n: usize, d: usize) -> Result<()> {
        elementwise::check_pos_enc(h.len(), n, d)?;
        elementwise::pos_enc_add(h, n, d);
        Ok(())
    }
    fn linear_attention_fwd(
        &self,
        out: &mut Vec<f32>,
        s: &mut Vec<f32>,
        z: &mut Vec<f32>,
        q: &Vec<f32>,
        k: &Vec<f32>,
        v: &Vec<f32>,
        mask: &Vec<f32>,
        n: usize,
        d: usize,
        h: usize,
    ) -> Result<()> {
        attention::linear_attention_fwd(out, s, z, q, k, v, mask, n, d, h)
    }
    fn linear_attention_bwd(
        &self,
        dq: &mut Vec<f32>,
        dk: &mut Vec<f32>,
        dv: &mut Vec<f32>,
        dout: &Vec<f32>,
        q: &Vec<f32>,
        k: &Vec<f32>,
        v: &Vec<f32>,
        mask: &Vec<f32>,
        s: &Vec<f32>,
        z: &Vec<f32>,
        n: usize,
        d: usize,
        h: usize,
    ) -> Result<()> {
        attention::linear_attention_bwd(dq, dk, dv, dout, q, k, v, mask, s, z, n, d, h)
    }
    fn softmax_attention_fwd(
        &self,
        out: &mut Vec<f32>,
        lse: &mut Vec<f32>,
        q: &Vec<f32>,
        k: &Vec<f32>,
        v: &Vec<f32>,
        mask: &Vec<f32>,
        nq: usize,
        nk: usize,
        d: usize,
        h: usize,
    ) -> Result<()> {
        attention::softmax_attention_fwd(out, lse, q, k, v, mask, nq, nk, d, h)
    }
    fn softmax_attention_bwd(
        &self,
        dq: &mut Vec<f32>,
        dk: &mut Vec<f32>,
        dv: &mut Vec<f32>,
        dout: &Vec<f32>,
        out: &Vec<f32>,
        lse: &Vec<f32>,
        q: &Vec<f32>,
        k: &Vec<f32>,
        v: &Vec<f32>,
        mask: &Vec<f32>,
        nq: usize,
        nk: usize,
        d: usize,
        h: usize,
    ) -> Result<()> {
        attention::softmax_attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, mask, nq, nk, d, h)
    }
    fn gate_fwd(
        &self,
        xt: Option<&mut Vec<f32>>,
        g: &mut Vec<f32>,
        keep: &mut Vec<f32>,
        xbar: &mut Vec<f32>,
        u: &mut Vec<f32>,
        x: &Vec<f32>,
        mask: &Vec<f32>,
        cs: Option<&[f64]>,
        w: &Vec<f32>,
        a: &Vec<f32>,
        b: &Vec<f32>,
        select: GateSelect,
        n: usize,
        f: usize,
        r: usize,
    ) -> Result<()> {
        let lens = [
            g.len(),
            keep.len(),
            xbar.len(),
            u.len(),
            x.len(),
            mask.len(),
            w.len(),
            a.len(),
            b.len(),
        ];
        gate::check_fwd(xt.as_ref().map(|b| b.len()), lens, n, f, r)?;
        let xt = xt.map(|b| b.as_mut_slice());
        gate::gate_fwd(xt, g, keep, xbar, u, x, mask, cs, w, a, b, select, n, f, r);
        Ok(())
    }
    fn gate_bwd(
        &self,
        dw: &mut Vec<f32>,
        da: &mut Vec<f32>,
        db: &mut Vec<f32>,
        dg: &mut Vec<f32>,
        dxt: &Vec<f32>,
        x: &Vec<f32>,
        xbar: &Vec<f32>,
        u: &Vec<f32>,
        g: &Vec<f32>,
        keep: &Vec<f32>,
        b: &Vec<f32>,
        n: usize,
        f: usize,
        r: usize,
    ) -> Result<()> {
        let lens = [
            dw.len(),
            da.len(),
            db.len(),
            dg.len(),
            dxt.len(),
            x.len(),
            xbar.len(),
            u.len(),
            g.len(),
            keep.len(),
            b.len(),
        ];
        gate::check_bwd(lens, n, f, r)?;
        gate::gate_bwd(dw, da, db, dg, dxt, x, xbar, u, g, keep, b, n, f, r);
        Ok(())
    }
    fn mse_sparsity_fwd(
        &self,
        yhat: &Vec<f32>,
        y: &Vec<f32>,
        mask: &Vec<f32>,
        g: &Vec<f32>,
        lambda: f32,
        n: usize,
        t: usize,
    ) -> Result<LossParts> {
        loss::check(yhat.len(), y.len(), mask.len(), None, n, t)?;
        Ok(loss::mse_sparsity_fwd(yhat, y, mask, g, lambda, n, t))
    }
    fn mse_sparsity_bwd(
        &self,
        dyhat: &mut Vec<f32>,
        dg: &mut Vec<f32>,
        yhat: &Vec<f32>,
        y: &Vec<f32>,
        mask: &Vec<f32>,
        lambda: f32,
        n: usize,
        t: usize,
    ) -> Result<()> {
        loss::check(yhat.len(), y.len(), mask.len(), Some(dyhat.len()), n, t)?;
        loss::mse_sparsity_bwd(dyhat, dg, yhat, y, mask, lambda, n, t);
        Ok(())
    }
    fn corr_loss_fwd(
        &self,
        stats: &mut Vec<f32>,
        yhat: &Vec<f32>,
        y: &Vec<f32>,
        mask: &Vec<f32>,
        n: usize,
        t: usize,
    ) -> Result<crate::ops::corr_loss::CorrParts> {
        crate::ops::corr_loss::check(yhat.len(), y.len(), mask.len(), stats.len(), None, n, t)?;
        Ok(crate::ops::corr_loss::corr_loss_fwd(
            stats, yhat, y, mask, n, t,
        ))
    }
    fn corr_loss_bwd(
        &self,
        dyhat: &mut Vec<f32>,
        yhat: &Vec<f32>,
        y: &Vec<f32>,
        mask: &Vec<f32>,
        stats: &Vec<f32>,
        weight: f32,
        n: usize,
        t: usize,
    ) -> Result<()> {
        crate::ops::corr_loss::check(
            yhat.len(),
            y.len(),
            mask.len(),
            stats.len(),
            Some(dyhat.len()),
            n,
            t,
        )?;
        crate::ops::corr_loss::corr_loss_bwd(dyhat, yhat, y, mask, stats, weight, n, t);
        Ok(())
    }
    fn ortho_loss_fwd(
        &self,
        stats: &mut Vec<f32>,
        gmat: &mut Vec<f32>,
        h: &Vec<f32>,
        mask: &Vec<f32>,
        weight: f32,
        n: usize,
        d: usize,
    ) -> Result<f32> {
        use crate::ops::ortho_loss as o;
        o::check(h.len(), mask.len(), stats.len(), gmat.len(), None, n, d)?;
        Ok(o::ortho_loss_fwd(stats, gmat, h, mask, weight, n, d))
    }
    fn ortho_loss_bwd(
        &self,
        dh: &mut Vec<f32>,
        h: &Vec<f32>,
        mask: &Vec<f32>,
        stats: &Vec<f32>,
        gmat: &Vec<f32>,
        n: usize,
        d: usize,
    ) -> Result<()> {
        use crate::ops::ortho_loss as o;
        o::check(
            h.len(),
            mask.len(),
            stats.len(),
            gmat.len(),
            Some(dh.len()),
            n,
            d,
        )?;
        o::ortho_loss_bwd(dh, h, mask, stats, gmat, n, d);
        Ok(())
    }
    fn mask_fill_fwd(
        &self,
        out: &mut Vec<f32>,
        x: &Vec<f32>,
        fill: &Vec<f32>,
        mv: &Vec<f32>,
        n: usize,
        f: usize,
    ) -> Result<()> {
        use crate::ops::mask_fill as m;
        m::check(out.len(), x.len(), fill.len(), mv.len(), n, f)?;
        m::mask_fill_fwd(out, x, fill, mv, n, f);
        Ok(())
    }
    fn mask_fill_bwd(
        &self,
        dx: Option<&mut Vec<f32>>,
        dmv: &mut Vec<f32>,
        dout: &Vec<f32>,
        fill: &Vec<f32>,
        n: usize,
        f: usize,
    ) -> Result<()> {
        use crate::ops::mask_fill as m;
        let xl = dx.as_ref().map_or(n * f, |b| b.len());
        m::check(dout.len(), xl, fill.len(), dmv.len(), n, f)?;
        m::mask_fill_bwd(dx.map(|b| b.as_mut_slice()), dmv, dout, fill, n, f);
        Ok(())
    }
    fn col_scale_fwd(
        &self,
        out: &mut Vec<f32>,
        w: &Vec<f32>,
        g: &Vec<f32>,
        keep: &Vec<f32>,
        m: usize,
        k: usize,
    ) -> Result<()> {
        crate::ops::col_scale::fwd_checked(out, w, g, keep, m, k)
    }
    fn col_scale_bwd(
        &self,
        dw: &mut Vec<f32>,
        dg: &mut Vec<f32>,
        dout: &Vec<f32>,
        w: &Vec<f32>,
        g: &Vec<f32>,
        keep: &Vec<f32>,
        m: usize,
        k: usize,
    ) -> Result<()> {
        crate::ops::col_scale::bwd_checked(dw, dg, dout, w, g, keep, m, k)
    }
    fn film_fwd(
        &self,
        out: &mut Vec<f32>,
        inp: &Vec<f32>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        n: usize,
        d: usize,
    ) -> Result<()> {
        crate::ops::film::check(out.len(), inp.len(), gamma.len(), beta.len(), n, d)?;
        crate::ops::film::film_fwd(out, inp, gamma, beta, n, d);
        Ok(())
    }
    fn film_bwd(
        &self,
        dinp: &mut Vec<f32>,
        dgamma: &mut Vec<f32>,
        dbeta: &mut Vec<f32>,
        dout: &Vec<f32>,
        inp: &Vec<f32>,
        gamma: &Vec<f32>,
        n: usize,
        d: usize,
    ) -> Result<()> {
        crate::ops::film::check(dinp.len(), inp.len(), gamma.len(), dgamma.len(), n, d)?;
        crate::ops::shape::expect_len("film_bwd", "dout", dout.len(), n * d)?;
        crate::ops::shape::expect_len("film_bwd", "dbeta", dbeta.len(), d)?;
        crate::ops::film::film_bwd(dinp, dgamma, dbeta, dout, inp, gamma, n, d);
        Ok(())
    }
    fn glu_fwd(
        &self,
        out: &mut Vec<f32>,
        a: &Vec<f32>,
        b: &Vec<f32>,
        n: usize,
        m: usize,
    ) -> Result<()> {
        crate::ops::glu::check(out.len(), a.len(), b.len(), n, m)?;
        crate::ops::glu::glu_fwd(out, a, b);
        Ok(())
    }
    fn glu_bwd(
        &self,
        da: &mut Vec<f32>,
        db: &mut Vec<f32>,
        dout: &Vec<f32>,
        a: &Vec<f32>,
        b: &Vec<f32>,
        n: usize,
        m: usize,
    ) -> Result<()> {
        crate::ops::glu::check(da.len(), a.len(), b.len(), n, m)?;
        crate::ops::shape::expect_len("glu_bwd", "db", db.len(), n * m)?;
        crate::ops::shape::expect_len("glu_bwd", "dout", dout.len(), n * m)?;
        crate::ops::glu::glu_bwd(da, db, dout, a, b);
        Ok(())
    }
    fn row_add_fwd(
        &self,
        out: &mut Vec<f32>,
        x: &Vec<f32>,
        r: &Vec<f32>,
        n: usize,
        m: usize,
    ) -> Result<()> {
        crate::ops::row_add::check(out.len(), x.len(), r.len(), n, m)?;
        crate::ops::row_add::row_add_fwd(out, x, r, n, m);
        Ok(())
    }
    fn row_add_bwd(
        &self,
        dx: Option<&mut Vec<f32>>,
        dr: &mut Vec<f32>,
        dout: &Vec<f32>,
        n: usize,
        m: usize,
    ) -> Result<()> {
        crate::ops::row_add::check(dout.len(), dout.len(), dr.len(), n, m)?;
        if let Some(dx) = &dx {
            crate::ops::shape::expect_len("row_add_bwd", "dx", dx.len(), n * m)?;
        }
        crate::ops::row_add::row_add_bwd(dx.map(|d| d.as_mut_slice()), dr, dout, n, m);
        Ok(())
    }
    fn vsn_fwd(
        &self,
        xt: &mut Vec<f32>,
        v: &mut Vec<f32>,
        m: &mut Vec<f32>,
        keep: &mut Vec<f32>,
        s: &mut Vec<f32>,
        wsum: &mut Vec<f32>,
        z: &Vec<f32>,
        x: &Vec<f32>,
        mask: &Vec<f32>,
        select: GateSelect,
        n: usize,
        f: usize,
    ) -> Result<()> {
        crate::ops::vsn::vsn_fwd_checked(xt, v, m, keep, s, wsum, z, x, mask, select, n, f)
    }
    fn vsn_bwd(
        &self,
        dz: &mut Vec<f32>,
        dxt: &Vec<f32>,
        dm: &Vec<f32>,
        ds: &Vec<f32>,
        x: &Vec<f32>,
        v: &Vec<f32>,
        m: &Vec<f32>,
        keep: &Vec<f32>,
        mask: &Vec<f32>,
        wsum: &Vec<f32>,
        n: usize,
        f: usize,
    ) -> Result<()> {
        crate::ops::vsn::vsn_bwd_checked(dz, dxt, dm, ds, x, v, m, keep, mask, wsum, n, f)
    }
    fn sum_squares(&self, g: &Vec<f32>) -> Result<f64> {
        Ok(optim::sum_squares(g))
    }
    fn adam_step(
        &self,
        p: &mut Vec<f32>,
        g: &Vec<f32>,
        m: &mut Vec<f32>,
        v: &mut Vec<f32>,
        args: &AdamArgs,
    ) -> Result<()> {
        optim::check_adam(p.len(), g.len(), m.len(), v.len())?;
        optim::adam_step(p, g, m, v, args);
        Ok(())
    }
}
