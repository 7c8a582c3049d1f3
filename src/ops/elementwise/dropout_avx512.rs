//! Dropout's mask on AVX-512: Philox4x32-10 for 16 counters (64 elements) in registers.
//!
//! The same integer operations as [`crate::rng::philox4x32_10`], lane by lane, so the mask is the
//! scalar one bit for bit (tests/ops_elementwise.rs forces every path against it). The 16 counters
//! run as two sets of 8, one per 64-bit lane, so a 32×32→64-bit product is one `vpmuludq` and a
//! shift (12 instructions a round for 16 counters; 18 when the halves of two products were
//! blended back into 32-bit lanes: dropout was ~1.1× slower); after the 10 rounds the low words
//! are narrowed back to 16 lanes, and the four output words transposed into element order
//! (element 4l + w is word w of counter l) with two rounds of unpacks and 128-bit shuffles.

use crate::rng::{dropout_counter, DropoutKey, M0, M1, W0, W1};
use std::arch::x86_64::*;

/// One Philox round for 8 counters, one per 64-bit lane (only the low 32 bits of each lane
/// matter): `vpmuludq` gives the whole 64-bit product of the low words, so hi is a shift and lo
/// is the product itself (its high half is ignored by the next product and by the final
/// narrowing); the two three-way XORs are one `vpternlogd` each.
#[inline]
#[target_feature(enable = "avx512f")]
fn round8(c: [__m512i; 4], m: [__m512i; 2], k: [__m512i; 2]) -> [__m512i; 4] {
    let p0 = _mm512_mul_epu32(c[0], m[0]);
    let p1 = _mm512_mul_epu32(c[2], m[1]);
    let (hi0, hi1) = (_mm512_srli_epi64::<32>(p0), _mm512_srli_epi64::<32>(p1));
    // 0x96: a ^ b ^ c
    let n0 = _mm512_ternarylogic_epi32::<0x96>(hi1, c[1], k[0]);
    let n2 = _mm512_ternarylogic_epi32::<0x96>(hi0, c[3], k[1]);
    [n0, p1, n2, p0]
}

/// Philox counters g + first + l for l in 0..8 (`ctr` is counter g), one per 64-bit lane: the
/// sum's high half is the carry into word 1 where the low word wrapped.
#[inline]
#[target_feature(enable = "avx512f")]
fn start8(ctr: [u32; 4], first: i64) -> [__m512i; 4] {
    let f = first;
    let iota = _mm512_setr_epi64(f, f + 1, f + 2, f + 3, f + 4, f + 5, f + 6, f + 7);
    let sum = _mm512_add_epi64(_mm512_set1_epi64(ctr[0] as i64), iota);
    let c1 = _mm512_add_epi64(
        _mm512_set1_epi64(ctr[1] as i64),
        _mm512_srli_epi64::<32>(sum),
    );
    let (c2, c3) = (
        _mm512_set1_epi64(ctr[2] as i64),
        _mm512_set1_epi64(ctr[3] as i64),
    );
    [sum, c1, c2, c3]
}

/// The low words of 8 + 8 64-bit lanes as 16 u32 lanes (x's first).
#[inline]
#[target_feature(enable = "avx512f")]
fn join(x: __m512i, y: __m512i) -> __m512i {
    let lo = _mm512_castsi256_si512(_mm512_cvtepi64_epi32(x));
    _mm512_inserti64x4::<1>(lo, _mm512_cvtepi64_epi32(y))
}

/// The 64 Philox words of counters [g, g + 16) (words 2 and 3 and the key from `key`) in element
/// order: vector j holds elements 16j .. 16j + 15 of the group.
#[inline]
#[target_feature(enable = "avx512f")]
fn philox64(g: u64, key: DropoutKey) -> [__m512i; 4] {
    let (ctr, k) = dropout_counter(key, 4 * g);
    let (mut a, mut b) = (start8(ctr, 0), start8(ctr, 8));
    let m = [_mm512_set1_epi64(M0 as i64), _mm512_set1_epi64(M1 as i64)];
    let mut k0 = k[0];
    let mut k1 = k[1];
    for r in 0..10 {
        if r > 0 {
            k0 = k0.wrapping_add(W0);
            k1 = k1.wrapping_add(W1);
        }
        let kv = [_mm512_set1_epi64(k0 as i64), _mm512_set1_epi64(k1 as i64)];
        a = round8(a, m, kv);
        b = round8(b, m, kv);
    }
    // back to 16 u32 lanes, counter l in lane l
    let (c0, c1, c2, c3) = (
        join(a[0], b[0]),
        join(a[1], b[1]),
        join(a[2], b[2]),
        join(a[3], b[3]),
    );
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
