//! The realistic generator (`synth --kind numerai`, the default): Numerai's shape and difficulty.
//! `docs/synthetic-data.md` states the model in full; in short, for global era g with hidden regime
//! k_g (a sticky Markov chain) and drift angle θ_g (a random walk):
//!
//! - features come in groups of 8; a row draws one factor u per group and
//!   z_j = δ_{j,k} + √ρ_{grp,k} u + √(1 − ρ_{grp,k}) e_j, X_j = bin(z_j) at the normal 5/25/75/95%
//!   quantiles (codes 0..4, shares 5/20/50/20/5%), x_j = (X_j − 2)/2. The regime moves the means of
//!   a few features (δ) and the correlation within every group (ρ): it shows in the era's rows,
//!   never in one row;
//! - the signal μ = Σ_j (a_j + b_{j,k} + d_j cos(θ_g + φ_j)) x_j + Σ_pairs c x_p x_q plus
//!   Σ_squares c (x_q² − 0.2): static, regime-dependent (balanced: zero on average over regimes),
//!   drifting (one feature group) and non-linear parts, scaled to the variance shares `SHARES`;
//! - the latent target s = μ + σ ε (σ = `noise`), and target = 0.25 · #{i : s > t_i} with per-era
//!   thresholds t solving mean_rows Φ((t − μ)/σ) = 5, 25, 75, 95%, so the target has the
//!   5/20/50/20/5% shares in expectation and E[target | features, era] = 0.25 Σ_i Φ((μ − t_i)/σ)
//!   exactly (the Bayes file);
//! - `target_aux1`: the same μ with fresh noise, 3% of rows NaN; `target_aux2`: μ under the next
//!   era's regime with fresh noise, NaN for every 5th era.
//!
//! Row-level missing values are applied after the signal (the Bayes prediction uses the true
//! codes), and the last feature carries no signal and is missing for the whole era in every 10th
//! era.

use super::{bin_feature, era_name, row_ids, Rng, SynthConfig, SynthEra, TARGET_NAMES};
use crate::data::store::MISSING;

/// Version tag of this generator, stored in `bayes.json` (a cached built-in dataset from another
/// version is rewritten).
pub const GENERATOR: &str = "numerai-v1";
/// Number of hidden regimes.
pub const REGIMES: usize = 4;
/// Probability that an era keeps the previous era's regime.
pub const STAY: f64 = 0.8;
/// Standard deviation of one step of the drift angle θ (radians per era).
pub const DRIFT_STEP: f64 = 0.12;
/// Features per group.
pub const GROUP: usize = 8;
/// Mean shift of a regime-shifted feature's latent (in standard deviations).
pub const SHIFT: f64 = 0.3;
/// Share of the signal variance in the static, regime-dependent, non-linear and drifting parts.
pub const SHARES: [f64; 4] = [0.10, 0.40, 0.28, 0.22];
/// Default target noise σ, in units of the signal's standard deviation.
pub const DEFAULT_NOISE: f64 = 5.5;
/// The fewest features this generator accepts.
pub const MIN_FEATURES: usize = 8;
/// Target bin quantiles.
pub const TARGET_QUANTILES: [f64; 4] = [0.05, 0.25, 0.75, 0.95];
/// Variance of x = (X − 2)/2 when X has the 5/20/50/20/5% shares.
const VAR_X: f64 = 0.2;
/// E[x²] (centres the squares) and Var(x²).
const MEAN_X2: f64 = 0.2;
const VAR_X2: f64 = 0.085;

/// Everything about a dataset that is fixed per seed: the era latents and the signal's weights.
#[derive(Clone, Debug)]
pub struct World {
    pub features: usize,
    /// Regime k_g of every global era.
    pub regimes: Vec<usize>,
    /// Drift angle θ_g of every global era.
    pub drift: Vec<f64>,
    /// a_j.
    pub static_w: Vec<f64>,
    /// b_{j,k}.
    pub regime_w: Vec<[f64; REGIMES]>,
    /// d_j and φ_j (zero outside the drift group).
    pub drift_amp: Vec<f64>,
    pub drift_phase: Vec<f64>,
    /// (p, q, c): c x_p x_q.
    pub pairs: Vec<(usize, usize, f64)>,
    /// (q, c): c (x_q² − 0.2).
    pub squares: Vec<(usize, f64)>,
    /// δ_{j,k}.
    pub shift: Vec<[f64; REGIMES]>,
    /// ρ_{group,k}.
    pub rho: Vec<[f64; REGIMES]>,
    /// The feature group whose weights drift.
    pub drift_group: usize,
    /// σ.
    pub noise: f64,
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
}

/// Scale `w` so that `var_per_unit · Σ w²` equals `share`.
fn scale_to(w: &mut [f64], var_per_unit: f64, share: f64) {
    let s: f64 = w.iter().map(|v| v * v).sum::<f64>() * var_per_unit;
    if s > 0.0 {
        let k = (share / s).sqrt();
        w.iter_mut().for_each(|v| *v *= k);
    }
}

impl World {
    pub fn new(cfg: &SynthConfig) -> World {
        let f = cfg.features;
        let n = cfg.total_eras();
        let groups = f.div_ceil(GROUP);
        // era latents
        let mut rng = Rng::new(cfg.seed, 11);
        let mut k = rng.below(REGIMES);
        let mut regimes = Vec::with_capacity(n);
        for _ in 0..n {
            regimes.push(k);
            if rng.uniform() >= STAY {
                k = (k + 1 + rng.below(REGIMES - 1)) % REGIMES;
            }
        }
        let mut rng = Rng::new(cfg.seed, 12);
        let mut theta = std::f64::consts::TAU * rng.uniform();
        let mut drift = Vec::with_capacity(n);
        for _ in 0..n {
            drift.push(theta);
            theta += DRIFT_STEP * rng.normal();
        }
        // roles: the last feature is pure noise; one group drifts; the rest is shuffled into
        // static, regime and noise features, with pairs and squares drawn from all of it
        let mut rng = Rng::new(cfg.seed, 13);
        let drift_group = usize::from(groups > 1);
        let last = f - 1;
        let in_drift = |j: usize| j / GROUP == drift_group && j != last;
        let mut pool: Vec<usize> = (0..f).filter(|&j| j != last && !in_drift(j)).collect();
        shuffle(&mut pool, &mut rng);
        let m = pool.len();
        let (n_static, n_regime) = (m.div_ceil(4), m.div_ceil(4));
        let mut static_w = vec![0.0; f];
        for &j in &pool[..n_static] {
            static_w[j] = rng.normal();
        }
        scale_to(&mut static_w, VAR_X, SHARES[0]);
        // balanced sign patterns over the 4 regimes (the non-constant Hadamard rows)
        const H: [[f64; 4]; 3] = [
            [1.0, -1.0, 1.0, -1.0],
            [1.0, 1.0, -1.0, -1.0],
            [1.0, -1.0, -1.0, 1.0],
        ];
        let mut regime_w = vec![[0.0; REGIMES]; f];
        let mut amp = vec![0.0; f];
        for &j in &pool[n_static..(n_static + n_regime).min(m)] {
            amp[j] = rng.normal();
            regime_w[j] = H[rng.below(3)];
        }
        scale_to(&mut amp, VAR_X, SHARES[1]);
        for (w, a) in regime_w.iter_mut().zip(&amp) {
            w.iter_mut().for_each(|v| *v *= a);
        }
        let mut drift_amp = vec![0.0; f];
        let mut drift_phase = vec![0.0; f];
        for j in (0..f).filter(|&j| in_drift(j)) {
            drift_amp[j] = 0.5 + rng.uniform();
            drift_phase[j] = std::f64::consts::TAU * rng.uniform();
        }
        // cos² averages 1/2 over the angle
        scale_to(&mut drift_amp, VAR_X / 2.0, SHARES[3]);
        let signal: Vec<usize> = (0..f).filter(|&j| j != last).collect();
        let n_pairs = (m / 8).max(1);
        let n_squares = (m / 16).max(1);
        let mut pairs = Vec::with_capacity(n_pairs);
        while pairs.len() < n_pairs {
            let p = signal[rng.below(signal.len())];
            let q = signal[rng.below(signal.len())];
            if p != q {
                pairs.push((p, q, rng.normal()));
            }
        }
        let mut squares: Vec<(usize, f64)> = (0..n_squares)
            .map(|_| (signal[rng.below(signal.len())], rng.normal()))
            .collect();
        let mut c: Vec<f64> = pairs.iter().map(|p| p.2).collect();
        scale_to(&mut c, VAR_X * VAR_X, SHARES[2] / 2.0);
        pairs.iter_mut().zip(c).for_each(|(p, c)| p.2 = c);
        let mut c: Vec<f64> = squares.iter().map(|s| s.1).collect();
        scale_to(&mut c, VAR_X2, SHARES[2] / 2.0);
        squares.iter_mut().zip(c).for_each(|(s, c)| s.1 = c);
        // regime fingerprints: mean shifts of about one feature in eight, and the within-group
        // correlation of every group
        let mut shift = vec![[0.0; REGIMES]; f];
        let mut all: Vec<usize> = (0..last).collect();
        shuffle(&mut all, &mut rng);
        for &j in all.iter().take(f.div_ceil(8)) {
            for s in shift[j].iter_mut() {
                *s = if rng.uniform() < 0.5 { SHIFT } else { -SHIFT };
            }
        }
        let rho = (0..groups)
            .map(|_| {
                let mut r = [0.0; REGIMES];
                r.iter_mut().for_each(|v| *v = 0.05 + 0.5 * rng.uniform());
                r
            })
            .collect();
        World {
            features: f,
            regimes,
            drift,
            static_w,
            regime_w,
            drift_amp,
            drift_phase,
            pairs,
            squares,
            shift,
            rho,
            drift_group,
            noise: cfg.noise,
        }
    }

    /// The linear weights of era `g` under regime `k`.
    pub fn linear_weights(&self, g: usize, k: usize) -> Vec<f64> {
        let th = self.drift[g];
        (0..self.features)
            .map(|j| {
                self.static_w[j]
                    + self.regime_w[j][k]
                    + self.drift_amp[j] * (th + self.drift_phase[j]).cos()
            })
            .collect()
    }

    /// μ of one row of codes (0..4, no `MISSING`) given the era's linear weights.
    pub fn signal(&self, w: &[f64], codes: &[i8]) -> f64 {
        let x = |j: usize| (codes[j] as f64 - 2.0) / 2.0;
        let mut s: f64 = w.iter().enumerate().map(|(j, w)| w * x(j)).sum();
        for &(p, q, c) in &self.pairs {
            s += c * x(p) * x(q);
        }
        for &(q, c) in &self.squares {
            s += c * (x(q) * x(q) - MEAN_X2);
        }
        s
    }
}

/// Standard normal CDF (erfc by the Numerical Recipes Chebyshev fit, relative error < 1.2e-7).
pub fn norm_cdf(x: f64) -> f64 {
    let z = -x / std::f64::consts::SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let poly = -a * a - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    0.5 * if z >= 0.0 { erfc } else { 2.0 - erfc }
}

/// Per-era thresholds t_i with mean_rows Φ((t_i − μ)/σ) = `TARGET_QUANTILES[i]` (bisection).
pub fn thresholds(mu: &[f64], sigma: f64) -> [f64; 4] {
    let lo0 = mu.iter().copied().fold(f64::INFINITY, f64::min) - 10.0 * sigma;
    let hi0 = mu.iter().copied().fold(f64::NEG_INFINITY, f64::max) + 10.0 * sigma;
    let n = mu.len().max(1) as f64;
    let mut out = [0.0; 4];
    for (o, &q) in out.iter_mut().zip(&TARGET_QUANTILES) {
        let (mut lo, mut hi) = (lo0, hi0);
        for _ in 0..60 {
            let t = 0.5 * (lo + hi);
            let p = mu.iter().map(|m| norm_cdf((t - m) / sigma)).sum::<f64>() / n;
            if p < q {
                lo = t;
            } else {
                hi = t;
            }
        }
        *o = 0.5 * (lo + hi);
    }
    out
}

/// The five-bin target of a latent value.
pub fn bin_target(s: f64, t: &[f64; 4]) -> f32 {
    t.iter().filter(|&&v| s > v).count() as f32 * 0.25
}

/// E[target | μ] = 0.25 Σ_i Φ((μ − t_i)/σ).
pub fn expected_target(mu: f64, t: &[f64; 4], sigma: f64) -> f64 {
    0.25 * t.iter().map(|v| norm_cdf((mu - v) / sigma)).sum::<f64>()
}

/// The latent part of an era, before targets are drawn.
pub struct EraLatent {
    pub rows: usize,
    pub regime: usize,
    /// Codes before missing values were applied.
    pub codes: Vec<i8>,
    pub mu: Vec<f64>,
    /// μ under the next era's regime (for `target_aux2`).
    pub mu_next: Vec<f64>,
    pub thresholds: [f64; 4],
    pub thresholds_next: [f64; 4],
}

/// Features and signal of global era `g` (from the stream of `cfg.seed`).
pub fn era_latent(cfg: &SynthConfig, w: &World, g: usize) -> EraLatent {
    let f = cfg.features;
    let mut rng = Rng::new(cfg.seed, 1000 + g as u64);
    let n = ((cfg.rows as f64 * (0.7 + 0.6 * rng.uniform())).round() as usize).max(1);
    let k = w.regimes[g];
    let k_next = w.regimes[(g + 1).min(w.regimes.len() - 1)];
    let wk = w.linear_weights(g, k);
    let wn = w.linear_weights(g, k_next);
    let mut codes = vec![0i8; n * f];
    let (mut mu, mut mu_next) = (vec![0.0; n], vec![0.0; n]);
    for r in 0..n {
        let row = &mut codes[r * f..(r + 1) * f];
        for (gi, chunk) in row.chunks_mut(GROUP).enumerate() {
            let rho = w.rho[gi][k];
            let (a, b) = (rho.sqrt(), (1.0 - rho).sqrt());
            let u = rng.normal();
            for (i, v) in chunk.iter_mut().enumerate() {
                let j = gi * GROUP + i;
                *v = bin_feature(w.shift[j][k] + a * u + b * rng.normal());
            }
        }
        mu[r] = w.signal(&wk, row);
        mu_next[r] = w.signal(&wn, row);
    }
    EraLatent {
        rows: n,
        regime: k,
        thresholds: thresholds(&mu, w.noise),
        thresholds_next: thresholds(&mu_next, w.noise),
        codes,
        mu,
        mu_next,
    }
}

/// Global era `g`, with its target noise drawn from the stream of `noise_seed` (the dataset uses
/// `cfg.seed`; another seed redraws the targets of the same rows, which is how the tests check
/// that `bayes` is the conditional expectation).
pub fn generate_era(cfg: &SynthConfig, w: &World, g: usize, noise_seed: u64) -> SynthEra {
    let f = cfg.features;
    let nt = TARGET_NAMES.len();
    let lat = era_latent(cfg, w, g);
    let n = lat.rows;
    let sigma = w.noise;
    let bayes: Vec<f64> = lat
        .mu
        .iter()
        .map(|&m| expected_target(m, &lat.thresholds, sigma))
        .collect();
    // missing values (after the signal: the truth used the real value)
    let mut features = lat.codes;
    let mut rng = Rng::new(cfg.seed, 500_000 + g as u64);
    for v in features.iter_mut() {
        if rng.uniform() < cfg.missing_rate {
            *v = MISSING;
        }
    }
    if g % 10 == 9 {
        for r in 0..n {
            features[r * f + f - 1] = MISSING;
        }
    }
    let mut targets = vec![f32::NAN; n * nt];
    let live = g == cfg.live_era();
    if !live && !cfg.unlabelled_validation(g) {
        let mut rng = Rng::new(noise_seed ^ 0x007A_26E7, 2_000_000 + g as u64);
        let aux2_nan = g % 5 == 3;
        for r in 0..n {
            let t = &mut targets[r * nt..(r + 1) * nt];
            t[0] = bin_target(lat.mu[r] + sigma * rng.normal(), &lat.thresholds);
            let a1 = bin_target(lat.mu[r] + sigma * rng.normal(), &lat.thresholds);
            let a2 = bin_target(lat.mu_next[r] + sigma * rng.normal(), &lat.thresholds_next);
            t[1] = if rng.uniform() < 0.03 { f32::NAN } else { a1 };
            t[2] = if aux2_nan { f32::NAN } else { a2 };
        }
    }
    SynthEra {
        name: era_name(cfg, g),
        regime: lat.regime,
        ids: row_ids(cfg.seed, g, n),
        features,
        targets,
        bayes,
    }
}
