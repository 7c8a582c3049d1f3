//! Sixteen f32 lanes for the CPU attention kernels: one AVX-512 register, or two AVX2 registers.

use std::arch::x86_64::*;

/// Sixteen f32 lanes: one AVX-512 register, or two AVX2 registers. The kernels below are written
/// once against it and compiled per instruction set by the `#[target_feature]` wrappers of
/// `softmax_simd.rs`'s `isa_kernels!` (every method is `#[inline(always)]`, so its intrinsics inline into them).
pub(super) trait Lanes: Copy {
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(p: *mut f32, v: Self);
    /// a·b + c, one rounding
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    unsafe fn mul(a: Self, b: Self) -> Self;
    unsafe fn max(a: Self, b: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
    unsafe fn hmax(v: Self) -> f32;
    unsafe fn hsum(v: Self) -> f32;
}

// SAFETY (every method of both impls): callers run only inside a function compiled for the
// matching instruction set, on a CPU that has it; loads and stores touch 16 floats from the
// pointer, which the callers bound.
impl Lanes for __m512 {
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
