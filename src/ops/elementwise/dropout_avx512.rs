//! Dropout's mask on AVX-512: Philox4x32-10 for 16 counters (64 elements) in registers.
//!
//! The same integer operations as [`crate::rng::philox4x32_10`], lane by lane, so the mask is the
//! scalar one bit for bit (tests/ops_elementwise.rs forces every path against it): a 32×32→64-bit
//! product of 16 lanes is two `vpmuludq` (even and odd lanes), whose halves are blended back into
//! hi and lo words; the four output words of 16 counters are then transposed into element order
//! (element 4l + w is word w of counter l) with two rounds of unpacks and 128-bit shuffles.

use crate::rng::{dropout_counter, DropoutKey, M0, M1, W0, W1};
use std::arch::x86_64::*;

/// (hi, lo) words of a·m for 16 u32 lanes (m broadcast).
#[inline]
#[target_feature(enable = "avx512f")]
fn mulhilo(a: __m512i, m: __m512i) -> (__m512i, __m512i) {
    let even = _mm512_mul_epu32(a, m);
    let odd = _mm512_mul_epu32(_mm512_srli_epi64::<32>(a), m);
    let lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64::<32>(odd));
    let hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64::<32>(even), odd);
    (hi, lo)
}

/// The 64 Philox words of counters [g, g + 16) (words 2 and 3 and the key from `key`) in element
/// order: vector j holds elements 16j .. 16j + 15 of the group.
#[inline]
#[target_feature(enable = "avx512f")]
fn philox64(g: u64, key: DropoutKey) -> [__m512i; 4] {
    let (ctr, k) = dropout_counter(key, 4 * g);
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let base = _mm512_set1_epi32(ctr[0] as i32);
    let mut c0 = _mm512_add_epi32(base, iota);
    // counter l is g + l as a u64: carry into word 1 where the low word wrapped
    let carry = _mm512_cmplt_epu32_mask(c0, base);
    let hi = _mm512_set1_epi32(ctr[1] as i32);
    let mut c1 = _mm512_mask_add_epi32(hi, carry, hi, _mm512_set1_epi32(1));
    let mut c2 = _mm512_set1_epi32(ctr[2] as i32);
    let mut c3 = _mm512_set1_epi32(ctr[3] as i32);
    let (m0, m1) = (_mm512_set1_epi32(M0 as i32), _mm512_set1_epi32(M1 as i32));
    let mut k0 = k[0];
    let mut k1 = k[1];
    for r in 0..10 {
        if r > 0 {
            k0 = k0.wrapping_add(W0);
            k1 = k1.wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(c0, m0);
        let (hi1, lo1) = mulhilo(c2, m1);
        let n0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(k0 as i32));
        let n2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(k1 as i32));
        (c0, c1, c2, c3) = (n0, lo1, n2, lo0);
    }
    // in-lane 4×4 transposes: u_i's 128-bit lane q is counter 4q + i (words 0..3)
    let t0 = _mm512_unpacklo_epi32(c0, c1);
    let t1 = _mm512_unpackhi_epi32(c0, c1);
    let t2 = _mm512_unpacklo_epi32(c2, c3);
    let t3 = _mm512_unpackhi_epi32(c2, c3);
    let u0 = _mm512_unpacklo_epi64(t0, t2);
    let u1 = _mm512_unpackhi_epi64(t0, t2);
    let u2 = _mm512_unpacklo_epi64(t1, t3);
    let u3 = _mm512_unpackhi_epi64(t1, t3);
    // then a 4×4 transpose of 128-bit lanes: output j = lane j of u0, u1, u2, u3
    let v0 = _mm512_shuffle_i32x4::<0x44>(u0, u1);
    let v1 = _mm512_shuffle_i32x4::<0xEE>(u0, u1);
    let v2 = _mm512_shuffle_i32x4::<0x44>(u2, u3);
    let v3 = _mm512_shuffle_i32x4::<0xEE>(u2, u3);
    [
        _mm512_shuffle_i32x4::<0x88>(v0, v2),
        _mm512_shuffle_i32x4::<0xDD>(v0, v2),
        _mm512_shuffle_i32x4::<0x88>(v1, v3),
        _mm512_shuffle_i32x4::<0xDD>(v1, v3),
    ]
}

/// `dropout_apply`'s body for whole groups of 64 elements: o = s·scale where kept (u ≥ p), else 0
/// (or o += that with `accumulate`); element 0 of the slices is element `e0` of the tensor.
/// Returns how many leading elements it did (a multiple of 64); the caller does the rest.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn dropout_rows(
    o: &mut [f32],
    s: &[f32],
    e0: u64,
    p: f32,
    scale: f32,
    key: DropoutKey,
    accumulate: bool,
) -> usize {
    const WIDE: usize = 64;
    if !e0.is_multiple_of(4) {
        return 0;
    }
    let full = o.len().min(s.len()) / WIDE * WIDE;
    let (pv, sv, unit) = (
        _mm512_set1_ps(p),
        _mm512_set1_ps(scale),
        _mm512_set1_ps(1.0 / 16_777_216.0),
    );
    for (b, (ob, sb)) in o[..full]
        .chunks_exact_mut(WIDE)
        .zip(s[..full].chunks_exact(WIDE))
        .enumerate()
    {
        let bits = philox64((e0 + (b * WIDE) as u64) / 4, key);
        for (j, w) in bits.into_iter().enumerate() {
            // u = (w >> 8)·2⁻²⁴, exactly as unit_f32
            let u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32::<8>(w)), unit);
            let kept = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(u, pv);
            // SAFETY: j < 4 and the chunk is 64 floats, so [16j, 16j + 16) is in bounds of sb
            // and ob; loadu/storeu take unaligned pointers.
            let x = unsafe { _mm512_loadu_ps(sb.as_ptr().add(16 * j)) };
            let mut y = _mm512_maskz_mul_ps(kept, x, sv);
            let dst = unsafe { ob.as_mut_ptr().add(16 * j) };
            if accumulate {
                // SAFETY: as above.
                y = _mm512_add_ps(unsafe { _mm512_loadu_ps(dst) }, y);
            }
            // SAFETY: as above.
            unsafe { _mm512_storeu_ps(dst, y) };
        }
    }
    full
}

/// The 64 words [`dropout_rows`] draws for Philox counters [g, g + 16), in element order, or None
/// when this CPU lacks AVX-512F. For tests (a counter whose low word wraps is reachable only in
/// tensors of 2³⁴ elements).
pub fn philox_group(g: u64, key: DropoutKey) -> Option<[u32; 64]> {
    if !std::is_x86_feature_detected!("avx512f") {
        return None;
    }
    let mut out = [0u32; 64];
    // SAFETY: AVX-512F is available (checked above); each store writes 16 u32 at 16j of a
    // 64-element array, j < 4.
    unsafe {
        for (j, w) in philox64(g, key).into_iter().enumerate() {
            _mm512_storeu_si512(out.as_mut_ptr().add(16 * j).cast(), w);
        }
    }
    Some(out)
}
