//! Resuming a killed run. After every epoch the trainer writes the last state beside `--out`:
//! `NAME.last.safetensors` (weights, a normal checkpoint) and `NAME.last.optim.safetensors` (Adam
//! moments `m.<param>` / `v.<param>` and the loop counters in `__metadata__`). `train --resume`
//! reads both and continues with the next epoch, with the same era order and dropout masks as an
//! uninterrupted run.

use crate::checkpoint::{expect_format, from_bytes, meta_str, to_bytes, HostTensors};
use crate::{Error, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Loop state saved with the last checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimState {
    pub m: HostTensors,
    pub v: HostTensors,
    pub adam_step: u32,
    pub global_step: u64,
    /// the last completed epoch
    pub epoch: usize,
    pub best_epoch: Option<usize>,
    pub best_corr: Option<f64>,
    pub since_best: usize,
}

/// `dir/model.safetensors` → `dir/model.SUFFIX.safetensors`.
fn beside(ckpt: &Path, suffix: &str) -> PathBuf {
    let stem = ckpt
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem
        .strip_suffix(".safetensors")
        .unwrap_or(&stem)
        .to_string();
    ckpt.with_file_name(format!("{stem}.{suffix}.safetensors"))
}

/// Where the last-epoch checkpoint of a run writing `out` lives.
pub fn last_path(out: &Path) -> PathBuf {
    beside(out, "last")
}

/// The optimizer state file beside a checkpoint.
pub fn optim_path(ckpt: &Path) -> PathBuf {
    beside(ckpt, "optim")
}

impl OptimState {
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut meta = Map::new();
        let s = |v: String| Value::String(v);
        meta.insert("format".into(), s("eraengine-optim".into()));
        meta.insert("adam_step".into(), s(self.adam_step.to_string()));
        meta.insert("global_step".into(), s(self.global_step.to_string()));
        meta.insert("epoch".into(), s(self.epoch.to_string()));
        meta.insert("since_best".into(), s(self.since_best.to_string()));
        meta.insert(
            "best_epoch".into(),
            s(self.best_epoch.map_or("none".into(), |e| e.to_string())),
        );
        meta.insert(
            "best_corr".into(),
            s(self.best_corr.map_or("none".into(), |c| format!("{c:e}"))),
        );
        let mut t: HostTensors = Vec::new();
        for (n, sh, d) in &self.m {
            t.push((format!("m.{n}"), sh.clone(), d.clone()));
        }
        for (n, sh, d) in &self.v {
            t.push((format!("v.{n}"), sh.clone(), d.clone()));
        }
        crate::io::write_atomic(path, &to_bytes(&t, &meta))
    }

    /// Reads the state for parameters `params` (names and shapes in model order).
    pub fn load(path: &Path, params: &[(String, Vec<usize>)]) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (meta, tensors) = from_bytes(&bytes, path)?;
        let what = "an eraengine optimizer state";
        let get = |k: &str| meta_str(&meta, k, path, what);
        expect_format(&meta, path, "eraengine-optim", what)?;
        let num = |k: &str| -> Result<u64> {
            get(k)?.parse().map_err(|_| {
                Error::format(
                    path,
                    format!("__metadata__.{k}"),
                    "expected a non-negative integer",
                )
            })
        };
        let opt = |k: &str| -> Result<Option<String>> {
            let v = get(k)?;
            Ok(if v == "none" {
                None
            } else {
                Some(v.to_string())
            })
        };
        let best_epoch = match opt("best_epoch")? {
            None => None,
            Some(v) => Some(v.parse().map_err(|_| {
                Error::format(
                    path,
                    "__metadata__.best_epoch",
                    "expected an integer or none",
                )
            })?),
        };
        let best_corr = match opt("best_corr")? {
            None => None,
            Some(v) => Some(v.parse().map_err(|_| {
                Error::format(path, "__metadata__.best_corr", "expected a number or none")
            })?),
        };
        let find = |prefix: &str| -> Result<HostTensors> {
            params
                .iter()
                .map(|(name, shape)| {
                    let key = format!("{prefix}.{name}");
                    let t = tensors.iter().find(|(n, _, _)| *n == key).ok_or_else(|| {
                        Error::format(path, format!("tensor '{key}'"), "is missing")
                    })?;
                    if &t.1 != shape {
                        return Err(Error::format(
                            path,
                            format!("tensor '{key}'"),
                            format!("shape {:?}, the model needs {:?}", t.1, shape),
                        ));
                    }
                    Ok((name.clone(), shape.clone(), t.2.clone()))
                })
                .collect()
        };
        Ok(OptimState {
            m: find("m")?,
            v: find("v")?,
            adam_step: num("adam_step")? as u32,
            global_step: num("global_step")?,
            epoch: num("epoch")? as usize,
            best_epoch,
            best_corr,
            since_best: num("since_best")? as usize,
        })
    }
}
