//! Scalar helpers shared by several ops (a leaf module: it uses nothing of the crate).
//! Branch-free, so loops over them vectorise.

/// φ(x) = elu(x) + 1: x + 1 for x > 0, eˣ otherwise (always > 0). Branch-free, so loops over it
/// vectorise.
#[inline(always)]
pub fn elu1(x: f32) -> f32 {
    // (not f32::min, which would turn a NaN into 0)
    let e = exp_f32(if x > 0.0 { 0.0 } else { x });
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
    let e = exp_f32(if x > 0.0 { 0.0 } else { x });
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
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln2 split in two so n·C1 is exact
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // adding 1.5·2²³ rounds to the nearest integer without a libm call
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -87.3 { -87.3 } else { x };
    let x = if x > 88.7 { 88.7 } else { x };
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (-n).mul_add(C2, (-n).mul_add(C1, x));
    let mut y: f32 = 1.987_569_2e-4;
    y = y.mul_add(r, 1.398_2e-3);
    y = y.mul_add(r, 8.333_452e-3);
    y = y.mul_add(r, 4.166_579_6e-2);
    y = y.mul_add(r, 1.666_666_5e-1);
    y = y.mul_add(r, 0.5);
    let y = (y * r).mul_add(r, r + 1.0);
    // 2ⁿ: n + 127 in the exponent field (n ∈ [−126, 128] after the clamps). t lies in
    // [2²³, 2²⁴), where the ulp is 1, so its bits minus ROUND's are n as an integer: integer
    // arithmetic that vectorises, where `n as i32` (a saturating conversion) is done lane by lane.
    let ni = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let pow2 = f32::from_bits(((ni + 127).clamp(1, 254) as u32) << 23);
    y * pow2
}
