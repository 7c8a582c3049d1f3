//! Era codes to model inputs. The host's preprocessing (src/data/batch.rs) gives x = (c − 2) / 2
//! from each feature's imputed code c ∈ 0..4; an era can cross to a device as those codes, one byte
//! each, packed four to an f32 word of an ordinary buffer (byte e of the buffer is code e, in
//! memory order), and be decoded there: a quarter of the bytes of the f32 era, and the same values
//! bit for bit ((c − 2) · 0.5 is exact in f32).
//!
//! packed: ⌈n / 4⌉ words; out: n.
//!   codes_fwd: out_e = (byte_e − 2) · 0.5.
//! No backward: the era's inputs take no gradient.

use super::shape::expect_len;
use crate::Result;

pub(crate) mod gpu;

/// Shape rule on every device: `packed` holds ⌈n / 4⌉ words.
pub fn check(op: &str, packed: usize, n: usize) -> Result<()> {
    expect_len(op, "packed", packed, n.div_ceil(4))
}

/// Packs codes four to a word, in memory order (the last word padded with zeros).
pub fn pack(codes: &[u8]) -> Vec<f32> {
    pack_with(codes.len(), |b| b.copy_from_slice(codes))
}

/// A packed buffer of `n` codes that `fill` writes (it is given exactly the n bytes, each to be
/// written), the last word's padding zeroed: the codes go straight where they are kept, in a
/// buffer from the CPU's pool (no copy, and no page faults once the pool has one).
pub fn pack_with(n: usize, fill: impl FnOnce(&mut [u8])) -> Vec<f32> {
    let mut words = crate::device::cpu_pool::take_any(n.div_ceil(4));
    let b = bytemuck::cast_slice_mut::<f32, u8>(&mut words);
    b[n..].fill(0);
    fill(&mut b[..n]);
    words
}

/// The codes of a packed buffer, byte view (⌈n / 4⌉ · 4 bytes: the padding included).
pub fn bytes(packed: &[f32]) -> &[u8] {
    bytemuck::cast_slice(packed)
}

/// out_e = (byte_e − 2) · 0.5 for e < out.len().
pub fn codes_fwd(out: &mut [f32], packed: &[f32]) {
    decode_into(out, bytes(packed));
}

/// out_e = (codes_e − 2) · 0.5 over the shorter of the two (also the GEMM's packing of a codes
/// operand, src/ops/gemm, which inlines it into its SIMD-width code).
#[inline(always)]
pub fn decode_into(out: &mut [f32], codes: &[u8]) {
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = (f32::from(c) - 2.0) * 0.5;
    }
}

/// [`codes_fwd`] into a new buffer after the shape rule (the host path every backend has).
pub fn fwd_checked(packed: &[f32], n: usize) -> Result<Vec<f32>> {
    check("codes_fwd", packed.len(), n)?;
    let mut out = vec![0f32; n];
    codes_fwd(&mut out, packed);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool may hand `pack` a kept buffer full of junk: the codes and a zeroed padding are
    /// all that is left of it.
    #[test]
    fn pack_over_a_reused_buffer_leaves_the_codes_and_zero_padding() {
        for n in [0usize, 1, 3, 4, 5, 16_385, 16_387, 40_002] {
            let words = n.div_ceil(4);
            crate::device::cpu_pool::give(vec![f32::from_bits(u32::MAX); words.max(4096)]);
            crate::device::cpu_pool::give(vec![f32::from_bits(u32::MAX); words + 1]);
            let cs: Vec<u8> = (0..n).map(|e| (e * 7 % 5) as u8).collect();
            let p = pack(&cs);
            assert_eq!(p.len(), words, "n {n}");
            let b = bytes(&p);
            assert_eq!(&b[..n], &cs[..], "n {n}");
            assert!(
                b[n..].iter().all(|&x| x == 0),
                "n {n}: padding {:?}",
                &b[n..]
            );
        }
    }
}
