//! The fused CPU linear attention's row loops for heads of width 16 (d 64 / 4 heads, d 128 / 8
//! heads) on AVX-512: a head's 16 values are one register, so each dh-long sum of the generic loops
//! in `linear_cpu.rs` is 16 broadcast FMAs with no loop overhead. Chosen there when the path is
//! AVX-512 and d/h = 16; each function first checks every buffer length it relies on and returns
//! false (doing nothing, the generic loop then runs) when one is short. Fused multiply-adds round
//! once where the generic loops round twice: both agree with the naive twin
//! (tests/perf_attention.rs, every path, head width 16 included).

use super::{flush, ATTN_EPS, ROW_BLOCK};
use crate::ops::scalar::{elu1, elu1_grad};
use std::arch::x86_64::*;

/// φ(Q) of a block of rows: `dst[i] = elu1(q[i])` (inlined into the AVX-512 callers, so it runs
/// at their width).
#[inline(always)]
fn phi_rows(dst: &mut [f32], q: &[f32]) {
    for (pa, &qa) in dst.iter_mut().zip(q) {
        *pa = elu1(qa);
    }
}

/// `linear_cpu::dq_rows` for heads of width 16 on AVX-512: a head's 16 values are one register, so each of
/// the three dh-long sums per head (S·p, Sᵀ·dnum, the dS rows) is 16 broadcast FMAs with no loop
/// overhead. Per block of [`ROW_BLOCK`] rows, φ(Q) of the block is computed once into `tmp` (at
/// least `ROW_BLOCK · d` long), then each head takes three passes over the block's rows: 1/den,
/// dden and the scaled rows dO/den and φ(q)/den (into stack arrays, so the next passes broadcast
/// them from memory instead of shuffling registers); dq, with no dependence between rows, so one
/// row's chain of 16 multiply-adds overlaps the next; and dS, dz, kept in registers while the rows
/// stream through (as [`sz_rows16`] does for S). One pass per row with every sum in a chain ran at
/// half this speed, bound by its latency. Sums run in the same row order as `dq_rows`; fused
/// multiply-adds round once where `dq_rows` rounds twice; the results agree with it to rounding
/// (tests/perf_attention.rs checks both against the naive twin). Returns false, having done
/// nothing, when a buffer is shorter than the shapes need (then `dq_rows` runs).
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn dq_rows16(
    dqc: &mut [f32],
    acc: &mut [f64],
    blk: &mut [f32],
    tmp: &mut [f32],
    dout: &[f32],
    q: &[f32],
    s: &[f32],
    st: &[f32],
    z: &[f32],
    r0: usize,
    d: usize,
    h: usize,
) -> bool {
    const DH: usize = 16;
    let hs = h * DH * DH;
    let rows = dqc.len() / d.max(1);
    let end = (r0 + rows) * d;
    if d != h * DH
        || dqc.len() != rows * d
        || s.len() < hs
        || st.len() < hs
        || z.len() < d
        || blk.len() < hs + d
        || acc.len() < hs + d
        || tmp.len() < ROW_BLOCK * d
        || q.len() < end
        || dout.len() < end
    {
        return false;
    }
    let one = _mm512_set1_ps(1.0);
    let zero = _mm512_setzero_ps();
    let mut dden_r = [0f32; ROW_BLOCK];
    let (mut gs, mut ps) = ([0f32; ROW_BLOCK * DH], [0f32; ROW_BLOCK * DH]);
    let mut b0 = 0;
    while b0 < rows {
        let nb = ROW_BLOCK.min(rows - b0);
        phi_rows(&mut tmp[..nb * d], &q[(r0 + b0) * d..(r0 + b0 + nb) * d]);
        let (dsb, dzb) = blk.split_at_mut(hs);
        for hd in 0..h {
            let o = hd * DH;
            let hb = hd * DH * DH;
            // SAFETY (every pointer below): hb + 256 ≤ hs bounds s, st and dsb (len ≥ hs); o + 16
            // ≤ d = h·16 bounds z and dzb (len ≥ d); rows r0 + b0 + r < r0 + rows of q, dout (len
            // ≥ end) and block rows r < nb ≤ ROW_BLOCK of tmp (len ≥ ROW_BLOCK·d) at offset o,
            // and of gs, ps (ROW_BLOCK·16 each) at r·16, are in bounds, and so is dqc's row b0 + r
            // (dqc.len() = rows·d), all checked above.
            let (sh, sth) = (s.as_ptr().add(hb), st.as_ptr().add(hb));
            let zv = _mm512_loadu_ps(z.as_ptr().add(o));
            // Three passes over the block's rows; the first two have no dependence from one row
            // to the next (a row's chain of 16 multiply-adds overlaps the next row's), the third
            // adds into dS and dz in row order. The same operations per row as one pass.
            // 1: num = Σ_a p[a] S[a, :]; 1/den; dden = −(dO·num)/den²
            for (r, dden) in dden_r[..nb].iter_mut().enumerate() {
                let i = r0 + b0 + r;
                let pr = tmp.as_ptr().add(r * d + o);
                let pv = _mm512_loadu_ps(pr);
                let gv = _mm512_loadu_ps(dout.as_ptr().add(i * d + o));
                let mut num = zero;
                for a in 0..DH {
                    let pa = _mm512_set1_ps(*pr.add(a));
                    num = _mm512_fmadd_ps(pa, _mm512_loadu_ps(sh.add(a * DH)), num);
                }
                let inv = 1.0 / (_mm512_reduce_add_ps(_mm512_mul_ps(pv, zv)) + ATTN_EPS);
                *dden = -_mm512_reduce_add_ps(_mm512_mul_ps(gv, num)) * inv * inv;
                // dO[b]·(1/den) and p[a]·(1/den) for every a, b at once (the same products as
                // one at a time), for passes 2 and 3 to broadcast from memory
                let iv = _mm512_set1_ps(inv);
                _mm512_storeu_ps(gs.as_mut_ptr().add(r * DH), _mm512_mul_ps(gv, iv));
                _mm512_storeu_ps(ps.as_mut_ptr().add(r * DH), _mm512_mul_ps(pv, iv));
            }
            // 2: dp = dden z + Σ_b (dO[b]/den) Sᵀ[b, :]; dq += dp ⊙ φ'(q), φ'(q) = 1 where q > 0,
            // else φ(q)
            for r in 0..nb {
                let i = r0 + b0 + r;
                let pv = _mm512_loadu_ps(tmp.as_ptr().add(r * d + o));
                let qv = _mm512_loadu_ps(q.as_ptr().add(i * d + o));
                let mut dp = _mm512_mul_ps(_mm512_set1_ps(dden_r[r]), zv);
                for (b, &gb) in gs[r * DH..][..DH].iter().enumerate() {
                    dp = _mm512_fmadd_ps(_mm512_set1_ps(gb), _mm512_loadu_ps(sth.add(b * DH)), dp);
                }
                let grad =
                    _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(qv, zero), pv, one);
                let dqp = dqc.as_mut_ptr().add((b0 + r) * d + o);
                _mm512_storeu_ps(
                    dqp,
                    _mm512_add_ps(_mm512_loadu_ps(dqp), _mm512_mul_ps(dp, grad)),
                );
            }
            // 3: dS[a, :] += (p[a]/den) dO, dz += dden p, in row order
            let dsh = dsb.as_mut_ptr().add(hb);
            let mut dsr = [zero; DH];
            for (a, x) in dsr.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(dsh.add(a * DH));
            }
            let dzr = dzb.as_mut_ptr().add(o);
            let mut dzv = _mm512_loadu_ps(dzr);
            for r in 0..nb {
                let i = r0 + b0 + r;
                let pv = _mm512_loadu_ps(tmp.as_ptr().add(r * d + o));
                let gv = _mm512_loadu_ps(dout.as_ptr().add(i * d + o));
                for (x, &pa) in dsr.iter_mut().zip(&ps[r * DH..][..DH]) {
                    *x = _mm512_fmadd_ps(_mm512_set1_ps(pa), gv, *x);
                }
                dzv = _mm512_fmadd_ps(_mm512_set1_ps(dden_r[r]), pv, dzv);
            }
            for (a, x) in dsr.iter().enumerate() {
                _mm512_storeu_ps(dsh.add(a * DH), *x);
            }
            _mm512_storeu_ps(dzr, dzv);
        }
        flush(acc, blk);
        b0 += nb;
    }
    true
}

/// `linear_cpu::dkv_rows` for heads of width 16 on AVX-512 (see [`dq_rows16`]): per head, dS V + dz
/// and dSᵀ φ(K) are 16 broadcast FMAs each. Per block of [`ROW_BLOCK`] rows, m φ(K) and φ'(K) of
/// the block's unmasked rows go into `tmp` (at least `2 · ROW_BLOCK · d` long); then per head dSᵀ
/// stays in 16 registers while the rows stream through for dK, and dS for dV. The same
/// operations in the same order as the row-by-row loop. Returns false, having done nothing, when a
/// buffer is shorter than the shapes need.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn dkv_rows16(
    dkc: &mut [f32],
    dvc: &mut [f32],
    tmp: &mut [f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    ds: &[f32],
    dst: &[f32],
    dz: &[f32],
    r0: usize,
    d: usize,
    h: usize,
) -> bool {
    const DH: usize = 16;
    let hs = h * DH * DH;
    let rows = dkc.len() / d.max(1);
    if d != h * DH
        || dkc.len() != rows * d
        || dvc.len() != dkc.len()
        || ds.len() < hs
        || dst.len() < hs
        || dz.len() < d
        || tmp.len() < 2 * ROW_BLOCK * d
        || k.len() < (r0 + rows) * d
        || v.len() < (r0 + rows) * d
        || mask.len() < r0 + rows
    {
        return false;
    }
    let (pk, gk) = tmp.split_at_mut(ROW_BLOCK * d);
    let mut real = [0usize; ROW_BLOCK];
    let mut b0 = 0;
    while b0 < rows {
        let nb = ROW_BLOCK.min(rows - b0);
        // m φ(K) and φ'(K) of the block's unmasked rows (chunk-local indices in `real`)
        let mut nr = 0;
        for jj in b0..b0 + nb {
            let j = r0 + jj;
            let mj = mask[j];
            if mj == 0.0 {
                continue;
            }
            let kr = &k[j * d..][..d];
            for ((p, g), &kv) in pk[nr * d..][..d]
                .iter_mut()
                .zip(&mut gk[nr * d..][..d])
                .zip(kr)
            {
                *p = mj * elu1(kv);
                *g = elu1_grad(kv);
            }
            real[nr] = jj;
            nr += 1;
        }
        for hd in 0..h {
            let o = hd * DH;
            let hb = hd * DH * DH;
            // SAFETY (every pointer below): hb + 256 ≤ hs bounds ds and dst; o + 16 ≤ d bounds dz;
            // chunk rows jj < rows bound dkc and dvc (len rows·d) and rows r0 + jj of v (len ≥
            // (r0 + rows)·d); block rows r < nr ≤ ROW_BLOCK bound pk and gk (ROW_BLOCK·d each),
            // all checked above.
            let (dsh, dsth) = (ds.as_ptr().add(hb), dst.as_ptr().add(hb));
            let dzv = _mm512_loadu_ps(dz.as_ptr().add(o));
            // dK: dφ(K)/m = dz + Σ_b V[b] dSᵀ[b, :], then dK += m · dφ(K)/m ⊙ φ'(K)
            let mut reg = [_mm512_setzero_ps(); DH];
            for (b, x) in reg.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(dsth.add(b * DH));
            }
            for (r, &jj) in real[..nr].iter().enumerate() {
                let j = r0 + jj;
                let vr = v.as_ptr().add(j * d + o);
                let mut dph = dzv;
                for (b, x) in reg.iter().enumerate() {
                    dph = _mm512_fmadd_ps(_mm512_set1_ps(*vr.add(b)), *x, dph);
                }
                let mdp = _mm512_mul_ps(_mm512_set1_ps(mask[j]), dph);
                let g = _mm512_loadu_ps(gk.as_ptr().add(r * d + o));
                let dkp = dkc.as_mut_ptr().add(jj * d + o);
                _mm512_storeu_ps(
                    dkp,
                    _mm512_add_ps(_mm512_loadu_ps(dkp), _mm512_mul_ps(mdp, g)),
                );
            }
            // dV += Σ_a m φ(K)[a] dS[a, :]
            for (a, x) in reg.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(dsh.add(a * DH));
            }
            for (r, &jj) in real[..nr].iter().enumerate() {
                let pr = pk.as_ptr().add(r * d + o);
                let dvr = dvc.as_mut_ptr().add(jj * d + o);
                let mut dvh = _mm512_loadu_ps(dvr);
                for (a, x) in reg.iter().enumerate() {
                    dvh = _mm512_fmadd_ps(_mm512_set1_ps(*pr.add(a)), *x, dvh);
                }
                _mm512_storeu_ps(dvr, dvh);
            }
        }
        b0 += nb;
    }
    true
}

/// `linear_cpu::out_rows` for heads of width 16 on AVX-512: φ(Q_i)ᵀ S per head is 16 broadcast FMAs.
/// Per block of [`ROW_BLOCK`] rows, φ(Q) of the block goes into `p` (at least `ROW_BLOCK · d`
/// long); then each head's S stays in 16 registers while the block's rows stream through it.
/// Returns false, having done nothing, when a buffer is shorter than the shapes need.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn out_rows16(
    oc: &mut [f32],
    p: &mut [f32],
    q: &[f32],
    s: &[f32],
    z: &[f32],
    r0: usize,
    d: usize,
    h: usize,
) -> bool {
    const DH: usize = 16;
    let hs = h * DH * DH;
    let rows = oc.len() / d.max(1);
    if d != h * DH
        || oc.len() != rows * d
        || s.len() < hs
        || z.len() < d
        || p.len() < ROW_BLOCK * d
        || q.len() < (r0 + rows) * d
    {
        return false;
    }
    let mut b0 = 0;
    while b0 < rows {
        let nb = ROW_BLOCK.min(rows - b0);
        phi_rows(&mut p[..nb * d], &q[(r0 + b0) * d..(r0 + b0 + nb) * d]);
        for hd in 0..h {
            let o = hd * DH;
            // SAFETY: hd·256 + 256 ≤ hs bounds s; o + 16 ≤ d bounds z; block rows r < nb ≤
            // ROW_BLOCK bound p, and chunk rows b0 + r < rows bound oc (len rows·d), all checked.
            let sh = s.as_ptr().add(hd * DH * DH);
            let mut sreg = [_mm512_setzero_ps(); DH];
            for (a, x) in sreg.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(sh.add(a * DH));
            }
            let zv = _mm512_loadu_ps(z.as_ptr().add(o));
            for r in 0..nb {
                let pr = p.as_ptr().add(r * d + o);
                let pv = _mm512_loadu_ps(pr);
                let den = _mm512_reduce_add_ps(_mm512_mul_ps(pv, zv)) + ATTN_EPS;
                let mut acc = _mm512_setzero_ps();
                for (a, x) in sreg.iter().enumerate() {
                    acc = _mm512_fmadd_ps(_mm512_set1_ps(*pr.add(a)), *x, acc);
                }
                let inv = _mm512_set1_ps(1.0 / den);
                _mm512_storeu_ps(
                    oc.as_mut_ptr().add((b0 + r) * d + o),
                    _mm512_mul_ps(acc, inv),
                );
            }
        }
        b0 += nb;
    }
    true
}

/// `linear_cpu::sz_rows` for heads of width 16 on AVX-512: per block of rows, φ(K) of the block's
/// real rows is computed once into `pk` (at least `ROW_BLOCK · d` long), then each head's S block
/// stays in 16 registers while the block's rows stream through it (16 broadcast FMAs per row and
/// head, no loads or stores of S). Sums run in the same row order as `sz_rows`, rounded once per
/// multiply-add. Returns false, having done nothing, when a buffer is shorter than the shapes need.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn sz_rows16(
    acc: &mut [f64],
    blk: &mut [f32],
    pk: &mut [f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    rows: std::ops::Range<usize>,
    d: usize,
    h: usize,
) -> bool {
    const DH: usize = 16;
    let hs = h * DH * DH;
    if d != h * DH
        || blk.len() < hs + d
        || acc.len() < hs + d
        || pk.len() < ROW_BLOCK * d
        || k.len() < rows.end * d
        || v.len() < rows.end * d
        || mask.len() < rows.end
    {
        return false;
    }
    let mut real = [0usize; ROW_BLOCK];
    let mut j0 = rows.start;
    while j0 < rows.end {
        let j1 = (j0 + ROW_BLOCK).min(rows.end);
        // φ(K) of the block's real rows, and z
        let mut nr = 0;
        {
            let (_, zblk) = blk.split_at_mut(hs);
            for j in j0..j1 {
                let mj = mask[j];
                if mj == 0.0 {
                    continue;
                }
                let prow = &mut pk[nr * d..][..d];
                for ((p, zb), &kv) in prow.iter_mut().zip(zblk.iter_mut()).zip(&k[j * d..][..d]) {
                    *p = mj * elu1(kv);
                    *zb += *p;
                }
                real[nr] = j;
                nr += 1;
            }
        }
        for hd in 0..h {
            let o = hd * DH;
            // SAFETY (every pointer below): hd·256 + 256 ≤ hs ≤ blk.len(); o + 16 ≤ d, so the
            // rows of v (j < rows.end) and of pk (r < nr ≤ ROW_BLOCK) are in bounds (checked
            // above).
            let sh = blk.as_mut_ptr().add(hd * DH * DH);
            let mut sreg = [_mm512_setzero_ps(); DH];
            for (a, sr) in sreg.iter_mut().enumerate() {
                *sr = _mm512_loadu_ps(sh.add(a * DH));
            }
            for (r, &j) in real[..nr].iter().enumerate() {
                let vv = _mm512_loadu_ps(v.as_ptr().add(j * d + o));
                let pr = pk.as_ptr().add(r * d + o);
                for (a, sr) in sreg.iter_mut().enumerate() {
                    *sr = _mm512_fmadd_ps(_mm512_set1_ps(*pr.add(a)), vv, *sr);
                }
            }
            for (a, sr) in sreg.iter().enumerate() {
                _mm512_storeu_ps(sh.add(a * DH), *sr);
            }
        }
        flush(acc, blk);
        j0 = j1;
    }
    true
}
