//! Softmax attention on the CPU: the flash-style kernels of `softmax_simd.rs` (AVX-512, or AVX2 +
//! FMA) where the CPU has one and the head width is at most 64, else the scalar loops below (one
//! query row and one head at a time; the backward recomputes the scores in a pass over query rows
//! for dQ and one over key rows for dK, dV). Both compute the math of the parent module's doc
//! comment with the same summation precision; tests/perf_softmax_attention.rs forces each path
//! against an f64 oracle.

use super::super::gemm::Simd;
use super::super::par;
#[cfg(target_arch = "x86_64")]
use super::softmax_simd::{self, Isa};
use super::{dot, exp_f32, real_keys, KEY_BLOCK};

/// The blocked kernels' instruction set for `simd` (when this CPU can run it, else the detected
/// path); None on the portable path.
#[cfg(target_arch = "x86_64")]
fn isa(simd: Option<Simd>) -> Option<Isa> {
    match Simd::or_detected(simd) {
        Simd::Avx512 => Some(Isa::Avx512),
        Simd::Avx2 => Some(Isa::Avx2),
        Simd::Portable => None,
    }
}

/// [`super::softmax_attention_fwd`] on a chosen SIMD path (None: the detected one).
#[allow(clippy::too_many_arguments)]
pub fn softmax_attention_fwd_on(
    simd: Option<Simd>,
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
) {
    if nq == 0 || d == 0 || h == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(isa) = isa(simd) {
        // SAFETY: `isa` only names an instruction set this CPU has (`Simd::available`).
        if unsafe { softmax_simd::fwd(isa, out, lse, q, k, v, mask, nq, nk, d, h) } {
            return;
        }
    }
    fwd_scalar(out, lse, q, k, v, mask, nq, nk, d, h)
}

/// [`super::softmax_attention_bwd`] on a chosen SIMD path (None: the detected one).
#[allow(clippy::too_many_arguments)]
pub fn softmax_attention_bwd_on(
    simd: Option<Simd>,
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
) {
    if nq == 0 || nk == 0 || d == 0 || h == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(isa) = isa(simd) {
        // SAFETY: `isa` only names an instruction set this CPU has (`Simd::available`).
        if unsafe {
            softmax_simd::bwd(isa, dq, dk, dv, dout, out, lse, q, k, v, mask, nq, nk, d, h)
        } {
            return;
        }
    }
    bwd_scalar(dq, dk, dv, dout, out, lse, q, k, v, mask, nq, nk, d, h)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn fwd_scalar(
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
) {
    if nq == 0 || d == 0 || h == 0 {
        return;
    }
    let n = nq;
    let dh = d / h;
    let scale = 1.0 / (dh as f32).sqrt();
    let keys = real_keys(mask, nk);
    let keys = &keys;
    let chunk = par::chunk_rows(n, 4 * keys.len() * d + 1);
    // results per chunk: lse values [h][rows of the chunk], written after the join
    let lse_parts = par::run(out[..n * d].chunks_mut(chunk * d).enumerate(), |(c, oc)| {
        let r0 = c * chunk;
        let rows = oc.len() / d;
        let mut lse_c = vec![0f32; h * rows];
        let mut acc = vec![0f32; dh];
        let mut sc = [0f32; KEY_BLOCK];
        for (ii, orow) in oc.chunks_mut(d).enumerate() {
            let i = r0 + ii;
            for hd in 0..h {
                let qr = &q[i * d + hd * dh..][..dh];
                let o = &mut orow[hd * dh..(hd + 1) * dh];
                if keys.is_empty() {
                    o.fill(0.0);
                    lse_c[hd * rows + ii] = 0.0;
                    continue;
                }
                acc.fill(0.0);
                let mut mx = f32::NEG_INFINITY;
                let mut l = 0f64;
                for block in keys.chunks(KEY_BLOCK) {
                    let sc = &mut sc[..block.len()];
                    for (st, &j) in sc.iter_mut().zip(block) {
                        *st = scale * dot(qr, &k[j * d + hd * dh..][..dh]);
                    }
                    let bm = sc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                    let new_mx = mx.max(bm);
                    // rescale what was summed under the old maximum (0 on the first block)
                    let corr = if mx == f32::NEG_INFINITY {
                        0.0
                    } else {
                        exp_f32(mx - new_mx)
                    };
                    for st in sc.iter_mut() {
                        *st = exp_f32(*st - new_mx);
                    }
                    l = l * corr as f64 + sc.iter().map(|&p| p as f64).sum::<f64>();
                    for a in acc.iter_mut() {
                        *a *= corr;
                    }
                    for (&pw, &j) in sc.iter().zip(block) {
                        let vr = &v[j * d + hd * dh..][..dh];
                        for (a, &vb) in acc.iter_mut().zip(vr) {
                            *a += pw * vb;
                        }
                    }
                    mx = new_mx;
                }
                for (ov, &a) in o.iter_mut().zip(&acc) {
                    *ov = (a as f64 / l) as f32;
                }
                lse_c[hd * rows + ii] = (mx as f64 + l.ln()) as f32;
            }
        }
        lse_c
    });
    for (c, part) in lse_parts.into_iter().enumerate() {
        let r0 = c * chunk;
        let rows = part.len() / h;
        for hd in 0..h {
            lse[hd * n + r0..hd * n + r0 + rows].copy_from_slice(&part[hd * rows..(hd + 1) * rows]);
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn bwd_scalar(
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
) {
    if nq == 0 || nk == 0 || d == 0 || h == 0 {
        return;
    }
    let n = nq;
    let keys = real_keys(mask, nk);
    if keys.is_empty() {
        // every output is the constant 0
        return;
    }
    let keys = &keys;
    let dh = d / h;
    let scale = 1.0 / (dh as f32).sqrt();
    // D[hd·n + i] = dO_i · O_i for head hd
    let mut dd = vec![0f32; h * n];
    for hd in 0..h {
        for i in 0..n {
            let off = i * d + hd * dh;
            dd[hd * n + i] = dot(&dout[off..off + dh], &out[off..off + dh]);
        }
    }
    let dd = &dd;
    // dQ over query rows, keys in blocks: P and dS for the block, then dQ += dS · K
    let chunk = par::chunk_rows(n, 6 * keys.len() * d + 1);
    par::run(dq[..n * d].chunks_mut(chunk * d).enumerate(), |(c, dqc)| {
        let r0 = c * chunk;
        let mut acc = vec![0f64; dh];
        let mut blk = vec![0f32; dh];
        let mut ps = [0f32; KEY_BLOCK];
        for (ii, dqrow) in dqc.chunks_mut(d).enumerate() {
            let i = r0 + ii;
            for hd in 0..h {
                let off = i * d + hd * dh;
                let qr = &q[off..off + dh];
                let go = &dout[off..off + dh];
                let (l, di) = (lse[hd * n + i], dd[hd * n + i]);
                acc.fill(0.0);
                for block in keys.chunks(KEY_BLOCK) {
                    let ps = &mut ps[..block.len()];
                    for (p, &j) in ps.iter_mut().zip(block) {
                        *p = scale * dot(qr, &k[j * d + hd * dh..][..dh]) - l;
                    }
                    for p in ps.iter_mut() {
                        *p = exp_f32(*p);
                    }
                    // f32 within the block, f64 across blocks
                    blk.fill(0.0);
                    for (&p, &j) in ps.iter().zip(block) {
                        let kr = &k[j * d + hd * dh..][..dh];
                        let vr = &v[j * d + hd * dh..][..dh];
                        let ds = p * (dot(go, vr) - di);
                        for (a, &kv) in blk.iter_mut().zip(kr) {
                            *a += ds * kv;
                        }
                    }
                    for (a, &b) in acc.iter_mut().zip(&blk) {
                        *a += b as f64;
                    }
                }
                for (dqv, &a) in dqrow[hd * dh..(hd + 1) * dh].iter_mut().zip(&acc) {
                    *dqv += (a * scale as f64) as f32;
                }
            }
        }
    });
    // dK, dV over key rows, queries in blocks
    let chunk = par::chunk_rows(nk, 8 * n * d + 1);
    let items = dk[..nk * d]
        .chunks_mut(chunk * d)
        .zip(dv[..nk * d].chunks_mut(chunk * d))
        .enumerate();
    par::run(items, |(c, (dkc, dvc))| {
        let r0 = c * chunk;
        let mut acck = vec![0f64; dh];
        let mut accv = vec![0f64; dh];
        let (mut blkk, mut blkv) = (vec![0f32; dh], vec![0f32; dh]);
        let mut ps = [0f32; KEY_BLOCK];
        for (jj, (dkrow, dvrow)) in dkc.chunks_mut(d).zip(dvc.chunks_mut(d)).enumerate() {
            let j = r0 + jj;
            if mask[j] == 0.0 {
                continue;
            }
            for hd in 0..h {
                let kr = &k[j * d + hd * dh..][..dh];
                let vr = &v[j * d + hd * dh..][..dh];
                acck.fill(0.0);
                accv.fill(0.0);
                let mut i0 = 0;
                while i0 < n {
                    let i1 = (i0 + KEY_BLOCK).min(n);
                    let ps = &mut ps[..i1 - i0];
                    for (t, p) in ps.iter_mut().enumerate() {
                        let i = i0 + t;
                        *p = scale * dot(&q[i * d + hd * dh..][..dh], kr) - lse[hd * n + i];
                    }
                    for p in ps.iter_mut() {
                        *p = exp_f32(*p);
                    }
                    // f32 within the block, f64 across blocks
                    blkk.fill(0.0);
                    blkv.fill(0.0);
                    for (t, &p) in ps.iter().enumerate() {
                        let i = i0 + t;
                        let off = i * d + hd * dh;
                        let qr = &q[off..off + dh];
                        let go = &dout[off..off + dh];
                        let ds = p * (dot(go, vr) - dd[hd * n + i]);
                        for ((ak, av), (&qa, &ga)) in
                            blkk.iter_mut().zip(blkv.iter_mut()).zip(qr.iter().zip(go))
                        {
                            *ak += ds * qa;
                            *av += p * ga;
                        }
                    }
                    for ((ak, av), (&bk, &bv)) in acck
                        .iter_mut()
                        .zip(accv.iter_mut())
                        .zip(blkk.iter().zip(&blkv))
                    {
                        *ak += bk as f64;
                        *av += bv as f64;
                    }
                    i0 = i1;
                }
                for (x, &a) in dkrow[hd * dh..(hd + 1) * dh].iter_mut().zip(&acck) {
                    *x += (a * scale as f64) as f32;
                }
                for (x, &a) in dvrow[hd * dh..(hd + 1) * dh].iter_mut().zip(&accv) {
                    *x += a as f32;
                }
            }
        }
    });
}
