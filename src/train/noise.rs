//! Feature noise (`--feature-noise P`), a defence against feature exposure: in every training era,
//! each feature is independently dropped (set to 0 after preprocessing, i.e. the era's centre) with
//! probability P/2 or reversed (negated) with probability P/2. The draw for feature j of era e in
//! epoch k comes from Philox with counter [j, e, k, 0x401CE] under the run's seed, so it is the same
//! in every run and on every device. Validation and prediction never see it: only the training loop
//! calls `apply`.

use super::era::EraBatch;
use crate::rng::{philox4x32_10, unit_f32};

/// What happens to one feature of one era.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noise {
    Keep,
    Drop,
    Reverse,
}

const NOISE_TAG: u32 = 0x401CE;

/// The fate of feature `j` in era `era` of round `round` (the epoch; walk-forward numbers its
/// rounds) under `seed` with probability `p`.
pub fn draw(seed: u64, round: u64, era: u64, j: usize, p: f32) -> Noise {
    if p <= 0.0 {
        return Noise::Keep;
    }
    let ctr = [j as u32, era as u32, round as u32, NOISE_TAG];
    let key = [seed as u32, (seed >> 32) as u32];
    let u = unit_f32(philox4x32_10(ctr, key)[0]);
    if u < 0.5 * p {
        Noise::Drop
    } else if u < p {
        Noise::Reverse
    } else {
        Noise::Keep
    }
}

/// Applies the noise to a loaded training era in place.
pub fn apply(batch: &mut EraBatch, seed: u64, round: u64, era: u64, p: f32) {
    if p <= 0.0 || batch.f == 0 {
        return;
    }
    let f = batch.f;
    let fate: Vec<Noise> = (0..f).map(|j| draw(seed, round, era, j, p)).collect();
    if fate.iter().all(|&n| n == Noise::Keep) {
        return;
    }
    batch.col_sums = None;
    batch.stats = None;
    for row in batch.x.chunks_exact_mut(f) {
        for (v, n) in row.iter_mut().zip(&fate) {
            match n {
                Noise::Keep => {}
                Noise::Drop => *v = 0.0,
                Noise::Reverse => *v = -*v,
            }
        }
    }
    // the same on the codes (x = (c − 2) / 2): dropped is c = 2, reversed is 4 − c
    if let Some(packed) = &mut batch.codes {
        let len = batch.n * f;
        let codes = &mut bytemuck::cast_slice_mut::<f32, u8>(packed)[..len];
        for row in codes.chunks_exact_mut(f) {
            for (c, n) in row.iter_mut().zip(&fate) {
                match n {
                    Noise::Keep => {}
                    Noise::Drop => *c = 2,
                    Noise::Reverse => *c = 4 - *c,
                }
            }
        }
    }
}
