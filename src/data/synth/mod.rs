//! Synthetic Numerai-shaped data (`eraengine synth`, and the built-in dataset `train` uses when it
//! is given no data). Two generators:
//!
//! - `numerai` (the default, `numerai.rs`): Numerai's shape and difficulty. Low signal, a hidden
//!   regime per era that persists across eras (a Markov chain) and shows only in the era's own rows,
//!   static + regime-dependent + non-linear + drifting parts of the signal. The dataset comes with
//!   the Bayes-optimal prediction E[target | features, era] (`bayes.csv`) and its mean corr
//!   (`bayes.json`). The model is written down in `docs/synthetic-data.md`.
//! - `easy` (`easy.rs`): strong era-dependent signal that a small model learns in a few epochs.
//!
//! `reference` scores the two yardsticks on any store: a row-wise ridge baseline and the Bayes
//! limit. Everything is deterministic for a seed.

pub mod easy;
pub mod numerai;
pub mod reference;

pub use easy::{
    generate_era, regimes, COMMON_FEATURES, COMMON_WEIGHT, REGIMES, REGIME_FEATURES,
    SIGNAL_FEATURES,
};

use super::store::{Store, StoreWriter};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Which generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Strong era-dependent signal (a linear model on rows gets ~0.2, an era-aware model ~0.65).
    Easy,
    /// Numerai's difficulty (row-wise ridge ~0.02–0.08, Bayes limit about twice that or more).
    Numerai,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind> {
        match s {
            "easy" => Ok(Kind::Easy),
            "numerai" => Ok(Kind::Numerai),
            _ => Err(Error::usage(format!(
                "--kind {s}: expected easy or numerai"
            ))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Kind::Easy => "easy",
            Kind::Numerai => "numerai",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SynthConfig {
    pub kind: Kind,
    /// Training eras.
    pub eras: usize,
    /// Validation eras (after the training eras).
    pub valid_eras: usize,
    /// Test eras (after the validation eras); 0 writes no test store.
    pub test_eras: usize,
    /// Mean rows per era (row counts vary by era).
    pub rows: usize,
    pub features: usize,
    pub seed: u64,
    /// Share of feature values that are missing.
    pub missing_rate: f64,
    /// The newest validation eras whose targets are all NaN.
    pub nan_valid_eras: usize,
    /// `numerai` only: standard deviation of the target noise, in units of the signal's standard
    /// deviation (larger = harder).
    pub noise: f64,
}

impl Default for SynthConfig {
    /// The realistic generator at the built-in size: 120 train eras, 20 validation, 20 test,
    /// ~1,000 rows per era, 64 features.
    fn default() -> Self {
        SynthConfig {
            kind: Kind::Numerai,
            eras: 120,
            valid_eras: 20,
            test_eras: 20,
            rows: 1000,
            features: 64,
            seed: 0,
            missing_rate: 0.005,
            nan_valid_eras: 0,
            noise: numerai::DEFAULT_NOISE,
        }
    }
}

impl SynthConfig {
    /// The easy generator at its historical size (100 train eras, 24 validation, 400 rows, 24
    /// features, the newest 2 validation eras unlabelled).
    pub fn easy() -> Self {
        SynthConfig {
            kind: Kind::Easy,
            eras: 100,
            valid_eras: 24,
            test_eras: 0,
            rows: 400,
            features: 24,
            seed: 0,
            missing_rate: 0.005,
            nan_valid_eras: 2,
            noise: numerai::DEFAULT_NOISE,
        }
    }
    /// The default configuration of a kind.
    pub fn of_kind(kind: Kind) -> Self {
        match kind {
            Kind::Easy => Self::easy(),
            Kind::Numerai => Self::default(),
        }
    }
    /// Global index of the live era (after train, validation and test).
    pub fn live_era(&self) -> usize {
        self.eras + self.valid_eras + self.test_eras
    }
    /// Train, validation, test and live eras.
    pub fn total_eras(&self) -> usize {
        self.live_era() + 1
    }
    /// Is global era `g` one of the newest `nan_valid_eras` validation eras?
    pub fn unlabelled_validation(&self, g: usize) -> bool {
        let end = self.eras + self.valid_eras;
        g < end && g >= end - self.nan_valid_eras.min(self.valid_eras)
    }
}

/// Which part of the dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Validation,
    Test,
    Live,
}

impl Split {
    pub fn data_type(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
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
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Row ids of global era `g`: distinct over eras and rows, different for every seed.
pub(crate) fn row_ids(seed: u64, g: usize, n: usize) -> Vec<String> {
    let salt = mix(seed ^ 0x5EED);
    (0..n)
        .map(|r| format!("n{:016x}", mix(salt ^ (((g as u64) << 32) | r as u64))))
        .collect()
}

/// Feature names `feature_0000`, ...
pub fn feature_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("feature_{i:04}")).collect()
}

/// Normal quantiles of 5, 25, 75 and 95%: the feature bin edges (shares 5/20/50/20/5%).
pub const FEATURE_EDGES: [f64; 4] = [-1.644_853_6, -0.674_489_8, 0.674_489_8, 1.644_853_6];

/// Bin a value at `FEATURE_EDGES` → 0..4.
pub fn bin_feature(z: f64) -> i8 {
    FEATURE_EDGES.iter().filter(|&&t| z > t).count() as i8
}

/// Per-era quantile binning into {0, 0.25, 0.5, 0.75, 1} with shares 5/20/50/20/5%.
pub(crate) fn bin_targets(s: &[f64]) -> Vec<f32> {
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
    /// [rows, F] codes 0..4 or `MISSING`.
    pub features: Vec<i8>,
    /// [rows, 3] (`TARGET_NAMES`), NaN = missing.
    pub targets: Vec<f32>,
    /// `numerai` only: E[target | features, era] per row (empty for `easy`).
    pub bayes: Vec<f64>,
}

/// Era name of global era `g`: "0001", ... and "X" for live.
pub(crate) fn era_name(cfg: &SynthConfig, g: usize) -> String {
    if g == cfg.live_era() {
        "X".to_string()
    } else {
        format!("{:04}", g + 1)
    }
}

/// Global era indices of a split.
pub fn split_eras(cfg: &SynthConfig, split: Split) -> std::ops::Range<usize> {
    let (v, t) = (cfg.eras + cfg.valid_eras, cfg.live_era());
    match split {
        Split::Train => 0..cfg.eras,
        Split::Validation => cfg.eras..v,
        Split::Test => v..t,
        Split::Live => t..t + 1,
    }
}

fn check(cfg: &SynthConfig) -> Result<()> {
    if cfg.features == 0 || cfg.rows == 0 {
        return Err(Error::usage(
            "synth needs at least 1 feature and 1 row per era",
        ));
    }
    if cfg.kind == Kind::Numerai && cfg.features < numerai::MIN_FEATURES {
        return Err(Error::usage(format!(
            "synth --kind numerai needs at least {} features",
            numerai::MIN_FEATURES
        )));
    }
    if cfg.eras == 0 {
        return Err(Error::usage("synth needs at least 1 training era"));
    }
    if cfg.features > 100_000
        || cfg.rows > 10_000_000
        || cfg.eras + cfg.valid_eras + cfg.test_eras > 1_000_000
    {
        return Err(Error::usage("synth sizes are too large"));
    }
    if !(0.0..1.0).contains(&cfg.missing_rate) {
        return Err(Error::usage("missing rate must be in [0, 1)"));
    }
    if !(cfg.noise.is_finite() && cfg.noise > 0.0 && cfg.noise < 1e6) {
        return Err(Error::usage("--noise must be a positive number"));
    }
    Ok(())
}

/// A generator ready to produce any era of a dataset.
pub enum Generator {
    Easy(SynthConfig, Vec<usize>),
    Numerai(SynthConfig, Box<numerai::World>),
}

impl Generator {
    pub fn new(cfg: &SynthConfig) -> Result<Generator> {
        check(cfg)?;
        Ok(match cfg.kind {
            Kind::Easy => Generator::Easy(cfg.clone(), regimes(cfg)),
            Kind::Numerai => Generator::Numerai(cfg.clone(), Box::new(numerai::World::new(cfg))),
        })
    }
    /// Global era `g` (train eras first, then validation, test, live).
    pub fn era(&self, g: usize) -> SynthEra {
        match self {
            Generator::Easy(cfg, reg) => generate_era(cfg, reg, g),
            Generator::Numerai(cfg, w) => numerai::generate_era(cfg, w, g, cfg.seed),
        }
    }
}

/// Write one split of the dataset as a store at `path`, handing every era to `each` as it goes.
pub fn write_split(
    path: &Path,
    gen: &Generator,
    cfg: &SynthConfig,
    split: Split,
    each: &mut dyn FnMut(SynthEra) -> Result<()>,
) -> Result<()> {
    let names: Vec<String> = TARGET_NAMES.iter().map(|s| s.to_string()).collect();
    let mut w = StoreWriter::create(path, &feature_names(cfg.features), &names)?;
    for g in split_eras(cfg, split) {
        let e = gen.era(g);
        w.push_era(&e.name, &e.ids, &e.features, &e.targets)?;
        each(e)?;
    }
    w.finish()
}

/// Write one split of the dataset as a store at `path`; with `keep`, also return its eras.
pub fn write_store(
    path: &Path,
    cfg: &SynthConfig,
    split: Split,
    keep: bool,
) -> Result<Vec<SynthEra>> {
    let gen = Generator::new(cfg)?;
    let mut kept = Vec::new();
    write_split(path, &gen, cfg, split, &mut |e| {
        if keep {
            kept.push(e);
        }
        Ok(())
    })?;
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
    /// Only when `test_eras > 0`.
    pub test: Option<PathBuf>,
    pub live: PathBuf,
    pub features_json: PathBuf,
    /// `numerai` only: `id,era,prediction` = E[target | features, era] for every row of every
    /// split (never read by training).
    pub bayes_csv: Option<PathBuf>,
    /// `numerai` only: the Bayes limit's and a ridge baseline's mean corr per split.
    pub bayes_json: Option<PathBuf>,
    /// train, validation, (test,) live parquet files when asked for.
    pub parquet: Vec<PathBuf>,
}

/// Write `DIR/{train,validation,test,live}.store`, `DIR/features.json`, for `numerai`
/// `DIR/bayes.csv` and `DIR/bayes.json`, and with `parquet` `DIR/{split}.parquet`.
pub fn write_dataset(dir: &Path, cfg: &SynthConfig, parquet: bool) -> Result<SynthFiles> {
    write_dataset_named(dir, cfg, parquet, &|stem: &str, ext: &str| {
        format!("{stem}.{ext}")
    })
}

/// `write_dataset` with file names from `name(stem, extension)`.
pub fn write_dataset_named(
    dir: &Path,
    cfg: &SynthConfig,
    parquet: bool,
    name: &dyn Fn(&str, &str) -> String,
) -> Result<SynthFiles> {
    let gen = Generator::new(cfg)?;
    if parquet && !cfg!(feature = "parquet") {
        return Err(Error::usage(
            "--parquet needs eraengine built with the \"parquet\" feature",
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let numerai = cfg.kind == Kind::Numerai;
    let mut files = SynthFiles {
        train: dir.join(name("train", "store")),
        validation: dir.join(name("validation", "store")),
        test: (cfg.test_eras > 0).then(|| dir.join(name("test", "store"))),
        live: dir.join(name("live", "store")),
        features_json: dir.join(name("features", "json")),
        bayes_csv: numerai.then(|| dir.join(name("bayes", "csv"))),
        bayes_json: numerai.then(|| dir.join(name("bayes", "json"))),
        parquet: Vec::new(),
    };
    let fj = serde_json::to_string_pretty(&features_json(cfg))
        .map_err(|e| Error::usage(format!("features.json: {e}")))?;
    write_atomic(&files.features_json, fj.as_bytes())?;
    let mut splits = vec![
        (Split::Train, files.train.clone()),
        (Split::Validation, files.validation.clone()),
    ];
    if let Some(t) = &files.test {
        splits.push((Split::Test, t.clone()));
    }
    splits.push((Split::Live, files.live.clone()));
    let mut bayes_csv = String::from("id,era,prediction\n");
    let mut bayes_corr = serde_json::Map::new();
    for (split, path) in splits {
        let mut kept = Vec::new();
        let mut corrs = Vec::new();
        write_split(&path, &gen, cfg, split, &mut |e| {
            if numerai {
                use std::fmt::Write;
                for (id, b) in e.ids.iter().zip(&e.bayes) {
                    let _ = writeln!(bayes_csv, "{id},{},{b:.9}", e.name);
                }
                let t: Vec<f64> = e.targets.chunks(3).map(|r| r[0] as f64).collect();
                if let Some(c) = crate::metrics::numerai_corr(&e.bayes, &t) {
                    corrs.push(c);
                }
            }
            if parquet {
                kept.push(e);
            }
            Ok(())
        })?;
        if !corrs.is_empty() {
            let m = corrs.iter().sum::<f64>() / corrs.len() as f64;
            bayes_corr.insert(split.data_type().to_string(), serde_json::json!(m));
        }
        if parquet {
            let pq = dir.join(name(split.data_type(), "parquet"));
            write_parquet(&pq, cfg, split, &kept)?;
            files.parquet.push(pq);
        }
    }
    if let (Some(csv), Some(json)) = (&files.bayes_csv, &files.bayes_json) {
        write_atomic(csv, bayes_csv.as_bytes())?;
        let train = Store::open(&files.train)?;
        let mut ridge = serde_json::Map::new();
        for (split, p) in [
            (Split::Validation, Some(&files.validation)),
            (Split::Test, files.test.as_ref()),
        ] {
            if let Some(p) = p {
                if let Some(r) = reference::ridge_baseline(&train, &Store::open(p)?)? {
                    ridge.insert(split.data_type().to_string(), serde_json::json!(r));
                }
            }
        }
        let v = serde_json::json!({
            "generator": numerai::GENERATOR,
            "seed": cfg.seed,
            "eras": cfg.eras,
            "valid_eras": cfg.valid_eras,
            "test_eras": cfg.test_eras,
            "rows": cfg.rows,
            "features": cfg.features,
            "noise": cfg.noise,
            "bayes_mean_corr": bayes_corr,
            "ridge_mean_corr": ridge,
        });
        let text = serde_json::to_string_pretty(&v)
            .map_err(|e| Error::usage(format!("bayes.json: {e}")))?;
        write_atomic(json, text.as_bytes())?;
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

/// The files of the built-in dataset.
#[derive(Clone, Debug)]
pub struct Builtin {
    pub train: PathBuf,
    pub validation: PathBuf,
    pub test: PathBuf,
    /// `id,era,prediction`: E[target | features, era] (never read by training).
    pub bayes_csv: PathBuf,
    /// Bayes-limit and ridge mean corr per split.
    pub bayes_json: PathBuf,
}

/// The built-in dataset of `eraengine train` with no `--data`: `SynthConfig::default()` (the
/// `numerai` generator) with this seed, written as `DIR/builtin-{train,validation,test,live}-SEED.store`
/// and `DIR/builtin-bayes-SEED.{csv,json}`, or reused when they are already there, open cleanly,
/// have the expected shape and come from this generator version.
pub fn builtin_files(dir: &Path, seed: u64) -> Result<Builtin> {
    let cfg = SynthConfig {
        seed,
        ..SynthConfig::default()
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = |stem: &str, ext: &str| format!("builtin-{stem}-{seed}.{ext}");
    let b = Builtin {
        train: dir.join(name("train", "store")),
        validation: dir.join(name("validation", "store")),
        test: dir.join(name("test", "store")),
        bayes_csv: dir.join(name("bayes", "csv")),
        bayes_json: dir.join(name("bayes", "json")),
    };
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
    let same_generator = std::fs::read_to_string(&b.bayes_json)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| {
            v["generator"] == numerai::GENERATOR && v["seed"] == seed && v["noise"] == cfg.noise
        });
    let ok = same_generator
        && b.bayes_csv.exists()
        && fits(&b.train, Split::Train)
        && fits(&b.validation, Split::Validation)
        && fits(&b.test, Split::Test);
    if !ok {
        write_dataset_named(dir, &cfg, false, &name)?;
    }
    Ok(b)
}

/// `builtin_files`, returning the training and validation stores.
pub fn builtin(dir: &Path, seed: u64) -> Result<(PathBuf, PathBuf)> {
    let b = builtin_files(dir, seed)?;
    Ok((b.train, b.validation))
}
