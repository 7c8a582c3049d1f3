//! `eraengine eval`: predictions CSV + era store → per-era table, JSON summary, SVG chart (SPEC §5).

use super::EvalArgs;
use crate::data::batch::imputed_features;
use crate::data::store::Store;
use crate::io::{check_outputs, write_atomic, write_stdout};
use crate::metrics::{
    corr_chart, evaluate_with_progress, feature_exposure, neutralize_era, read_meta_model,
    read_predictions, EraInput,
};
use crate::{Error, Result};
use std::collections::HashMap;

/// One era's rows aligned with the store: predictions (NaN where absent), target, features, meta.
struct EraRows {
    era: String,
    preds: Vec<f64>,
    target: Vec<f64>,
    features: Vec<u8>,
    meta: Option<Vec<f64>>,
}

pub fn run(a: &EvalArgs) -> Result<()> {
    let mut outputs: Vec<(&str, &std::path::Path)> = Vec::new();
    if let Some(p) = &a.json {
        outputs.push(("--json", p));
    }
    if let Some(p) = &a.svg {
        outputs.push(("--svg", p));
    }
    let mut inputs: Vec<(&str, &std::path::Path)> =
        vec![("--predictions", &a.predictions), ("--data", &a.data)];
    if let Some(p) = &a.meta_model {
        inputs.push(("--meta-model", p));
    }
    check_outputs(&outputs, &inputs)?;
    if let Some(p) = a.neutralize {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::usage(format!(
                "--neutralize {p}: the proportion must be within 0..1"
            )));
        }
    }
    let preds = read_predictions(&a.predictions)?;
    let store = Store::open_checked(&a.data, !a.no_verify)?;
    let target = match &a.target {
        None => 0,
        Some(name) => store
            .target_names()
            .iter()
            .position(|t| t == name)
            .ok_or_else(|| {
                Error::usage(format!(
                    "--target {name}: {} has targets {}",
                    a.data.display(),
                    store.target_names().join(", ")
                ))
            })?,
    };
    if store.n_targets() == 0 {
        return Err(Error::format(
            &a.data,
            "targets",
            "the store has no targets to score against",
        ));
    }
    let by_id: HashMap<&str, f64> = preds.iter().map(|(id, p)| (id.as_str(), *p)).collect();
    let meta = match &a.meta_model {
        Some(p) => Some(read_meta_model(p)?),
        None => None,
    };
    let t = store.n_targets();
    let nf = store.n_features();
    let mut matched = 0usize;
    let mut eras: Vec<EraRows> = Vec::new();
    for i in 0..store.n_eras() {
        let era = store.era(i);
        let mut p = Vec::with_capacity(era.n_rows);
        let mut y = Vec::with_capacity(era.n_rows);
        let mut m = meta.as_ref().map(|_| Vec::with_capacity(era.n_rows));
        for r in 0..era.n_rows {
            let id = era.id(r);
            let v = by_id.get(id).copied();
            matched += v.is_some() as usize;
            p.push(v.unwrap_or(f64::NAN));
            y.push(era.targets[r * t + target] as f64);
            if let (Some(mv), Some(meta)) = (m.as_mut(), meta.as_ref()) {
                mv.push(meta.get(id).copied().unwrap_or(f64::NAN));
            }
        }
        let mut feats = Vec::new();
        imputed_features(&era, &mut feats);
        eras.push(EraRows {
            era: era.name.to_string(),
            preds: p,
            target: y,
            features: feats,
            meta: m,
        });
    }
    if matched == 0 {
        return Err(Error::format(
            &a.predictions,
            "id",
            format!("none of its {} ids is in {}", preds.len(), a.data.display()),
        ));
    }
    let inputs: Vec<EraInput> = eras
        .iter()
        .map(|e| EraInput {
            era: &e.era,
            preds: &e.preds,
            target: &e.target,
            features: Some((e.features.as_slice(), nf)),
            meta: e.meta.as_deref(),
        })
        .collect();
    let mut meter = super::progress::Meter::new(a.quiet);
    let ev = evaluate_with_progress(&inputs, !a.no_fnc, &mut |p| meter.show(p))?;
    let neutral_exposure = match a.neutralize {
        Some(prop) => Some(neutralized_exposure(&eras, nf, prop)?),
        None => None,
    };
    if !a.quiet {
        if matched < store.n_rows() {
            eprintln!(
                "warning: {} of {} rows in {} have no prediction",
                store.n_rows() - matched,
                store.n_rows(),
                a.data.display()
            );
        }
        if matched < preds.len() {
            eprintln!(
                "warning: {} predictions have ids that are not in {}",
                preds.len() - matched,
                a.data.display()
            );
        }
        for w in &ev.warnings {
            eprintln!("warning: {w}");
        }
    }
    let mut table = ev.table();
    if let (Some(prop), Some(x)) = (a.neutralize, neutral_exposure) {
        table += &format!(
            "\nfeature exposure after neutralizing by {prop}: {}",
            x.map_or("n/a".to_string(), |v| format!("{v:.4}"))
        );
    }
    write_stdout(format!("{table}\n").as_bytes())?;
    if let Some(p) = &a.json {
        let mut j = ev.to_json();
        if let (Some(prop), Some(x), Some(obj)) =
            (a.neutralize, neutral_exposure, j.as_object_mut())
        {
            obj.insert(
                "neutralized".into(),
                serde_json::json!({"proportion": prop, "feature_exposure": x}),
            );
        }
        let s = serde_json::to_string_pretty(&j).map_err(|e| Error::usage(e.to_string()))?;
        write_atomic(p, s.as_bytes())?;
    }
    if let Some(p) = &a.svg {
        write_atomic(p, corr_chart(&ev).as_bytes())?;
    }
    Ok(())
}

/// Mean over eras of the feature exposure of the predictions neutralized by `prop` (rows without a
/// prediction left out; eras with fewer than 2 predicted rows skipped). None when no era counts.
fn neutralized_exposure(eras: &[EraRows], nf: usize, prop: f64) -> Result<Option<f64>> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for e in eras {
        let keep: Vec<usize> = (0..e.preds.len())
            .filter(|&r| !e.preds[r].is_nan())
            .collect();
        if keep.len() < 2 {
            continue;
        }
        let p: Vec<f64> = keep.iter().map(|&r| e.preds[r]).collect();
        let mut f = Vec::with_capacity(keep.len() * nf);
        for &r in &keep {
            f.extend_from_slice(&e.features[r * nf..(r + 1) * nf]);
        }
        let q = neutralize_era(&p, &f, nf, prop).ok_or_else(|| {
            Error::usage(format!("--neutralize: era {} has NaN predictions", e.era))
        })?;
        if q.iter().any(|v| v.is_nan()) {
            continue; // constant predictions: numerai-tools gives NaN, exposure undefined
        }
        if let Some(x) = feature_exposure(&q, &f, nf) {
            sum += x;
            n += 1;
        }
    }
    Ok((n > 0).then(|| sum / n as f64))
}
