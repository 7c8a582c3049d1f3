//! Packing and scratch of the CPU softmax attention kernels (`softmax_simd.rs`): per-head panels
//! of q, k, v, dO, padded to whole tiles and 16-lane widths, in a buffer kept per calling thread.

use super::super::par;
use std::cell::RefCell;

/// Query rows per tile.
pub(super) const R: usize = 8;
/// Keys per block of the forward (one online-softmax rescale per block and row).
pub(super) const KF: usize = 256;

thread_local! {
    /// Packed panels (f32) and dQ partials (f64), kept per calling thread.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f64>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The shapes of the packed panels.
#[derive(Clone, Copy)]
pub(super) struct Dims {
    /// d, heads, head width, padded head width (multiple of 16)
    pub(super) d: usize,
    pub(super) h: usize,
    pub(super) dh: usize,
    pub(super) p: usize,
    /// queries, queries rounded up to R
    pub(super) nqp: usize,
    /// real keys, real keys rounded up to KF (a multiple of KB)
    pub(super) nkr: usize,
    pub(super) nkp: usize,
    /// row stride of the transposed panels: nkp and one cache line, so that the p rows a block of
    /// keys reads do not all fall in the same L1 sets (with nkp a multiple of 256 they did: the
    /// backward ran 1.5x slower, the forward 1.1x, on a Zen 3)
    pub(super) ldt: usize,
}

impl Dims {
    pub(super) fn new(nq: usize, nkr: usize, d: usize, h: usize) -> Dims {
        let (dh, nkp) = (d / h, nkr.div_ceil(KF) * KF);
        Dims {
            d,
            h,
            dh,
            p: dh.div_ceil(16) * 16,
            nqp: nq.div_ceil(R) * R,
            nkr,
            nkp,
            // one cache line (16 f32) past nkp
            ldt: nkp + 16,
        }
    }
    /// Length of one row-major panel [h][nqp][p].
    pub(super) fn qlen(&self) -> usize {
        self.h * self.nqp * self.p
    }
    /// Length of one key panel [h][nkp][p] or transposed [h][p][ldt] (the longer).
    pub(super) fn klen(&self) -> usize {
        self.h * self.ldt * self.p
    }
}

/// dst[hd][t][c] = scale · src[rows[t]·d + hd·dh + c], zero padded to `padded` rows.
/// Heads run in parallel (as in [`pack_cols`]).
pub(super) fn pack_rows<I>(
    dst: &mut [f32],
    src: &[f32],
    rows: I,
    padded: usize,
    m: &Dims,
    scale: f32,
) where
    I: Iterator<Item = usize> + Clone + Sync,
{
    let panels = dst[..m.h * padded * m.p].chunks_mut(padded * m.p);
    par::run(panels.enumerate(), |(hd, panel)| {
        panel.fill(0.0);
        for (t, i) in rows.clone().enumerate() {
            let s = &src[i * m.d + hd * m.dh..][..m.dh];
            for (o, &x) in panel[t * m.p..][..m.dh].iter_mut().zip(s) {
                *o = scale * x;
            }
        }
    });
}

/// dst[hd][c][j] = src[keys[j]·d + hd·dh + c] (keys transposed, rows of [`Dims::ldt`]), zero
/// padded.
pub(super) fn pack_cols(dst: &mut [f32], src: &[f32], keys: &[usize], m: &Dims) {
    let panels = dst[..m.h * m.p * m.ldt].chunks_mut(m.p * m.ldt);
    par::run(panels.enumerate(), |(hd, panel)| {
        panel.fill(0.0);
        for (j, &kj) in keys.iter().enumerate() {
            let s = &src[kj * m.d + hd * m.dh..][..m.dh];
            for (c, &x) in s.iter().enumerate() {
                panel[c * m.ldt + j] = x;
            }
        }
    });
}

/// Runs `f` with the calling thread's scratch grown to `nf` f32 and `nd` f64 values (contents
/// unspecified); `f` must not call back into this module.
pub(super) fn with_scratch<T>(
    nf: usize,
    nd: usize,
    f: impl FnOnce(&mut [f32], &mut [f64]) -> T,
) -> T {
    SCRATCH.with(|sc| {
        let mut sc = sc.borrow_mut();
        let (a, b) = &mut *sc;
        if a.len() < nf {
            a.resize(nf, 0.0);
        }
        if b.len() < nd {
            b.resize(nd, 0.0);
        }
        f(&mut a[..nf], &mut b[..nd])
    })
}
