//! AVX2 + FMA microkernel: a 6 × 16 tile in 12 ymm accumulators (6 × 8 for the half panel); per
//! step of k, two loads of packed B and six broadcasts of A feed 12 FMAs.

use super::{by_rows, Kernel, Tile};
use std::arch::x86_64::*;

pub(super) struct Avx2;

const MR: usize = 6;

impl Kernel for Avx2 {
    const MR: usize = MR;
    const NR: usize = 16;
    /// B micro-panel kc × 16 floats = 16 KiB of the 48 KiB L1.
    const KC: usize = 256;
    /// A block MC × KC = 384 KiB of the 1 MiB L2.
    const MC: usize = 384;
    /// Packed B block KC × NC = 4 MiB, in L3.
    const NC: usize = 4096;

    unsafe fn tile(t: &Tile) {
        // SAFETY: the caller upholds `Kernel::tile`'s contract, which is exactly `body`'s.
        unsafe {
            match (t.half, t.direct) {
                (false, false) => by_rows!(body, 2, false, t; 1 2 3 4 5; 6),
                (false, true) => by_rows!(body, 2, true, t; 1 2 3 4 5; 6),
                (true, false) => by_rows!(body, 1, false, t; 1 2 3 4 5; 6),
                (true, true) => by_rows!(body, 1, true, t; 1 2 3 4 5; 6),
            }
        }
    }
}

/// # Safety
/// As [`Kernel::tile`], with width = 8·NV and AVX2 and FMA available.
#[target_feature(enable = "avx2,fma")]
unsafe fn body<const NV: usize, const DIRECT: bool, const R: usize>(t: &Tile) {
    let mut acc = [[_mm256_setzero_ps(); NV]; R];
    // C's tile is read and written only after the k loop: fetch its lines now, so they arrive
    // while the loop runs (a tile of a large C is rarely in cache; 4096³: 0.87× the time).
    // Prefetches never fault; wrapping_add keeps the address arithmetic defined.
    for r in 0..R {
        let row = t.c.wrapping_add(r * t.ldc) as *const i8;
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(4 * (8 * NV - 1)));
    }
    let (mut a, mut b) = (t.a, t.b);
    let lda = t.lda;
    for _ in 0..t.kc {
        let mut bv = [_mm256_setzero_ps(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = _mm256_loadu_ps(b.add(8 * v));
        }
        for (r, accr) in acc.iter_mut().enumerate() {
            // A(r, p): direct rows at stride lda, or MR consecutive values per p (packed or in place)
            let x = if DIRECT { *a.add(r * lda) } else { *a.add(r) };
            let av = _mm256_set1_ps(x);
            for v in 0..NV {
                accr[v] = _mm256_fmadd_ps(av, bv[v], accr[v]);
            }
        }
        a = a.add(if DIRECT { 1 } else { t.a_step });
        b = b.add(t.b_step);
    }
    let alpha = _mm256_set1_ps(t.alpha);
    for (r, accr) in acc.iter().enumerate() {
        for (v, &x) in accr.iter().enumerate() {
            let cp = t.c.add(r * t.ldc + 8 * v);
            let mut y = _mm256_mul_ps(x, alpha);
            if t.beta {
                y = _mm256_add_ps(y, _mm256_loadu_ps(cp));
            }
            if !t.bias.is_null() {
                y = _mm256_add_ps(y, _mm256_loadu_ps(t.bias.add(8 * v)));
            }
            _mm256_storeu_ps(cp, y);
        }
    }
}
