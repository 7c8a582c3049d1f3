//! Ensembles: members trained with different seeds (`train --seeds 1,2,3 --out DIR` writes
//! `DIR/seed-N.safetensors` and `DIR/ensemble.json`), combined per era by averaging each member's
//! per-era rank of output 0 (or the mean of the raw outputs).

use crate::checkpoint::Checkpoint;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The file listing an ensemble's members inside its directory.
pub const MANIFEST: &str = "ensemble.json";

/// The file name of the member trained with `seed`.
pub fn member_file(seed: u64) -> String {
    format!("seed-{seed}.safetensors")
}

/// One trained member as recorded in the manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub seed: u64,
    pub file: String,
    pub best_epoch: Option<usize>,
    pub valid_corr: Option<f64>,
    /// Epochs of the refit on training + validation eras that produced the member, if any.
    pub refit_epochs: Option<usize>,
}

pub fn manifest_json(members: &[Member]) -> Value {
    json!({
        "format": "eraengine-ensemble",
        "members": members.iter().map(|m| json!({
            "seed": m.seed,
            "file": m.file,
            "best_epoch": m.best_epoch,
            "valid_corr": m.valid_corr,
            "refit_epochs": m.refit_epochs,
        })).collect::<Vec<_>>(),
    })
}

/// The member checkpoints of an ensemble directory (from its manifest).
pub fn members_of(dir: &Path) -> Result<Vec<PathBuf>> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(&path, "", format!("not JSON: {e}")))?;
    if v["format"] != "eraengine-ensemble" {
        return Err(Error::format(
            &path,
            "format",
            "expected \"eraengine-ensemble\"",
        ));
    }
    let list = v["members"]
        .as_array()
        .ok_or_else(|| Error::format(&path, "members", "expected a list"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let file = m["file"]
            .as_str()
            .ok_or_else(|| Error::format(&path, format!("members[{i}].file"), "missing"))?;
        if file.contains('/') || file.contains('\\') || file.starts_with('.') {
            return Err(Error::format(
                &path,
                format!("members[{i}].file"),
                "must be a file name inside the ensemble directory",
            ));
        }
        out.push(dir.join(file));
    }
    if out.is_empty() {
        return Err(Error::format(
            &path,
            "members",
            "the ensemble has no members",
        ));
    }
    Ok(out)
}

/// Checks that every member reads the same features and targets, in the same order.
pub fn check_members(members: &[(PathBuf, Checkpoint)]) -> Result<()> {
    let Some((p0, first)) = members.first() else {
        return Err(Error::usage("predict needs at least one --model"));
    };
    for (p, ck) in &members[1..] {
        if ck.features != first.features {
            return Err(Error::usage(format!(
                "ensemble members disagree on features: {} has {} features, {} has {} (or another order)",
                p0.display(),
                first.features.len(),
                p.display(),
                ck.features.len()
            )));
        }
        if ck.targets != first.targets {
            return Err(Error::usage(format!(
                "ensemble members disagree on targets: {} has {:?}, {} has {:?}",
                p0.display(),
                first.targets,
                p.display(),
                ck.targets
            )));
        }
    }
    Ok(())
}

/// Tie-kept per-era rank mapped to (rank − 0.5) / count: strictly inside (0, 1).
pub fn rank_unit(preds: &[f64]) -> Vec<f64> {
    let ranks = crate::metrics::rank_average(preds);
    let n = preds.len() as f64;
    ranks.iter().map(|r| (r - 0.5) / n).collect()
}

/// Combines members' outputs for one era: the mean of their per-era ranks (`raw`: the mean of the
/// raw outputs). Each row's values are summed in sorted order, so the order of the members does not
/// change a bit of the result.
pub fn combine(members: &[&[f64]], raw: bool) -> Vec<f64> {
    let n = members.first().map_or(0, |m| m.len());
    let vals: Vec<Vec<f64>> = members
        .iter()
        .map(|m| if raw { m.to_vec() } else { rank_unit(m) })
        .collect();
    let k = members.len().max(1) as f64;
    let mut row = Vec::with_capacity(members.len());
    (0..n)
        .map(|r| {
            row.clear();
            row.extend(vals.iter().map(|v| v[r]));
            row.sort_by(|a, b| a.total_cmp(b));
            row.iter().sum::<f64>() / k
        })
        .collect()
}
