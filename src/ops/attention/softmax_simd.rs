//! Softmax attention on AVX-512 or AVX2 + FMA, flash style (the math is in the parent module's doc
//! comment). The kernels are written once over 16 f32 lanes ([`Lanes`]: one AVX-512 register or
//! two AVX2 registers) and compiled for each instruction set.
//!
//! Each head's q, k, v (and dO) are first packed into contiguous per-head panels whose width P is
//! the head width rounded up to 16 (16 lanes per 16 values, zero padded), q pre-multiplied by
//! 1/√dh, only the real keys (mask ≠ 0) kept, and K and V also stored transposed. Scores are then
//! computed for a tile of [`R`] queries × a block of keys ([`KF`] forward, [`KB`] backward) by
//! broadcast FMAs over 16 keys at a time (a small GEMM with the tile in registers), so no dot
//! product needs a horizontal sum, and every product over a tile — P·V, Pᵀ·dO, dSᵀ·Q, dS·K — is a
//! broadcast FMA along a row of P values.
//!
//! Forward: per query tile, the key blocks in order with the online softmax (f32 output
//! accumulator, row sums f32 within a block and f64 across blocks, as the scalar path). A whole
//! block's row maxima come out of the score registers and its exponentials are summed as they are
//! stored (one pass over the block row where there were three); for 16-wide heads P·V takes keys in
//! pairs into two sets of accumulators (twice the multiply-add chains in flight).
//! Backward: one pass, threads over key blocks: for each key block and every query tile, S and
//! P = exp(S − lse), dP = dO·Vᵀ, dS = P ⊙ (dP − D); dK, dV are summed in f32 over [`FLUSH`] query
//! rows, then in f64; dQ sums each key block's part in f32 and the blocks in f64, one partial per
//! thread, added in thread order (deterministic for a given thread count). The score tile is
//! computed once per (query tile, key block) where the scalar path computed it twice.
//!
//! Scratch (the packed panels and the per-thread dQ partials) is kept per calling thread and
//! reused, so a training step allocates nothing here after its first.

use super::super::par;
use super::exp_f32;
use super::lanes::{Lanes, Y2};
use super::softmax_pack::{pack_cols, pack_rows, with_scratch, Dims, KF, R};
use super::softmax_tile::{exp_sum, group_rows, row_reduce, scores};
use std::arch::x86_64::__m512;

/// Keys per block of the backward (its dK, dV accumulators).
const KB: usize = 64;
/// Query rows whose dK, dV contributions are summed in f32 before they go into the f64 sums.
const FLUSH: usize = 64;
/// Widest head handled here (4 registers per row); wider heads take the scalar path.
pub(super) const MAX_DH: usize = 64;

/// The instruction set the kernels run on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Isa {
    /// AVX-512F: a row of 16 head values is one register.
    Avx512,
    /// AVX2 + FMA: two registers.
    Avx2,
}

/// `$fwd::<W>` and `$bwd::<W>`: [`fwd_tile`] and [`bwd_block`] on lanes `$v`, compiled with
/// `$feat` enabled.
macro_rules! isa_kernels {
    ($fwd:ident, $bwd:ident, $v:ty, $feat:literal) => {
        /// # Safety
        /// The CPU supports the enabled features.
        #[target_feature(enable = $feat)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $fwd<const W: usize>(
            o: &mut [f32; R * MAX_DH],
            lse: &mut [f32; R],
            sb: &mut [f32; R * KF],
            qs: &[f32],
            kt: &[f32],
            vr: &[f32],
            m: &Dims,
        ) {
            fwd_tile::<$v, W>(o, lse, sb, qs, kt, vr, m)
        }
        /// # Safety
        /// The CPU supports the enabled features.
        #[target_feature(enable = $feat)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $bwd<const W: usize>(
            x: &BwdHead,
            m: &Dims,
            j0: usize,
            dq: &mut [f64],
            dk: &mut [f64],
            dv: &mut [f64],
            t: &mut BwdTmp,
        ) {
            bwd_block::<$v, W>(x, m, j0, dq, dk, dv, t)
        }
    };
}
isa_kernels!(fwd_tile_512, bwd_block_512, __m512, "avx512f");
isa_kernels!(fwd_tile_256, bwd_block_256, Y2, "avx2,fma");

/// One query tile of the forward, all key blocks: o[r·p + c] = the head's output, lse[r].
///
/// # Safety
/// The CPU supports `V`'s instructions.
#[inline(always)]
unsafe fn fwd_tile<V: Lanes, const W: usize>(
    o: &mut [f32; R * MAX_DH],
    lse: &mut [f32; R],
    sb: &mut [f32; R * KF],
    qs: &[f32],
    kt: &[f32],
    vr: &[f32],
    m: &Dims,
) {
    let p = 16 * W;
    assert!(m.p == p && qs.len() >= R * p && vr.len() >= m.nkp * p);
    let mut acc = [[V::zero(); W]; R];
    let mut mx = [f32::NEG_INFINITY; R];
    let mut l = [0f64; R];
    for j0 in (0..m.nkr).step_by(KF) {
        let valid = (m.nkr - j0).min(KF);
        // a whole block's row maxima come with its scores; a last, partial one's padding scores
        // (0: K is zero-padded) must not count, so its real ones are reduced alone
        let full = valid == KF;
        let bmax = if full {
            scores::<V, KF, true>(sb, qs, kt, p, m.ldt, j0)
        } else {
            scores::<V, KF, false>(sb, qs, kt, p, m.ldt, j0)
        };
        for r in 0..R {
            let row = &mut sb[r * KF..][..KF];
            let block_mx = if full {
                bmax[r]
            } else {
                row[valid..].fill(f32::NEG_INFINITY);
                row_reduce::<V>(row).0
            };
            let new_mx = mx[r].max(block_mx);
            // rescale what was summed under the old maximum (0 on the first block)
            let corr = if mx[r] == f32::NEG_INFINITY {
                0.0
            } else {
                exp_f32(mx[r] - new_mx)
            };
            let sum = exp_sum::<V>(row, new_mx);
            let sum = if full {
                sum
            } else {
                // the padding's e^(−87.3) counted: zeroed and summed again
                row[valid..].fill(0.0);
                row_reduce::<V>(row).1
            };
            l[r] = l[r] * corr as f64 + sum as f64;
            let cv = V::splat(corr);
            for a in acc[r].iter_mut() {
                *a = V::mul(*a, cv);
            }
            mx[r] = new_mx;
        }
        // rows in groups whose accumulators fit the registers (all R on AVX-512)
        let g = group_rows::<V>(if W == 1 { 2 } else { W });
        for r0 in (0..R).step_by(g) {
            let acc = &mut acc[r0..(r0 + g).min(R)];
            let mut j = 0;
            if W == 1 {
                // one register per row: keys in pairs, odd keys into their own accumulators, so
                // twice the chains of multiply-adds are in flight
                let mut odd = [V::zero(); R];
                while j + 1 < valid {
                    // SAFETY: (j0 + j + 1)·p + 16 ≤ nkp·p ≤ vr.len() (asserted above, p = 16).
                    let v0 = V::load(vr.as_ptr().add((j0 + j) * p));
                    let v1 = V::load(vr.as_ptr().add((j0 + j + 1) * p));
                    for (r, (ar, od)) in acc.iter_mut().zip(odd.iter_mut()).enumerate() {
                        let r = r0 + r;
                        ar[0] = V::fma(V::splat(*sb.get_unchecked(r * KF + j)), v0, ar[0]);
                        *od = V::fma(V::splat(*sb.get_unchecked(r * KF + j + 1)), v1, *od);
                    }
                    j += 2;
                }
                for (ar, od) in acc.iter_mut().zip(odd) {
                    ar[0] = V::add(ar[0], od);
                }
            }
            for j in j..valid {
                for w in 0..W {
                    // SAFETY: (j0 + j)·p + 16w + 16 ≤ nkp·p ≤ vr.len() (asserted above).
                    let vj = V::load(vr.as_ptr().add((j0 + j) * p + 16 * w));
                    for (r, ar) in acc.iter_mut().enumerate() {
                        let pw = V::splat(*sb.get_unchecked((r0 + r) * KF + j));
                        ar[w] = V::fma(pw, vj, ar[w]);
                    }
                }
            }
        }
    }
    for r in 0..R {
        let mut row = [0f32; MAX_DH];
        for (w, a) in acc[r].iter().enumerate() {
            // SAFETY: 16w + 16 ≤ 16W ≤ MAX_DH.
            V::store(row.as_mut_ptr().add(16 * w), *a);
        }
        for (ov, &a) in o[r * p..][..p].iter_mut().zip(&row) {
            *ov = (a as f64 / l[r]) as f32;
        }
        lse[r] = (mx[r] as f64 + l[r].ln()) as f32;
    }
}

/// One head's packed panels for the backward.
struct BwdHead<'a> {
    /// q·scale and dO rows [nqp][p]
    qs: &'a [f32],
    gp: &'a [f32],
    /// K and V transposed [p][ldt], K rows [nkp][p]
    kt: &'a [f32],
    vt: &'a [f32],
    kr: &'a [f32],
    /// lse (+∞ on padding rows) and D = dO·O, [nqp]
    lse: &'a [f32],
    dd: &'a [f32],
}

/// The forward's scores of one tile and key block, cache-line aligned.
#[repr(C, align(64))]
struct ScoreBlock([f32; R * KF]);

/// Per-thread buffers of the backward (cache-line aligned: whole-register loads and stores never
/// split a line).
#[repr(C, align(64))]
struct BwdTmp {
    /// the tile's P and dP (then dS), [R][KB]
    pb: [f32; R * KB],
    ds: [f32; R * KB],
    /// dK, dV of the key block summed over up to FLUSH query rows, [KB][p]
    dkf: Vec<f32>,
    dvf: Vec<f32>,
}

/// One key block of the backward, every query tile: dq[i·p + c] += (f64) Σ_{j in block} dS_ij K_j
/// (unscaled), dk, dv [KB·p] = the block's dK (scaled: q is) and dV in f64.
///
/// # Safety
/// The CPU supports `V`'s instructions.
#[inline(always)]
unsafe fn bwd_block<V: Lanes, const W: usize>(
    x: &BwdHead,
    m: &Dims,
    j0: usize,
    dq: &mut [f64],
    dk: &mut [f64],
    dv: &mut [f64],
    t: &mut BwdTmp,
) {
    let p = 16 * W;
    let valid = (m.nkr - j0).min(KB);
    let kp = KB * p;
    assert!(
        m.p == p
            && x.qs.len() >= m.nqp * p
            && x.gp.len() >= m.nqp * p
            && x.kr.len() >= m.nkp * p
            && x.lse.len() >= m.nqp
            && x.dd.len() >= m.nqp
            && dq.len() >= m.nqp * p
            && dk.len() >= kp
            && dv.len() >= kp
            && t.dkf.len() >= kp
            && t.dvf.len() >= kp
            && j0 + KB <= m.nkp
    );
    dk[..kp].fill(0.0);
    dv[..kp].fill(0.0);
    t.dkf[..kp].fill(0.0);
    t.dvf[..kp].fill(0.0);
    let tiles = m.nqp / R;
    for it in 0..tiles {
        let i0 = it * R;
        let qt = &x.qs[i0 * p..][..R * p];
        let gt = &x.gp[i0 * p..][..R * p];
        scores::<V, KB, false>(&mut t.pb, qt, x.kt, p, m.ldt, j0);
        scores::<V, KB, false>(&mut t.ds, gt, x.vt, p, m.ldt, j0);
        for r in 0..R {
            let (l, di) = (x.lse[i0 + r], x.dd[i0 + r]);
            let prow = &mut t.pb[r * KB..][..KB];
            let drow = &mut t.ds[r * KB..][..KB];
            let (lv, dv) = (V::splat(l), V::splat(di));
            for c in (0..KB).step_by(16) {
                // SAFETY: c + 16 ≤ KB = prow.len() = drow.len().
                let pv = V::exp_le0(V::sub(V::load(prow.as_ptr().add(c)), lv));
                let dp = V::load(drow.as_ptr().add(c));
                V::store(drow.as_mut_ptr().add(c), V::mul(pv, V::sub(dp, dv)));
                V::store(prow.as_mut_ptr().add(c), pv);
            }
            prow[valid..].fill(0.0);
            drow[valid..].fill(0.0);
        }
        // dK_j += Σ_r dS_rj Qs_r, dV_j += Σ_r P_rj dO_r
        let mut qv = [[V::zero(); W]; R];
        let mut gv = [[V::zero(); W]; R];
        for r in 0..R {
            for w in 0..W {
                // SAFETY: r·p + 16w + 16 ≤ R·p, the length of qt and gt.
                qv[r][w] = V::load(qt.as_ptr().add(r * p + 16 * w));
                gv[r][w] = V::load(gt.as_ptr().add(r * p + 16 * w));
            }
        }
        for j in 0..valid {
            for w in 0..W {
                // SAFETY: j·p + 16w + 16 ≤ KB·p ≤ dkf.len(), dvf.len() (asserted above); r·KB + j
                // < R·KB.
                let pk = t.dkf.as_mut_ptr().add(j * p + 16 * w);
                let pv = t.dvf.as_mut_ptr().add(j * p + 16 * w);
                let (mut a, mut b) = (V::load(pk), V::load(pv));
                for r in 0..R {
                    let dsr = V::splat(*t.ds.get_unchecked(r * KB + j));
                    let pr = V::splat(*t.pb.get_unchecked(r * KB + j));
                    a = V::fma(dsr, qv[r][w], a);
                    b = V::fma(pr, gv[r][w], b);
                }
                V::store(pk, a);
                V::store(pv, b);
            }
        }
        // dQ_r += Σ_j dS_rj K_j, rows in groups whose accumulators fit the registers
        let mut acc = [[V::zero(); W]; R];
        let g = group_rows::<V>(W);
        for r0 in (0..R).step_by(g) {
            let acc = &mut acc[r0..(r0 + g).min(R)];
            for j in 0..valid {
                for w in 0..W {
                    // SAFETY: (j0 + j)·p + 16w + 16 ≤ nkp·p ≤ kr.len() (asserted above).
                    let kj = V::load(x.kr.as_ptr().add((j0 + j) * p + 16 * w));
                    for (r, ar) in acc.iter_mut().enumerate() {
                        let dsr = V::splat(*t.ds.get_unchecked((r0 + r) * KB + j));
                        ar[w] = V::fma(dsr, kj, ar[w]);
                    }
                }
            }
        }
        for (r, ar) in acc.iter().enumerate() {
            let mut row = [0f32; MAX_DH];
            for (w, a) in ar.iter().enumerate() {
                // SAFETY: 16w + 16 ≤ 16W ≤ MAX_DH.
                V::store(row.as_mut_ptr().add(16 * w), *a);
            }
            for (o, &a) in dq[(i0 + r) * p..][..p].iter_mut().zip(&row) {
                *o += a as f64;
            }
        }
        if (it + 1) % (FLUSH / R) == 0 || it + 1 == tiles {
            for (o, s) in dk[..kp].iter_mut().zip(t.dkf[..kp].iter_mut()) {
                *o += *s as f64;
                *s = 0.0;
            }
            for (o, s) in dv[..kp].iter_mut().zip(t.dvf[..kp].iter_mut()) {
                *o += *s as f64;
                *s = 0.0;
            }
        }
    }
}

/// Runs `$f::<W>` for the padded head width p = 16·W (1 ≤ W ≤ 4).
macro_rules! by_width {
    ($p:expr, $f:ident($($a:expr),*)) => {
        match $p / 16 {
            1 => $f::<1>($($a),*),
            2 => $f::<2>($($a),*),
            3 => $f::<3>($($a),*),
            _ => $f::<4>($($a),*),
        }
    };
}

/// [`super::softmax_attention_fwd`] on AVX-512. Returns false, having done nothing, when the head
/// width is above [`MAX_DH`].
///
/// # Safety
/// The CPU supports `isa`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn fwd(
    isa: Isa,
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
) -> bool {
    let dh = d / h;
    if dh == 0 || dh > MAX_DH {
        return false;
    }
    let keys = super::real_keys(mask, nk);
    if keys.is_empty() {
        out[..nq * d].fill(0.0);
        lse[..h * nq].fill(0.0);
        return true;
    }
    let m = Dims::new(nq, keys.len(), d, h);
    let scale = 1.0 / (dh as f32).sqrt();
    with_scratch(m.qlen() + 2 * m.klen(), 0, |f, _| {
        let (qs, rest) = f.split_at_mut(m.qlen());
        let (kt, vr) = rest.split_at_mut(m.klen());
        pack_rows(qs, q, 0..nq, m.nqp, &m, scale);
        pack_cols(kt, k, &keys, &m);
        pack_rows(vr, v, keys.iter().copied(), m.nkp, &m, 1.0);
        let (qs, kt, vr) = (&*qs, &*kt, &*vr);
        let chunk = par::chunk_rows_aligned(nq, 4 * m.nkr * d + 1, R);
        let parts = par::run(
            out[..nq * d].chunks_mut(chunk * d).enumerate(),
            |(c, oc)| {
                let r0 = c * chunk;
                let rows = oc.len() / d;
                let mut lse_c = vec![0f32; h * rows];
                let mut o = [0f32; R * MAX_DH];
                let mut ls = [0f32; R];
                let mut sb = ScoreBlock([0f32; R * KF]);
                for t0 in (0..rows).step_by(R) {
                    for hd in 0..h {
                        let qh = &qs[(hd * m.nqp + r0 + t0) * m.p..][..R * m.p];
                        let kh = &kt[hd * m.p * m.ldt..][..m.p * m.ldt];
                        let vh = &vr[hd * m.nkp * m.p..][..m.nkp * m.p];
                        let sb = &mut sb.0;
                        // SAFETY: the caller guarantees the CPU supports `isa`.
                        unsafe {
                            match isa {
                                Isa::Avx512 => {
                                    by_width!(
                                        m.p,
                                        fwd_tile_512(&mut o, &mut ls, sb, qh, kh, vh, &m)
                                    )
                                }
                                Isa::Avx2 => {
                                    by_width!(
                                        m.p,
                                        fwd_tile_256(&mut o, &mut ls, sb, qh, kh, vh, &m)
                                    )
                                }
                            }
                        };
                        for r in 0..R.min(rows - t0) {
                            let dst = &mut oc[(t0 + r) * d + hd * dh..][..dh];
                            dst.copy_from_slice(&o[r * m.p..][..dh]);
                            lse_c[hd * rows + t0 + r] = ls[r];
                        }
                    }
                }
                lse_c
            },
        );
        for (c, part) in parts.into_iter().enumerate() {
            let r0 = c * chunk;
            let rows = part.len() / h;
            for hd in 0..h {
                lse[hd * nq + r0..][..rows].copy_from_slice(&part[hd * rows..][..rows]);
            }
        }
    });
    true
}

/// [`super::softmax_attention_bwd`] on AVX-512. Returns false, having done nothing, when the head
/// width is above [`MAX_DH`].
///
/// # Safety
/// The CPU supports `isa`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn bwd(
    isa: Isa,
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
) -> bool {
    let dh = d / h;
    if dh == 0 || dh > MAX_DH {
        return false;
    }
    let keys = super::real_keys(mask, nk);
    if keys.is_empty() {
        // every output is the constant 0
        return true;
    }
    let m = Dims::new(nq, keys.len(), d, h);
    let scale = 1.0 / (dh as f32).sqrt();
    let (ql, kl, rl) = (m.qlen(), m.klen(), h * m.nqp);
    let blocks = m.nkr.div_ceil(KB);
    let per = par::chunk_rows(blocks, 10 * KB * m.nqp * m.p * h + 1);
    let items = blocks.div_ceil(per);
    with_scratch(2 * ql + 5 * kl + 2 * rl, items * ql, |f, acc| {
        let (qs, f) = f.split_at_mut(ql);
        let (gp, f) = f.split_at_mut(ql);
        let (kt, f) = f.split_at_mut(kl);
        let (vt, f) = f.split_at_mut(kl);
        let (kr, f) = f.split_at_mut(kl);
        let (lp, f) = f.split_at_mut(rl);
        let (dd, f) = f.split_at_mut(rl);
        let (dkc, dvc) = f.split_at_mut(kl);
        pack_rows(qs, q, 0..nq, m.nqp, &m, scale);
        pack_rows(gp, dout, 0..nq, m.nqp, &m, 1.0);
        pack_cols(kt, k, &keys, &m);
        pack_cols(vt, v, &keys, &m);
        pack_rows(kr, k, keys.iter().copied(), m.nkp, &m, 1.0);
        lp.fill(f32::INFINITY);
        dd.fill(0.0);
        for hd in 0..h {
            lp[hd * m.nqp..][..nq].copy_from_slice(&lse[hd * nq..][..nq]);
            for i in 0..nq {
                let off = i * d + hd * dh;
                dd[hd * m.nqp + i] = super::dot(&dout[off..off + dh], &out[off..off + dh]);
            }
        }
        acc.fill(0.0);
        let (qs, gp, kt, vt, kr, lp, dd) = (&*qs, &*gp, &*kt, &*vt, &*kr, &*lp, &*dd);
        let hp = h * m.p;
        let work = acc
            .chunks_mut(ql)
            .zip(dkc.chunks_mut(per * KB * hp))
            .zip(dvc.chunks_mut(per * KB * hp))
            .enumerate();
        par::run(work, |(c, ((dqp, dkp), dvp))| {
            let kp = KB * m.p;
            let mut t = BwdTmp {
                pb: [0.0; R * KB],
                ds: [0.0; R * KB],
                dkf: vec![0.0; kp],
                dvf: vec![0.0; kp],
            };
            let (mut dk64, mut dv64) = (vec![0f64; kp], vec![0f64; kp]);
            for b in 0..per.min(blocks - c * per) {
                let j0 = (c * per + b) * KB;
                for hd in 0..h {
                    let x = BwdHead {
                        qs: &qs[hd * m.nqp * m.p..][..m.nqp * m.p],
                        gp: &gp[hd * m.nqp * m.p..][..m.nqp * m.p],
                        kt: &kt[hd * m.p * m.ldt..][..m.p * m.ldt],
                        vt: &vt[hd * m.p * m.ldt..][..m.p * m.ldt],
                        kr: &kr[hd * m.nkp * m.p..][..m.nkp * m.p],
                        lse: &lp[hd * m.nqp..][..m.nqp],
                        dd: &dd[hd * m.nqp..][..m.nqp],
                    };
                    let dqh = &mut dqp[hd * m.nqp * m.p..][..m.nqp * m.p];
                    let (dk64, dv64, t) = (&mut dk64, &mut dv64, &mut t);
                    // SAFETY: the caller guarantees the CPU supports `isa`.
                    unsafe {
                        match isa {
                            Isa::Avx512 => {
                                by_width!(m.p, bwd_block_512(&x, &m, j0, dqh, dk64, dv64, t))
                            }
                            Isa::Avx2 => {
                                by_width!(m.p, bwd_block_256(&x, &m, j0, dqh, dk64, dv64, t))
                            }
                        }
                    };
                    for j in 0..KB {
                        let o = (b * KB + j) * hp + hd * m.p;
                        for (dst, &s) in dkp[o..][..m.p].iter_mut().zip(&dk64[j * m.p..]) {
                            *dst = s as f32;
                        }
                        for (dst, &s) in dvp[o..][..m.p].iter_mut().zip(&dv64[j * m.p..]) {
                            *dst = s as f32;
                        }
                    }
                }
            }
        });
        // dQ: the partials in thread order, then scaled (rows in parallel)
        let acc = &*acc;
        let ch = par::chunk_rows(nq, 2 * items * d);
        par::run(dq[..nq * d].chunks_mut(ch * d).enumerate(), |(c, dqc)| {
            for (ii, row) in dqc.chunks_mut(d).enumerate() {
                let i = c * ch + ii;
                for hd in 0..h {
                    let dst = &mut row[hd * dh..][..dh];
                    for (cc, o) in dst.iter_mut().enumerate() {
                        let mut s = 0f64;
                        for part in acc.chunks(ql) {
                            s += part[(hd * m.nqp + i) * m.p + cc];
                        }
                        *o += (s * scale as f64) as f32;
                    }
                }
            }
        });
        // dK, dV: scattered back to the real key rows (ascending), rows in parallel
        let (dkc, dvc) = (&*dkc, &*dvc);
        let keys = &keys;
        let ch = par::chunk_rows(nk, 4 * d);
        let rows = dk[..nk * d]
            .chunks_mut(ch * d)
            .zip(dv[..nk * d].chunks_mut(ch * d));
        par::run(rows.enumerate(), |(c, (dkr, dvr))| {
            let r0 = c * ch;
            let r1 = r0 + dkr.len() / d;
            let j0 = keys.partition_point(|&kj| kj < r0);
            let j1 = keys.partition_point(|&kj| kj < r1);
            for (j, &kj) in keys[j0..j1].iter().enumerate().map(|(t, kj)| (j0 + t, kj)) {
                for hd in 0..h {
                    let (s, o) = (j * hp + hd * m.p, (kj - r0) * d + hd * dh);
                    for cc in 0..dh {
                        dkr[o + cc] += dkc[s + cc];
                        dvr[o + cc] += dvc[s + cc];
                    }
                }
            }
        });
    });
    true
}
