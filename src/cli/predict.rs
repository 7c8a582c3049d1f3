//! `eraengine predict`: a checkpoint (or an ensemble: several `--model`s or an ensemble directory)
//! and an era store → `id,prediction` CSV (per-era ranks in (0, 1), or the raw output 0 with `--raw`).

use super::PredictArgs;
use crate::checkpoint::Checkpoint;
use crate::data::batch::imputed_features;
use crate::data::store::Store;
use crate::device::Backend;
use crate::io::check_outputs;
use crate::metrics::{neutralize_era, predictions_csv, validate_submission};
use crate::train::ensemble;
use crate::train::era::{self, ColumnMap};
use crate::train::Trained;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

pub use crate::train::ensemble::rank_unit;

/// One era's predictions: (era name, row ids, output 0).
pub type EraPredictions = (String, Vec<String>, Vec<f64>);

/// Per-era predictions for every era of the store.
pub fn predict_store<B: Backend>(
    dev: &B,
    ck: &Checkpoint,
    store: &Store,
) -> Result<Vec<EraPredictions>> {
    let m = Trained::from_checkpoint(dev, ck)?;
    let map = ColumnMap::for_model(store, &ck.features, &ck.targets)?;
    let t = ck.config.n_targets;
    let order: Vec<usize> = (0..store.n_eras()).collect();
    let loaders = era::prefetch_workers(dev.prefers_codes())?;
    // the eras load on loader threads ahead of the model
    let stats = ck.config.context_dim > 0;
    era::with_prefetch(store, &map, &order, loaders, stats, |eras| {
        let mut out = Vec::with_capacity(order.len());
        for (i, batch) in eras {
            let batch = batch?;
            let view = store.era(i);
            let ids: Vec<String> = (0..batch.n).map(|r| view.id(r).to_string()).collect();
            let preds = if batch.n == 0 {
                Vec::new()
            } else {
                let (yhat, _) = m.predict_era(dev, &batch)?;
                (0..batch.n).map(|r| yhat[r * t] as f64).collect()
            };
            out.push((batch.name, ids, preds));
        }
        Ok(out)
    })
}

struct PredictJob<'a> {
    members: &'a [(PathBuf, Checkpoint)],
    store: &'a Store,
}

impl super::device::DeviceJob for PredictJob<'_> {
    type Out = Vec<Vec<EraPredictions>>;
    fn run<B: Backend>(self, dev: &B) -> Result<Self::Out> {
        self.members
            .iter()
            .map(|(_, ck)| predict_store(dev, ck, self.store))
            .collect()
    }
}

/// The member checkpoints named by `--model` (a directory stands for its ensemble's members).
fn member_paths(models: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in models {
        if p.is_dir() {
            out.extend(ensemble::members_of(p)?);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Column indices (into the store's features) of `--neutralize-features`, or all of them.
fn neutralizer_columns(store: &Store, names: Option<&[String]>) -> Result<Vec<usize>> {
    let Some(names) = names else {
        return Ok((0..store.n_features()).collect());
    };
    let mut cols = Vec::with_capacity(names.len());
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let c = store
            .feature_names()
            .iter()
            .position(|f| f == n)
            .ok_or_else(|| {
                Error::usage(format!(
                    "--neutralize-features: {} has no feature '{}'",
                    store.path().display(),
                    cut(n)
                ))
            })?;
        if cols.contains(&c) {
            return Err(Error::usage(format!(
                "--neutralize-features lists '{}' twice",
                cut(n)
            )));
        }
        cols.push(c);
    }
    if cols.is_empty() {
        return Err(Error::usage(
            "--neutralize-features needs at least one name",
        ));
    }
    Ok(cols)
}

/// At most 40 characters of a name for a message.
fn cut(s: &str) -> String {
    if s.chars().count() <= 40 {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(40).collect::<String>())
    }
}

/// The stored (imputed) values of `cols` for era `i`, row-major `[rows, cols.len()]`.
fn era_neutralizers(store: &Store, i: usize, cols: &[usize]) -> Vec<u8> {
    let era = store.era(i);
    let mut all = Vec::new();
    imputed_features(&era, &mut all);
    let nf = store.n_features();
    if cols.len() == nf {
        return all;
    }
    let mut out = Vec::with_capacity(era.n_rows * cols.len());
    for r in 0..era.n_rows {
        out.extend(cols.iter().map(|&c| all[r * nf + c]));
    }
    out
}

/// True when the store is Numerai's live data: a single era named "X".
pub fn is_live(store: &Store) -> bool {
    store.n_eras() == 1 && store.era(0).name == "X"
}

pub fn run(a: &PredictArgs) -> Result<()> {
    // Nothing is read before the output is known not to be an input.
    let paths = member_paths(&a.model)?;
    let mut inputs: Vec<(&str, &Path)> = Vec::new();
    let manifests: Vec<PathBuf> = a
        .model
        .iter()
        .filter(|p| p.is_dir())
        .map(|d| d.join(ensemble::MANIFEST))
        .collect();
    inputs.extend(a.model.iter().map(|p| ("--model", p.as_path())));
    inputs.extend(paths.iter().map(|p| ("--model", p.as_path())));
    inputs.extend(manifests.iter().map(|p| ("--model", p.as_path())));
    inputs.push(("--data", &a.data));
    check_outputs(&[("--out", &a.out)], &inputs)?;
    if let Some(p) = a.neutralize {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::usage(format!(
                "--neutralize {p}: the proportion must be within 0..1"
            )));
        }
    }
    if a.live_check && a.raw {
        return Err(Error::usage(
            "--live-check validates ranked predictions in (0, 1); drop --raw",
        ));
    }
    let mut members: Vec<(PathBuf, Checkpoint)> = Vec::with_capacity(paths.len());
    for p in paths {
        let (ck, note) = Checkpoint::load_checked(&p)?;
        if let (Some(n), false) = (note, a.quiet) {
            eprintln!("note: {n}");
        }
        members.push((p, ck));
    }
    ensemble::check_members(&members)?;
    let store = Store::open_checked(&a.data, !a.no_verify)?;
    let max_rows = store.eras().map(|e| e.n_rows).max().unwrap_or(0);
    for (_, ck) in &members {
        crate::memory::check_predict(&ck.config, max_rows)?;
    }
    let cols = match a.neutralize {
        Some(_) => neutralizer_columns(&store, a.neutralize_features.as_deref())?,
        None => Vec::new(),
    };
    let device = super::device::resolve(&a.device, true)?;
    let per_member = super::device::dispatch(
        device,
        PredictJob {
            members: &members,
            store: &store,
        },
    )?;
    // A NaN output is an error naming the era (and the member), never a NaN in the CSV.
    for (k, m) in per_member.iter().enumerate() {
        for (era, _, preds) in m {
            if let Some(r) = preds.iter().position(|v| !v.is_finite()) {
                return Err(Error::format(
                    &members[k].0,
                    format!("era {}", cut(era)),
                    format!(
                        "model output 0 is {} for row {r} ({}); no predictions written",
                        preds[r],
                        store.path().display()
                    ),
                ));
            }
        }
    }
    let single = per_member.len() == 1;
    let n_eras = per_member.first().map_or(0, |m| m.len());
    let mut rows: Vec<(&str, f64)> = Vec::with_capacity(store.n_rows());
    for e in 0..n_eras {
        let (era, ids, _) = &per_member[0][e];
        let outs: Vec<&[f64]> = per_member.iter().map(|m| m[e].2.as_slice()).collect();
        let mut vals = if single {
            outs[0].to_vec()
        } else {
            ensemble::combine(&outs, a.raw)
        };
        if let Some(prop) = a.neutralize {
            if !vals.is_empty() {
                let f = era_neutralizers(&store, e, &cols);
                vals = neutralize_era(&vals, &f, cols.len(), prop)
                    .filter(|v| v.iter().all(|x| x.is_finite()))
                    .ok_or_else(|| {
                        Error::usage(format!(
                            "--neutralize: era {}: the predictions are constant (numerai-tools gives NaN); no predictions written",
                            cut(era)
                        ))
                    })?;
            }
        }
        if !a.raw {
            vals = rank_unit(&vals);
        }
        rows.extend(ids.iter().map(|s| s.as_str()).zip(vals));
    }
    let live = !a.raw && is_live(&store);
    if a.live_check || live {
        let ids: Vec<&str> = (0..store.n_rows()).map(|r| store.id(r)).collect();
        let sub: Vec<(String, f64)> = rows.iter().map(|(i, v)| (i.to_string(), *v)).collect();
        validate_submission(&ids, &sub)?;
    }
    crate::io::write_atomic(&a.out, predictions_csv(rows.iter().copied()).as_bytes())?;
    if !a.quiet {
        eprintln!(
            "wrote {} predictions for {} eras to {}{}{}{}{}",
            rows.len(),
            n_eras,
            if crate::io::is_stdio(&a.out) {
                "standard output".to_string()
            } else {
                a.out.display().to_string()
            },
            if single {
                String::new()
            } else {
                format!(" (ensemble of {} members)", per_member.len())
            },
            match a.neutralize {
                Some(p) => format!(" (neutralized by {p} against {} features)", cols.len()),
                None => String::new(),
            },
            if a.raw { " (raw model output 0)" } else { "" },
            if a.live_check || live {
                "; live submission check passed"
            } else {
                ""
            }
        );
    }
    Ok(())
}
