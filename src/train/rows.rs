//! Row subsampling (`train --row-sample P`): in every training era of every epoch, each row is kept
//! with probability P, so the model, its attention over the era and its era context see a
//! different random part of the era each time (docs/defaults.md round 11 measured it; round 12
//! made 0.5 the recommended default). The draw for row r of era `era` (its index in the store)
//! in round `round` (the epoch) comes from Philox with counter [r, era, round, 0x5B5B] under the
//! run's seed, so it is the same in every run, whatever the era order, and on every device.
//! Kept rows stay in their order; an era that would keep fewer than `MIN_ROWS` rows is trained
//! whole. Validation and prediction never see it: only the training loop draws it ([`plan`],
//! before an era loads, so that its loader reads only the kept rows; [`apply`] does the same to
//! an era already loaded, the reference its tests hold the loader to).

use super::era::EraBatch;
use crate::ops::gemm::Simd;
use crate::rng::{philox4x32_10, unit_f32};

const ROWS_TAG: u32 = 0x5B5B;

/// An era that would keep fewer rows than this is trained whole (a correlation over a handful of
/// rows says nothing).
pub const MIN_ROWS: usize = 8;

/// Whether row `r` of era `era` in round `round` is kept under `seed` with probability `p`.
pub fn keep(seed: u64, round: u64, era: u64, r: usize, p: f32) -> bool {
    if p >= 1.0 {
        return true;
    }
    let ctr = [r as u32, era as u32, round as u32, ROWS_TAG];
    let key = [seed as u32, (seed >> 32) as u32];
    unit_f32(philox4x32_10(ctr, key)[0]) < p
}

/// The rows of an `n`-row era that round `round` trains on, in order (all of them when P = 1 or
/// when fewer than `MIN_ROWS` would be kept).
pub fn kept(seed: u64, round: u64, era: u64, n: usize, p: f32) -> Vec<usize> {
    let rows: Vec<usize> = (0..n).filter(|&r| keep(seed, round, era, r, p)).collect();
    if rows.len() < MIN_ROWS.min(n) {
        (0..n).collect()
    } else {
        rows
    }
}

/// The rows of an `n`-row era that round `round` keeps, or None when it keeps them all (P ≥ 1, an
/// empty era, or too few kept: [`kept`]): what the training loop's loader reads of the era.
pub fn plan(seed: u64, round: u64, era: u64, n: usize, p: f32) -> Option<Vec<usize>> {
    if p >= 1.0 || n == 0 {
        return None;
    }
    let rows = kept(seed, round, era, n, p);
    (rows.len() < n).then_some(rows)
}

/// Keeps the sampled rows of a loaded training era (x, its packed codes, y and the mask alike):
/// the rows [`plan`] names, as the training loop's loader reads them from the store.
pub fn apply(batch: &mut EraBatch, seed: u64, round: u64, era: u64, p: f32) {
    let Some(rows) = plan(seed, round, era, batch.n, p) else {
        return;
    };
    let (f, t) = (batch.f, batch.t);
    batch.stats = None;
    if let Some(packed) = batch.codes.take() {
        let codes = &crate::ops::codes::bytes(&packed)[..batch.n * f];
        let kept =
            crate::ops::codes::pack_with(rows.len() * f, |out| gather_into(out, codes, &rows, f));
        crate::device::cpu_pool::give(packed);
        batch.codes = Some(kept);
    }
    // x not made yet (`EraBatch::load_codes`) will be, from the kept rows' codes
    if !batch.x.is_empty() {
        let mut x = crate::device::cpu_pool::take_any(rows.len() * f);
        // the kept real rows' column sums (f64, row order) as they are copied: the sums the gate
        // and the era statistics take (a mask value is 1.0 or 0.0)
        let mut sums = batch.col_sums.as_ref().map(|_| vec![0f64; f]);
        Simd::detect().run(
            #[inline(always)]
            || {
                for (dst, &r) in x.chunks_exact_mut(f.max(1)).zip(&rows) {
                    dst.copy_from_slice(&batch.x[r * f..(r + 1) * f]);
                    if let (Some(s), true) = (&mut sums, batch.mask[r] != 0.0) {
                        for (s, &v) in s.iter_mut().zip(dst.iter()) {
                            *s += v as f64;
                        }
                    }
                }
            },
        );
        batch.col_sums = sums;
        crate::device::cpu_pool::give(std::mem::replace(&mut batch.x, x));
    }
    batch.y = gather(&batch.y, &rows, t);
    batch.mask = gather(&batch.mask, &rows, 1);
    batch.n = rows.len();
}

/// The `w`-wide rows `rows` of the row-major `v`, in that order.
fn gather<T: Copy + Default>(v: &[T], rows: &[usize], w: usize) -> Vec<T> {
    let mut out = vec![T::default(); rows.len() * w];
    gather_into(&mut out, v, rows, w);
    out
}

/// [`gather`] into `out` (`rows.len() · w` long).
fn gather_into<T: Copy>(out: &mut [T], v: &[T], rows: &[usize], w: usize) {
    for (dst, &r) in out.chunks_exact_mut(w.max(1)).zip(rows) {
        dst.copy_from_slice(&v[r * w..(r + 1) * w]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_one_keeps_every_row() {
        assert_eq!(kept(7, 3, 2, 50, 1.0), (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn about_p_of_the_rows_are_kept_and_the_draw_changes_with_the_round() {
        let a = kept(7, 1, 2, 4000, 0.5);
        let b = kept(7, 2, 2, 4000, 0.5);
        assert!((1800..2200).contains(&a.len()), "{}", a.len());
        assert_ne!(a, b);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_tiny_era_is_trained_whole() {
        // with p this small, at most a row or two survives the draw: the era stays whole
        assert_eq!(kept(1, 1, 1, 20, 0.01), (0..20).collect::<Vec<_>>());
        assert_eq!(kept(1, 1, 1, 3, 0.5), (0..3).collect::<Vec<_>>());
    }
}
