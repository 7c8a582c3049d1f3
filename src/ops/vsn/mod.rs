//! Variable selection (TFT's VSN, docs/model.md) after its GRN: z: [n, F] logits (one GRN
//! output per row), x: [n, F] features, mask: [n].
//!   v_i = softmax_f(z_i)                               (every row, max-subtracted, sum in f64)
//!   W = Σ_i mask_i;  m_f = Σ_i mask_i v_if / W          (0 when W = 0: a fully masked era)
//!   keep_f = 1[m_f ≥ τ/F] (τ/F rounded to f32), or top-k: the k largest m_f (ties to the lower
//!            index, as the gate)
//!   xt_if = x_if · (F · v_if · keep_f)                 (uniform v = 1/F changes nothing)
//!   s_f = −F · m_f · ln(m_f + ε) / ln F, ε = 1e−12      (s = 0 when F = 1)
//! mean_f s_f is the normalised entropy H(m)/ln F of the era-mean weights (up to ε): the sparsity
//! term the loss takes in place of the gate values (mean_f m_f is the constant 1/F).
//! Outputs xt, m, keep, s; saves v [n, F] and wsum = [W].
//! Backward (keep is a constant; x is a constant input, no dx), ACCUMULATES into dz:
//!   μ_f = dm_f + ds_f · s'(m_f),  s'(m) = −F (ln(m + ε) + m/(m + ε)) / ln F
//!   dv_if = F keep_f x_if dxt_if + (W > 0 ? mask_i μ_f / W : 0)
//!   dz_if += v_if (dv_if − Σ_f' v_if' dv_if')
//! μ, dv and the row sums in f64.

use super::gate::select::{select_gates, GateSelect};
use super::gemm::Simd;
use super::par;
use super::scalar::exp_f32;
use super::shape::expect_len;
use crate::device::Backend;
use crate::tape::base::{Node, Tape, T};
use crate::{Error, Result};

pub(crate) mod gpu;

/// ε inside the logarithm of the sparsity vector.
pub const VSN_EPS: f64 = 1e-12;

/// τ/F as the threshold on the era-mean weights (f32, the same on every device).
pub fn threshold_on_means(select: GateSelect, f: usize) -> GateSelect {
    match select {
        GateSelect::Threshold(tau) => GateSelect::Threshold(tau / f as f32),
        s => s,
    }
}

/// s_f from m_f (f64).
#[inline]
pub fn sparsity_of(m: f64, f: usize) -> f64 {
    if f <= 1 {
        return 0.0;
    }
    -(f as f64) * m * (m + VSN_EPS).ln() / (f as f64).ln()
}

/// s'(m) (f64).
#[inline]
pub fn sparsity_grad(m: f64, f: usize) -> f64 {
    if f <= 1 {
        return 0.0;
    }
    -(f as f64) * ((m + VSN_EPS).ln() + m / (m + VSN_EPS)) / (f as f64).ln()
}

#[allow(clippy::too_many_arguments)]
pub fn vsn_fwd(
    xt: &mut [f32],
    v: &mut [f32],
    m: &mut [f32],
    keep: &mut [f32],
    s: &mut [f32],
    wsum: &mut [f32],
    z: &[f32],
    x: &[f32],
    mask: &[f32],
    select: GateSelect,
    n: usize,
    f: usize,
) {
    if f == 0 {
        wsum[0] = 0.0;
        return;
    }
    // softmax of every row
    if n > 0 {
        let chunk = par::chunk_rows(n, 8 * f);
        let simd = Simd::detect();
        par::run(v[..n * f].chunks_mut(chunk * f).enumerate(), |(c, vc)| {
            let r0 = c * chunk;
            // at the SIMD path's width (exp_f32's fused multiply-adds are instructions there)
            simd.run(
                #[inline(always)]
                || {
                    for (ii, vrow) in vc.chunks_mut(f).enumerate() {
                        let zr = &z[(r0 + ii) * f..(r0 + ii + 1) * f];
                        softmax_row(vrow, zr);
                    }
                },
            )
        });
    }
    // era mean over unmasked rows
    let mut w = 0f64;
    let mut sum = vec![0f64; f];
    for (i, &mi) in mask[..n].iter().enumerate() {
        if mi == 0.0 {
            continue;
        }
        w += mi as f64;
        for (sv, &vv) in sum.iter_mut().zip(&v[i * f..(i + 1) * f]) {
            *sv += mi as f64 * vv as f64;
        }
    }
    wsum[0] = w as f32;
    for c in 0..f {
        let mv = if w > 0.0 { sum[c] / w } else { 0.0 };
        m[c] = mv as f32;
        s[c] = sparsity_of(mv, f) as f32;
    }
    select_gates(&mut keep[..f], &m[..f], threshold_on_means(select, f));
    if n == 0 {
        return;
    }
    let (v, keep) = (&*v, &*keep);
    let ff = f as f32;
    let chunk = par::chunk_rows(n, f);
    par::run(xt[..n * f].chunks_mut(chunk * f).enumerate(), |(c, xc)| {
        let r0 = c * chunk;
        for (ii, row) in xc.chunks_mut(f).enumerate() {
            let base = (r0 + ii) * f;
            for (j, o) in row.iter_mut().enumerate() {
                *o = x[base + j] * (ff * v[base + j] * keep[j]);
            }
        }
    });
}

/// v = softmax(z) for one row: e = exp_f32(z − max), v = e / Σ e (sum in f64). A row of NaN gives NaN.
#[inline(always)]
fn softmax_row(v: &mut [f32], z: &[f32]) {
    let mx = z
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    let mut sum = 0f64;
    for (o, &zv) in v.iter_mut().zip(z) {
        let e = exp_f32(zv - mx);
        *o = e;
        sum += e as f64;
    }
    for o in v.iter_mut() {
        *o = (*o as f64 / sum) as f32;
    }
}

#[allow(clippy::too_many_arguments)]
pub fn vsn_bwd(
    dz: &mut [f32],
    dxt: &[f32],
    dm: &[f32],
    ds: &[f32],
    x: &[f32],
    v: &[f32],
    m: &[f32],
    keep: &[f32],
    mask: &[f32],
    wsum: &[f32],
    n: usize,
    f: usize,
) {
    if n == 0 || f == 0 {
        return;
    }
    let mu: Vec<f64> = (0..f)
        .map(|c| dm[c] as f64 + ds[c] as f64 * sparsity_grad(m[c] as f64, f))
        .collect();
    let w = wsum[0] as f64;
    let ff = f as f64;
    let mu = &mu;
    let chunk = par::chunk_rows(n, 6 * f);
    par::run(dz[..n * f].chunks_mut(chunk * f).enumerate(), |(c, dc)| {
        let r0 = c * chunk;
        let mut dv = vec![0f64; f];
        for (ii, drow) in dc.chunks_mut(f).enumerate() {
            let i = r0 + ii;
            let base = i * f;
            let wi = if w > 0.0 { mask[i] as f64 / w } else { 0.0 };
            let mut dot = 0f64;
            for j in 0..f {
                let d =
                    ff * keep[j] as f64 * x[base + j] as f64 * dxt[base + j] as f64 + wi * mu[j];
                dv[j] = d;
                dot += v[base + j] as f64 * d;
            }
            for (j, o) in drow.iter_mut().enumerate() {
                *o = (*o as f64 + v[base + j] as f64 * (dv[j] - dot)) as f32;
            }
        }
    });
}

// ---- shapes, tape record and backward -------------------------------------------------------

/// Shape rule on every device: xt, v, z, x [n·F]; m, keep, s [F]; wsum [1]; mask [n].
#[allow(clippy::too_many_arguments)]
pub fn check(
    xt: usize,
    v: usize,
    m: usize,
    keep: usize,
    s: usize,
    wsum: usize,
    z: usize,
    x: usize,
    mask: usize,
    n: usize,
    f: usize,
) -> Result<()> {
    let nf = n
        .checked_mul(f)
        .ok_or_else(|| Error::shape(format!("vsn: n·F = {n}·{f} overflows")))?;
    for (name, have) in [("xt", xt), ("v", v), ("z", z), ("x", x)] {
        expect_len("vsn", name, have, nf)?;
    }
    for (name, have) in [("m", m), ("keep", keep), ("s", s)] {
        expect_len("vsn", name, have, f)?;
    }
    expect_len("vsn", "wsum", wsum, 1)?;
    expect_len("vsn", "mask", mask, n)
}

/// What [`Tape::vsn`] returns: the selected input and the era-level vectors.
#[derive(Clone, Copy, Debug)]
pub struct VsnOut {
    /// [n, F] F · v ⊙ x ⊙ keep
    pub xt: T,
    /// [F] era-mean weights m
    pub m: T,
    /// [F] 1.0 where the feature is kept
    pub keep: T,
    /// [F] sparsity vector s (mean = H(m)/ln F)
    pub s: T,
}

impl<B: Backend> Tape<B> {
    /// Variable selection from per-row logits z: [n, F] (module doc).
    #[allow(clippy::too_many_arguments)]
    pub fn vsn(
        &mut self,
        dev: &B,
        z: T,
        x: T,
        mask: T,
        select: GateSelect,
        n: usize,
        f: usize,
    ) -> Result<VsnOut> {
        let (lz, lx, lm) = (self.len_of(z), self.len_of(x), self.len_of(mask));
        check(n * f, n * f, f, f, f, 1, lz, lx, lm, n, f)?;
        let xt = self.new_tensor(dev, n * f)?;
        let v = self.new_tensor(dev, n * f)?;
        let m = self.new_tensor(dev, f)?;
        let keep = self.new_tensor(dev, f)?;
        let s = self.new_tensor(dev, f)?;
        let wsum = self.new_tensor(dev, 1)?;
        let mut bufs = [xt, v, m, keep, s, wsum]
            .iter()
            .map(|&t| self.take(t))
            .collect::<Result<Vec<_>>>()?;
        let r = match &mut bufs[..] {
            [bxt, bv, bm, bk, bs, bw] => dev.vsn_fwd(
                bxt,
                bv,
                bm,
                bk,
                bs,
                bw,
                self.buf(z)?,
                self.buf(x)?,
                self.buf(mask)?,
                select,
                n,
                f,
            ),
            _ => Err(Error::device("vsn: buffer count".to_string())),
        };
        for (t, b) in [xt, v, m, keep, s, wsum].into_iter().zip(bufs) {
            self.put(t, b);
        }
        r?;
        self.record(Node::Vsn {
            xt,
            m,
            keep,
            s,
            v,
            wsum,
            z,
            x,
            mask,
            n,
            f,
        });
        Ok(VsnOut { xt, m, keep, s })
    }
}

/// Backward of [`Node::Vsn`].
pub(crate) fn backward<B: Backend>(tape: &mut Tape<B>, dev: &B, node: &Node) -> Result<()> {
    let Node::Vsn {
        xt,
        m,
        keep,
        s,
        v,
        wsum,
        z,
        x,
        mask,
        n,
        f,
    } = *node
    else {
        return Err(Error::device("vsn::backward on another node".to_string()));
    };
    let dxt = tape.take_grad_if_any(xt);
    let dm = tape.take_grad_if_any(m);
    let ds = tape.take_grad_if_any(s);
    if dxt.is_some() || dm.is_some() || ds.is_some() {
        let dxt = match dxt {
            Some(b) => b,
            None => dev.zeros(n * f)?,
        };
        let dm = match dm {
            Some(b) => b,
            None => dev.zeros(f)?,
        };
        let ds = match ds {
            Some(b) => b,
            None => dev.zeros(f)?,
        };
        let mut dz = tape.take_grad(dev, z)?;
        let r = dev.vsn_bwd(
            &mut dz,
            &dxt,
            &dm,
            &ds,
            tape.buf(x)?,
            tape.buf(v)?,
            tape.buf(m)?,
            tape.buf(keep)?,
            tape.buf(mask)?,
            tape.buf(wsum)?,
            n,
            f,
        );
        tape.put_grad(z, dz);
        for b in [dxt, dm, ds] {
            dev.recycle(b);
        }
        r?;
    }
    for t in [xt, m, keep, s, v, wsum] {
        tape.free(dev, t);
    }
    Ok(())
}

/// [`vsn_fwd`] after the shape rule ([`check`]): what the CPU backend runs.
#[allow(clippy::too_many_arguments)]
pub fn vsn_fwd_checked(
    xt: &mut [f32],
    v: &mut [f32],
    m: &mut [f32],
    keep: &mut [f32],
    s: &mut [f32],
    wsum: &mut [f32],
    z: &[f32],
    x: &[f32],
    mask: &[f32],
    select: GateSelect,
    n: usize,
    f: usize,
) -> Result<()> {
    check(
        xt.len(),
        v.len(),
        m.len(),
        keep.len(),
        s.len(),
        wsum.len(),
        z.len(),
        x.len(),
        mask.len(),
        n,
        f,
    )?;
    vsn_fwd(xt, v, m, keep, s, wsum, z, x, mask, select, n, f);
    Ok(())
}

/// [`vsn_bwd`] after the shape rule ([`check`]): what the CPU backend runs.
#[allow(clippy::too_many_arguments)]
pub fn vsn_bwd_checked(
    dz: &mut [f32],
    dxt: &[f32],
    dm: &[f32],
    ds: &[f32],
    x: &[f32],
    v: &[f32],
    m: &[f32],
    keep: &[f32],
    mask: &[f32],
    wsum: &[f32],
    n: usize,
    f: usize,
) -> Result<()> {
    check(
        dxt.len(),
        v.len(),
        m.len(),
        keep.len(),
        ds.len(),
        wsum.len(),
        dz.len(),
        x.len(),
        mask.len(),
        n,
        f,
    )?;
    crate::ops::shape::expect_len("vsn_bwd", "dm", dm.len(), f)?;
    vsn_bwd(dz, dxt, dm, ds, x, v, m, keep, mask, wsum, n, f);
    Ok(())
}
