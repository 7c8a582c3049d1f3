//! `eraengine train`.

use super::TrainArgs;
use crate::checkpoint::Checkpoint;
use crate::data::store::Store;
use crate::model::{Attention, Config};
use crate::train::{train, TrainOptions};
use crate::{Error, Result};
use std::path::PathBuf;

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

fn model_flags_given(a: &TrainArgs) -> bool {
    a.d_model.is_some()
        || a.heads.is_some()
        || a.layers.is_some()
        || a.d_ff.is_some()
        || a.gate_rank.is_some()
        || a.threshold.is_some()
        || a.top_k.is_some()
        || a.dropout.is_some()
        || a.lambda_sparsity.is_some()
        || a.attention.is_some()
        || a.pos_enc
        || a.corr_weight.is_some()
        || a.context_dim.is_some()
        || a.context_noise.is_some()
}

pub fn run(a: &TrainArgs) -> Result<()> {
    if a.walk_forward {
        return crate::cli::walk::run(a);
    }
    let device = super::device::resolve(&a.device, a.quiet)?;
    let (train_path, valid_path, builtin) = match (&a.data, &a.valid) {
        (Some(d), v) => (d.clone(), v.clone(), false),
        (None, Some(_)) => {
            return Err(Error::usage(
                "--valid needs --data (the built-in data has its own validation eras)",
            ))
        }
        (None, None) => {
            let dir = cache_dir().join(format!("builtin-seed{}", a.seed));
            if !a.quiet {
                eprintln!(
                    "no --data given: using the built-in synthetic dataset in {}",
                    dir.display()
                );
            }
            let (t, v) = crate::data::synth::builtin(&dir, a.seed)?;
            (t, Some(v), true)
        }
    };
    let train_store = Store::open(&train_path)?;
    let valid_store = match &valid_path {
        Some(p) => Some(Store::open(p)?),
        None => None,
    };
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("model.safetensors"));
    let (init, resume) = if a.resume {
        if a.init.is_some() {
            return Err(Error::usage(
                "--resume continues a run from its own last state; drop --init",
            ));
        }
        let last = crate::train::resume::last_path(&out);
        if !last.exists() {
            return Err(Error::usage(format!(
                "--resume: {} does not exist (a run with --out {} writes it after every epoch)",
                last.display(),
                out.display()
            )));
        }
        let ck = Checkpoint::load(&last)?;
        let st = crate::train::resume::OptimState::load(
            &crate::train::resume::optim_path(&last),
            &crate::model::param_specs(&ck.config),
        )?;
        (Some(ck), Some(st))
    } else {
        match &a.init {
            Some(p) => (Some(Checkpoint::load(p)?), None),
            None => (None, None),
        }
    };
    let cfg = match &init {
        Some(ck) => {
            let mut cfg = ck.config.clone();
            if model_flags_given(a) {
                // Only the training-time knobs may change when fine-tuning.
                if let Some(x) = a.dropout {
                    cfg.dropout = x;
                }
                if let Some(x) = a.lambda_sparsity {
                    cfg.lambda_sparsity = x;
                }
                if let Some(x) = a.threshold {
                    cfg.threshold = x;
                }
                cfg.validate()?;
            }
            cfg
        }
        None => {
            let mut cfg = Config::new(train_store.n_features(), train_store.n_targets());
            apply_model_flags(&mut cfg, a)?;
            cfg
        }
    };
    let init = init.map(|mut ck| {
        ck.config = cfg.clone();
        ck
    });
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("model.safetensors"));
    let opts = TrainOptions {
        epochs: a.epochs.unwrap_or(if builtin { 12 } else { 20 }),
        seed: a.seed,
        lr: a.lr.unwrap_or(1e-3),
        weight_decay: a.weight_decay.unwrap_or(0.0),
        clip: a.clip.unwrap_or(1.0),
        max_steps: a.max_steps,
        patience: a.patience.unwrap_or(6),
        threshold_warmup: a.threshold_warmup.unwrap_or(0),
        out: Some(out.clone()),
        grads_out: a.grads_out.clone(),
        quiet: a.quiet,
        resume,
    };
    check_train_options(&opts)?;
    if !a.quiet {
        eprintln!(
            "training on {} ({} eras, {} rows, {} features, {} targets){}",
            train_path.display(),
            train_store.n_eras(),
            train_store.n_rows(),
            train_store.n_features(),
            train_store.n_targets(),
            match &valid_store {
                Some(v) => format!(
                    ", validating on {} ({} eras)",
                    v.path().display(),
                    v.n_eras()
                ),
                None => String::new(),
            }
        );
        eprintln!(
            "model: d_model {} heads {} layers {} d_ff {} gate rank {} attention {} dropout {} lambda {}",
            cfg.d_model, cfg.heads, cfg.layers, cfg.d_ff, cfg.gate_rank, cfg.attention.as_str(), cfg.dropout, cfg.lambda_sparsity
        );
    }
    let res = super::device::dispatch(
        device,
        TrainJob {
            cfg,
            init: init.as_ref(),
            train: &train_store,
            valid: valid_store.as_ref(),
            opts: &opts,
        },
    )?;
    match (res.best_epoch, res.best) {
        (Some(e), Some(b)) => println!(
            "best epoch {e}: validation mean corr {:+.4}, sharpe {:+.2} over {} eras; checkpoint {}",
            b.mean,
            b.sharpe,
            b.eras,
            out.display()
        ),
        _ => println!("checkpoint {}", out.display()),
    }
    Ok(())
}

struct TrainJob<'a> {
    cfg: Config,
    init: Option<&'a Checkpoint>,
    train: &'a Store,
    valid: Option<&'a Store>,
    opts: &'a TrainOptions,
}

impl super::device::DeviceJob for TrainJob<'_> {
    type Out = crate::train::TrainResult;
    fn run<B: crate::device::Backend>(self, dev: &B) -> Result<Self::Out> {
        if !self.opts.quiet {
            eprintln!("training on device {}", dev.name());
        }
        train(dev, self.cfg, self.init, self.train, self.valid, self.opts)
    }
}

pub fn check_train_options(o: &TrainOptions) -> Result<()> {
    if o.epochs == 0 {
        return Err(Error::usage("--epochs must be at least 1"));
    }
    if !(o.lr.is_finite() && o.lr > 0.0) {
        return Err(Error::usage(format!(
            "--lr must be a positive number, got {}",
            o.lr
        )));
    }
    if !(o.clip.is_finite() && o.clip >= 0.0) {
        return Err(Error::usage(format!("--clip must be >= 0, got {}", o.clip)));
    }
    if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
        return Err(Error::usage(format!(
            "--weight-decay must be >= 0, got {}",
            o.weight_decay
        )));
    }
    if o.max_steps == Some(0) {
        return Err(Error::usage("--max-steps must be at least 1"));
    }
    Ok(())
}
