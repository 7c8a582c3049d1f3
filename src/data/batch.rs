//! Era preprocessing (SPEC §3), identical on every device: the host does it when an era is
//! loaded, and every backend receives the same f32 values.
//!
//! A missing feature value (`MISSING`, or any code outside 0..4 in a corrupt store) takes that
//! feature's lower median over the era's present values (for an even count, the smaller of the
//! two middle values, so it stays an integer 0..4), or 2 when the era has no present value; then
//! x = (X − 2) / 2 maps 0..4 to −1..1.

use super::store::EraView;

/// Slot of a stored code: 0 for missing, 1..=5 for the codes 0..4, 6..=7 for anything else
/// (a corrupt store), which is treated as missing.
#[inline(always)]
fn slot(v: i8) -> usize {
    ((v as u8).wrapping_add(1)).min(7) as usize
}

/// Per feature, the lower median of the era's present values (2 if none): `[F]`, values 0..4.
pub fn feature_medians(era: &EraView) -> Vec<u8> {
    let f = era.n_features;
    // histogram of the slots per feature
    let mut counts = vec![[0u32; 8]; f];
    for row in era.features.chunks_exact(f.max(1)) {
        for (c, &v) in counts.iter_mut().zip(row) {
            c[slot(v)] += 1;
        }
    }
    counts
        .iter()
        .map(|c| {
            let present = &c[1..6];
            let n: u32 = present.iter().sum();
            if n == 0 {
                return 2;
            }
            // the lower median is the value at sorted position (n - 1) / 2
            let k = (n - 1) / 2;
            let mut seen = 0;
            for (v, &cv) in present.iter().enumerate() {
                seen += cv;
                if seen > k {
                    return v as u8;
                }
            }
            2
        })
        .collect()
}

/// Per feature, the value of each slot after imputation.
fn slot_tables<T: Copy>(era: &EraView, value: impl Fn(u8) -> T) -> Vec<[T; 8]> {
    feature_medians(era)
        .into_iter()
        .map(|m| {
            let im = value(m);
            [im, value(0), value(1), value(2), value(3), value(4), im, im]
        })
        .collect()
}

/// Stored values 0..4 after imputation, `[n_rows, F]` row-major (for scoring: feature exposure,
/// neutralization).
pub fn imputed_features(era: &EraView, out: &mut Vec<u8>) {
    let f = era.n_features;
    let tables = slot_tables(era, |v| v);
    out.clear();
    out.reserve(era.features.len());
    for row in era.features.chunks_exact(f.max(1)) {
        out.extend(row.iter().zip(&tables).map(|(&v, t)| t[slot(v)]));
    }
}

/// Model inputs x = (X − 2) / 2 after imputation, `[n_rows, F]` row-major f32 in −1..1.
pub fn preprocess_features(era: &EraView, x: &mut Vec<f32>) {
    let f = era.n_features;
    let tables = slot_tables(era, |v| (v as f32 - 2.0) / 2.0);
    x.clear();
    x.reserve(era.features.len());
    for row in era.features.chunks_exact(f.max(1)) {
        x.extend(row.iter().zip(&tables).map(|(&v, t)| t[slot(v)]));
    }
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
