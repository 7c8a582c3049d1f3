//! `eraengine train --walk-forward`: the CLI side of `train::walk` (continual training on a sliding
//! window of past eras, predicting the next era each time). Writes the out-of-sample predictions
//! (`--predictions-out`, `id,era,prediction`) and a report (`--report-dir`: per-era and cumulative
//! corr chart, feature weights over eras, summary JSON).

use super::TrainArgs;
use crate::checkpoint::Checkpoint;
use crate::data::store::Store;
use crate::metrics::{evaluate, EraInput};
use crate::model::Config;
use crate::train::walk::{walk, WalkOptions, WalkResult};
use crate::train::TrainOptions;
use crate::{Error, Result};

pub fn run(a: &TrainArgs) -> Result<()> {
    let data = a.data.as_ref().ok_or_else(|| {
        Error::usage("--walk-forward needs --data STORE (eras in time order; e.g. train + validation imported together)")
    })?;
    if a.valid.is_some() {
        return Err(Error::usage(
            "--walk-forward scores each next era itself; drop --valid",
        ));
    }
    if a.seeds.is_some() {
        return Err(Error::usage("--walk-forward does not take --seeds"));
    }
    // Walk-forward takes one Adam step per era at a constant rate (not yet the schedule, the
    // accumulation, the EMA, the feature noise or the row sampling of plain training): refuse
    // them rather than ignore.
    for (given, flag) in [
        (a.warmup.is_some(), "--warmup"),
        (a.schedule.is_some(), "--schedule"),
        (a.min_lr.is_some(), "--min-lr"),
        (a.eras_per_step.is_some(), "--eras-per-step"),
        (a.ema.is_some(), "--ema"),
        (a.feature_noise.is_some(), "--feature-noise"),
        (a.row_sample.is_some(), "--row-sample"),
        (a.min_epochs.is_some(), "--min-epochs"),
        (a.pretrain_epochs.is_some(), "--pretrain-epochs"),
    ] {
        if given {
            return Err(Error::usage(format!(
                "--walk-forward does not support {flag} yet; drop it"
            )));
        }
    }
    let mut opts = super::train::options_from_args(a, false, None)?;
    // (the walk has no moving average yet: --ema is refused above, and no preset turns it on)
    opts.ema = 0.0;
    // nor the row sampling of the recommended preset (refused above when asked for)
    opts.row_sample = 1.0;
    super::train::check_train_outputs(a)?;
    let device = super::device::resolve(&a.device, a.quiet)?;
    let store = Store::open_checked(data, !a.no_verify)?;
    let w = WalkOptions {
        window: a.window.unwrap_or(52),
        embargo: a.embargo.unwrap_or(0),
        rehearsal: a.rehearsal.unwrap_or(0.0),
        rehearsal_size: a.rehearsal_size.unwrap_or(32),
        state: a
            .predictions_out
            .as_deref()
            .filter(|p| !crate::io::is_stdio(p))
            .map(crate::train::walk::state_path),
        resume: a.resume,
    };
    opts.epochs = a.epochs.unwrap_or(1);
    opts.patience = 0;
    opts.min_epochs = 1;
    opts.threshold_warmup = 0;
    opts.grads_out = None;
    w.validate(&store, opts.epochs)?;
    // a pretrained checkpoint drops pretrain.* and gets a fresh, seeded head.*, as in train
    let init = match &a.init {
        Some(p) => Some(crate::train::pretrain::for_finetune(
            super::train::load_noting(p, a.quiet)?,
            opts.seed,
        )),
        None => None,
    };
    let cfg = match &init {
        Some(ck) => super::train::config_from_checkpoint(ck, a, false)?,
        None => super::train::fresh_config(a, &store)?,
    };
    let init = init.map(|mut ck| {
        ck.config = cfg.clone();
        ck
    });
    let max_rows = store.eras().map(|e| e.n_rows).max().unwrap_or(0);
    crate::memory::check_train(&cfg, max_rows, false, 1)?;
    let mut render = super::train::Render::new(a.quiet);
    let res = super::device::dispatch(
        device,
        WalkJob {
            cfg: &cfg,
            init: init.as_ref(),
            store: &store,
            w: &w,
            opts: &opts,
            render: &mut render,
        },
    )?;
    report(a, &store, &cfg, &res)
}

struct WalkJob<'a> {
    cfg: &'a Config,
    init: Option<&'a Checkpoint>,
    store: &'a Store,
    w: &'a WalkOptions,
    opts: &'a TrainOptions,
    render: &'a mut super::train::Render,
}

impl super::device::DeviceJob for WalkJob<'_> {
    type Out = WalkResult;
    fn run<B: crate::device::Backend>(self, dev: &B) -> Result<WalkResult> {
        let render = self.render;
        walk(
            dev,
            self.cfg,
            self.init,
            self.store,
            self.w,
            self.opts,
            &mut |e| render.show(e),
        )
    }
}

/// Predictions CSV, the evaluation table, the report directory and the final checkpoint.
fn report(a: &TrainArgs, store: &Store, cfg: &Config, res: &WalkResult) -> Result<()> {
    let results = &res.eras;
    // Out-of-sample predictions, ranked per era.
    if let Some(path) = &a.predictions_out {
        let ranked: Vec<Vec<f64>> = results
            .iter()
            .map(|r| crate::train::ensemble::rank_unit(&r.preds))
            .collect();
        let csv =
            crate::metrics::era_predictions_csv(results.iter().zip(&ranked).flat_map(|(r, v)| {
                r.ids
                    .iter()
                    .zip(v)
                    .map(move |(id, &x)| (id.as_str(), r.era.as_str(), x))
            }));
        crate::io::write_atomic(path, csv.as_bytes())?;
    }
    let inputs: Vec<EraInput> = results
        .iter()
        .map(|r| EraInput {
            era: &r.era,
            preds: &r.preds,
            target: &r.target,
            features: None,
            meta: None,
        })
        .collect();
    let ev = evaluate(&inputs)?;
    println!("{}", ev.table());
    if let Some(dir) = &a.report_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        crate::io::write_atomic(
            &dir.join("corr.svg"),
            crate::metrics::svg::corr_chart(&ev).as_bytes(),
        )?;
        crate::io::write_atomic(
            &dir.join("summary.json"),
            serde_json::to_string_pretty(&ev.to_json())
                .unwrap_or_default()
                .as_bytes(),
        )?;
        // Feature weights over eras: the 8 features with the largest mean gate.
        let f = cfg.n_features;
        let mut mean_gate: Vec<(f64, usize)> = (0..f)
            .map(|j| {
                (
                    results.iter().map(|r| r.gates[j] as f64).sum::<f64>()
                        / results.len().max(1) as f64,
                    j,
                )
            })
            .collect();
        mean_gate.sort_by(|x, y| y.0.total_cmp(&x.0));
        let labels: Vec<String> = results.iter().map(|r| r.era.clone()).collect();
        let series: Vec<(String, Vec<f64>)> = mean_gate
            .iter()
            .take(8)
            .map(|&(_, j)| {
                (
                    store.feature_names()[j].clone(),
                    results.iter().map(|r| r.gates[j] as f64).collect(),
                )
            })
            .collect();
        crate::io::write_atomic(
            &dir.join("feature_weights.svg"),
            crate::metrics::svg::line_chart(
                "Feature gate weights over eras (top 8 by mean)",
                &labels,
                &series,
            )
            .as_bytes(),
        )?;
        eprintln!("report written to {}", dir.display());
    }
    if let Some(out) = &a.out {
        res.checkpoint.save(out)?;
    }
    Ok(())
}
