//! Scalar helpers shared by several ops (a leaf module: it uses nothing of the crate).
//! Branch-free, so loops over them vectorise.

/// φ(x) = elu(x) + 1: x + 1 for x > 0, eˣ otherwise (always > 0). Branch-free, so loops over it
/// vectorise.
#[inline(always)]
pub fn elu1(x: f32) -> f32 {
    // (not f32::min, which would turn a NaN into 0)
    let e = exp_le0(if x > 0.0 { 0.0 } else { x });
    if x > 0.0 {
        x + 1.0
    } else {
        e
    }
}

/// φ'(x): 1 for x > 0, eˣ otherwise.
#[inline(always)]
pub fn elu1_grad(x: f32) -> f32 {
    // (not f32::min, which would turn a NaN into 0)
    let e = exp_le0(if x > 0.0 { 0.0 } else { x });
    if x > 0.0 {
        1.0
    } else {
        e
    }
}

/// eˣ in f32 to about 2 ulp, branch-free so a loop over a block of scores vectorises (libm's expf
/// does not): x = n·ln2 + r with |r| ≤ ln2/2, eʳ by the Cephes polynomial, 2ⁿ through the exponent
/// bits. The reduction and the polynomial are fused multiply-adds: single instructions where the
/// hot loops run (`Simd::run`'s AVX2 and AVX-512 paths, the AVX-512 kernels; GELU 1.4× faster
/// than separate multiplies and adds), correctly rounded everywhere, so every path gives the same
/// bits (a CPU without FMA calls `fmaf`). Inputs below −87.3 give e^−87.3 ≈ 1e−38 (softmax
/// weights that small do not matter); inputs above 88.7 are clamped (scores here are ≤ 0 after
/// subtracting the maximum); NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let x = if x < -87.3 { -87.3 } else { x };
    let x = if x > 88.7 { 88.7 } else { x };
    let (y, t) = exp_parts(x);
    // n ∈ [−126, 128] after the clamps: 2ⁿ clamped into the normal range
    let ni = t.to_bits() as i32 - EXP_ROUND.to_bits() as i32;
    let pow2 = f32::from_bits(((ni + 127).clamp(1, 254) as u32) << 23);
    y * pow2
}

/// [`exp_f32`] for x ≤ 0 (or NaN), bit for bit, with fewer instructions: no upper clamp, and 2ⁿ
/// needs no clamp for n ∈ [−126, 0]. What the softmax rows (scores minus their maximum) and φ's
/// negative half need. A positive x gives a wrong value, never UB.
#[inline(always)]
pub fn exp_le0(x: f32) -> f32 {
    let x = if x < -87.3 { -87.3 } else { x };
    let (y, t) = exp_parts(x);
    let ni = (t.to_bits() as i32).wrapping_sub(EXP_ROUND.to_bits() as i32);
    y * f32::from_bits((ni.wrapping_add(127) as u32) << 23)
}

/// log₂e, and ln2 split in two so n·C1 is exact ([`exp_parts`]).
pub(crate) const EXP_LOG2E: f32 = std::f32::consts::LOG2_E;
pub(crate) const EXP_C1: f32 = 0.693_359_4;
pub(crate) const EXP_C2: f32 = -2.121_944_4e-4;
/// Adding 1.5·2²³ rounds to the nearest integer without a libm call.
pub(crate) const EXP_ROUND: f32 = 12_582_912.0;
/// The Cephes polynomial for eʳ − 1 − r, highest power first ([`exp_parts`]).
pub(crate) const EXP_POLY: [f32; 6] = [
    1.987_569_2e-4,
    1.398_2e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// (y, t) with eˣ = y·2ⁿ for x already clamped: t = x·log₂e + 1.5·2²³ (in [2²³, 2²⁴), where the
/// ulp is 1, so t's bits minus those of 1.5·2²³ are n as an integer: integer arithmetic that
/// vectorises, where `n as i32`, a saturating conversion, is done lane by lane), n = t − 1.5·2²³,
/// r = x − n·ln2 and y = eʳ. The SIMD kernels (`attention::lanes`) repeat these operations in
/// this order.
#[inline(always)]
fn exp_parts(x: f32) -> (f32, f32) {
    let t = x * EXP_LOG2E + EXP_ROUND;
    let n = t - EXP_ROUND;
    let r = (-n).mul_add(EXP_C2, (-n).mul_add(EXP_C1, x));
    let mut y = EXP_POLY[0];
    for &c in &EXP_POLY[1..] {
        y = y.mul_add(r, c);
    }
    ((y * r).mul_add(r, r + 1.0), t)
}
