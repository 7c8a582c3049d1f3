//! Sixteen f32 lanes for the CPU attention kernels: one AVX-512 register, or two AVX2 registers.

use crate::ops::scalar::{EXP_C1, EXP_C2, EXP_LOG2E, EXP_POLY, EXP_ROUND};
use std::arch::x86_64::*;

/// Sixteen f32 lanes: one AVX-512 register, or two AVX2 registers. The kernels below are written
/// once against it and compiled per instruction set by the `#[target_feature]` wrappers of
/// `softmax_simd.rs`'s `isa_kernels!` and `linear_simd.rs`'s `per_isa!` (every method is
/// `#[inline(always)]`, so its intrinsics inline into them).
pub(super) trait Lanes: Copy {
    /// Machine registers one value of Self occupies (1 zmm, or 2 ymm): the kernels size their
    /// register tiles by it (16 ymm registers hold a quarter of what 32 zmm do).
    const REGS: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(p: *mut f32, v: Self);
    /// a·b + c, one rounding
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    unsafe fn mul(a: Self, b: Self) -> Self;
    unsafe fn max(a: Self, b: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
    unsafe fn sub(a: Self, b: Self) -> Self;
    /// Lane by lane: `pos` where x > 0, else `other` (a NaN lane of x takes `other`).
    unsafe fn where_pos(x: Self, pos: Self, other: Self) -> Self;
    /// `scalar::exp_le0` lane by lane, bit for bit (x ≤ 0 or NaN): on AVX-512 its operations in
    /// its order with 2ⁿ applied by `vscalefps` (exact, as the multiply by 2ⁿ it replaces); on
    /// AVX2 the scalar function itself, vectorised.
    unsafe fn exp_le0(x: Self) -> Self;
    unsafe fn hmax(v: Self) -> f32;
    unsafe fn hsum(v: Self) -> f32;
}

// SAFETY (every method of both impls): callers run only inside a function compiled for the
// matching instruction set, on a CPU that has it; loads and stores touch 16 floats from the
// pointer, which the callers bound.
impl Lanes for __m512 {
    const REGS: usize = 1;
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        _mm512_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self) {
        _mm512_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        _mm512_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: Self, b: Self) -> Self {
        _mm512_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        _mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: Self, b: Self) -> Self {
        _mm512_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn where_pos(x: Self, pos: Self, other: Self) -> Self {
        _mm512_mask_blend_ps(
            _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_setzero_ps()),
            other,
            pos,
        )
    }
    #[inline(always)]
    unsafe fn exp_le0(x: Self) -> Self {
        // max(c, x) returns x where x is NaN, as `if x < c { c } else { x }` does
        let x = _mm512_max_ps(_mm512_set1_ps(-87.3), x);
        let round = _mm512_set1_ps(EXP_ROUND);
        let t = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(EXP_LOG2E)), round);
        let n = _mm512_sub_ps(t, round);
        // (−n)·c + x, one rounding
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_C1), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_C2), r);
        let mut y = _mm512_set1_ps(EXP_POLY[0]);
        for &c in &EXP_POLY[1..] {
            y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c));
        }
        let y = _mm512_fmadd_ps(
            _mm512_mul_ps(y, r),
            r,
            _mm512_add_ps(r, _mm512_set1_ps(1.0)),
        );
        // y·2ⁿ, n an integer in [−126, 0]
        _mm512_scalef_ps(y, n)
    }
    #[inline(always)]
    unsafe fn hmax(v: Self) -> f32 {
        _mm512_reduce_max_ps(v)
    }
    #[inline(always)]
    unsafe fn hsum(v: Self) -> f32 {
        _mm512_reduce_add_ps(v)
    }
}

/// Sixteen lanes as two AVX2 registers.
#[derive(Clone, Copy)]
pub(super) struct Y2(__m256, __m256);

impl Lanes for Y2 {
    const REGS: usize = 2;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Y2(_mm256_setzero_ps(), _mm256_setzero_ps())
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        let v = _mm256_set1_ps(x);
        Y2(v, v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Y2(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self) {
        _mm256_storeu_ps(p, v.0);
        _mm256_storeu_ps(p.add(8), v.1);
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        Y2(
            _mm256_fmadd_ps(a.0, b.0, c.0),
            _mm256_fmadd_ps(a.1, b.1, c.1),
        )
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        Y2(_mm256_mul_ps(a.0, b.0), _mm256_mul_ps(a.1, b.1))
    }
    #[inline(always)]
    unsafe fn max(a: Self, b: Self) -> Self {
        Y2(_mm256_max_ps(a.0, b.0), _mm256_max_ps(a.1, b.1))
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        Y2(_mm256_add_ps(a.0, b.0), _mm256_add_ps(a.1, b.1))
    }
    #[inline(always)]
    unsafe fn sub(a: Self, b: Self) -> Self {
        Y2(_mm256_sub_ps(a.0, b.0), _mm256_sub_ps(a.1, b.1))
    }
    #[inline(always)]
    unsafe fn where_pos(x: Self, pos: Self, other: Self) -> Self {
        let z = _mm256_setzero_ps();
        Y2(
            _mm256_blendv_ps(other.0, pos.0, _mm256_cmp_ps::<_CMP_GT_OQ>(x.0, z)),
            _mm256_blendv_ps(other.1, pos.1, _mm256_cmp_ps::<_CMP_GT_OQ>(x.1, z)),
        )
    }
    #[inline(always)]
    unsafe fn exp_le0(x: Self) -> Self {
        // the scalar function over the 16 lanes: inlined into the AVX2 + FMA kernels, this loop
        // is vectorised there, as the kernels' exp loops were before `Lanes::exp_le0`
        let mut v = [0f32; 16];
        Self::store(v.as_mut_ptr(), x);
        for e in &mut v {
            *e = crate::ops::scalar::exp_le0(*e);
        }
        Self::load(v.as_ptr())
    }
    #[inline(always)]
    unsafe fn hmax(v: Self) -> f32 {
        let m = _mm256_max_ps(v.0, v.1);
        let h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        _mm_cvtss_f32(_mm_max_ss(h, _mm_shuffle_ps(h, h, 1)))
    }
    #[inline(always)]
    unsafe fn hsum(v: Self) -> f32 {
        let m = _mm256_add_ps(v.0, v.1);
        let h = _mm_add_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::scalar::{exp_f32, exp_le0};

    /// x ≤ 0 over the whole range (every 61st f32 below zero down to −100, the clamp's edges: its
    /// smallest result, e^−87.3, is still a normal f32), −∞ and NaN.
    fn inputs() -> Vec<f32> {
        let mut xs: Vec<f32> = (0x8000_0000u32..=(-100f32).to_bits())
            .step_by(61)
            .map(f32::from_bits)
            .collect();
        xs.extend([
            0.0,
            -0.0,
            -87.3,
            -87.299_99,
            -87.300_01,
            -86.0,
            -1e-30,
            -0.346_573_6,
        ]);
        xs.extend([f32::NEG_INFINITY, f32::NAN, -f32::NAN, -f32::MIN_POSITIVE]);
        let pad = xs.len().next_multiple_of(16) - xs.len();
        xs.extend(std::iter::repeat_n(-1.5, pad));
        xs
    }

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn scalar_exp_le0_is_exp_f32_bit_for_bit() {
        for x in inputs() {
            let (a, b) = (exp_le0(x), exp_f32(x));
            assert!(same(a, b), "x = {x:e}: exp_le0 {a:e}, exp_f32 {b:e}");
        }
        // a dropped term of the polynomial would be seen
        assert!(exp_f32(-0.3) != (-0.3f32).mul_add(1.0, 1.0));
    }

    /// Every 16 inputs through `f`, compared with the scalar function.
    fn check(path: &str, f: impl Fn(&[f32; 16]) -> [f32; 16]) {
        for c in inputs().chunks_exact(16) {
            let x: [f32; 16] = c.try_into().expect("16 lanes");
            for (i, y) in f(&x).into_iter().enumerate() {
                let want = exp_f32(x[i]);
                assert!(
                    same(y, want),
                    "{path}: x = {:e}: {y:e}, exp_f32 {want:e}",
                    x[i]
                );
            }
        }
    }

    #[test]
    fn lanes_exp_le0_is_exp_f32_bit_for_bit() {
        let mut ran = 0;
        if is_x86_feature_detected!("avx512f") {
            #[target_feature(enable = "avx512f")]
            unsafe fn run(x: &[f32; 16]) -> [f32; 16] {
                let mut out = [0f32; 16];
                <__m512 as Lanes>::store(
                    out.as_mut_ptr(),
                    __m512::exp_le0(<__m512 as Lanes>::load(x.as_ptr())),
                );
                out
            }
            // SAFETY: AVX-512F is available (checked just now).
            check("avx512", |x| unsafe { run(x) });
            ran += 1;
        } else {
            eprintln!("lanes_exp_le0: this CPU has no AVX-512F; that path is not checked here");
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn run(x: &[f32; 16]) -> [f32; 16] {
                let mut out = [0f32; 16];
                Y2::store(out.as_mut_ptr(), Y2::exp_le0(Y2::load(x.as_ptr())));
                out
            }
            // SAFETY: AVX2 and FMA are available (checked just now).
            check("avx2", |x| unsafe { run(x) });
            ran += 1;
        } else {
            eprintln!("lanes_exp_le0: this CPU has no AVX2 + FMA; that path is not checked here");
        }
        assert!(
            ran > 0,
            "no SIMD path of the attention kernels exists on this CPU"
        );
    }

    /// `where_pos` picks `pos` exactly where x > 0: not at ±0, −1e−30, −∞ or NaN, and at the
    /// smallest positive subnormal and +∞, lane by lane in both halves of the AVX2 pair.
    #[test]
    fn lanes_where_pos_picks_by_sign() {
        let x: [f32; 16] = [
            1.0,
            0.0,
            -0.0,
            -1e-30,
            f32::from_bits(1),
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -2.0,
            3.5,
            -f32::NAN,
            1e-30,
            -7.0,
            0.25,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
        ];
        let pos: [f32; 16] = std::array::from_fn(|i| 100.0 + i as f32);
        let other: [f32; 16] = std::array::from_fn(|i| -100.0 - i as f32);
        let want: [f32; 16] = std::array::from_fn(|i| if x[i] > 0.0 { pos[i] } else { other[i] });
        let mut ran = 0;
        if is_x86_feature_detected!("avx512f") {
            #[target_feature(enable = "avx512f")]
            unsafe fn run(x: &[f32; 16], p: &[f32; 16], o: &[f32; 16]) -> [f32; 16] {
                let mut out = [0f32; 16];
                let l = |a: &[f32; 16]| <__m512 as Lanes>::load(a.as_ptr());
                <__m512 as Lanes>::store(out.as_mut_ptr(), __m512::where_pos(l(x), l(p), l(o)));
                out
            }
            // SAFETY: AVX-512F is available (checked just now).
            assert_eq!(unsafe { run(&x, &pos, &other) }, want, "avx512");
            ran += 1;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn run(x: &[f32; 16], p: &[f32; 16], o: &[f32; 16]) -> [f32; 16] {
                let mut out = [0f32; 16];
                let l = |a: &[f32; 16]| Y2::load(a.as_ptr());
                Y2::store(out.as_mut_ptr(), Y2::where_pos(l(x), l(p), l(o)));
                out
            }
            // SAFETY: AVX2 and FMA are available (checked just now).
            assert_eq!(unsafe { run(&x, &pos, &other) }, want, "avx2");
            ran += 1;
        }
        assert!(
            ran > 0,
            "no SIMD path of the attention kernels exists on this CPU"
        );
    }
}
