//! Masked multi-head attention, fused: never materialises an n × n matrix.
//! q, k, v, out: [n, d]; head k owns columns [k·dh, (k+1)·dh).
//!
//! Linear (SPEC §3): φ = elu + 1, S = Σ_j m_j φ(K_j) V_jᵀ [dh,dh], z = Σ_j m_j φ(K_j) [dh],
//! O_i = φ(Q_i)ᵀ S / (φ(Q_i)ᵀ z + eps). Saves s[h·dh·dh] and z[h·dh].
//! Softmax (cross-attention): queries q, out [nq, d], keys and values k, v [nk, d], key mask [nk];
//! O_i = Σ_j m_j softmax_j(Q_i·K_j/√dh) V_j (online softmax); saves lse[h·nq]. Self-attention is
//! nq = nk = n with the row mask as the key mask.
//!
//! Layouts: s[hd·dh·dh + a·dh + b] = S_hd[a, b]; z[hd·dh + a]; lse[hd·n + i] = log Σ_j exp(score_ij)
//! over the row's keys (lse[hd·nq + i] in cross-attention). In softmax attention a key j takes part
//! iff mask[j] ≠ 0; a query with no such key (a fully masked era) outputs 0, saves lse = 0 and gets
//! zero gradient (as do q, k, v through it). h must divide d.
//!
//! Linear backward, with p_i = φ(Q_i), num_i = p_iᵀS, den_i = p_i·z + eps, O_i = num_i / den_i:
//! dnum_i = dO_i / den_i, dden_i = −(dO_i·O_i) / den_i, dp_i = S dnum_i + dden_i z,
//! dS = Σ_i p_i dnum_iᵀ, dz = Σ_i dden_i p_i; then dφ(K_j) = m_j (dS V_j + dz), dV_j = m_j dSᵀ φ(K_j).
//! Softmax backward (flash style, scores recomputed from lse): P_ij = exp(s_ij − lse_i),
//! D_i = dO_i·O_i, dS_ij = P_ij (dO_i·V_j − D_i); dQ_i += Σ_j dS_ij K_j/√dh, dK_j += Σ_i dS_ij Q_i/√dh,
//! dV_j += Σ_i P_ij dO_i. dQ runs over query rows, dK and dV over key rows, so no two threads write
//! the same row. Sums over rows (S, z, dS, dz, softmax accumulators) are f32 within a block of
//! 64 rows (or keys) and f64 across blocks.

use super::par;
pub use super::scalar::exp_f32;
use super::scalar::{elu1, elu1_grad};
use crate::Result;

pub(crate) mod gpu;
#[cfg(target_arch = "x86_64")]
mod lanes;
mod linear_cpu;
#[cfg(target_arch = "x86_64")]
mod linear_simd;
mod softmax_cpu;
#[cfg(target_arch = "x86_64")]
mod softmax_pack;
#[cfg(target_arch = "x86_64")]
mod softmax_simd;
#[cfg(target_arch = "x86_64")]
mod softmax_tile;
mod tape;
pub use linear_cpu::{linear_attention_bwd_on, linear_attention_fwd_on};
pub use softmax_cpu::{softmax_attention_bwd_on, softmax_attention_fwd_on};
pub(crate) use tape::backward;
pub use tape::{check_linear_bwd, check_linear_fwd, check_softmax_bwd, check_softmax_fwd};

pub const ATTN_EPS: f32 = 1e-6;

/// Keys scored together in the online softmax (one rescale of the accumulator per block).
const KEY_BLOCK: usize = 64;

/// Rows summed in f32 before the partial sum is added to the f64 total.
const ROW_BLOCK: usize = 64;

/// dst[i] += src[i] in f64, then src is cleared.
#[inline(always)]
fn flush(dst: &mut [f64], src: &mut [f32]) {
    for (x, s) in dst.iter_mut().zip(src.iter_mut()) {
        *x += *s as f64;
        *s = 0.0;
    }
}

/// The fused forward (the CPU backend's): the shape rule every device shares, then
/// [`linear_attention_fwd_on`] on the detected SIMD path.
#[allow(clippy::too_many_arguments)]
pub fn linear_attention_fwd(
    out: &mut [f32],
    s: &mut [f32],
    z: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    n: usize,
    d: usize,
    h: usize,
) -> Result<()> {
    let (o, sl, zl) = (out.len(), s.len(), z.len());
    let (ql, kl, vl, ml) = (q.len(), k.len(), v.len(), mask.len());
    if check_linear_fwd(o, sl, zl, ql, kl, vl, ml, n, d, h)?.is_some() {
        linear_attention_fwd_on(None, out, s, z, q, k, v, mask, n, d, h);
    }
    Ok(())
}

/// The fused backward (the CPU backend's): the shape rule, then [`linear_attention_bwd_on`] on the
/// detected SIMD path.
#[allow(clippy::too_many_arguments)]
pub fn linear_attention_bwd(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    s: &[f32],
    z: &[f32],
    n: usize,
    d: usize,
    h: usize,
) -> Result<()> {
    let g = [dq.len(), dk.len(), dv.len(), dout.len()];
    let bufs = [g[0], g[1], g[2], g[3], q.len(), k.len(), v.len()];
    if check_linear_bwd(bufs, mask.len(), s.len(), z.len(), n, d, h)?.is_some() {
        linear_attention_bwd_on(None, dq, dk, dv, dout, q, k, v, mask, s, z, n, d, h);
    }
    Ok(())
}

/// The straightforward forward, head by head (the fused one's test twin; same results up to f32
/// rounding).
#[allow(clippy::too_many_arguments)]
pub fn linear_attention_fwd_naive(
    out: &mut [f32],
    s: &mut [f32],
    z: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    n: usize,
    d: usize,
    h: usize,
) {
    if d == 0 || h == 0 {
        return;
    }
    let dh = d / h;
    // S and z per head, parallel over heads
    let hc = par::chunk_rows(h, 3 * n * dh * dh);
    let items = s[..h * dh * dh]
        .chunks_mut(hc * dh * dh)
        .zip(z[..h * dh].chunks_mut(hc * dh))
        .enumerate();
    par::run(items, |(c, (sc, zc))| {
        let mut sacc = vec![0f64; dh * dh];
        let mut zacc = vec![0f64; dh];
        let mut sblk = vec![0f32; dh * dh];
        let mut zblk = vec![0f32; dh];
        let mut pk = vec![0f32; dh];
        for (hl, (sh, zh)) in sc.chunks_mut(dh * dh).zip(zc.chunks_mut(dh)).enumerate() {
            let hd = c * hc + hl;
            sacc.fill(0.0);
            zacc.fill(0.0);
            for j0 in (0..n).step_by(ROW_BLOCK) {
                for j in j0..(j0 + ROW_BLOCK).min(n) {
                    let mj = mask[j];
                    if mj == 0.0 {
                        continue;
                    }
                    // seek to head hd of row j: k[j, hd·dh ..]
                    let kr = &k[j * d + hd * dh..][..dh];
                    let vr = &v[j * d + hd * dh..][..dh];
                    for ((p, zb), &kv) in pk.iter_mut().zip(zblk.iter_mut()).zip(kr) {
                        *p = mj * elu1(kv);
                        *zb += *p;
                    }
                    for (srow, &pa) in sblk.chunks_exact_mut(dh).zip(&pk) {
                        for (sv, &vb) in srow.iter_mut().zip(vr) {
                            *sv += pa * vb;
                        }
                    }
                }
                flush(&mut sacc, &mut sblk);
                flush(&mut zacc, &mut zblk);
            }
            for (o, &a) in sh.iter_mut().zip(&sacc) {
                *o = a as f32;
            }
            for (o, &a) in zh.iter_mut().zip(&zacc) {
                *o = a as f32;
            }
        }
    });
    if n == 0 {
        return;
    }
    let (s, z) = (&*s, &*z);
    let chunk = par::chunk_rows(n, 3 * d * dh);
    par::run(out[..n * d].chunks_mut(chunk * d).enumerate(), |(c, oc)| {
        let r0 = c * chunk;
        let mut p = vec![0f32; dh];
        for (ii, orow) in oc.chunks_mut(d).enumerate() {
            let i = r0 + ii;
            for hd in 0..h {
                let qr = &q[i * d + hd * dh..][..dh];
                let sh = &s[hd * dh * dh..(hd + 1) * dh * dh];
                let zh = &z[hd * dh..(hd + 1) * dh];
                for (pa, &qa) in p.iter_mut().zip(qr) {
                    *pa = elu1(qa);
                }
                let den = dot(&p, zh) + ATTN_EPS;
                // num = pᵀ S, accumulated straight into the output row
                let o = &mut orow[hd * dh..(hd + 1) * dh];
                o.fill(0.0);
                for (&pa, srow) in p.iter().zip(sh.chunks_exact(dh)) {
                    for (ov, &sv) in o.iter_mut().zip(srow) {
                        *ov += pa * sv;
                    }
                }
                let inv = 1.0 / den;
                for ov in o.iter_mut() {
                    *ov *= inv;
                }
            }
        }
    });
}

/// The straightforward backward (the fused one's test twin).
#[allow(clippy::too_many_arguments)]
pub fn linear_attention_bwd_naive(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    s: &[f32],
    z: &[f32],
    n: usize,
    d: usize,
    h: usize,
) {
    if n == 0 || d == 0 || h == 0 {
        return;
    }
    let dh = d / h;
    let nsz = h * dh * dh + h * dh;
    // pass 1, over query rows: dq, and partial dS [h·dh·dh] | dz [h·dh] per chunk
    let chunk = par::chunk_rows(n, 6 * d * dh);
    let partials = par::run(dq[..n * d].chunks_mut(chunk * d).enumerate(), |(c, dqc)| {
        let r0 = c * chunk;
        let mut acc = vec![0f64; nsz];
        let mut blk = vec![0f32; nsz];
        let mut p = vec![0f32; dh];
        let mut num = vec![0f32; dh];
        let mut dnum = vec![0f32; dh];
        let rows = dqc.len() / d;
        for (ii, dqrow) in dqc.chunks_mut(d).enumerate() {
            let i = r0 + ii;
            for hd in 0..h {
                let off = i * d + hd * dh;
                let qr = &q[off..off + dh];
                let go = &dout[off..off + dh];
                let sh = &s[hd * dh * dh..(hd + 1) * dh * dh];
                let zh = &z[hd * dh..(hd + 1) * dh];
                for (pa, &qa) in p.iter_mut().zip(qr) {
                    *pa = elu1(qa);
                }
                let den = dot(&p, zh) + ATTN_EPS;
                num.fill(0.0);
                for (&pa, srow) in p.iter().zip(sh.chunks_exact(dh)) {
                    for (nb, &sv) in num.iter_mut().zip(srow) {
                        *nb += pa * sv;
                    }
                }
                // dden = −(dO·O)/den with O = num/den
                let inv = 1.0 / den;
                let dden = -dot(go, &num) * inv * inv;
                for (dn, &g) in dnum.iter_mut().zip(go) {
                    *dn = g * inv;
                }
                let (ds, dz) = blk.split_at_mut(h * dh * dh);
                let ds = &mut ds[hd * dh * dh..(hd + 1) * dh * dh];
                let dz = &mut dz[hd * dh..(hd + 1) * dh];
                for (a, (srow, dsrow)) in
                    sh.chunks_exact(dh).zip(ds.chunks_exact_mut(dh)).enumerate()
                {
                    let dp = dden * zh[a] + dot(&dnum, srow);
                    dqrow[hd * dh + a] += dp * elu1_grad(qr[a]);
                    dz[a] += dden * p[a];
                    for (dsv, &dn) in dsrow.iter_mut().zip(&dnum) {
                        *dsv += p[a] * dn;
                    }
                }
            }
            if (ii + 1) % ROW_BLOCK == 0 || ii + 1 == rows {
                flush(&mut acc, &mut blk);
            }
        }
        acc
    });
    let mut total = vec![0f64; nsz];
    for part in partials {
        for (t, x) in total.iter_mut().zip(part) {
            *t += x;
        }
    }
    let total: Vec<f32> = total.iter().map(|&x| x as f32).collect();
    let (ds, dz) = total.split_at(h * dh * dh);
    // pass 2, over key rows: dk and dv
    let items = dk[..n * d]
        .chunks_mut(chunk * d)
        .zip(dv[..n * d].chunks_mut(chunk * d))
        .enumerate();
    par::run(items, |(c, (dkc, dvc))| {
        let r0 = c * chunk;
        for (jj, (dkrow, dvrow)) in dkc.chunks_mut(d).zip(dvc.chunks_mut(d)).enumerate() {
            let j = r0 + jj;
            let mj = mask[j];
            if mj == 0.0 {
                continue;
            }
            for hd in 0..h {
                let off = j * d + hd * dh;
                let kr = &k[off..off + dh];
                let vr = &v[off..off + dh];
                let dsh = &ds[hd * dh * dh..(hd + 1) * dh * dh];
                let dzh = &dz[hd * dh..(hd + 1) * dh];
                let dvh = &mut dvrow[hd * dh..(hd + 1) * dh];
                for (a, row) in dsh.chunks_exact(dh).enumerate() {
                    // dφ(K_j)[a] = m_j (dS[a,:]·V_j + dz[a])
                    let dpk = mj * (dzh[a] + dot(row, vr));
                    dkrow[hd * dh + a] += dpk * elu1_grad(kr[a]);
                    // dV_j += m_j φ(K_j)[a] dS[a,:]
                    let pk = mj * elu1(kr[a]);
                    for (x, &dsv) in dvh.iter_mut().zip(row) {
                        *x += pk * dsv;
                    }
                }
            }
        }
    });
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // four partial sums so the compiler can vectorise
    let mut acc = [0f32; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for t in 0..4 {
            acc[t] += x[t] * y[t];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

/// Rows whose mask is non-zero: the keys of softmax attention.
fn real_keys(mask: &[f32], n: usize) -> Vec<usize> {
    (0..n).filter(|&j| mask[j] != 0.0).collect()
}

/// Softmax (cross-)attention forward (the CPU backend's): the shape rule every device shares, then
/// [`softmax_attention_fwd_on`] on the detected SIMD path.
#[allow(clippy::too_many_arguments)]
pub fn softmax_attention_fwd(
    out: &mut [f32],
    lse: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    nq: usize,
    nk: usize,
    d: usize,
    h: usize,
) -> Result<()> {
    let (o, l, ql, kl, vl, ml) = (out.len(), lse.len(), q.len(), k.len(), v.len(), mask.len());
    if check_softmax_fwd(o, l, ql, kl, vl, ml, nq, nk, d, h)?.is_some() {
        softmax_attention_fwd_on(None, out, lse, q, k, v, mask, nq, nk, d, h);
    }
    Ok(())
}

/// Softmax (cross-)attention backward (the CPU backend's): the shape rule, then
/// [`softmax_attention_bwd_on`] on the detected SIMD path; dq, dk, dv are added to.
#[allow(clippy::too_many_arguments)]
pub fn softmax_attention_bwd(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dout: &[f32],
    out: &[f32],
    lse: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    nq: usize,
    nk: usize,
    d: usize,
    h: usize,
) -> Result<()> {
    let g = [dq.len(), dk.len(), dv.len(), dout.len()];
    let bufs = [g[0], g[1], g[2], g[3], out.len(), q.len(), k.len(), v.len()];
    if check_softmax_bwd(bufs, lse.len(), mask.len(), nq, nk, d, h)?.is_some() {
        softmax_attention_bwd_on(
            None, dq, dk, dv, dout, out, lse, q, k, v, mask, nq, nk, d, h,
        );
    }
    Ok(())
}
