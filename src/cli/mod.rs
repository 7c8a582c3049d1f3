//! The command line (SPEC §2). Each command lives in its own file with `pub fn run(args) -> Result<()>`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub mod bench;
mod builtin_report;
pub mod config;
pub mod device;
pub mod eval;
pub mod head_blend;
pub mod import;
pub mod info;
pub mod predict;
pub mod pretrain;
mod pretrain_job;
pub mod progress;
pub mod refit;
pub mod synth;
pub mod train;
pub mod train_ensemble;
pub mod train_job;
pub mod tune;
pub mod walk;

#[derive(Parser, Debug)]
#[command(
    name = "eraengine",
    version,
    about = "Era-level transformer training for Numerai tournament data"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per run
pub enum Command {
    /// Convert Numerai parquet/CSV files into an era store
    Import(ImportArgs),
    /// Write a synthetic Numerai-shaped dataset with era-dependent signal
    Synth(SynthArgs),
    /// Train an EraTransformer (on built-in synthetic data when no --data is given)
    Train(TrainArgs),
    /// Write predictions for an era store as id,prediction CSV
    Predict(PredictArgs),
    /// Score predictions per era against a store's target
    Eval(EvalArgs),
    /// Time each op and a training step on every available device
    Bench(BenchArgs),
    /// Describe an era store or a checkpoint, or the devices and build when given neither
    Info(InfoArgs),
    /// Pretrain the encoder on masked-feature reconstruction (eras without targets count); fine-tune with train --init
    #[command(mut_arg("seeds", |a| a.hide(true)))]
    #[command(mut_arg("init", |a| a.hide(true)))]
    #[command(mut_arg("resume", |a| a.hide(true)))]
    #[command(mut_arg("walk_forward", |a| a.hide(true)))]
    #[command(mut_arg("pretrain_epochs", |a| a.hide(true)))]
    #[command(mut_arg("grads_out", |a| a.hide(true)))]
    #[command(mut_arg("predictions_out", |a| a.hide(true)))]
    #[command(mut_arg("report_dir", |a| a.hide(true)))]
    #[command(mut_arg("ema", |a| a.hide(true)))]
    #[command(mut_arg("eras_per_step", |a| a.hide(true)))]
    #[command(mut_arg("warmup", |a| a.hide(true)))]
    #[command(mut_arg("schedule", |a| a.hide(true)))]
    #[command(mut_arg("min_lr", |a| a.hide(true)))]
    #[command(mut_arg("feature_noise", |a| a.hide(true)))]
    #[command(mut_arg("row_sample", |a| a.hide(true)))]
    #[command(mut_arg("min_epochs", |a| a.hide(true)))]
    #[command(mut_arg("threshold_warmup", |a| a.hide(true)))]
    #[command(mut_arg("window", |a| a.hide(true)))]
    #[command(mut_arg("embargo", |a| a.hide(true)))]
    #[command(mut_arg("rehearsal", |a| a.hide(true)))]
    #[command(mut_arg("rehearsal_size", |a| a.hide(true)))]
    #[command(mut_arg("data", |a| a.help("Era store to pretrain on (required; eras without targets count too)")))]
    #[command(mut_arg("valid", |a| a.help("Validation era store for early stopping on reconstruction MSE [default: the last tenth of the eras of --data]")))]
    #[command(mut_arg("out", |a| a.help("Checkpoint to write (required; best validation reconstruction); fine-tune it with train --init")))]
    #[command(mut_arg("epochs", |a| a.help("Passes over the eras [default: 10]")))]
    #[command(mut_arg("patience", |a| a.help("Early-stopping patience in epochs (0 = never stop early) [default: 3]")))]
    #[command(mut_arg("seed", |a| a.help("Seed of the initial weights, the era order and the masks [default: 0]")))]
    Pretrain(pretrain::PretrainArgs),
    /// Search training settings: random trials with successive halving, scored on validation corr
    Tune(TuneArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// Numerai parquet or CSV files (rows of one era must be contiguous; eras in order)
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The era store to write (not needed with --verify and a store as the only input)
    #[arg(long, required_unless_present = "verify")]
    pub out: Option<PathBuf>,
    /// Numerai features.json, to pick a feature set [default: features.json beside the first input]
    #[arg(long = "features-json")]
    pub features_json: Option<PathBuf>,
    /// Feature set name in features.json (small, medium, all, ...) [default: every feature_ column]
    #[arg(long = "feature-set")]
    pub feature_set: Option<String>,
    /// Explicit comma-separated feature list (instead of a feature set) [default: every feature_
    /// column]
    #[arg(long, value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// Targets to keep, comma-separated; the first is target 0 [default: target]
    #[arg(long, value_delimiter = ',')]
    pub targets: Option<Vec<String>>,
    /// Keep only rows whose data_type is this (e.g. validation) [default: every row]
    #[arg(long = "data-type")]
    pub data_type: Option<String>,
    /// Check the full data checksum of an existing store instead of importing (with --out:
    /// verify the store just written) [default: off]
    #[arg(long)]
    pub verify: bool,
    /// No progress and no summary on stderr [default: off]
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SynthArgs {
    /// Output directory (train, validation, test and live stores, features.json, and for
    /// --kind numerai bayes.csv with E[target | features, era] and bayes.json with its mean corr)
    #[arg(long)]
    pub out: PathBuf,
    /// numerai (Numerai's difficulty: low signal, hidden regimes, drift) | easy (strong signal,
    /// learnt in a few epochs)
    #[arg(long, default_value = "numerai")]
    pub kind: String,
    /// Training eras [default: numerai 120, easy 100]
    #[arg(long)]
    pub eras: Option<usize>,
    /// Validation eras [default: numerai 20, easy 24; with --eras: numerai eras/6, easy eras/4, at least 3]
    #[arg(long = "valid-eras")]
    pub valid_eras: Option<usize>,
    /// Test eras after the validation eras [default: numerai 20 (eras/6 with --eras), easy 0]
    #[arg(long = "test-eras")]
    pub test_eras: Option<usize>,
    /// Mean rows per era; row counts vary by era [default: numerai 1000, easy 400]
    #[arg(long)]
    pub rows: Option<usize>,
    /// Features [default: numerai 64, easy 24]
    #[arg(long)]
    pub features: Option<usize>,
    /// Random seed [default: 0]
    #[arg(long)]
    pub seed: Option<u64>,
    /// numerai: target noise in units of the signal's standard deviation (larger = harder) [default: 5.5]
    #[arg(long)]
    pub noise: Option<f64>,
    /// Also write Numerai-schema parquet files [default: off]
    #[arg(long)]
    pub parquet: bool,
    /// Print nothing [default: off]
    #[arg(long)]
    pub quiet: bool,
}

/// Flags of `train`. Model flags left out take the SPEC §3 defaults (or the `--init`/`--resume`
/// checkpoint's values); numbers may be negative so that a bad value gets a range error.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Training era store [default: built-in synthetic data]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Validation era store [default: the built-in validation eras when --data is absent; none otherwise]
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Checkpoint to write (best validation corr); with --seeds, a directory of members [default: model.safetensors]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Passes over the training eras [default: 12 on built-in data, 20 otherwise, 1 per round with --walk-forward]
    #[arg(long, allow_negative_numbers = true)]
    pub epochs: Option<usize>,
    /// Seed of the initial weights, era order and dropout (also picks the built-in data) [default: 0]
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<u64>,
    /// Train one ensemble member per seed into the directory --out (comma-separated, e.g. 1,2,3) [default: one model]
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub seeds: Option<Vec<u64>>,
    /// auto | cpu | cuda | emu
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Start from this checkpoint's weights (model flags, if given, must match it) [default: fresh weights]
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Stop after this many optimizer steps [default: no limit]
    #[arg(long = "max-steps", allow_negative_numbers = true)]
    pub max_steps: Option<u64>,
    /// Peak learning rate (Adam) [default: 1e-3]
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// Steps of linear learning-rate warm-up [default: 0 = off]
    #[arg(long, allow_negative_numbers = true)]
    pub warmup: Option<u64>,
    /// Learning-rate schedule after the warm-up: constant | cosine (down to --min-lr at the last step) [default: constant]
    #[arg(long)]
    pub schedule: Option<String>,
    /// Learning rate at the end of a cosine schedule [default: 0]
    #[arg(long = "min-lr", allow_negative_numbers = true)]
    pub min_lr: Option<f32>,
    /// Eras whose gradients are averaged into one Adam step [default: 1]
    #[arg(long = "eras-per-step", allow_negative_numbers = true)]
    pub eras_per_step: Option<usize>,
    /// Decay of an exponential moving average of the weights, used for validation and the
    /// checkpoint; 0 = off (docs/defaults.md round 9) [default: 0.995 with --preset recommended; 0
    /// with --preset spec, with --seeds (ensemble members) and with --walk-forward]
    #[arg(long, allow_negative_numbers = true)]
    pub ema: Option<f32>,
    /// Per training era, drop (zero) or reverse (negate) each feature with probability P/2 each [default: 0 = off]
    #[arg(long = "feature-noise", allow_negative_numbers = true)]
    pub feature_noise: Option<f32>,
    /// Per training era and epoch, train on a random sample of the era's rows, each kept with
    /// probability P (1 = every row; docs/defaults.md round 12) [default: 0.5 with --preset
    /// recommended; 1 with --preset spec and with --walk-forward]
    #[arg(long = "row-sample", allow_negative_numbers = true)]
    pub row_sample: Option<f32>,
    /// Dropout probability [default: 0; 0.1 with --preset spec]
    #[arg(long, allow_negative_numbers = true)]
    pub dropout: Option<f32>,
    /// Global-norm gradient clipping (0 = off) [default: 1.0]
    #[arg(long, allow_negative_numbers = true)]
    pub clip: Option<f32>,
    /// Continue the run that writes --out from its last completed epoch (NAME.last.safetensors
    /// and NAME.last.optim.safetensors beside it); run the same command again with --resume.
    /// With --walk-forward: continue from the last finished era (CSV.walk-state.safetensors
    /// beside --predictions-out)
    #[arg(long)]
    pub resume: bool,
    /// Epochs over which the gate threshold ramps linearly from 0 to --threshold [default: 0 = off]
    #[arg(long = "threshold-warmup", allow_negative_numbers = true)]
    pub threshold_warmup: Option<usize>,
    /// Write the last step's gradients as safetensors [default: not written]
    #[arg(long = "grads-out")]
    pub grads_out: Option<PathBuf>,
    /// Model width [default: 64]
    #[arg(long = "d-model", allow_negative_numbers = true)]
    pub d_model: Option<usize>,
    /// Attention heads (must divide --d-model) [default: 4]
    #[arg(long, allow_negative_numbers = true)]
    pub heads: Option<usize>,
    /// Transformer layers [default: 2]
    #[arg(long, allow_negative_numbers = true)]
    pub layers: Option<usize>,
    /// Feed-forward width [default: 2 x --d-model = 128]
    #[arg(long = "d-ff", allow_negative_numbers = true)]
    pub d_ff: Option<usize>,
    /// Rank of the feature gate's low-rank map [default: 8]
    #[arg(long = "gate-rank", allow_negative_numbers = true)]
    pub gate_rank: Option<usize>,
    /// Gate threshold τ (0 = off) [default: 0]
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: Option<f32>,
    /// Keep the k largest gates per era instead of a threshold [default: off]
    #[arg(long = "top-k", allow_negative_numbers = true)]
    pub top_k: Option<usize>,
    /// Sparsity weight λ [default: 1e-3]
    #[arg(long = "lambda", allow_negative_numbers = true)]
    pub lambda_sparsity: Option<f32>,
    /// AdamW weight decay [default: 0]
    #[arg(long = "weight-decay", allow_negative_numbers = true)]
    pub weight_decay: Option<f32>,
    /// linear | softmax | induced (M learned points attend over the era, the rows attend over
    /// them; docs/model.md) [default: linear]
    #[arg(long)]
    pub attention: Option<String>,
    /// Inducing points M of --attention induced [default: 32]
    #[arg(long, allow_negative_numbers = true)]
    pub inducing: Option<usize>,
    /// Feed-forward block: gelu (SPEC §3) | grn (TFT gated residual network with the era
    /// context as covariate; docs/model.md) [default: gelu]
    #[arg(long)]
    pub ffn: Option<String>,
    /// Feature selection: gate (SPEC §3 sigmoid gate) | vsn (TFT variable selection network,
    /// per-row softmax weights over the features; docs/model.md) [default: gate]
    #[arg(long)]
    pub selection: Option<String>,
    /// Weight μ of the orthogonal-embedding loss μ·‖HᵀH/n − I‖²/d² on the final hidden states
    /// (docs/model.md); 0 = off [default: 0]
    #[arg(long = "ortho-weight", allow_negative_numbers = true)]
    pub ortho_weight: Option<f32>,
    /// Sinusoidal positional encoding by row index [default: off]
    #[arg(long = "pos-enc")]
    pub pos_enc: bool,
    /// Starting config: recommended (chosen by measurement, docs/defaults.md: dropout 0,
    /// correlation loss weight 1, era context 8 with noise 0.5) | spec (SPEC §3 exactly); model
    /// flags override it
    #[arg(long, default_value = "recommended")]
    pub preset: String,
    /// Weight w of the per-era correlation loss term w·(1 − corr), added to the MSE
    /// (docs/model.md) [default: 1; 0 with --preset spec]
    #[arg(long = "corr-weight", allow_negative_numbers = true)]
    pub corr_weight: Option<f32>,
    /// Width of the era context (per-era feature means/stds, standardised and compressed) that
    /// scales and shifts every layer (FiLM, docs/model.md); 0 = off [default: 8; 0 with --preset
    /// spec]
    #[arg(long = "context-dim", allow_negative_numbers = true)]
    pub context_dim: Option<usize>,
    /// Noise (std) added to the standardised era statistics in training [default: 0.5; 0 with
    /// --preset spec]
    #[arg(long = "context-noise", allow_negative_numbers = true)]
    pub context_noise: Option<f32>,
    /// Early-stopping patience in epochs (0 = never stop early) [default: 6]
    #[arg(long, allow_negative_numbers = true)]
    pub patience: Option<usize>,
    /// The earliest epoch early stopping may keep: the kept epoch is the best on the validation
    /// eras among epochs N and later (the last one when N >= --epochs), and patience counts from
    /// N (docs/defaults.md round 13) [default: 7 with --preset recommended; 1 (any epoch) with
    /// --preset spec]
    #[arg(long = "min-epochs", allow_negative_numbers = true)]
    pub min_epochs: Option<usize>,
    /// Pretrain the encoder for N epochs on the training eras' features first (masked-feature
    /// reconstruction, as `eraengine pretrain --epochs N --seed S` with its defaults), then train
    /// from it with a fresh head (docs/model.md; +2 points of the Bayes limit on held-out synth
    /// eras, docs/defaults.md) [default: 0 = off]
    #[arg(long = "pretrain-epochs", allow_negative_numbers = true)]
    pub pretrain_epochs: Option<usize>,
    /// After early stopping, train the model again from the start on the training and then the
    /// validation eras for the best epoch count, and write that model to --out (the validation
    /// corr printed is the early-stopped model's; docs/defaults.md round 8: +4.9 / +7.3 points of
    /// the Bayes limit on held-out synth eras, base / wide); `on` then passes once more over the
    /// validation eras alone at a tenth of --lr, `joint` does not: on | joint | off [default: on
    /// with --preset recommended when there are validation eras; off with --preset spec]
    #[arg(long, value_name = "on|joint|off")]
    pub refit: Option<String>,
    /// Output 0 of the written model as a blend of its target heads, Σ w_k · output k with w_0 = 1
    /// (a target ensemble folded into the final layer; docs/model.md "Head blend"): `auto` chooses
    /// the weights of the auxiliary heads from {0, 0.25, 0.5, 1} on the validation eras with the
    /// early-stopped model (docs/defaults.md round 9), `off` keeps output 0 alone, or give one
    /// weight per target, e.g. 1,0.5,0 [default: auto with --preset recommended when there are
    /// validation eras and more than one target; off with --preset spec]
    #[arg(long = "head-blend", value_name = "auto|off|W0,W1,...")]
    pub head_blend: Option<String>,
    /// Walk-forward: train on a sliding window of past eras, predict the next [default: off]
    #[arg(long = "walk-forward")]
    pub walk_forward: bool,
    /// Walk-forward window length in eras [default: 52]
    #[arg(long, allow_negative_numbers = true)]
    pub window: Option<usize>,
    /// Walk-forward gap in eras between the training window and the predicted era (Numerai's
    /// targets look weeks ahead, so the newest eras' targets are not known yet when predicting live) [default: 0]
    #[arg(long, allow_negative_numbers = true)]
    pub embargo: Option<usize>,
    /// Walk-forward rehearsal: after each window era's step, replay one older era from the
    /// reservoir with this probability [default: 0 = off]
    #[arg(long, allow_negative_numbers = true)]
    pub rehearsal: Option<f32>,
    /// Walk-forward rehearsal: eras kept in the reservoir of older eras [default: 32]
    #[arg(long = "rehearsal-size", allow_negative_numbers = true)]
    pub rehearsal_size: Option<usize>,
    /// Walk-forward: out-of-sample predictions as id,era,prediction CSV; the state that
    /// `--resume` continues from is written beside it after every era [default: not written]
    #[arg(long = "predictions-out")]
    pub predictions_out: Option<PathBuf>,
    /// Walk-forward: directory for the charts and summary JSON [default: not written]
    #[arg(long = "report-dir")]
    pub report_dir: Option<PathBuf>,
    /// Skip the check of the stores' data checksums on open [default: checked]
    #[arg(long = "no-verify")]
    pub no_verify: bool,
    /// Print only the final summary line [default: off]
    #[arg(long)]
    pub quiet: bool,
    /// A JSON object of flag names to values (e.g. the best.json of `tune`); flags given on the
    /// command line override it [default: none]
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Flags of `tune` (docs/tuning.md).
#[derive(Args, Debug, Clone)]
pub struct TuneArgs {
    /// Training era store [default: the built-in synthetic data of `train`]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Validation era store that scores each trial (needs --data) [default: the built-in validation eras]
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Number of sampled configurations
    #[arg(long, default_value_t = 32)]
    pub trials: usize,
    /// Search space as JSON: flag name -> value or {"log_uniform"|"uniform"|"int": [lo, hi]} or
    /// {"choice": [...]} [default: the built-in space of docs/tuning.md]
    #[arg(long)]
    pub space: Option<PathBuf>,
    /// Output directory: trials.csv, trials.json, best.json, and per-trial results in trials/
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the sampled configurations and of each trial's training seed
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Epochs of each successive-halving rung, comma-separated, increasing
    #[arg(long, value_delimiter = ',', default_value = "1,3,9")]
    pub rungs: Vec<usize>,
    /// Promotion factor: the best 1/eta of a rung's trials go on to the next rung
    #[arg(long, default_value_t = 3)]
    pub eta: usize,
    /// auto | cpu | cuda | emu
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Print nothing but errors [default: off]
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// A checkpoint, or an ensemble directory (with ensemble.json); repeat for an ensemble whose
    /// members' per-era ranks are averaged
    #[arg(long, required = true)]
    pub model: Vec<PathBuf>,
    /// The era store to predict
    #[arg(long)]
    pub data: PathBuf,
    /// The id,prediction CSV to write (`-` = standard output); never one of the inputs
    #[arg(long)]
    pub out: PathBuf,
    /// Write the model's output 0 unchanged instead of per-era ranks (an ensemble: the mean of its
    /// members' raw outputs) [default: off]
    #[arg(long)]
    pub raw: bool,
    /// auto | cpu | cuda | emu
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Neutralize each era's raw output 0 against the era's features by this proportion (0..1, as
    /// numerai-tools' neutralize), then rank [default: off]
    #[arg(long, allow_negative_numbers = true)]
    pub neutralize: Option<f64>,
    /// Features to neutralize against, comma-separated [default: every feature of the model]
    #[arg(
        long = "neutralize-features",
        value_delimiter = ',',
        requires = "neutralize"
    )]
    pub neutralize_features: Option<Vec<String>>,
    /// Validate the submission as numerai-tools' validate_submission_numerai does (every id of
    /// the store once, values strictly inside (0, 1)) [default: on when the store's only era is "X" (live)]
    #[arg(long = "live-check")]
    pub live_check: bool,
    /// Skip the check of the store's data checksum on open [default: checked]
    #[arg(long = "no-verify")]
    pub no_verify: bool,
    /// Print nothing but errors [default: off]
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// CSV with columns id,prediction (as `predict` writes it)
    #[arg(long)]
    pub predictions: PathBuf,
    /// The era store holding the targets (and features) of the predicted rows
    #[arg(long)]
    pub data: PathBuf,
    /// Write the per-era scores and summary as JSON here (`-` = standard output) [default: not written]
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the per-era and cumulative corr chart here [default: not written]
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Parquet (or CSV) with id and numerai_meta_model columns [default: no meta-model corr]
    #[arg(long = "meta-model")]
    pub meta_model: Option<PathBuf>,
    /// Target to score against [default: target 0 of the store]
    #[arg(long)]
    pub target: Option<String>,
    /// Skip the feature-neutral corr (a least-squares fit per era over every feature) [default: computed]
    #[arg(long = "no-fnc")]
    pub no_fnc: bool,
    /// Also report the feature exposure of the predictions neutralized per era by this proportion
    /// (0..1, as `predict --neutralize P`) [default: off]
    #[arg(long, allow_negative_numbers = true)]
    pub neutralize: Option<f64>,
    /// Skip the check of the store's data checksum on open [default: checked]
    #[arg(long = "no-verify")]
    pub no_verify: bool,
    /// Print only the table (no warnings, no progress) [default: off]
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Print one JSON object per device (SPEC §2 keys) instead of a table [default: off]
    #[arg(long)]
    pub json: bool,
    /// Rows per era (one era = one training step)
    #[arg(long, default_value_t = 5000)]
    pub rows: usize,
    /// Input features
    #[arg(long, default_value_t = 42)]
    pub features: usize,
    /// Model width (d_ff is twice this)
    #[arg(long = "d-model", default_value_t = 64)]
    pub d_model: usize,
    /// Attention heads (must divide --d-model)
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Transformer layers
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Attention over the era's rows: linear, softmax or induced (32 inducing points)
    #[arg(long, default_value = "linear")]
    pub attention: String,
    /// The model timed: spec (SPEC §3: dropout 0.1, MSE + sparsity, no era context; the model
    /// of benches/vs_pytorch) | recommended (what `train` trains by default: dropout 0, the
    /// correlation loss, an era context of 8 modulating every layer); the shape flags override it
    #[arg(long, default_value = "spec")]
    pub preset: String,
    /// Dropout probability [default: the preset's, 0.1 for spec and 0 for recommended]
    #[arg(long)]
    pub dropout: Option<f32>,
    /// Timed repetitions of each op and of the step (median reported; 0 = 10, or 3 for big shapes)
    #[arg(long, default_value_t = 0)]
    pub reps: usize,
    /// Device: auto (the CPU, and CUDA when usable), cpu, cuda or emu
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// With --device emu: check every launch against the hardware limits and count launches,
    /// syncs, allocations, bytes and the H100 roofline estimate without executing any kernel, so
    /// any shape runs in seconds (e.g. --rows 6000 --features 2376 --d-model 256 --heads 8); the
    /// times it prints are not a device's [default: off]
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

#[derive(Args, Debug, Clone)]
pub struct InfoArgs {
    /// An era store or a checkpoint (.safetensors) [default: describe the build and devices]
    pub path: Option<PathBuf>,
    /// Print JSON instead of text [default: off]
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: Cli) -> crate::Result<()> {
    match cli.command {
        Command::Import(a) => import::run(&a),
        Command::Synth(a) => synth::run(&a),
        Command::Train(mut a) => {
            train::apply_config_file(&mut a)?;
            if a.walk_forward && (a.refit.is_some() || a.head_blend.is_some()) {
                Err(crate::Error::usage(
                    "--refit and --head-blend apply to training with --valid; --walk-forward has no validation eras",
                ))
            } else if a.walk_forward {
                walk::run(&a)
            } else if a.rehearsal.is_some() || a.rehearsal_size.is_some() {
                Err(crate::Error::usage(
                    "--rehearsal and --rehearsal-size apply to --walk-forward only",
                ))
            } else if let Some(seeds) = &a.seeds {
                train::check_train_outputs(&a)?;
                train_ensemble::run(&a, seeds)
            } else {
                train::run(&a)
            }
        }
        Command::Tune(a) => tune::run(&a),
        Command::Pretrain(a) => pretrain::run(&a),
        Command::Predict(a) => predict::run(&a),
        Command::Eval(a) => eval::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Info(a) => info::run(&a),
    }
}
