//! Packing op(A) and op(B) blocks into the panel layouts the microkernels read.

use super::{Simd, View};
use crate::ops::codes::decode_into;

/// Packs op(A)[i0..i0+mc, p0..p0+kc] into MR-tall panels: panel q holds rows i0 + q·MR + r at
/// `dst[q·MR·kc + p·MR + r]`, zero rows past mc. `dst` holds ⌈mc/MR⌉·MR·kc values.
pub(super) fn a(dst: &mut [f32], a: &View, i0: usize, mc: usize, p0: usize, kc: usize, mr: usize) {
    for (q, panel) in dst[..mc.div_ceil(mr) * mr * kc]
        .chunks_exact_mut(mr * kc)
        .enumerate()
    {
        let r0 = q * mr;
        let rows = mr.min(mc - r0);
        if a.trans {
            // stored [k, m]: MR contiguous values per p
            for (p, d) in panel.chunks_exact_mut(mr).enumerate() {
                let s = a.idx(i0 + r0, p0 + p);
                d[..rows].copy_from_slice(&a.data[s..s + rows]);
                d[rows..].fill(0.0);
            }
        } else {
            // stored [m, k]: one contiguous row of kc per r, written with stride MR
            for r in 0..rows {
                let s = a.idx(i0 + r0 + r, p0);
                for (p, &v) in a.data[s..s + kc].iter().enumerate() {
                    panel[p * mr + r] = v;
                }
            }
            if rows < mr {
                for d in panel.chunks_exact_mut(mr) {
                    d[rows..].fill(0.0);
                }
            }
        }
    }
}

/// Packs op(B)[p0..p0+kc, j0..j0+nc] into NR-wide panels: panel q (columns j0 + q·NR…) starts at
/// `q·NR·kc` and holds B(p0 + p, j0 + q·NR + j) at `+ p·w + j`, where w = NR, or NR/2 for a last
/// panel of at most NR/2 columns; zero columns past nc.
pub(super) fn b(dst: &mut [f32], b: &View, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize) {
    for jq in (0..nc).step_by(nr) {
        let cols = nr.min(nc - jq);
        let w = if cols <= nr / 2 { nr / 2 } else { nr };
        let panel = &mut dst[jq * kc..][..kc * w];
        if b.trans {
            // stored [n, k]: one contiguous row of kc per column j, written with stride w
            for j in 0..cols {
                let s = b.idx(p0, j0 + jq + j);
                for (p, &v) in b.data[s..s + kc].iter().enumerate() {
                    panel[p * w + j] = v;
                }
            }
            if cols < w {
                for d in panel.chunks_exact_mut(w) {
                    d[cols..].fill(0.0);
                }
            }
        } else if let Some(codes) = b.codes {
            // codes stored [k, n]: w values per p, decoded at the machine's SIMD width (each value
            // converted alone: the same bits at any width)
            Simd::detect().run(
                #[inline(always)]
                || {
                    for (p, d) in panel.chunks_exact_mut(w).enumerate() {
                        let s = b.idx(p0 + p, j0 + jq);
                        decode_into(&mut d[..cols], &codes[s..s + cols]);
                        d[cols..].fill(0.0);
                    }
                },
            );
        } else {
            // stored [k, n]: w contiguous values per p
            for (p, d) in panel.chunks_exact_mut(w).enumerate() {
                let s = b.idx(p0 + p, j0 + jq);
                d[..cols].copy_from_slice(&b.data[s..s + cols]);
                d[cols..].fill(0.0);
            }
        }
    }
}
