//! Portable microkernel: a 4 × 16 tile (4 × 8 for the half panel) in plain arrays, for CPUs without
//! AVX2; the compiler vectorises the column loop with the baseline SIMD it has.

use super::{by_rows, Kernel, Tile};

pub(super) struct Portable;

const MR: usize = 4;

impl Kernel for Portable {
    const MR: usize = MR;
    const NR: usize = 16;
    const KC: usize = 256;
    const MC: usize = 128;
    const NC: usize = 2048;

    unsafe fn tile(t: &Tile) {
        // SAFETY: the caller upholds `Kernel::tile`'s contract, which is exactly `body`'s.
        unsafe {
            match (t.half, t.direct) {
                (false, false) => by_rows!(body, 16, false, t; 1 2 3; 4),
                (false, true) => by_rows!(body, 16, true, t; 1 2 3; 4),
                (true, false) => by_rows!(body, 8, false, t; 1 2 3; 4),
                (true, true) => by_rows!(body, 8, true, t; 1 2 3; 4),
            }
        }
    }
}

/// # Safety
/// As [`Kernel::tile`] with width = W.
unsafe fn body<const W: usize, const DIRECT: bool, const R: usize>(t: &Tile) {
    let mut acc = [[0f32; W]; R];
    for p in 0..t.kc {
        let bs = &*t.b.add(p * t.b_step).cast::<[f32; W]>();
        for (r, accr) in acc.iter_mut().enumerate() {
            // A(r, p): direct rows at stride lda, or MR consecutive values per p (packed or in place)
            let x = if DIRECT {
                *t.a.add(r * t.lda + p)
            } else {
                *t.a.add(p * t.a_step + r)
            };
            for (s, &bv) in accr.iter_mut().zip(bs) {
                *s += x * bv;
            }
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        let crow = std::slice::from_raw_parts_mut(t.c.add(r * t.ldc), W);
        for (j, (cv, &x)) in crow.iter_mut().zip(accr).enumerate() {
            let mut y = t.alpha * x;
            if t.beta {
                y += *cv;
            }
            if !t.bias.is_null() {
                y += *t.bias.add(j);
            }
            *cv = y;
        }
    }
}
