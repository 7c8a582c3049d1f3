//! Fused masked linear attention on the CPU (the math is in the parent module's doc comment).
//!
//! Forward: one pass over the rows for S and z of every head (each row's φ(K_j), mask and z update
//! computed once, then one rank-1 update of S per head), one pass for the output. Backward: one pass
//! over query rows (dq, and dS, dz summed), one over key rows (dk, dv); φ, φ′ and the mask are
//! recomputed in registers, S and dS are used transposed so every inner loop is a vector FMA along a
//! head's dh values (no horizontal sums), and no [n, d] temporary is allocated.
//!
//! Rows are cut into chunks of whole [`ROW_BLOCK`]s, one per thread; sums over rows are f32 within
//! a block and f64 across blocks and chunks (chunk order: deterministic for a given thread count).
//! The loops are compiled three times — AVX-512, AVX2 + FMA, plain — and picked at run time
//! ([`Simd::detect`]) or forced (the `_on` functions, for tests); each again for head widths 8,
//! 16 and 32 as constants (the same operations in the same order: the bits do not change), which
//! made AVX2's backward 3× faster at width 16, whose run-time-length loops stayed scalar.

use super::super::gemm::Simd;
use super::super::par;
use super::super::scalar::{elu1, elu1_grad};
use super::{dot, flush, ATTN_EPS, ROW_BLOCK};

/// `fn $name(simd, args…)`: runs the `#[inline(always)]` function `$body::<DH>` compiled for
/// `simd` (AVX-512, AVX2 + FMA, or the crate's baseline), so its loops vectorise for that path,
/// with the head width `$dh` as the constant DH when it is 8, 16 or 32 (0: read at run time), so
/// each dh-long loop is a fixed run of vector operations rather than a loop the vectoriser
/// leaves scalar (its vector body is wider than a head of 16).
macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident($($a:ident: $t:ty),* $(,)?) => $body:ident, $dh:expr) => {
        $(#[$m])*
        fn $name(simd: Simd, $($a: $t),*) {
            $(#[$m])*
            #[inline(always)]
            fn on<const DH: usize>(simd: Simd, $($a: $t),*) {
                #[cfg(target_arch = "x86_64")]
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v512<const DH: usize>($($a: $t),*) {
                    $body::<DH>($($a),*)
                }
                #[cfg(target_arch = "x86_64")]
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v256<const DH: usize>($($a: $t),*) {
                    $body::<DH>($($a),*)
                }
                match simd {
                    // SAFETY: `Simd::or_detected` only returns a path this CPU supports
                    // (`Simd::available`).
                    #[cfg(target_arch = "x86_64")]
                    Simd::Avx512 => unsafe { v512::<DH>($($a),*) },
                    // SAFETY: as above.
                    #[cfg(target_arch = "x86_64")]
                    Simd::Avx2 => unsafe { v256::<DH>($($a),*) },
                    _ => $body::<DH>($($a),*),
                }
            }
            match $dh {
                8 => on::<8>(simd, $($a),*),
                16 => on::<16>(simd, $($a),*),
                32 => on::<32>(simd, $($a),*),
                _ => on::<0>(simd, $($a),*),
            }
        }
    };
}

/// The head width: DH when the caller fixed it (non-zero), else d / h.
#[inline(always)]
fn head_width<const DH: usize>(d: usize, h: usize) -> usize {
    if DH == 0 {
        d / h
    } else {
        DH
    }
}

multiversion!(
    #[allow(clippy::too_many_arguments)]
    fn sz_rows_on(acc: &mut [f64], blk: &mut [f32], pk: &mut [f32], k: &[f32], v: &[f32],
        mask: &[f32], rows: std::ops::Range<usize>, d: usize, h: usize) => sz_rows, d / h
);
multiversion!(
    #[allow(clippy::too_many_arguments)]
    fn out_rows_on(oc: &mut [f32], p: &mut [f32], q: &[f32], s: &[f32], z: &[f32], r0: usize,
        d: usize, h: usize) => out_rows, d / h
);
multiversion!(
    #[allow(clippy::too_many_arguments)]
    fn dq_rows_on(dqc: &mut [f32], acc: &mut [f64], blk: &mut [f32], tmp: &mut [f32],
        dout: &[f32], q: &[f32], s: &[f32], st: &[f32], z: &[f32], r0: usize, d: usize,
        h: usize) => dq_rows, d / h
);
multiversion!(
    #[allow(clippy::too_many_arguments)]
    fn dkv_rows_on(dkc: &mut [f32], dvc: &mut [f32], tmp: &mut [f32], k: &[f32], v: &[f32],
        mask: &[f32], ds: &[f32], dst: &[f32], dz: &[f32], r0: usize, d: usize,
        h: usize) => dkv_rows, d / h
);

/// Rows per chunk: whole blocks, one chunk per thread when the work is big enough.
fn chunk(n: usize, flops_per_row: usize) -> usize {
    par::chunk_rows_aligned(n, flops_per_row, ROW_BLOCK)
}

/// Adds `part` into `total` (f64), element by element.
fn add_into(total: &mut [f64], part: &[f64]) {
    for (t, &x) in total.iter_mut().zip(part) {
        *t += x;
    }
}

/// o[..] += a · x[..]
#[inline(always)]
fn axpy(o: &mut [f32], a: f32, x: &[f32]) {
    for (ov, &xv) in o.iter_mut().zip(x) {
        *ov += a * xv;
    }
}

/// [`super::linear_attention_fwd`] on a chosen SIMD path (None: the detected one).
#[allow(clippy::too_many_arguments)]
pub fn linear_attention_fwd_on(
    simd: Option<Simd>,
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
    let simd = Simd::or_detected(simd);
    let dh = d / h;
    let hs = h * dh * dh;
    // pass 1: S | z summed over the rows
    let ch = chunk(n, 2 * d * dh + 8 * d);
    let parts = par::run(par::ranges(n, ch), |rows| {
        let mut acc = vec![0f64; hs + d];
        let mut blk = vec![0f32; hs + d];
        #[cfg(target_arch = "x86_64")]
        if dh == 16 {
            let mut pk = vec![0f32; ROW_BLOCK * d];
            let (a, b, pkr) = (&mut acc, &mut blk, &mut pk);
            if super::linear_simd::sz_rows16(simd, a, b, pkr, k, v, mask, rows.clone(), d, h) {
                return acc;
            }
        }
        let mut pk = vec![0f32; d];
        sz_rows_on(simd, &mut acc, &mut blk, &mut pk, k, v, mask, rows, d, h);
        acc
    });
    let mut total = vec![0f64; hs + d];
    for p in &parts {
        add_into(&mut total, p);
    }
    for (o, &a) in s[..hs].iter_mut().zip(&total[..hs]) {
        *o = a as f32;
    }
    for (o, &a) in z[..d].iter_mut().zip(&total[hs..]) {
        *o = a as f32;
    }
    if n == 0 {
        return;
    }
    // pass 2: the output rows
    let (s, z) = (&s[..hs], &z[..d]);
    let ch = par::chunk_rows(n, 2 * d * dh + 8 * d);
    par::run(out[..n * d].chunks_mut(ch * d).enumerate(), |(c, oc)| {
        // a row for `out_rows`, a block of rows for `out_rows16`
        let mut p = vec![0f32; ROW_BLOCK * d];
        #[cfg(target_arch = "x86_64")]
        if dh == 16 && super::linear_simd::out_rows16(simd, oc, &mut p, q, s, z, c * ch, d, h) {
            return;
        }
        out_rows_on(simd, oc, &mut p, q, s, z, c * ch, d, h);
    });
}

/// S and z of every head over `rows`: acc += Σ_j m_j φ(K_j) V_jᵀ | Σ_j m_j φ(K_j).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn sz_rows<const DH: usize>(
    acc: &mut [f64],
    blk: &mut [f32],
    pk: &mut [f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    rows: std::ops::Range<usize>,
    d: usize,
    h: usize,
) {
    let dh = head_width::<DH>(d, h);
    let hs = h * dh * dh;
    let mut j0 = rows.start;
    while j0 < rows.end {
        let j1 = (j0 + ROW_BLOCK).min(rows.end);
        for j in j0..j1 {
            let mj = mask[j];
            if mj == 0.0 {
                continue;
            }
            let kr = &k[j * d..][..d];
            let vr = &v[j * d..][..d];
            let (sblk, zblk) = blk.split_at_mut(hs);
            for ((p, zb), &kv) in pk.iter_mut().zip(zblk.iter_mut()).zip(kr) {
                *p = mj * elu1(kv);
                *zb += *p;
            }
            for ((sh, ph), vh) in sblk
                .chunks_exact_mut(dh * dh)
                .zip(pk.chunks_exact(dh))
                .zip(vr.chunks_exact(dh))
            {
                for (srow, &pa) in sh.chunks_exact_mut(dh).zip(ph) {
                    axpy(srow, pa, vh);
                }
            }
        }
        flush(acc, blk);
        j0 = j1;
    }
}

/// Output rows r0.. of `oc`: O_i = φ(Q_i)ᵀ S / (φ(Q_i)·z + eps) per head.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn out_rows<const DH: usize>(
    oc: &mut [f32],
    p: &mut [f32],
    q: &[f32],
    s: &[f32],
    z: &[f32],
    r0: usize,
    d: usize,
    h: usize,
) {
    let dh = head_width::<DH>(d, h);
    for (ii, orow) in oc.chunks_exact_mut(d).enumerate() {
        let qr = &q[(r0 + ii) * d..][..d];
        for (pa, &qa) in p.iter_mut().zip(qr) {
            *pa = elu1(qa);
        }
        for (hd, o) in orow.chunks_exact_mut(dh).enumerate() {
            let ph = &p[hd * dh..][..dh];
            let sh = &s[hd * dh * dh..][..dh * dh];
            let den = dot(ph, &z[hd * dh..][..dh]) + ATTN_EPS;
            o.fill(0.0);
            for (&pa, srow) in ph.iter().zip(sh.chunks_exact(dh)) {
                axpy(o, pa, srow);
            }
            let inv = 1.0 / den;
            for ov in o.iter_mut() {
                *ov *= inv;
            }
        }
    }
}

/// [`super::linear_attention_bwd`] on a chosen SIMD path (None: the detected one).
#[allow(clippy::too_many_arguments)]
pub fn linear_attention_bwd_on(
    simd: Option<Simd>,
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
    let simd = Simd::or_detected(simd);
    let dh = d / h;
    let hs = h * dh * dh;
    let st = transpose_heads(&s[..hs], h, dh);
    let (s, z, st) = (&s[..hs], &z[..d], &st[..]);
    // pass 1, over query rows: dq, and dS | dz summed
    let ch = chunk(n, 6 * d * dh + 8 * d);
    let items = dq[..n * d].chunks_mut(ch * d).enumerate();
    let parts = par::run(items, |(c, dqc)| {
        let mut acc = vec![0f64; hs + d];
        let mut blk = vec![0f32; hs + d];
        // 3 rows for `dq_rows`, a block of φ(Q) rows for `dq_rows16`
        let mut tmp = vec![0f32; ROW_BLOCK.max(3) * d];
        #[cfg(target_arch = "x86_64")]
        if dh == 16 {
            let (a, b, t) = (&mut acc, &mut blk, &mut tmp);
            let r0 = c * ch;
            if super::linear_simd::dq_rows16(simd, dqc, a, b, t, dout, q, s, st, z, r0, d, h) {
                return acc;
            }
        }
        dq_rows_on(
            simd,
            dqc,
            &mut acc,
            &mut blk,
            &mut tmp,
            dout,
            q,
            s,
            st,
            z,
            c * ch,
            d,
            h,
        );
        acc
    });
    let mut total = vec![0f64; hs + d];
    for p in &parts {
        add_into(&mut total, p);
    }
    let total: Vec<f32> = total.iter().map(|&x| x as f32).collect();
    let (ds, dz) = total.split_at(hs);
    let dst = transpose_heads(ds, h, dh);
    let dst = &dst[..];
    // pass 2, over key rows: dk and dv
    let ch = par::chunk_rows(n, 4 * d * dh + 8 * d);
    let items = dk[..n * d]
        .chunks_mut(ch * d)
        .zip(dv[..n * d].chunks_mut(ch * d))
        .enumerate();
    par::run(items, |(c, (dkc, dvc))| {
        // 2 rows for `dkv_rows`, two blocks of rows for `dkv_rows16`
        let mut tmp = vec![0f32; 2 * ROW_BLOCK * d];
        #[cfg(target_arch = "x86_64")]
        if dh == 16 {
            let (t, r0) = (&mut tmp, c * ch);
            if super::linear_simd::dkv_rows16(simd, dkc, dvc, t, k, v, mask, ds, dst, dz, r0, d, h)
            {
                return;
            }
        }
        dkv_rows_on(
            simd,
            dkc,
            dvc,
            &mut tmp,
            k,
            v,
            mask,
            ds,
            dst,
            dz,
            c * ch,
            d,
            h,
        );
    });
}

/// Per head, the dh × dh block transposed: out[hd][b][a] = x[hd][a][b].
fn transpose_heads(x: &[f32], h: usize, dh: usize) -> Vec<f32> {
    let mut t = vec![0f32; h * dh * dh];
    for (th, xh) in t.chunks_exact_mut(dh * dh).zip(x.chunks_exact(dh * dh)) {
        for a in 0..dh {
            for b in 0..dh {
                th[b * dh + a] = xh[a * dh + b];
            }
        }
    }
    t
}

/// Query rows r0.. : dq += φ′(Q) ⊙ (S dnum + dden z); dS += φ(Q) dnumᵀ, dz += dden φ(Q).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dq_rows<const DH: usize>(
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
) {
    let dh = head_width::<DH>(d, h);
    let hs = h * dh * dh;
    let (p, rest) = tmp.split_at_mut(d);
    let (num, dp) = rest.split_at_mut(d);
    let rows = dqc.len() / d;
    for (ii, dqrow) in dqc.chunks_exact_mut(d).enumerate() {
        let i = r0 + ii;
        let qr = &q[i * d..][..d];
        let gr = &dout[i * d..][..d];
        for (pa, &qa) in p.iter_mut().zip(qr) {
            *pa = elu1(qa);
        }
        let (dsb, dzb) = blk.split_at_mut(hs);
        for hd in 0..h {
            let o = hd * dh;
            let ph = &p[o..o + dh];
            let go = &gr[o..o + dh];
            let zh = &z[o..o + dh];
            let nh = &mut num[o..o + dh];
            nh.fill(0.0);
            for (&pa, srow) in ph.iter().zip(s[hd * dh * dh..][..dh * dh].chunks_exact(dh)) {
                axpy(nh, pa, srow);
            }
            let inv = 1.0 / (dot(ph, zh) + ATTN_EPS);
            // dden = −(dO·O)/den with O = num/den; dnum = dO/den
            let dden = -dot(go, nh) * inv * inv;
            // dp = S dnum + dden z = Σ_b dnum[b] Sᵀ[b, :] + dden z
            let dph = &mut dp[o..o + dh];
            for (x, &zv) in dph.iter_mut().zip(zh) {
                *x = dden * zv;
            }
            for (&g, strow) in go
                .iter()
                .zip(st[hd * dh * dh..][..dh * dh].chunks_exact(dh))
            {
                axpy(dph, g * inv, strow);
            }
            // dS[a, :] += p[a] · dnum, dz += dden · p
            for (&pa, dsrow) in ph
                .iter()
                .zip(dsb[hd * dh * dh..][..dh * dh].chunks_exact_mut(dh))
            {
                let pa_inv = pa * inv;
                axpy(dsrow, pa_inv, go);
            }
            axpy(&mut dzb[o..o + dh], dden, ph);
        }
        for ((x, &g), &qa) in dqrow.iter_mut().zip(dp.iter()).zip(qr) {
            *x += g * elu1_grad(qa);
        }
        if (ii + 1) % ROW_BLOCK == 0 || ii + 1 == rows {
            flush(acc, blk);
        }
    }
}

/// Key rows r0.. : dk += m φ′(K) ⊙ (dS V + dz), dv += m dSᵀ φ(K).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dkv_rows<const DH: usize>(
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
) {
    let dh = head_width::<DH>(d, h);
    let (pk, dpk) = tmp.split_at_mut(d);
    for (jj, (dkrow, dvrow)) in dkc
        .chunks_exact_mut(d)
        .zip(dvc.chunks_exact_mut(d))
        .enumerate()
    {
        let j = r0 + jj;
        let mj = mask[j];
        if mj == 0.0 {
            continue;
        }
        let kr = &k[j * d..][..d];
        let vr = &v[j * d..][..d];
        for (p, &kv) in pk.iter_mut().zip(kr) {
            *p = mj * elu1(kv);
        }
        for hd in 0..h {
            let o = hd * dh;
            let blk = hd * dh * dh..(hd + 1) * dh * dh;
            // dφ(K)/m = dS V + dz = Σ_b V[b] dSᵀ[b, :] + dz
            let dph = &mut dpk[o..o + dh];
            dph.copy_from_slice(&dz[o..o + dh]);
            for (&vb, dstrow) in vr[o..o + dh].iter().zip(dst[blk.clone()].chunks_exact(dh)) {
                axpy(dph, vb, dstrow);
            }
            // dV += Σ_a m φ(K)[a] dS[a, :]
            let dvh = &mut dvrow[o..o + dh];
            for (&pa, dsrow) in pk[o..o + dh].iter().zip(ds[blk].chunks_exact(dh)) {
                axpy(dvh, pa, dsrow);
            }
        }
        for ((x, &g), &kv) in dkrow.iter_mut().zip(dpk.iter()).zip(kr) {
            *x += mj * g * elu1_grad(kv);
        }
    }
}
