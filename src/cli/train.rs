//! `eraengine train`: flags → `TrainOptions`, the store and the checkpoint to start from; progress
//! events rendered on stderr; one model, or one ensemble member per `--seeds` seed.

use super::TrainArgs;
use crate::checkpoint::Checkpoint;
use crate::data::store::Store;
use crate::model::{Attention, Config, Ffn, Selection};
use crate::train::era::EraSource;
use crate::train::resume::{OptimState, Settings};
use crate::train::{Schedule, TrainOptions, TrainResult};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Where built-in synthetic data and default outputs live.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ERAENGINE_CACHE") {
        return PathBuf::from(d);
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache").join("eraengine"),
        None => std::env::temp_dir().join("eraengine"),
    }
}

/// Applies the model flags to a config.
/// The config of a run from fresh weights: the `--preset`'s for the store's features and targets,
/// then the model flags.
pub fn fresh_config(a: &TrainArgs, store: &Store) -> Result<Config> {
    let mut cfg =
        crate::model::Preset::parse(&a.preset)?.config(store.n_features(), store.n_targets());
    apply_model_flags(&mut cfg, a)?;
    Ok(cfg)
}

pub fn apply_model_flags(cfg: &mut Config, a: &TrainArgs) -> Result<()> {
    if let Some(x) = a.d_model {
        cfg.d_model = x;
        if a.d_ff.is_none() {
            cfg.d_ff = 2 * x;
        }
    }
    if let Some(x) = a.heads {
        cfg.heads = x;
    }
    if let Some(x) = a.layers {
        cfg.layers = x;
    }
    if let Some(x) = a.d_ff {
        cfg.d_ff = x;
    }
    if let Some(x) = a.gate_rank {
        cfg.gate_rank = x;
    }
    if let Some(x) = a.threshold {
        cfg.threshold = x;
    }
    if a.top_k.is_some() {
        cfg.top_k = a.top_k;
    }
    if let Some(x) = a.dropout {
        cfg.dropout = x;
    }
    if let Some(x) = a.lambda_sparsity {
        cfg.lambda_sparsity = x;
    }
    if let Some(x) = &a.attention {
        cfg.attention = Attention::parse(x)?;
    }
    if let Some(x) = a.inducing {
        cfg.inducing = x;
    }
    if let Some(x) = &a.ffn {
        cfg.ffn = Ffn::parse(x)?;
    }
    if let Some(x) = &a.selection {
        cfg.selection = Selection::parse(x)?;
    }
    if let Some(x) = a.ortho_weight {
        cfg.ortho_weight = x;
    }
    if a.pos_enc {
        cfg.pos_enc = true;
    }
    if let Some(x) = a.corr_weight {
        cfg.corr_weight = x;
    }
    if let Some(x) = a.context_dim {
        cfg.context_dim = x;
    }
    if let Some(x) = a.context_noise {
        cfg.context_noise = x;
    }
    cfg.validate()
}

/// The model flags that were given, as (flag, given value, the config's value).
fn model_flag_diffs(cfg: &Config, a: &TrainArgs, training_knobs: bool) -> Result<Vec<String>> {
    let mut d = Vec::new();
    let mut check = |flag: &str, given: Option<String>, have: String| {
        if let Some(g) = given {
            if g != have {
                d.push(format!("{flag} {g} (the checkpoint has {have})"));
            }
        }
    };
    let s = |x: Option<usize>| x.map(|v| v.to_string());
    check("--d-model", s(a.d_model), cfg.d_model.to_string());
    check("--heads", s(a.heads), cfg.heads.to_string());
    check("--layers", s(a.layers), cfg.layers.to_string());
    check("--d-ff", s(a.d_ff), cfg.d_ff.to_string());
    check("--gate-rank", s(a.gate_rank), cfg.gate_rank.to_string());
    check(
        "--top-k",
        s(a.top_k),
        cfg.top_k.map_or("off".into(), |k| k.to_string()),
    );
    let attention = match &a.attention {
        Some(x) => Some(Attention::parse(x)?.as_str().to_string()),
        None => None,
    };
    check("--attention", attention, cfg.attention.as_str().into());
    check("--inducing", s(a.inducing), cfg.inducing.to_string());
    let ffn = match &a.ffn {
        Some(x) => Some(Ffn::parse(x)?.as_str().to_string()),
        None => None,
    };
    check("--ffn", ffn, cfg.ffn.as_str().into());
    let selection = match &a.selection {
        Some(x) => Some(Selection::parse(x)?.as_str().to_string()),
        None => None,
    };
    check("--selection", selection, cfg.selection.as_str().into());
    check(
        "--pos-enc",
        a.pos_enc.then(|| "on".to_string()),
        if cfg.pos_enc { "on" } else { "off" }.into(),
    );
    check(
        "--context-dim",
        s(a.context_dim),
        cfg.context_dim.to_string(),
    );
    if training_knobs {
        let f = |x: Option<f32>| x.map(|v| v.to_string());
        check(
            "--corr-weight",
            f(a.corr_weight),
            cfg.corr_weight.to_string(),
        );
        check(
            "--context-noise",
            f(a.context_noise),
            cfg.context_noise.to_string(),
        );
        check("--dropout", f(a.dropout), cfg.dropout.to_string());
        check(
            "--ortho-weight",
            f(a.ortho_weight),
            cfg.ortho_weight.to_string(),
        );
        check(
            "--lambda",
            f(a.lambda_sparsity),
            cfg.lambda_sparsity.to_string(),
        );
        check("--threshold", f(a.threshold), cfg.threshold.to_string());
    }
    Ok(d)
}

/// The config of a run that starts from checkpoint `ck`: its architecture (a model flag that
/// disagrees is an error naming it); with `--init` the training knobs (dropout, λ, threshold) may
/// change, with `--resume` nothing may.
pub fn config_from_checkpoint(ck: &Checkpoint, a: &TrainArgs, resume: bool) -> Result<Config> {
    let what = if resume { "--resume" } else { "--init" };
    let diffs = model_flag_diffs(&ck.config, a, resume)?;
    if !diffs.is_empty() {
        return Err(Error::usage(format!(
            "{what}: model flags disagree with the checkpoint: {}; drop them to {} the checkpoint as it is",
            diffs.join(", "),
            if resume { "resume" } else { "fine-tune" }
        )));
    }
    let mut cfg = ck.config.clone();
    if !resume {
        if let Some(x) = a.dropout {
            cfg.dropout = x;
        }
        if let Some(x) = a.lambda_sparsity {
            cfg.lambda_sparsity = x;
        }
        if let Some(x) = a.threshold {
            cfg.threshold = x;
        }
        if let Some(x) = a.corr_weight {
            cfg.corr_weight = x;
        }
        if let Some(x) = a.context_noise {
            cfg.context_noise = x;
        }
        if let Some(x) = a.ortho_weight {
            cfg.ortho_weight = x;
        }
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Training options from the flags; a flag left out takes the resumed run's value, else the default.
pub fn options_from_args(
    a: &TrainArgs,
    builtin: bool,
    saved: Option<&Settings>,
) -> Result<TrainOptions> {
    let d = TrainOptions::default();
    let preset = crate::model::Preset::parse(&a.preset)?;
    let schedule = match (&a.schedule, saved) {
        (Some(s), _) => Schedule::parse(s)?,
        (None, Some(st)) => st.schedule,
        (None, None) => d.schedule,
    };
    macro_rules! pick {
        ($flag:expr, $field:ident) => {
            $flag.or(saved.map(|s| s.$field)).unwrap_or(d.$field)
        };
    }
    let opts = TrainOptions {
        epochs: a.epochs.unwrap_or(if builtin { 12 } else { d.epochs }),
        seed: pick!(a.seed, seed),
        lr: pick!(a.lr, lr),
        weight_decay: pick!(a.weight_decay, weight_decay),
        clip: pick!(a.clip, clip),
        max_steps: a.max_steps,
        patience: a.patience.unwrap_or(d.patience),
        min_epochs: a.min_epochs.unwrap_or(preset.min_epochs()),
        threshold_warmup: a.threshold_warmup.unwrap_or(d.threshold_warmup),
        out: None,
        grads_out: a.grads_out.clone(),
        quiet: a.quiet,
        resume: None,
        warmup: pick!(a.warmup, warmup),
        schedule,
        min_lr: pick!(a.min_lr, min_lr),
        eras_per_step: pick!(a.eras_per_step, eras_per_step),
        ema: a.ema.or(saved.map(|s| s.ema)).unwrap_or(preset.ema()),
        feature_noise: pick!(a.feature_noise, feature_noise),
        row_sample: a
            .row_sample
            .or(saved.map(|s| s.row_sample))
            .unwrap_or(preset.row_sample()),
    };
    opts.validate()?;
    Ok(opts)
}

/// The training and validation stores (built-in data for `seed` when --data is absent, then also
/// the path of its `bayes.json`).
pub(super) fn open_data(
    a: &TrainArgs,
    seed: u64,
) -> Result<(Store, Option<Store>, Option<crate::data::synth::Builtin>)> {
    let (train_path, valid_path, builtin) = match (&a.data, &a.valid) {
        (Some(d), v) => (d.clone(), v.clone(), None),
        (None, Some(_)) => {
            return Err(Error::usage(
                "--valid needs --data (the built-in data has its own validation eras)",
            ))
        }
        (None, None) => {
            let dir = cache_dir().join(format!("builtin-seed{seed}"));
            if !a.quiet {
                eprintln!(
                    "no --data given: using the built-in synthetic dataset in {}",
                    dir.display()
                );
            }
            let b = crate::data::synth::builtin_files(&dir, seed)?;
            (b.train.clone(), Some(b.validation.clone()), Some(b))
        }
    };
    let verify = !a.no_verify;
    let train_store = Store::open_checked(&train_path, verify)?;
    let valid_store = match &valid_path {
        Some(p) => Some(Store::open_checked(p, verify)?),
        None => None,
    };
    Ok((train_store, valid_store, builtin))
}

/// Refuses, before any work, an output (`--out`, `--grads-out`, `--predictions-out`, the files of
/// `--report-dir`) that is one of the inputs (`--data`, `--valid`, `--init`) or another output.
pub fn check_train_outputs(a: &TrainArgs) -> Result<()> {
    let mut outputs: Vec<(&str, PathBuf)> = Vec::new();
    let default_out = PathBuf::from("model.safetensors");
    let out = a.out.as_ref().unwrap_or(&default_out);
    if a.seeds.is_none() {
        outputs.push(("--out", out.clone()));
    }
    if let Some(p) = &a.grads_out {
        outputs.push(("--grads-out", p.clone()));
    }
    if let Some(p) = &a.predictions_out {
        outputs.push(("--predictions-out", p.clone()));
    }
    if let Some(d) = &a.report_dir {
        for f in ["corr.svg", "summary.json", "feature_weights.svg"] {
            outputs.push(("--report-dir", d.join(f)));
        }
    }
    let mut inputs: Vec<(&str, &Path)> = Vec::new();
    for (flag, p) in [
        ("--data", &a.data),
        ("--valid", &a.valid),
        ("--init", &a.init),
    ] {
        if let Some(p) = p {
            inputs.push((flag, p.as_path()));
        }
    }
    let outs: Vec<(&str, &Path)> = outputs.iter().map(|(f, p)| (*f, p.as_path())).collect();
    crate::io::check_outputs(&outs, &inputs)
}

/// Loads a checkpoint, checking its data checksum; a file without one loads with a note on stderr.
pub fn load_noting(path: &Path, quiet: bool) -> Result<Checkpoint> {
    let (ck, note) = Checkpoint::load_checked(path)?;
    if let (Some(n), false) = (note, quiet) {
        eprintln!("note: {n}");
    }
    Ok(ck)
}

/// The last state of the run writing `out`.
fn load_resume(out: &Path, quiet: bool) -> Result<(Checkpoint, OptimState)> {
    let last = crate::train::resume::last_path(out);
    if !last.exists() {
        return Err(Error::usage(format!(
            "--resume: {} does not exist (a run with --out {} writes it after every epoch)",
            last.display(),
            out.display()
        )));
    }
    let ck = load_noting(&last, quiet)?;
    let st = OptimState::load(
        &crate::train::resume::optim_path(&last),
        &crate::model::param_specs(&ck.config),
    )?;
    Ok((ck, st))
}

/// `train` without `--walk-forward` (the CLI's dispatcher sends walk-forward to `cli::walk`).
pub fn run(a: &TrainArgs) -> Result<()> {
    check_train_outputs(a)?;
    let device = super::device::resolve(&a.device, a.quiet)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("model.safetensors"));
    let resumed = if a.resume {
        if a.init.is_some() {
            return Err(Error::usage(
                "--resume continues a run from its own last state; drop --init",
            ));
        }
        Some(load_resume(&out, a.quiet)?)
    } else {
        None
    };
    let saved = resumed.as_ref().and_then(|(_, st)| st.settings.as_ref());
    let seed = a.seed.or(saved.map(|s| s.seed)).unwrap_or(0);
    // Bad values are refused before any data is opened.
    options_from_args(a, false, saved)?;
    super::refit::Mode::of(a)?;
    super::head_blend::Mode::of(a)?;
    let (train_store, valid_store, builtin_data) = open_data(a, seed)?;
    let builtin = builtin_data.is_some();
    let mut render = Render::new(a.quiet);
    let res = train_one(
        a,
        device,
        (&train_store, valid_store.as_ref(), builtin),
        seed,
        &out,
        resumed,
        &mut render,
    )?;
    match (res.best_epoch, res.best, res.refit_epochs) {
        (Some(e), Some(b), None) => println!(
            "best epoch {e}: validation mean corr {:+.4}, sharpe {:+.2} over {} eras; checkpoint {}",
            b.mean,
            b.sharpe,
            b.eras,
            out.display()
        ),
        (Some(e), Some(b), Some(r)) => println!(
            "best epoch {e}: validation mean corr {:+.4}, sharpe {:+.2} over {} eras; checkpoint {} \
             (refit on the training and validation eras for {})",
            b.mean,
            b.sharpe,
            b.eras,
            out.display(),
            crate::progress::epochs(r),
        ),
        _ => println!("checkpoint {}", out.display()),
    }
    if let (Some(files), Some(b), false) = (&builtin_data, res.best, a.quiet) {
        super::builtin_report::print(files, b.mean, &res.checkpoint)?;
    }
    Ok(())
}

/// One training run with `seed` writing `out`.
pub(super) fn train_one(
    a: &TrainArgs,
    device: super::device::DeviceChoice,
    (train_store, valid_store, builtin): (&Store, Option<&Store>, bool),
    seed: u64,
    out: &Path,
    resumed: Option<(Checkpoint, OptimState)>,
    render: &mut Render,
) -> Result<TrainResult> {
    let saved = resumed.as_ref().and_then(|(_, st)| st.settings.clone());
    let mut opts = options_from_args(a, builtin, saved.as_ref())?;
    opts.seed = seed;
    opts.out = Some(out.to_path_buf());
    if let Some(st) = &saved {
        let now = Settings::from_options(&opts, train_store.data_checksum());
        if let Some((flag, was, is)) = st.diff(&now) {
            return Err(Error::usage(format!(
                "--resume: {flag} changed ({is}; the run to resume used {was}); resume with the same settings, or start a new run"
            )));
        }
    }
    let (init, resume) = match resumed {
        Some((ck, st)) => (Some(ck), Some(st)),
        None => match &a.init {
            // a pretrained checkpoint drops pretrain.* and gets a fresh, seeded head.*
            Some(p) => (
                Some(crate::train::pretrain::for_finetune(
                    load_noting(p, a.quiet)?,
                    seed,
                )),
                None,
            ),
            None => (None, None),
        },
    };
    // checked before any pretraining or training
    let blend_mode = super::head_blend::Mode::of(a)?;
    blend_mode.check(&train_store_targets(init.as_ref(), train_store))?;
    let init = match (a.pretrain_epochs.unwrap_or(0), &init, &resume) {
        (0, _, _) | (_, _, Some(_)) => init, // a resumed run has its weights already
        (_, Some(_), None) => {
            return Err(Error::usage(
                "--pretrain-epochs pretrains fresh weights; drop --init (or pretrain with \
                 `eraengine pretrain` and fine-tune with --init)",
            ))
        }
        (epochs, None, None) => Some(pretrain_first(a, device, train_store, epochs, seed)?),
    };
    let cfg = match &init {
        Some(ck) => config_from_checkpoint(ck, a, resume.is_some())?,
        None => fresh_config(a, train_store)?,
    };
    let init = init.map(|mut ck| {
        ck.config = cfg.clone();
        ck
    });
    opts.resume = resume;
    let max_rows = train_store
        .eras()
        .chain(valid_store.iter().flat_map(|v| v.eras()))
        .map(|e| e.n_rows)
        .max()
        .unwrap_or(0);
    crate::memory::check_train(&cfg, max_rows, opts.ema > 0.0, opts.eras_per_step)?;
    if !a.quiet {
        eprintln!(
            "training on {} ({} eras, {} rows, {} features, {} targets){}",
            train_store.path().display(),
            train_store.n_eras(),
            train_store.n_rows(),
            train_store.n_features(),
            train_store.n_targets(),
            match valid_store {
                Some(v) => format!(
                    ", validating on {} ({} eras)",
                    v.path().display(),
                    v.n_eras()
                ),
                None => String::new(),
            }
        );
        eprintln!(
            "model: d_model {} heads {} layers {} d_ff {} gate rank {} attention {} dropout {} lambda {} corr weight {} era context {}",
            cfg.d_model, cfg.heads, cfg.layers, cfg.d_ff, cfg.gate_rank, cfg.attention.as_str(), cfg.dropout, cfg.lambda_sparsity,
            cfg.corr_weight,
            if cfg.context_dim > 0 { format!("{} (noise {})", cfg.context_dim, cfg.context_noise) } else { "off".to_string() }
        );
    }
    let refit = super::refit::Mode::of(a)?.filter(|_| valid_store.is_some());
    let one = EraSource::one(train_store);
    let mut res = super::device::dispatch(
        device,
        TrainJob {
            cfg: cfg.clone(),
            init: init.as_ref(),
            train: &one,
            valid: valid_store,
            opts: &opts,
            render,
        },
    )?;
    // The head blend is chosen by the early-stopped model, which never trained on the validation
    // eras, and folded into the model written last (the refit's, when there is one).
    // A finished run resumed with --resume loads its written model as the best one: that model
    // already holds its blend, chosen back then by the early-stopped model (now overwritten).
    let finished = res.checkpoint.head_blend.clone();
    let scored_valid = valid_store.filter(|_| res.best.is_some());
    let blend = match &finished {
        Some(w) => Some(w.clone()),
        None => {
            super::head_blend::weights(&blend_mode, device, &res.checkpoint, scored_valid, a.quiet)?
        }
    };
    let mut refitted = false;
    if let (Some(mode), Some(v), Some(epochs), Some(_)) =
        (refit, valid_store, res.best_epoch, res.best)
    {
        // A resumed run's `init` is its last state; the refit starts where the run started:
        // fresh weights from the seed, or the same pretraining again (deterministic).
        let start = match (&opts.resume, a.pretrain_epochs.unwrap_or(0)) {
            (None, _) => init,
            (Some(_), 0) => None,
            (Some(_), n) => Some(pretrain_first(a, device, train_store, n, seed)?),
        };
        let start = start.map(|mut ck| {
            ck.config = cfg.clone();
            ck
        });
        let job = super::refit::Refit {
            mode,
            device,
            train: train_store,
            valid: v,
            epochs,
            cfg,
            start: start.as_ref(),
            opts: &opts,
            quiet: a.quiet,
        };
        res.checkpoint = job.run(render)?;
        res.refit_epochs = Some(epochs);
        refitted = true;
    }
    match &blend {
        // (a resumed finished run without a refit has its blended model already)
        Some(w) if refitted || finished.is_none() => {
            super::head_blend::apply(&mut res.checkpoint, w)?;
            res.checkpoint.save(out)?;
        }
        _ if refitted => res.checkpoint.save(out)?,
        _ => {}
    }
    Ok(res)
}

/// The target names the run's model has: the init checkpoint's, else the training store's.
fn train_store_targets(init: Option<&Checkpoint>, store: &Store) -> Vec<String> {
    match init {
        Some(ck) => ck.targets.clone(),
        None => store.target_names().to_vec(),
    }
}

/// `--pretrain-epochs N`: `eraengine pretrain --data TRAIN --epochs N --seed SEED` with its other
/// defaults (validation on the last tenth of the training eras), in memory, turned into the start
/// of fine-tuning (pretrain.* dropped, a fresh head from `seed`), so the run equals `pretrain`
/// then `train --init` bit for bit.
fn pretrain_first(
    a: &TrainArgs,
    device: super::device::DeviceChoice,
    train_store: &Store,
    epochs: usize,
    seed: u64,
) -> Result<Checkpoint> {
    let cfg = fresh_config(a, train_store)?;
    let opts = crate::train::pretrain::PretrainOptions {
        epochs,
        seed,
        ..Default::default()
    };
    opts.validate()?;
    let max_rows = train_store.eras().map(|e| e.n_rows).max().unwrap_or(0);
    crate::memory::check_train(&cfg, max_rows, false, 1)?;
    if !a.quiet {
        eprintln!(
            "pretraining the encoder for up to {} first (--pretrain-epochs)",
            crate::progress::epochs(epochs)
        );
    }
    let res = super::device::dispatch(
        device,
        super::pretrain_job::Job {
            cfg,
            train: train_store,
            valid: None,
            opts: &opts,
            quiet: a.quiet,
        },
    )?;
    Ok(crate::train::pretrain::for_finetune(res.checkpoint, seed))
}

pub use super::config::{apply_config, apply_config_file, CONFIG_KEYS};
pub use super::train_job::{Render, TrainJob};
