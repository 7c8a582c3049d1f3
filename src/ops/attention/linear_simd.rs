//! The fused CPU linear attention's row loops for heads of width 16 (d 64 / 4 heads, d 128 / 8
//! heads), written once against [`Lanes`] (16 f32 lanes: one AVX-512 register, or two AVX2 ones)
//! and compiled for each: a head's 16 values are one `Lanes` value, so each dh-long sum of the
//! generic loops in `linear_cpu.rs` is 16 broadcast FMAs with no loop overhead, and rows that do
//! not depend on each other run in separate passes, so one row's chain of multiply-adds overlaps
//! the next. Chosen there when the path is AVX-512 or AVX2 and d/h = 16; each function first
//! checks every buffer length it relies on and returns false (doing nothing, the generic loop then
//! runs) when one is short. Fused multiply-adds round once where the generic loops round twice:
//! both agree with the naive twin (tests/perf_attention.rs, every path, head width 16 included).
//!
//! A block of a head's S (or dS) that rows add into stays in registers while the rows stream
//! through it: all 16 rows of it on AVX-512 (16 of 32 zmm registers), `G` = 4 rows at a time on
//! AVX2 (8 of 16 ymm registers; the rows stream through once per group). Each element is summed
//! in the same order either way, so the group size does not change the bits.

use super::lanes::{Lanes, Y2};
use super::{flush, ATTN_EPS, ROW_BLOCK};
use crate::ops::gemm::Simd;
use crate::ops::scalar::{elu1, elu1_grad};
use std::arch::x86_64::__m512;

/// A head's width: the kernels here are for 16.
const DH: usize = 16;

/// `pub(super) fn $name(simd, args…) -> bool`: runs `$body::<__m512>` compiled for AVX-512 or
/// `$body::<Y2>` compiled for AVX2 + FMA when `simd` is that path and this CPU has it; otherwise
/// returns false (the caller's generic loop runs). `rows G512 / G256`: the kernel's second
/// parameter for each, the rows of an accumulated S block it holds in registers at a time.
macro_rules! per_isa {
    ($(#[$m:meta])* fn $name:ident($($a:ident: $t:ty),* $(,)?) => $body:ident
        $(, rows $g512:literal / $g256:literal)?) => {
        $(#[$m])*
        pub(super) fn $name(simd: Simd, $($a: $t),*) -> bool {
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn v512($($a: $t),*) -> bool {
                $body::<__m512 $(, $g512)?>($($a),*)
            }
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn v256($($a: $t),*) -> bool {
                $body::<Y2 $(, $g256)?>($($a),*)
            }
            match simd {
                // SAFETY: this CPU has AVX-512F (and AVX2, FMA): checked in the guard.
                Simd::Avx512 if simd.available() => unsafe { v512($($a),*) },
                // SAFETY: this CPU has AVX2 and FMA: checked in the guard.
                Simd::Avx2 if simd.available() => unsafe { v256($($a),*) },
                _ => false,
            }
        }
    };
}

per_isa!(
    #[allow(clippy::too_many_arguments)]
    fn dq_rows16(dqc: &mut [f32], acc: &mut [f64], blk: &mut [f32], tmp: &mut [f32],
        dout: &[f32], q: &[f32], s: &[f32], st: &[f32], z: &[f32], r0: usize, d: usize,
        h: usize) => dq_rows, rows 16 / 4
);
per_isa!(
    #[allow(clippy::too_many_arguments)]
    fn dkv_rows16(dkc: &mut [f32], dvc: &mut [f32], tmp: &mut [f32], k: &[f32], v: &[f32],
        mask: &[f32], ds: &[f32], dst: &[f32], dz: &[f32], r0: usize, d: usize,
        h: usize) => dkv_rows
);
per_isa!(
    #[allow(clippy::too_many_arguments)]
    fn out_rows16(oc: &mut [f32], p: &mut [f32], q: &[f32], s: &[f32], z: &[f32], r0: usize,
        d: usize, h: usize) => out_rows
);
per_isa!(
    #[allow(clippy::too_many_arguments)]
    fn sz_rows16(acc: &mut [f64], blk: &mut [f32], pk: &mut [f32], k: &[f32], v: &[f32],
        mask: &[f32], rows: std::ops::Range<usize>, d: usize, h: usize) => sz_rows, rows 16 / 4
);

/// φ(Q) of a block of rows: `dst[i] = elu1(q[i])` (inlined into the callers, so it runs at
/// their width).
#[inline(always)]
fn phi_rows(dst: &mut [f32], q: &[f32]) {
    for (pa, &qa) in dst.iter_mut().zip(q) {
        *pa = elu1(qa);
    }
}

/// `linear_cpu::dq_rows` for heads of width 16: a head's 16 values are one `L`, so each of the
/// three dh-long sums per head (S·p, Sᵀ·dnum, the dS rows) is 16 broadcast FMAs with no loop
/// overhead. Per block of [`ROW_BLOCK`] rows, φ(Q) of the block is computed once into `tmp` (at
/// least `ROW_BLOCK · d` long), then each head takes three passes over the block's rows: 1/den,
/// dden and the scaled rows dO/den and φ(q)/den (into stack arrays, so the next passes broadcast
/// them from memory instead of shuffling registers); dq, with no dependence between rows, so one
/// row's chain of 16 multiply-adds overlaps the next; and dS (`G` rows of it at a time), dz, kept
/// in registers while the rows stream through (as [`sz_rows`] does for S). One pass per row with
/// every sum in a chain ran at half this speed, bound by its latency. Sums run in the same row
/// order as `dq_rows`; fused multiply-adds round once where `dq_rows` rounds twice; the results
/// agree with it to rounding (tests/perf_attention.rs checks both against the naive twin). Returns
/// false, having done nothing, when a buffer is shorter than the shapes need (then `dq_rows` runs).
///
/// # Safety
/// The CPU supports `L`'s instructions, and the caller is compiled for them.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dq_rows<L: Lanes, const G: usize>(
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
    let one = L::splat(1.0);
    let zero = L::zero();
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
            let zv = L::load(z.as_ptr().add(o));
            // Three passes over the block's rows; the first two have no dependence from one row
            // to the next (a row's chain of 16 multiply-adds overlaps the next row's), the third
            // adds into dS and dz in row order. The same operations per row as one pass.
            // 1: num = Σ_a p[a] S[a, :]; 1/den; dden = −(dO·num)/den²
            for (r, dden) in dden_r[..nb].iter_mut().enumerate() {
                let i = r0 + b0 + r;
                let pr = tmp.as_ptr().add(r * d + o);
                let pv = L::load(pr);
                let gv = L::load(dout.as_ptr().add(i * d + o));
                let mut num = zero;
                for a in 0..DH {
                    let pa = L::splat(*pr.add(a));
                    num = L::fma(pa, L::load(sh.add(a * DH)), num);
                }
                let inv = 1.0 / (L::hsum(L::mul(pv, zv)) + ATTN_EPS);
                *dden = -L::hsum(L::mul(gv, num)) * inv * inv;
                // dO[b]·(1/den) and p[a]·(1/den) for every a, b at once (the same products as
                // one at a time), for passes 2 and 3 to broadcast from memory
                let iv = L::splat(inv);
                L::store(gs.as_mut_ptr().add(r * DH), L::mul(gv, iv));
                L::store(ps.as_mut_ptr().add(r * DH), L::mul(pv, iv));
            }
            // 2: dp = dden z + Σ_b (dO[b]/den) Sᵀ[b, :]; dq += dp ⊙ φ'(q), φ'(q) = 1 where q > 0,
            // else φ(q)
            for r in 0..nb {
                let i = r0 + b0 + r;
                let pv = L::load(tmp.as_ptr().add(r * d + o));
                let qv = L::load(q.as_ptr().add(i * d + o));
                let mut dp = L::mul(L::splat(dden_r[r]), zv);
                for (b, &gb) in gs[r * DH..][..DH].iter().enumerate() {
                    dp = L::fma(L::splat(gb), L::load(sth.add(b * DH)), dp);
                }
                let grad = L::where_pos(qv, one, pv);
                let dqp = dqc.as_mut_ptr().add((b0 + r) * d + o);
                L::store(dqp, L::add(L::load(dqp), L::mul(dp, grad)));
            }
            // 3: dS[a, :] += (p[a]/den) dO, G rows a of dS at a time, then dz += dden p, each
            // in row order
            let dsh = dsb.as_mut_ptr().add(hb);
            for a0 in (0..DH).step_by(G) {
                let mut dsr = [zero; G];
                for (a, x) in dsr.iter_mut().enumerate() {
                    *x = L::load(dsh.add((a0 + a) * DH));
                }
                for r in 0..nb {
                    let gv = L::load(dout.as_ptr().add((r0 + b0 + r) * d + o));
                    for (x, &pa) in dsr.iter_mut().zip(&ps[r * DH + a0..][..G]) {
                        *x = L::fma(L::splat(pa), gv, *x);
                    }
                }
                for (a, x) in dsr.iter().enumerate() {
                    L::store(dsh.add((a0 + a) * DH), *x);
                }
            }
            let dzr = dzb.as_mut_ptr().add(o);
            let mut dzv = L::load(dzr);
            for (r, &dden) in dden_r[..nb].iter().enumerate() {
                dzv = L::fma(L::splat(dden), L::load(tmp.as_ptr().add(r * d + o)), dzv);
            }
            L::store(dzr, dzv);
        }
        flush(acc, blk);
        b0 += nb;
    }
    true
}

/// `linear_cpu::dkv_rows` for heads of width 16 (see [`dq_rows`]): per head, dS V + dz and dSᵀ φ(K)
/// are 16 broadcast FMAs each. Per block of [`ROW_BLOCK`] rows, m φ(K) and φ'(K) of the block's
/// unmasked rows go into `tmp` (at least `2 · ROW_BLOCK · d` long); then per head dSᵀ stays in 16
/// `L` values while the rows stream through for dK, and dS for dV (on AVX2 that is 32 ymm
/// registers, so the compiler keeps half of them on the stack: loads from L1, as S's rows). The
/// same operations in the same order as the row-by-row loop. Returns false, having done nothing,
/// when a buffer is shorter than the shapes need.
///
/// # Safety
/// The CPU supports `L`'s instructions, and the caller is compiled for them.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dkv_rows<L: Lanes>(
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
            let dzv = L::load(dz.as_ptr().add(o));
            // dK: dφ(K)/m = dz + Σ_b V[b] dSᵀ[b, :], then dK += m · dφ(K)/m ⊙ φ'(K)
            let mut reg = [L::zero(); DH];
            for (b, x) in reg.iter_mut().enumerate() {
                *x = L::load(dsth.add(b * DH));
            }
            for (r, &jj) in real[..nr].iter().enumerate() {
                let j = r0 + jj;
                let vr = v.as_ptr().add(j * d + o);
                let mut dph = dzv;
                for (b, x) in reg.iter().enumerate() {
                    dph = L::fma(L::splat(*vr.add(b)), *x, dph);
                }
                let mdp = L::mul(L::splat(mask[j]), dph);
                let g = L::load(gk.as_ptr().add(r * d + o));
                let dkp = dkc.as_mut_ptr().add(jj * d + o);
                L::store(dkp, L::add(L::load(dkp), L::mul(mdp, g)));
            }
            // dV += Σ_a m φ(K)[a] dS[a, :]
            for (a, x) in reg.iter_mut().enumerate() {
                *x = L::load(dsh.add(a * DH));
            }
            for (r, &jj) in real[..nr].iter().enumerate() {
                let pr = pk.as_ptr().add(r * d + o);
                let dvr = dvc.as_mut_ptr().add(jj * d + o);
                let mut dvh = L::load(dvr);
                for (a, x) in reg.iter().enumerate() {
                    dvh = L::fma(L::splat(*pr.add(a)), *x, dvh);
                }
                L::store(dvr, dvh);
            }
        }
        b0 += nb;
    }
    true
}

/// `linear_cpu::out_rows` for heads of width 16: φ(Q_i)ᵀ S per head is 16 broadcast
/// FMAs. Per block of [`ROW_BLOCK`] rows, φ(Q) of the block goes into `p` (at least `ROW_BLOCK · d`
/// long); then each head's S stays in 16 `L` values while the block's rows stream through it.
/// Returns false, having done nothing, when a buffer is shorter than the shapes need.
///
/// # Safety
/// The CPU supports `L`'s instructions, and the caller is compiled for them.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn out_rows<L: Lanes>(
    oc: &mut [f32],
    p: &mut [f32],
    q: &[f32],
    s: &[f32],
    z: &[f32],
    r0: usize,
    d: usize,
    h: usize,
) -> bool {
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
            let mut sreg = [L::zero(); DH];
            for (a, x) in sreg.iter_mut().enumerate() {
                *x = L::load(sh.add(a * DH));
            }
            let zv = L::load(z.as_ptr().add(o));
            for r in 0..nb {
                let pr = p.as_ptr().add(r * d + o);
                let pv = L::load(pr);
                let den = L::hsum(L::mul(pv, zv)) + ATTN_EPS;
                let mut acc = L::zero();
                for (a, x) in sreg.iter().enumerate() {
                    acc = L::fma(L::splat(*pr.add(a)), *x, acc);
                }
                let inv = L::splat(1.0 / den);
                L::store(oc.as_mut_ptr().add((b0 + r) * d + o), L::mul(acc, inv));
            }
        }
        b0 += nb;
    }
    true
}

/// `linear_cpu::sz_rows` for heads of width 16: per block of rows, φ(K) of the block's real rows is
/// computed once into `pk` (at least `ROW_BLOCK · d` long), then each head's S block stays in
/// registers, `G` of its rows at a time, while the block's rows stream through it (G broadcast FMAs
/// per row, head and group, no loads or stores of S). Sums run in the same row order as `sz_rows`,
/// rounded once per multiply-add. Returns false, having done nothing, when a buffer is shorter than
/// the shapes need.
///
/// # Safety
/// The CPU supports `L`'s instructions, and the caller is compiled for them.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn sz_rows<L: Lanes, const G: usize>(
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
            for a0 in (0..DH).step_by(G) {
                let mut sreg = [L::zero(); G];
                for (a, sr) in sreg.iter_mut().enumerate() {
                    *sr = L::load(sh.add((a0 + a) * DH));
                }
                for (r, &j) in real[..nr].iter().enumerate() {
                    let vv = L::load(v.as_ptr().add(j * d + o));
                    let pr = pk.as_ptr().add(r * d + o + a0);
                    for (a, sr) in sreg.iter_mut().enumerate() {
                        *sr = L::fma(L::splat(*pr.add(a)), vv, *sr);
                    }
                }
                for (a, sr) in sreg.iter().enumerate() {
                    L::store(sh.add((a0 + a) * DH), *sr);
                }
            }
        }
        flush(acc, blk);
        j0 = j1;
    }
    true
}
