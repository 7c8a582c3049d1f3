//! AVX-512F microkernel: a 12 × 32 tile in 24 zmm accumulators (12 × 16 for the half panel); per
//! step of k, two loads of packed B and twelve broadcasts of A feed 24 FMAs.

use super::{by_rows, Kernel, Tile};
use std::arch::x86_64::*;

pub(super) struct Avx512;

const MR: usize = 12;

impl Kernel for Avx512 {
    const MR: usize = MR;
    const NR: usize = 32;
    /// B micro-panel kc × 32 floats = 32 KiB of the 48 KiB L1.
    const KC: usize = 256;
    /// A block MC × KC = 384 KiB of the 1 MiB L2.
    const MC: usize = 384;
    /// Packed B block KC × NC = 4 MiB, in L3.
    const NC: usize = 4096;

    unsafe fn tile(t: &Tile) {
        // SAFETY: the caller upholds `Kernel::tile`'s contract, which is exactly `body`'s.
        unsafe {
            match (t.half, t.direct) {
                (false, false) => by_rows!(body, 2, false, t; 1 2 3 4 5 6 7 8 9 10 11; 12),
                (false, true) => by_rows!(body, 2, true, t; 1 2 3 4 5 6 7 8 9 10 11; 12),
                (true, false) => by_rows!(body, 1, false, t; 1 2 3 4 5 6 7 8 9 10 11; 12),
                (true, true) => by_rows!(body, 1, true, t; 1 2 3 4 5 6 7 8 9 10 11; 12),
            }
        }
    }
}

/// # Safety
/// As [`Kernel::tile`], with width = 16·NV and AVX-512F available.
#[target_feature(enable = "avx512f")]
unsafe fn body<const NV: usize, const DIRECT: bool, const R: usize>(t: &Tile) {
    let mut acc = [[_mm512_setzero_ps(); NV]; R];
    let (mut a, mut b) = (t.a, t.b);
    let lda = t.lda;
    for _ in 0..t.kc {
        let mut bv = [_mm512_setzero_ps(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = _mm512_loadu_ps(b.add(16 * v));
        }
        for (r, accr) in acc.iter_mut().enumerate() {
            // A(r, p): direct rows at stride lda, or MR consecutive values per p (packed or in place)
            let x = if DIRECT { *a.add(r * lda) } else { *a.add(r) };
            let av = _mm512_set1_ps(x);
            for v in 0..NV {
                accr[v] = _mm512_fmadd_ps(av, bv[v], accr[v]);
            }
        }
        a = a.add(if DIRECT { 1 } else { t.a_step });
        b = b.add(t.b_step);
    }
    let alpha = _mm512_set1_ps(t.alpha);
    for (r, accr) in acc.iter().enumerate() {
        for (v, &x) in accr.iter().enumerate() {
            let cp = t.c.add(r * t.ldc + 16 * v);
            let mut y = _mm512_mul_ps(x, alpha);
            if t.beta {
                y = _mm512_add_ps(y, _mm512_loadu_ps(cp));
            }
            if !t.bias.is_null() {
                y = _mm512_add_ps(y, _mm512_loadu_ps(t.bias.add(16 * v)));
            }
            _mm512_storeu_ps(cp, y);
        }
    }
}
