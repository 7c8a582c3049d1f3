//! The easy generator (`synth --kind easy`): strong, era-dependent signal that a small model
//! learns in a few epochs (tests that need fast learning use it).
//!
//! The generator, per era e (global index over train, validation, live):
//! - a hidden regime k_e ∈ {0, 1, 2, 3} follows a sticky Markov chain (stays with p = 0.7);
//! - every row has latent z_f ~ N(0, 1); the two **regime features** (features 0 and 1) are shifted
//!   by ±0.8 (the sign of feature j's shift is bit j of k_e), so the era's own feature distribution
//!   reveals its regime (an era mean of ±0.3 on the 0..4 scale), while one row barely does;
//! - features X_f = bin(z_f) at the normal quantiles of 5/25/75/95% (Numerai's 5/20/50/20/5 split);
//! - latent target s = Σ_{j∈S} σ_{k,j} x_j + Σ_{j∈C} x_j + N(0, 1.4²), x = (X − 2)/2, where S
//!   are up to 8 **signal features** (2..10) whose signs σ_{k,j} = ±1 depend on the regime (each
//!   feature is + in two regimes and − in the other two, so a per-row linear model sees zero net
//!   weight on them), and C are up to 2 **common features** (10, 11) with the same sign always;
//! - `target` = s binned by per-era quantiles into {0, 0.25, 0.5, 0.75, 1} (5/20/50/20/5%);
//!   `target_aux1` = the same signal with fresh noise; `target_aux2` = the signal of the next regime,
//!   NaN in every 5th era;
//! - about `missing_rate` of feature values are missing, and the last feature is missing for a
//!   whole era in every 10th era; row counts vary by era (0.6–1.4 × `rows`);
//! - the newest `nan_valid_eras` validation eras have all targets NaN; live is one era "X" with NaN
//!   targets.
//!
//! A model that sees the whole era (and so the regime) reaches a per-era corr near 0.65 on the
//! validation eras; a linear model on rows gets 0.10–0.36 (the common features, plus whatever the
//! training eras' regime mix happens to favour). `tests/synth_signal.rs` checks this. Everything
//! is deterministic for a seed.

use super::{bin_targets, mix, Rng, SynthConfig, SynthEra, TARGET_NAMES};
use crate::data::store::MISSING;

/// Number of hidden regimes.
pub const REGIMES: usize = 4;
/// Feature indices with regime-shifted means.
pub const REGIME_FEATURES: std::ops::Range<usize> = 0..2;
/// Feature indices whose effect on the target flips sign with the regime.
pub const SIGNAL_FEATURES: std::ops::Range<usize> = 2..10;
/// Feature indices with a fixed effect on the target.
pub const COMMON_FEATURES: std::ops::Range<usize> = 10..12;
/// Weight of each common feature in the latent target.
pub const COMMON_WEIGHT: f64 = 1.0;

/// The hidden regime of every era: train eras, then validation eras, then live.
pub fn regimes(cfg: &SynthConfig) -> Vec<usize> {
    let n = cfg.total_eras();
    let mut rng = Rng::new(cfg.seed, 1);
    let mut k = rng.below(REGIMES);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(k);
        if rng.uniform() >= 0.7 {
            k = (k + 1 + rng.below(REGIMES - 1)) % REGIMES;
        }
    }
    out
}

/// σ_{k,j}: for each signal feature, a non-constant row of the 4×4 Hadamard matrix (balanced: two
/// regimes +, two −), times a random sign.
fn signs(cfg: &SynthConfig) -> Vec<[f64; REGIMES]> {
    const H: [[f64; 4]; 3] = [
        [1.0, -1.0, 1.0, -1.0],
        [1.0, 1.0, -1.0, -1.0],
        [1.0, -1.0, -1.0, 1.0],
    ];
    let mut rng = Rng::new(cfg.seed, 2);
    SIGNAL_FEATURES
        .map(|_| {
            let row = H[rng.below(3)];
            let s = if rng.uniform() < 0.5 { 1.0 } else { -1.0 };
            [row[0] * s, row[1] * s, row[2] * s, row[3] * s]
        })
        .collect()
}

/// Bin a standard normal at the 5/25/75/95% quantiles → 0..4.
fn bin(z: f64) -> i8 {
    super::bin_feature(z)
}

/// Generate global era `g` (train eras first, then validation, then live).
pub fn generate_era(cfg: &SynthConfig, regimes: &[usize], g: usize) -> SynthEra {
    let f = cfg.features;
    let t = TARGET_NAMES.len();
    let mut rng = Rng::new(cfg.seed, 1000 + g as u64);
    let n = ((cfg.rows as f64 * (0.6 + 0.8 * rng.uniform())).round() as usize).max(1);
    let k = regimes[g];
    let live = g == cfg.live_era();
    let name = if live {
        "X".to_string()
    } else {
        format!("{:04}", g + 1)
    };
    let sg = signs(cfg);
    let mut features = vec![0i8; n * f];
    let mut s_main = vec![0f64; n];
    let mut s_aux1 = vec![0f64; n];
    let mut s_aux2 = vec![0f64; n];
    let x = |v: i8| (v as f64 - 2.0) / 2.0;
    for r in 0..n {
        let row = &mut features[r * f..(r + 1) * f];
        for (j, v) in row.iter_mut().enumerate() {
            let mut z = rng.normal();
            if REGIME_FEATURES.contains(&j) {
                let bit = (k >> (j - REGIME_FEATURES.start)) & 1;
                z += if bit == 1 { 0.8 } else { -0.8 };
            }
            *v = bin(z);
        }
        let (mut a, mut b) = (0.0, 0.0);
        for (i, j) in SIGNAL_FEATURES.enumerate() {
            if j < f {
                a += sg[i][k] * x(row[j]);
                b += sg[i][(k + 1) % REGIMES] * x(row[j]);
            }
        }
        let mut c = 0.0;
        for j in COMMON_FEATURES {
            if j < f {
                c += COMMON_WEIGHT * x(row[j]);
            }
        }
        s_main[r] = a + c + 1.4 * rng.normal();
        s_aux1[r] = a + c + 1.4 * rng.normal();
        s_aux2[r] = b + c + 1.4 * rng.normal();
    }
    // missing values (after the signal: the truth used the real value)
    for v in features.iter_mut() {
        if rng.uniform() < cfg.missing_rate {
            *v = MISSING;
        }
    }
    if g % 10 == 9 && f > 1 {
        for r in 0..n {
            features[r * f + f - 1] = MISSING;
        }
    }
    let nan_targets = live || cfg.unlabelled_validation(g);
    let mut targets = vec![f32::NAN; n * t];
    if !nan_targets {
        let (m, a1, a2) = (
            bin_targets(&s_main),
            bin_targets(&s_aux1),
            bin_targets(&s_aux2),
        );
        for r in 0..n {
            targets[r * t] = m[r];
            targets[r * t + 1] = a1[r];
            targets[r * t + 2] = if g % 5 == 3 { f32::NAN } else { a2[r] };
        }
    }
    let salt = mix(cfg.seed ^ 0x5EED);
    let ids = (0..n)
        .map(|r| format!("n{:016x}", mix(salt ^ (((g as u64) << 32) | r as u64))))
        .collect();
    SynthEra {
        name,
        regime: k,
        ids,
        features,
        targets,
        bayes: Vec::new(),
    }
}
