//! Era preprocessing (SPEC §3), identical on every device: the host does it when an era is
//! loaded, and every backend receives the same f32 values.
//!
//! A missing feature value (`MISSING`, or any code outside 0..4 in a corrupt store) takes that
//! feature's lower median over the era's present values (for an even count, the smaller of the
//! two middle values, so it stays an integer 0..4), or 2 when the era has no present value; then
//! x = (X − 2) / 2 maps 0..4 to −1..1.

use super::store::EraView;
use crate::ops::gemm::Simd;

/// Per feature, the lower median of the era's present values (2 if none): `[F]`, values 0..4.
/// A value outside 0..4 (`MISSING`, or anything else in a corrupt store) is not present.
pub fn feature_medians(era: &EraView) -> Vec<u8> {
    let f = era.n_features;
    // counts[v][j]: rows whose feature j holds code v; one pass per code over each row (which
    // stays in L1), a byte compare and a byte add per lane (16–64 lanes a vector), into u8
    // counters that are added to the u32 ones every 255 rows, before they could wrap
    let mut counts = vec![vec![0u32; f]; 5];
    let mut small = vec![vec![0u8; f]; 5];
    // at the machine's SIMD width (integer counts: the same at any width)
    Simd::detect().run(
        #[inline(always)]
        || {
            for block in era.features.chunks(f.max(1) * 255) {
                for row in block.chunks_exact(f.max(1)) {
                    for (v, cv) in small.iter_mut().enumerate() {
                        let (cv, row, v) = (&mut cv[..f], &row[..f], v as i8);
                        for j in 0..f {
                            cv[j] += u8::from(row[j] == v);
                        }
                    }
                }
                for (big, cv) in counts.iter_mut().zip(&mut small) {
                    for (b, c) in big.iter_mut().zip(cv.iter_mut()) {
                        *b += u32::from(*c);
                        *c = 0;
                    }
                }
            }
        },
    );
    (0..f)
        .map(|j| {
            let n: u32 = counts.iter().map(|cv| cv[j]).sum();
            if n == 0 {
                return 2;
            }
            // the lower median is the value at sorted position (n - 1) / 2
            let k = (n - 1) / 2;
            let mut seen = 0;
            for (v, cv) in counts.iter().enumerate() {
                seen += cv[j];
                if seen > k {
                    return v as u8;
                }
            }
            2
        })
        .collect()
}

/// Stored values 0..4 after imputation, `[n_rows, F]` row-major (for scoring: feature exposure,
/// neutralization; and the codes an era crosses to a GPU as): a present value stays, anything
/// else takes its feature's lower median.
pub fn imputed_features(era: &EraView, out: &mut Vec<u8>) {
    out.clear();
    out.resize(era.features.len(), 0);
    impute_into(era, out);
}

/// [`imputed_features`] into `out`, exactly as long as the era's features (every byte written).
/// An era whose store stats count no missing value is copied, noting its largest byte, and
/// takes no medians unless a value outside 0..4 turns up all the same (a corrupt store): at
/// 5,000 × 2,376 the medians took 1.3 ms and the blend 1 ms, the copy takes 1 ms. An era's
/// medians are found once per open store (kept in `era.medians`): a later epoch's load of an
/// era with missing values only blends them in (5.8 → 3.5 ms an era at 5,000 × 2,376).
pub fn impute_into(era: &EraView, out: &mut [u8]) {
    impute_rows_into(era, None, out);
}

/// [`impute_into`] of the era's rows `rows` only, in that order (`out`: `rows.len()` · F bytes;
/// None: every row): the training loop's row sampling imputes only the rows it keeps. The medians
/// are the whole era's whichever rows are imputed (indices must be below the era's row count).
pub fn impute_rows_into(era: &EraView, rows: Option<&[usize]>, out: &mut [u8]) {
    let f = era.n_features;
    let whole = rows.map_or(era.features.len(), |r| r.len() * f);
    debug_assert_eq!(out.len(), whole, "impute_rows_into: output length");
    let row = |i: usize| &era.features[i * f..(i + 1) * f];
    let simd = Simd::detect();
    if era.missing_features == 0 {
        let largest = simd.run(
            #[inline(always)]
            || match rows {
                None => copy_rows(out, out.len(), std::iter::once(era.features)),
                Some(r) => copy_rows(out, f, r.iter().map(|&i| row(i))),
            },
        );
        if largest <= 4 {
            return;
        }
    }
    let found;
    let medians = match era.medians {
        Some(slot) => slot.get_or_init(|| feature_medians(era)),
        None => {
            found = feature_medians(era);
            &found
        }
    };
    simd.run(
        #[inline(always)]
        || match rows {
            None => blend_rows(out, f, era.features.chunks_exact(f.max(1)), medians),
            Some(r) => blend_rows(out, f, r.iter().map(|&i| row(i)), medians),
        },
    );
}

/// Copies `rows` into the `w`-byte chunks of `out` in turn, returning the largest byte.
#[inline(always)]
fn copy_rows<'a>(out: &mut [u8], w: usize, rows: impl Iterator<Item = &'a [i8]>) -> u8 {
    let mut m = 0u8;
    for (o, row) in out.chunks_mut(w.max(1)).zip(rows) {
        for (o, &v) in o.iter_mut().zip(row) {
            *o = v as u8;
            m = m.max(v as u8);
        }
    }
    m
}

/// Writes the F-wide `rows` into `out` in turn, each value outside 0..4 replaced by its feature's
/// median.
#[inline(always)]
fn blend_rows<'a>(out: &mut [u8], f: usize, rows: impl Iterator<Item = &'a [i8]>, med: &[u8]) {
    for (o, row) in out.chunks_exact_mut(f.max(1)).zip(rows) {
        let (o, row, med) = (&mut o[..f], &row[..f], &med[..f]);
        for j in 0..f {
            // present codes are 0..=4 as unsigned bytes; min/compare/blend lanes, no branch
            let v = row[j] as u8;
            let present = u8::from(v <= 4).wrapping_neg();
            o[j] = (v & present) | (med[j] & !present);
        }
    }
}

/// Model inputs x = (X − 2) / 2 after imputation, `[n_rows, F]` row-major f32 in −1..1.
pub fn preprocess_features(era: &EraView, x: &mut Vec<f32>) {
    let mut codes = Vec::new();
    imputed_features(era, &mut codes);
    x.clear();
    x.extend(codes.iter().map(|&c| (f32::from(c) - 2.0) * 0.5));
}

/// Targets `[n_rows, T]` and the target mask t_ik = [y_ik is not NaN] (1.0 / 0.0); NaN targets are
/// replaced by 0 in `y` so that masked arithmetic never sees a NaN.
pub fn targets_and_mask(era: &EraView, y: &mut Vec<f32>, mask: &mut Vec<f32>) {
    y.clear();
    mask.clear();
    y.reserve(era.targets.len());
    mask.reserve(era.targets.len());
    for &v in era.targets {
        if v.is_nan() {
            y.push(0.0);
            mask.push(0.0);
        } else {
            y.push(v);
            mask.push(1.0);
        }
    }
}
