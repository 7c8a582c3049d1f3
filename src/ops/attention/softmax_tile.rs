//! The register-tiled pieces of the softmax attention kernels (`softmax_simd.rs`), written once
//! over 16 f32 lanes ([`Lanes`]): a query tile's scores against a key block, a block row's
//! exponentials and its maximum and sum, and how many rows a tile's loops take at a time.

use super::lanes::Lanes;
use super::softmax_pack::{KF, R};

/// Rows of a tile that one register-tiled loop takes at a time when each row keeps `per_row`
/// values of `V` in registers: all [`R`] on AVX-512 (32 zmm), and on AVX2 as many as fit in 8 of
/// the 16 ymm registers (at least 1), so the accumulators do not spill (all R rows at once spilled
/// half of them: softmax attention ran at a quarter of the FMA peak). Every row gets the same
/// operations in the same order whatever the grouping, so both paths give the same bits.
#[inline(always)]
pub(super) fn group_rows<V: Lanes>(per_row: usize) -> usize {
    if V::REGS == 1 {
        R
    } else {
        (8 / (V::REGS * per_row)).clamp(1, R)
    }
}

/// s[r·N + j] = Σ_c a[r·p + c] · bt[c·ld + j0 + j] for r < R, j < N (a multiple of 32): one query
/// tile against one key block, 32 keys (two values of V) at a time for the rows of a group
/// ([`group_rows`]: all R on AVX-512, 2 on AVX2). With `MAX`, also returns each row's maximum
/// over its N scores (taken from the registers as they are stored; without, −∞).
///
/// # Safety
/// The CPU supports `V`'s instructions.
#[inline(always)]
pub(super) unsafe fn scores<V: Lanes, const N: usize, const MAX: bool>(
    s: &mut [f32],
    a: &[f32],
    bt: &[f32],
    p: usize,
    ld: usize,
    j0: usize,
) -> [f32; R] {
    assert!(N.is_multiple_of(32) && s.len() >= R * N);
    assert!(p > 0 && a.len() >= R * p && j0 + N <= ld && bt.len() >= (p - 1) * ld + j0 + N);
    let mut mx = [V::splat(f32::NEG_INFINITY); R];
    let g = group_rows::<V>(2);
    for half in 0..N / 32 {
        let jb = j0 + half * 32;
        for r0 in (0..R).step_by(g) {
            let mut acc = [[V::zero(); 2]; R];
            let acc = &mut acc[..g.min(R - r0)];
            for c in 0..p {
                // SAFETY: c·ld + jb + 32 ≤ (p−1)·ld + j0 + N ≤ bt.len(), and (r0 + r)·p + c <
                // R·p ≤ a.len() (asserted above).
                let b0 = V::load(bt.as_ptr().add(c * ld + jb));
                let b1 = V::load(bt.as_ptr().add(c * ld + jb + 16));
                for (r, ar) in acc.iter_mut().enumerate() {
                    let x = V::splat(*a.get_unchecked((r0 + r) * p + c));
                    ar[0] = V::fma(x, b0, ar[0]);
                    ar[1] = V::fma(x, b1, ar[1]);
                }
            }
            for (r, ar) in acc.iter().enumerate() {
                let r = r0 + r;
                // SAFETY: r·N + half·32 + 32 ≤ R·N ≤ s.len() (asserted above).
                V::store(s.as_mut_ptr().add(r * N + half * 32), ar[0]);
                V::store(s.as_mut_ptr().add(r * N + half * 32 + 16), ar[1]);
                if MAX {
                    mx[r] = V::max(mx[r], V::max(ar[0], ar[1]));
                }
            }
        }
    }
    let mut out = [f32::NEG_INFINITY; R];
    if MAX {
        for (o, m) in out.iter_mut().zip(mx) {
            *o = V::hmax(m);
        }
    }
    out
}

/// row[c] = e^(row[c] − mx) for a whole forward block row (KF values), and their sum in
/// [`row_reduce`]'s order (four registers, then pairwise, then across the lanes).
///
/// # Safety
/// The CPU supports `V`'s instructions.
#[inline(always)]
pub(super) unsafe fn exp_sum<V: Lanes>(row: &mut [f32], mx: f32) -> f32 {
    assert!(row.len() >= KF);
    let p = row.as_mut_ptr();
    let nm = V::splat(mx);
    let mut sum = [V::zero(); 4];
    for b in 0..KF / 64 {
        for (t, s) in sum.iter_mut().enumerate() {
            // SAFETY: 64b + 16t + 16 ≤ KF ≤ row.len() (asserted above).
            let x = V::exp_le0(V::sub(V::load(p.add(64 * b + 16 * t)), nm));
            V::store(p.add(64 * b + 16 * t), x);
            *s = V::add(*s, x);
        }
    }
    V::hsum(V::add(V::add(sum[0], sum[1]), V::add(sum[2], sum[3])))
}

/// Maximum and sum of a forward block row (KF values), four registers at a time.
///
/// # Safety
/// The CPU supports `V`'s instructions.
#[inline(always)]
pub(super) unsafe fn row_reduce<V: Lanes>(row: &[f32]) -> (f32, f32) {
    assert!(row.len() >= KF);
    let p = row.as_ptr();
    let mut mx = [V::splat(f32::NEG_INFINITY); 4];
    let mut sum = [V::zero(); 4];
    for b in 0..KF / 64 {
        for (t, (m, s)) in mx.iter_mut().zip(sum.iter_mut()).enumerate() {
            // SAFETY: 64b + 16t + 16 ≤ KF ≤ row.len() (asserted above).
            let x = V::load(p.add(64 * b + 16 * t));
            *m = V::max(*m, x);
            *s = V::add(*s, x);
        }
    }
    let m = V::max(V::max(mx[0], mx[1]), V::max(mx[2], mx[3]));
    let s = V::add(V::add(sum[0], sum[1]), V::add(sum[2], sum[3]));
    (V::hmax(m), V::hsum(s))
}
