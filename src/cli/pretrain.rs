//! `eraengine pretrain --data STORE --out CKPT`: masked-feature pretraining of the encoder
//! (src/train/pretrain.rs, docs/model.md). Model flags, `--preset` and `--config`
//! work as in `train`; the result starts `train --init CKPT`, which gives it a fresh head.

use super::device::{dispatch, resolve};
use super::pretrain_job::Job;
use super::train::{apply_config_file, fresh_config};
use super::TrainArgs;
use crate::data::Store;
use crate::train::pretrain::PretrainOptions;
use crate::{Error, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone)]
pub struct PretrainArgs {
    /// Share of each row's features masked and reconstructed
    #[arg(
        long = "mask-rate",
        default_value_t = 0.15,
        allow_negative_numbers = true
    )]
    pub mask_rate: f32,
    /// --data (required; eras without targets count), --valid [default: the last tenth of the
    /// eras of --data], --out (required), the model flags, --epochs [default: 10], --lr, --seed,
    /// --clip, --weight-decay, --patience [default: 3], --max-steps, --device, --quiet
    #[command(flatten)]
    pub train: TrainArgs,
}

/// Flags of `train` that mean nothing here: refused rather than ignored.
fn refuse_train_only(a: &TrainArgs) -> Result<()> {
    let used = [
        ("--init", a.init.is_some()),
        ("--pretrain-epochs", a.pretrain_epochs.is_some()),
        ("--warmup", a.warmup.is_some()),
        ("--schedule", a.schedule.is_some()),
        ("--min-lr", a.min_lr.is_some()),
        ("--feature-noise", a.feature_noise.is_some()),
        ("--row-sample", a.row_sample.is_some()),
        ("--min-epochs", a.min_epochs.is_some()),
        ("--threshold-warmup", a.threshold_warmup.is_some()),
        ("--window", a.window.is_some()),
        ("--embargo", a.embargo.is_some()),
        ("--rehearsal", a.rehearsal.is_some()),
        ("--rehearsal-size", a.rehearsal_size.is_some()),
        ("--resume", a.resume),
        ("--seeds", a.seeds.is_some()),
        ("--walk-forward", a.walk_forward),
        ("--grads-out", a.grads_out.is_some()),
        ("--predictions-out", a.predictions_out.is_some()),
        ("--report-dir", a.report_dir.is_some()),
        ("--ema", a.ema.is_some()),
        ("--eras-per-step", a.eras_per_step.is_some()),
    ];
    if let Some((flag, _)) = used.iter().find(|(_, on)| *on) {
        return Err(Error::usage(format!(
            "{flag} applies to train, not pretrain"
        )));
    }
    Ok(())
}

pub fn run(a: &PretrainArgs) -> Result<()> {
    let mut t = a.train.clone();
    apply_config_file(&mut t)?;
    refuse_train_only(&t)?;
    let data = t
        .data
        .clone()
        .ok_or_else(|| Error::usage("pretrain needs --data STORE"))?;
    let out: PathBuf = t
        .out
        .clone()
        .ok_or_else(|| Error::usage("pretrain needs --out CKPT"))?;
    let mut inputs: Vec<(&str, &Path)> = vec![("--data", data.as_path())];
    if let Some(v) = &t.valid {
        inputs.push(("--valid", v.as_path()));
    }
    crate::io::check_outputs(&[("--out", out.as_path())], &inputs)?;
    let d = PretrainOptions::default();
    let opts = PretrainOptions {
        epochs: t.epochs.unwrap_or(d.epochs),
        lr: t.lr.unwrap_or(d.lr),
        weight_decay: t.weight_decay.unwrap_or(d.weight_decay),
        clip: t.clip.unwrap_or(d.clip),
        seed: t.seed.unwrap_or(d.seed),
        mask_rate: a.mask_rate,
        max_steps: t.max_steps,
        patience: t.patience.unwrap_or(d.patience),
    };
    opts.validate()?;
    let device = resolve(&t.device, t.quiet)?;
    let train = Store::open_checked(&data, !t.no_verify)?;
    let valid = match &t.valid {
        Some(p) => Some(Store::open_checked(p, !t.no_verify)?),
        None => None,
    };
    let cfg = fresh_config(&t, &train)?;
    let max_rows = train.eras().map(|e| e.n_rows).max().unwrap_or(0);
    crate::memory::check_train(&cfg, max_rows, false, 1)?;
    if !t.quiet {
        eprintln!(
            "pretraining on {} ({} eras, {} rows, {} features): d_model {} layers {} mask rate {}",
            data.display(),
            train.n_eras(),
            train.n_rows(),
            train.n_features(),
            cfg.d_model,
            cfg.layers,
            opts.mask_rate
        );
    }
    let res = dispatch(
        device,
        Job {
            cfg,
            train: &train,
            valid: valid.as_ref(),
            opts: &opts,
            quiet: t.quiet,
        },
    )?;
    res.checkpoint.save(&out)?;
    let last = res.epochs.iter().find(|r| r.0 == res.best_epoch);
    println!(
        "best epoch {}: reconstruction mse {}; checkpoint {} (fine-tune with train --init)",
        res.best_epoch,
        last.map_or("n/a".to_string(), |r| format!(
            "{:.5} train, {}",
            r.1,
            r.2.map_or("no validation".to_string(), |v| format!("{v:.5} valid"))
        )),
        out.display()
    );
    Ok(())
}
