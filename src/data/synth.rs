//! Synthetic Numerai-shaped data with era-dependent signal (`eraengine synth`, and the built-in
//! dataset `train` uses when it is given no data).
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

use super::store::{Store, StoreWriter, MISSING};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

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

#[derive(Clone, Debug, PartialEq)]
pub struct SynthConfig {
    /// Training eras.
    pub eras: usize,
    /// Validation eras (after the training eras).
    pub valid_eras: usize,
    /// Mean rows per era (each era has 0.6–1.4 × this).
    pub rows: usize,
    pub features: usize,
    pub seed: u64,
    /// Share of feature values that are missing.
    pub missing_rate: f64,
    /// The newest validation eras whose targets are all NaN.
    pub nan_valid_eras: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            eras: 100,
            valid_eras: 24,
            rows: 400,
            features: 24,
            seed: 0,
            missing_rate: 0.005,
            nan_valid_eras: 2,
        }
    }
}

/// Which part of the dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Validation,
    Live,
}

impl Split {
    pub fn data_type(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Live => "live",
        }
    }
}

pub const TARGET_NAMES: [&str; 3] = ["target", "target_aux1", "target_aux2"];

/// xoshiro256++ seeded by splitmix64: small, fast, deterministic everywhere.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut x = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        Rng {
            s: [
                splitmix(&mut x),
                splitmix(&mut x),
                splitmix(&mut x),
                splitmix(&mut x),
            ],
        }
    }
    pub fn next_u64(&mut self) -> u64 {
        let r = (self.s[0].wrapping_add(self.s[3]))
            .rotate_left(23)
            .wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }
}

/// A bijection of u64 (the splitmix64 finalizer): distinct inputs give distinct ids.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Feature names `feature_0000`, ...
pub fn feature_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("feature_{i:04}")).collect()
}

/// The hidden regime of every era: train eras, then validation eras, then live.
pub fn regimes(cfg: &SynthConfig) -> Vec<usize> {
    let n = cfg.eras + cfg.valid_eras + 1;
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
    const T: [f64; 4] = [-1.644_853_6, -0.674_489_8, 0.674_489_8, 1.644_853_6];
    T.iter().filter(|&&t| z > t).count() as i8
}

/// Per-era quantile binning into {0, 0.25, 0.5, 0.75, 1} with shares 5/20/50/20/5%.
fn bin_targets(s: &[f64]) -> Vec<f32> {
    let n = s.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| s[a].total_cmp(&s[b]));
    let mut out = vec![0f32; n];
    const EDGES: [f64; 4] = [0.05, 0.25, 0.75, 0.95];
    for (rank, &i) in order.iter().enumerate() {
        let q = (rank as f64 + 0.5) / n as f64;
        let b = EDGES.iter().filter(|&&e| q > e).count();
        out[i] = b as f32 * 0.25;
    }
    out
}

/// One generated era.
pub struct SynthEra {
    pub name: String,
    pub regime: usize,
    pub ids: Vec<String>,
    pub features: Vec<i8>,
    pub targets: Vec<f32>,
}

/// Generate global era `g` (train eras first, then validation, then live).
pub fn generate_era(cfg: &SynthConfig, regimes: &[usize], g: usize) -> SynthEra {
    let f = cfg.features;
    let t = TARGET_NAMES.len();
    let mut rng = Rng::new(cfg.seed, 1000 + g as u64);
    let n = ((cfg.rows as f64 * (0.6 + 0.8 * rng.uniform())).round() as usize).max(1);
    let k = regimes[g];
    let live = g == cfg.eras + cfg.valid_eras;
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
    let nan_targets =
        live || g >= cfg.eras + cfg.valid_eras - cfg.nan_valid_eras.min(cfg.valid_eras);
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
    }
}

/// Global era indices of a split.
pub fn split_eras(cfg: &SynthConfig, split: Split) -> std::ops::Range<usize> {
    match split {
        Split::Train => 0..cfg.eras,
        Split::Validation => cfg.eras..cfg.eras + cfg.valid_eras,
        Split::Live => cfg.eras + cfg.valid_eras..cfg.eras + cfg.valid_eras + 1,
    }
}

fn check(cfg: &SynthConfig) -> Result<()> {
    if cfg.features == 0 || cfg.rows == 0 {
        return Err(Error::usage(
            "synth needs at least 1 feature and 1 row per era",
        ));
    }
    if cfg.eras == 0 {
        return Err(Error::usage("synth needs at least 1 training era"));
    }
    if cfg.features > 100_000 || cfg.rows > 10_000_000 || cfg.eras + cfg.valid_eras > 1_000_000 {
        return Err(Error::usage("synth sizes are too large"));
    }
    if !(0.0..1.0).contains(&cfg.missing_rate) {
        return Err(Error::usage("missing rate must be in [0, 1)"));
    }
    Ok(())
}

/// Write one split of the dataset as a store at `path`; with `keep`, also return its eras.
pub fn write_store(
    path: &Path,
    cfg: &SynthConfig,
    split: Split,
    keep: bool,
) -> Result<Vec<SynthEra>> {
    check(cfg)?;
    let reg = regimes(cfg);
    let names: Vec<String> = TARGET_NAMES.iter().map(|s| s.to_string()).collect();
    let mut w = StoreWriter::create(path, &feature_names(cfg.features), &names)?;
    let mut kept = Vec::new();
    for g in split_eras(cfg, split) {
        let e = generate_era(cfg, &reg, g);
        w.push_era(&e.name, &e.ids, &e.features, &e.targets)?;
        if keep {
            kept.push(e);
        }
    }
    w.finish()?;
    Ok(kept)
}

/// features.json with feature sets small (first quarter), medium (first half), all.
pub fn features_json(cfg: &SynthConfig) -> serde_json::Value {
    let names = feature_names(cfg.features);
    let small = names[..cfg.features.div_ceil(4)].to_vec();
    let medium = names[..cfg.features.div_ceil(2)].to_vec();
    serde_json::json!({
        "feature_sets": {"small": small, "medium": medium, "all": names},
        "targets": TARGET_NAMES,
    })
}

pub use crate::io::write_atomic;

/// Paths written by `write_dataset`.
#[derive(Clone, Debug)]
pub struct SynthFiles {
    pub train: PathBuf,
    pub validation: PathBuf,
    pub live: PathBuf,
    pub features_json: PathBuf,
    /// train, validation, live parquet files when asked for.
    pub parquet: Vec<PathBuf>,
}

/// Write `DIR/{train,validation,live}.store`, `DIR/features.json` and, with `parquet`,
/// `DIR/{train,validation,live}.parquet`.
pub fn write_dataset(dir: &Path, cfg: &SynthConfig, parquet: bool) -> Result<SynthFiles> {
    check(cfg)?;
    if parquet && !cfg!(feature = "parquet") {
        return Err(Error::usage(
            "--parquet needs eraengine built with the \"parquet\" feature",
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = SynthFiles {
        train: dir.join("train.store"),
        validation: dir.join("validation.store"),
        live: dir.join("live.store"),
        features_json: dir.join("features.json"),
        parquet: Vec::new(),
    };
    let fj = serde_json::to_string_pretty(&features_json(cfg))
        .map_err(|e| Error::usage(format!("features.json: {e}")))?;
    write_atomic(&files.features_json, fj.as_bytes())?;
    for (split, path) in [
        (Split::Train, files.train.clone()),
        (Split::Validation, files.validation.clone()),
        (Split::Live, files.live.clone()),
    ] {
        let eras = write_store(&path, cfg, split, parquet)?;
        if parquet {
            let pq = dir.join(format!("{}.parquet", split.data_type()));
            write_parquet(&pq, cfg, split, &eras)?;
            files.parquet.push(pq);
        }
    }
    Ok(files)
}

#[cfg(feature = "parquet")]
fn write_parquet(path: &Path, cfg: &SynthConfig, split: Split, eras: &[SynthEra]) -> Result<()> {
    let mut ids = Vec::new();
    let mut era_col = Vec::new();
    let mut features = Vec::new();
    let mut targets = Vec::new();
    for e in eras {
        ids.extend(e.ids.iter().cloned());
        era_col.extend(std::iter::repeat_n(e.name.clone(), e.ids.len()));
        features.extend_from_slice(&e.features);
        targets.extend_from_slice(&e.targets);
    }
    let tn: Vec<String> = TARGET_NAMES.iter().map(|s| s.to_string()).collect();
    super::pq::write_numerai(
        path,
        &super::pq::NumeraiRows {
            ids: &ids,
            eras: &era_col,
            data_type: split.data_type(),
            feature_names: &feature_names(cfg.features),
            features: &features,
            target_names: &tn,
            targets: &targets,
        },
    )
}

#[cfg(not(feature = "parquet"))]
fn write_parquet(path: &Path, _: &SynthConfig, _: Split, _: &[SynthEra]) -> Result<()> {
    Err(Error::usage(format!(
        "{}: writing parquet needs the \"parquet\" feature",
        path.display()
    )))
}

/// The built-in dataset of `eraengine train` with no `--data`: the default `SynthConfig` with this
/// seed, written as `DIR/builtin-train-SEED.store` and `DIR/builtin-validation-SEED.store`, or
/// reused when both are already there, open cleanly and have the expected shape.
pub fn builtin(dir: &Path, seed: u64) -> Result<(PathBuf, PathBuf)> {
    let cfg = SynthConfig {
        seed,
        ..SynthConfig::default()
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let train = dir.join(format!("builtin-train-{seed}.store"));
    let valid = dir.join(format!("builtin-validation-{seed}.store"));
    let fits = |p: &Path, split: Split| -> bool {
        match Store::open(p) {
            Ok(s) => {
                s.n_eras() == split_eras(&cfg, split).len()
                    && s.n_features() == cfg.features
                    && s.n_targets() == TARGET_NAMES.len()
                    && s.verify().is_ok()
            }
            Err(_) => false,
        }
    };
    if !fits(&train, Split::Train) {
        write_store(&train, &cfg, Split::Train, false)?;
    }
    if !fits(&valid, Split::Validation) {
        write_store(&valid, &cfg, Split::Validation, false)?;
    }
    Ok((train, valid))
}
