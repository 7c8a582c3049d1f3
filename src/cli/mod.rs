//! The command line (SPEC §2). Each command lives in its own file with `pub fn run(args) -> Result<()>`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub mod bench;
pub mod device;
pub mod eval;
pub mod import;
pub mod info;
pub mod predict;
pub mod synth;
pub mod train;
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
}

#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// Numerai parquet or CSV files (rows of one era must be contiguous; eras in order)
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The era store to write (not needed with --verify and a store as the only input)
    #[arg(long, required_unless_present = "verify")]
    pub out: Option<PathBuf>,
    /// Numerai features.json, to pick a feature set
    #[arg(long = "features-json")]
    pub features_json: Option<PathBuf>,
    /// Feature set name in features.json (small, medium, all, ...)
    #[arg(long = "feature-set")]
    pub feature_set: Option<String>,
    /// Explicit comma-separated feature list (instead of a feature set)
    #[arg(long, value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// Targets to keep, comma-separated; the first is target 0 (default: target)
    #[arg(long, value_delimiter = ',')]
    pub targets: Option<Vec<String>>,
    /// Keep only rows whose data_type is this (e.g. validation)
    #[arg(long = "data-type")]
    pub data_type: Option<String>,
    /// Check the full data checksum of an existing store instead of importing
    #[arg(long)]
    pub verify: bool,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SynthArgs {
    /// Output directory (train, validation and live stores, features.json)
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub eras: Option<usize>,
    /// Mean rows per era (row counts vary by era)
    #[arg(long)]
    pub rows: Option<usize>,
    #[arg(long)]
    pub features: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also write Numerai-schema parquet files
    #[arg(long)]
    pub parquet: bool,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Training era store (default: built-in synthetic data)
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Validation era store (default: the built-in synthetic validation eras when --data is absent)
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Checkpoint to write (best validation corr)
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto | cpu | cuda
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Start from this checkpoint's weights
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Stop after this many optimizer steps
    #[arg(long = "max-steps")]
    pub max_steps: Option<u64>,
    #[arg(long)]
    pub lr: Option<f32>,
    #[arg(long)]
    pub dropout: Option<f32>,
    /// Global-norm gradient clipping (0 = off)
    #[arg(long)]
    pub clip: Option<f32>,
    /// Continue the run that writes --out from its last completed epoch (NAME.last.safetensors
    /// and NAME.last.optim.safetensors beside it); run the same command again with --resume
    #[arg(long)]
    pub resume: bool,
    /// Epochs over which the gate threshold ramps linearly from 0 to --threshold
    #[arg(long = "threshold-warmup")]
    pub threshold_warmup: Option<usize>,
    /// Write the last step's gradients as safetensors
    #[arg(long = "grads-out")]
    pub grads_out: Option<PathBuf>,
    #[arg(long = "d-model")]
    pub d_model: Option<usize>,
    #[arg(long)]
    pub heads: Option<usize>,
    #[arg(long)]
    pub layers: Option<usize>,
    #[arg(long = "d-ff")]
    pub d_ff: Option<usize>,
    #[arg(long = "gate-rank")]
    pub gate_rank: Option<usize>,
    /// Gate threshold τ (0 = off)
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Keep the k largest gates per era instead of a threshold
    #[arg(long = "top-k")]
    pub top_k: Option<usize>,
    /// Sparsity weight λ
    #[arg(long = "lambda")]
    pub lambda_sparsity: Option<f32>,
    #[arg(long = "weight-decay")]
    pub weight_decay: Option<f32>,
    /// linear | softmax
    #[arg(long)]
    pub attention: Option<String>,
    /// Sinusoidal positional encoding by row index
    #[arg(long = "pos-enc")]
    pub pos_enc: bool,
    /// Weight w of the per-era correlation loss term w·(1 − corr), added to the MSE
    /// (docs/model.md) [default: 0]
    #[arg(long = "corr-weight")]
    pub corr_weight: Option<f32>,
    /// Width of the era context (per-era feature means/stds, standardised and compressed) that
    /// scales and shifts every layer (FiLM, docs/model.md); 0 = off [default: 0]
    #[arg(long = "context-dim")]
    pub context_dim: Option<usize>,
    /// Noise (std) added to the standardised era statistics in training [default: 0]
    #[arg(long = "context-noise")]
    pub context_noise: Option<f32>,
    /// Early-stopping patience in epochs
    #[arg(long)]
    pub patience: Option<usize>,
    /// Walk-forward: train on a sliding window of past eras, predict the next
    #[arg(long = "walk-forward")]
    pub walk_forward: bool,
    /// Walk-forward window length in eras
    #[arg(long)]
    pub window: Option<usize>,
    /// Walk-forward gap in eras between the training window and the predicted era (Numerai's
    /// targets look weeks ahead, so the newest eras' targets are not known yet when predicting live)
    #[arg(long)]
    pub embargo: Option<usize>,
    #[arg(long = "predictions-out")]
    pub predictions_out: Option<PathBuf>,
    #[arg(long = "report-dir")]
    pub report_dir: Option<PathBuf>,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    /// Write the model's output 0 unchanged instead of per-era ranks
    #[arg(long)]
    pub raw: bool,
    #[arg(long, default_value = "auto")]
    pub device: String,
}

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// CSV with columns id,prediction
    #[arg(long)]
    pub predictions: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Parquet (or CSV) with id and numerai_meta_model columns
    #[arg(long = "meta-model")]
    pub meta_model: Option<PathBuf>,
    /// Target to score against (default: target 0 of the store)
    #[arg(long)]
    pub target: Option<String>,
    /// Skip the feature-neutral corr (a least-squares fit per era over every feature)
    #[arg(long = "no-fnc")]
    pub no_fnc: bool,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[arg(long)]
    pub json: bool,
    /// Rows per era
    #[arg(long)]
    pub rows: Option<usize>,
    #[arg(long)]
    pub features: Option<usize>,
    #[arg(long, default_value = "auto")]
    pub device: String,
}

#[derive(Args, Debug, Clone)]
pub struct InfoArgs {
    /// An era store or a checkpoint (.safetensors)
    pub path: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: Cli) -> crate::Result<()> {
    match cli.command {
        Command::Import(a) => import::run(&a),
        Command::Synth(a) => synth::run(&a),
        Command::Train(a) => train::run(&a),
        Command::Predict(a) => predict::run(&a),
        Command::Eval(a) => eval::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Info(a) => info::run(&a),
    }
}
