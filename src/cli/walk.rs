//! `eraengine train --walk-forward`: continual training on a sliding window of past eras, predicting
//! the next era each time (out-of-sample, as it would have run live). Writes the out-of-sample
//! predictions (`--predictions-out`, `id,era,prediction`) and a report (`--report-dir`: per-era and
//! cumulative corr chart, feature weights over eras, summary JSON).

use super::TrainArgs;
use crate::data::store::Store;
use crate::metrics::{evaluate, EraInput};
use crate::model::{Config, EraTransformer};
use crate::params::{Adam, Params};
use crate::rng::Rng;
use crate::train::era::{ColumnMap, EraBatch};
use crate::train::{train_step, TrainOptions, Trained};
use crate::{Error, Result};
use std::fmt::Write;

/// One out-of-sample era: its ids, predictions (output 0), target 0 and gate values.
struct Predicted {
    era: String,
    ids: Vec<String>,
    preds: Vec<f64>,
    target: Vec<f64>,
    gates: Vec<f32>,
}

pub fn run(a: &TrainArgs) -> Result<()> {
    let data = a.data.as_ref().ok_or_else(|| {
        Error::usage("--walk-forward needs --data STORE (eras in time order; e.g. train + validation imported together)")
    })?;
    if a.valid.is_some() {
        return Err(Error::usage(
            "--walk-forward scores each next era itself; drop --valid",
        ));
    }
    let device = super::device::resolve(&a.device, a.quiet)?;
    let store = Store::open(data)?;
    let window = a.window.unwrap_or(52);
    let epochs = a.epochs.unwrap_or(1);
    if window == 0 || epochs == 0 {
        return Err(Error::usage("--window and --epochs must be at least 1"));
    }
    let embargo = a.embargo.unwrap_or(0);
    if store.n_eras() <= window + embargo {
        return Err(Error::usage(format!(
            "--window {window} with --embargo {embargo} needs more than {} eras; {} has {}",
            window + embargo,
            data.display(),
            store.n_eras()
        )));
    }
    let mut cfg = Config::new(store.n_features(), store.n_targets());
    super::train::apply_model_flags(&mut cfg, a)?;
    let opts = TrainOptions {
        epochs,
        seed: a.seed,
        lr: a.lr.unwrap_or(1e-3),
        weight_decay: a.weight_decay.unwrap_or(0.0),
        clip: a.clip.unwrap_or(1.0),
        max_steps: a.max_steps,
        patience: 0,
        threshold_warmup: 0,
        out: a.out.clone(),
        grads_out: None,
        quiet: a.quiet,
        resume: None,
    };
    super::train::check_train_options(&opts)?;
    super::device::dispatch(
        device,
        WalkJob {
            a,
            data,
            store: &store,
            cfg,
            opts: &opts,
        },
    )
}

struct WalkJob<'a> {
    a: &'a TrainArgs,
    data: &'a std::path::Path,
    store: &'a Store,
    cfg: Config,
    opts: &'a TrainOptions,
}

impl super::device::DeviceJob for WalkJob<'_> {
    type Out = ();
    fn run<B: crate::device::Backend>(self, dev: &B) -> Result<()> {
        walk(dev, self.a, self.data, self.store, self.cfg, self.opts)
    }
}

fn walk<B: crate::device::Backend>(
    dev: &B,
    a: &TrainArgs,
    data: &std::path::Path,
    store: &Store,
    mut cfg: Config,
    opts: &TrainOptions,
) -> Result<()> {
    let window = a.window.unwrap_or(52);
    let embargo = a.embargo.unwrap_or(0);
    let epochs = opts.epochs;
    let tensors = match &a.init {
        Some(p) => {
            let ck = crate::checkpoint::Checkpoint::load(p)?;
            if ck.features != store.feature_names() || ck.targets != store.target_names() {
                return Err(Error::usage(format!(
                    "--init {}: trained on other features/targets than {}",
                    p.display(),
                    data.display()
                )));
            }
            cfg = ck.config.clone();
            ck.tensors
        }
        None => crate::model::init_params(&cfg, a.seed),
    };
    // The era context's standardisation: from the checkpoint, else fitted on the store's feature
    // statistics (features only, no targets).
    let (context, tensors) = crate::train::context::ContextNorm::split(&tensors);
    let context = match (cfg.context_dim, context) {
        (0, _) => None,
        (_, Some(c)) => Some(c),
        (_, None) => Some(crate::train::context::ContextNorm::fit(
            store,
            &ColumnMap::identity(store),
        )?),
    };
    let params = Params::from_host(dev, &tensors)?;
    let model = EraTransformer::new(cfg.clone(), &params)?;
    let mut m = Trained {
        model,
        params,
        features: store.feature_names().to_vec(),
        targets: store.target_names().to_vec(),
        context,
    };
    let mut adam = Adam::new(dev, &m.params, opts.lr, opts.weight_decay)?;
    let map = ColumnMap::identity(store);
    let mut rng = Rng::new(a.seed, 0x3A1C);
    let mut step = 0u64;
    let mut results: Vec<Predicted> = Vec::new();
    let t = cfg.n_targets;
    let first = window + embargo;
    let total = store.n_eras() - first;
    let started = std::time::Instant::now();
    for (done, next) in (first..store.n_eras()).enumerate() {
        // Train on the `window` eras that end `embargo` eras before the predicted one.
        let end = next - embargo;
        let mut eras: Vec<usize> = (end - window..end).collect();
        for _ in 0..epochs {
            for i in (1..eras.len()).rev() {
                let j = (rng.next_u32() as usize) % (i + 1);
                eras.swap(i, j);
            }
            for &e in &eras {
                if opts.max_steps.is_some_and(|ms| step >= ms) {
                    break;
                }
                let batch = EraBatch::load(store, e, &map)?;
                if batch.n == 0 || batch.present_targets() == 0 {
                    continue;
                }
                step += 1;
                train_step(dev, &mut m, &mut adam, &batch, opts, step)?;
            }
        }
        let batch = EraBatch::load(store, next, &map)?;
        let era = store.era(next);
        let ids: Vec<String> = (0..batch.n).map(|r| era.id(r).to_string()).collect();
        let (preds, gates) = if batch.n == 0 {
            (Vec::new(), vec![0.0; cfg.n_features])
        } else {
            let (yhat, g) = m.predict_era(dev, &batch)?;
            ((0..batch.n).map(|r| yhat[r * t] as f64).collect(), g)
        };
        let target: Vec<f64> = (0..batch.n).map(|r| batch.y[r * t] as f64).collect();
        if !a.quiet {
            let c = crate::metrics::numerai_corr(&preds, &target);
            eprintln!(
                "walk-forward {}/{}: trained on eras {}..{}, era {} corr {}  ({:.1} s)",
                done + 1,
                total,
                store.era(end - window).name,
                store.era(end - 1).name,
                batch.name,
                c.map_or("n/a".to_string(), |c| format!("{c:+.4}")),
                started.elapsed().as_secs_f64()
            );
        }
        results.push(Predicted {
            era: batch.name,
            ids,
            preds,
            target,
            gates,
        });
    }
    // Out-of-sample predictions, ranked per era.
    if let Some(path) = &a.predictions_out {
        let mut csv = String::from("id,era,prediction\n");
        for r in &results {
            let era = &r.era;
            for (id, v) in r.ids.iter().zip(super::predict::rank_unit(&r.preds)) {
                let _ = writeln!(csv, "{id},{era},{v}");
            }
        }
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
        m.to_checkpoint(dev)?.save(out)?;
    }
    Ok(())
}
