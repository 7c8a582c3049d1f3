//! Era codes to model inputs. The host's preprocessing (src/data/batch.rs) gives x = (c − 2) / 2
//! from each feature's imputed code c ∈ 0..4; an era can cross to a device as those codes, one byte
//! each, packed four to an f32 word of an ordinary buffer (byte e of the buffer is code e, in
//! memory order), and be decoded there: a quarter of the bytes of the f32 era, and the same values
//! bit for bit ((c − 2) · 0.5 is exact in f32).
//!
//! packed: ⌈n / 4⌉ words; out: n.
//!   codes_fwd: out_e = (byte_e − 2) · 0.5.
//! No backward: the era's inputs take no gradient.

use super::gemm::Simd;
use super::par;
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

/// Rows summed in u32 before a u64 total: 65,536 · 255² < 2³², so any byte fits.
const MOMENT_ROWS: usize = 1 << 16;

/// Real rows whose sums are kept in registers, a group of [`MOMENT_COLS`] columns at a time:
/// each of these rows is read as its own sequential stream, and the u32 sums go through memory
/// once per chunk instead of once per row.
const MOMENT_CHUNK: usize = 32;

/// Columns whose u32 sums stay in registers over a chunk of rows (64 bytes of each row).
const MOMENT_COLS: usize = 64;

/// Per column j of codes [n, f] (row-major bytes), over the rows i with `mask[i] != 0`: (Σ c,
/// Σ c²), exact. The era statistics (src/train/era.rs) follow from these without rounding: an
/// era's mean and variance of x = (c − 2) / 2 are ratios of integers. Split over threads by
/// columns and run at the machine's SIMD width (integer sums: the same values any way).
pub fn col_moments(codes: &[u8], mask: &[f32], n: usize, f: usize) -> (Vec<u64>, Vec<u64>) {
    col_moments_on(codes, mask, n, f, par::threads())
}

/// [`col_moments`] split over at most `threads` threads (one below 65,536 values; 1: on the
/// calling thread alone, as an era loader runs it beside the training step, whose ops have the
/// worker pool).
pub fn col_moments_on(
    codes: &[u8],
    mask: &[f32],
    n: usize,
    f: usize,
    threads: usize,
) -> (Vec<u64>, Vec<u64>) {
    let (mut s1, mut s2) = (vec![0u64; f], vec![0u64; f]);
    if n == 0 || f == 0 {
        return (s1, s2);
    }
    let codes = &codes[..n * f];
    let real: Vec<usize> = (0..n).filter(|&i| mask[i] != 0.0).collect();
    let threads = if n * f >= 1 << 16 { threads } else { 1 };
    let fc = f.div_ceil(threads.max(1)).max(1);
    let simd = Simd::detect();
    let items = s1.chunks_mut(fc).zip(s2.chunks_mut(fc)).enumerate();
    par::run(items, |(c, (t1, t2))| {
        let (f0, w) = (c * fc, t1.len());
        let (mut a1, mut a2) = (vec![0u32; w], vec![0u32; w]);
        for block in real.chunks(MOMENT_ROWS) {
            simd.run(
                #[inline(always)]
                || {
                    for chunk in block.chunks(MOMENT_CHUNK) {
                        moments_chunk(&mut a1, &mut a2, codes, chunk, f0, f);
                    }
                },
            );
            for (t, a) in t1.iter_mut().zip(a1.iter_mut()) {
                *t += u64::from(std::mem::take(a));
            }
            for (t, a) in t2.iter_mut().zip(a2.iter_mut()) {
                *t += u64::from(std::mem::take(a));
            }
        }
    });
    (s1, s2)
}

/// a1[j] += Σ c, a2[j] += Σ c² over the rows `rows` of codes (row length f) at columns f0 + j,
/// j < a1.len(): [`MOMENT_COLS`] columns at a time in registers, then the rest one by one.
#[inline(always)]
fn moments_chunk(
    a1: &mut [u32],
    a2: &mut [u32],
    codes: &[u8],
    rows: &[usize],
    f0: usize,
    f: usize,
) {
    let w = a1.len();
    let whole = w - w % MOMENT_COLS;
    for g in (0..whole).step_by(MOMENT_COLS) {
        let mut x1: [u32; MOMENT_COLS] = [0; MOMENT_COLS];
        let mut x2: [u32; MOMENT_COLS] = [0; MOMENT_COLS];
        x1.copy_from_slice(&a1[g..g + MOMENT_COLS]);
        x2.copy_from_slice(&a2[g..g + MOMENT_COLS]);
        for &i in rows {
            let row = &codes[i * f + f0 + g..][..MOMENT_COLS];
            for l in 0..MOMENT_COLS {
                let v = u32::from(row[l]);
                x1[l] += v;
                x2[l] += v * v;
            }
        }
        a1[g..g + MOMENT_COLS].copy_from_slice(&x1);
        a2[g..g + MOMENT_COLS].copy_from_slice(&x2);
    }
    for &i in rows {
        let row = &codes[i * f + f0 + whole..][..w - whole];
        for ((x, y), &v) in a1[whole..].iter_mut().zip(&mut a2[whole..]).zip(row) {
            let v = u32::from(v);
            *x += v;
            *y += v * v;
        }
    }
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
