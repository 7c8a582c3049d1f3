//! One register tile of C: pointers into packed or in-place A and B for the microkernel, its
//! epilogue (alpha, beta, bias), and the edge tiles that go through a stack buffer.

use super::{AMode, Block, Kernel, Tile, TileBuf};

/// One MR × NR tile of C at block offsets (ir, jr).
pub(super) fn tile<K: Kernel>(
    blk: &Block,
    ir: usize,
    jr: usize,
    c: &mut [f32],
    ldc: usize,
    tb: &mut TileBuf,
) {
    let p = blk.p;
    let kc = blk.kc;
    let half_w = K::NR / 2;
    let j0 = blk.jc + jr;
    let nr = K::NR.min(blk.nc - jr);
    let half = nr <= half_w;
    let width = if half { half_w } else { K::NR };
    let (b_ptr, b_step) = if blk.b_in_place && nr == width {
        // SAFETY: (pc + q, j0 + j) for q < kc ≤ k - pc, j < width = nr ≤ n - j0 are elements of
        // op(B), all inside b.data (Prob invariant); the offset of (pc, j0) itself is in bounds.
        let ptr = unsafe { p.b.data.as_ptr().add(p.b.idx(blk.pc, j0)) };
        (ptr, p.b.ld)
    } else {
        (blk.bpack[jr * kc..][..kc * width].as_ptr(), width)
    };
    let beta = p.beta || !blk.first;
    let i0 = blk.ic + ir;
    let mr = K::MR.min(blk.mc - ir);
    let (a_ptr, lda, direct, a_step) = match blk.mode {
        AMode::Packed => (blk.apack[ir * kc..][..kc * K::MR].as_ptr(), 0, false, K::MR),
        mode => {
            // SAFETY: (i0 + r, pc + q) for r < mr ≤ m - i0, q < kc ≤ k - pc are elements of
            // op(A), all inside a.data (Prob invariant); i0 < m, so the offset itself is in bounds.
            let ptr = unsafe { p.a.data.as_ptr().add(p.a.idx(i0, blk.pc)) };
            if mode == AMode::Rows {
                (ptr, p.a.ld, true, 1)
            } else {
                (ptr, 0, false, p.a.ld)
            }
        }
    };
    let bias_j = p.bias.filter(|_| blk.first).map(|b| &b[j0..j0 + nr]);
    // a full-width tile is written in place with its epilogue; an edge tile goes to the stack
    // buffer (alpha 1, no beta, no bias) and is finished below
    let full = nr == width;
    let t = Tile {
        rows: mr,
        kc,
        a: a_ptr,
        lda,
        a_step,
        direct,
        b: b_ptr,
        b_step,
        half,
        c: if full {
            // SAFETY: i0 < m, j0 < n, so i0·ldc + j0 ≤ (m-1)·ldc + n - 1 < c.len()
            unsafe { c.as_mut_ptr().add(i0 * ldc + j0) }
        } else {
            tb.0.as_mut_ptr()
        },
        ldc: if full { ldc } else { width },
        alpha: if full { p.alpha } else { 1.0 },
        beta: full && beta,
        bias: match bias_j {
            Some(b) if full => b.as_ptr(),
            _ => std::ptr::null(),
        },
    };
    // SAFETY: the caller picked K because the CPU supports it; 1 ≤ mr ≤ MR (ir < mc); A rows
    // i0..i0+mr, cols pc..pc+kc are in bounds (in place, either layout) or apack holds kc·MR
    // values (packed); B's kc × width block is in bounds (in place) or in bpack. C: a full tile's
    // rows i0..i0+mr (≤ m) and cols j0..j0+width (= nr ≤ n - j0) are inside c by the Out
    // invariant, and bias_j holds nr = width values; an edge tile writes the stack tile of
    // TILE_MAX ≥ MR·NR ≥ mr·width values at stride width ≤ NR, with no bias.
    unsafe { K::tile(&t) };
    if full {
        if blk.last {
            if let Some(act) = p.act {
                for r in 0..mr {
                    act(&mut c[(i0 + r) * ldc + j0..][..nr]);
                }
            }
        }
        return;
    }
    for r in 0..mr {
        let row = &mut c[(i0 + r) * ldc + j0..][..nr];
        let src = &tb.0[r * width..][..nr];
        for (j, (cv, &v)) in row.iter_mut().zip(src).enumerate() {
            let mut x = p.alpha * v;
            if beta {
                x += *cv;
            }
            if let Some(b) = bias_j {
                x += b[j];
            }
            *cv = x;
        }
        if blk.last {
            if let Some(act) = p.act {
                act(row);
            }
        }
    }
}
