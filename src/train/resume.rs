//! Resuming a killed run. After every epoch the trainer writes the last state beside `--out`:
//! `NAME.last.safetensors` (weights, a normal checkpoint) and `NAME.last.optim.safetensors` (Adam
//! moments `m.<param>` / `v.<param>` and the loop counters in `__metadata__`). `train --resume`
//! reads both and continues with the next epoch, with the same era order and dropout masks as an
//! uninterrupted run. The state also records the run's settings (seed, learning rate and its
//! schedule, accumulation, EMA, feature noise, the training data's checksum) so that `--resume`
//! reproduces them and refuses a changed one, and the EMA weights (`ema.<param>`) when there are any.

use super::{Schedule, TrainOptions, ValidScore};
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
    /// the best validation score so far (files from before this field hold only its mean)
    pub best: Option<ValidScore>,
    pub since_best: usize,
    /// the run's settings (absent in files written before they were recorded)
    pub settings: Option<Settings>,
    /// the moving average of the weights, when the run keeps one
    pub ema: Option<HostTensors>,
}

/// The settings a resumed run must keep. Each field is named by its flag in `diff`.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub seed: u64,
    pub lr: f32,
    pub weight_decay: f32,
    pub clip: f32,
    pub warmup: u64,
    pub schedule: Schedule,
    pub min_lr: f32,
    pub eras_per_step: usize,
    pub ema: f32,
    pub feature_noise: f32,
    pub row_sample: f32,
    /// the data checksum of the training store
    pub data_checksum: u64,
}

impl Settings {
    pub fn from_options(o: &TrainOptions, data_checksum: u64) -> Self {
        Settings {
            seed: o.seed,
            lr: o.lr,
            weight_decay: o.weight_decay,
            clip: o.clip,
            warmup: o.warmup,
            schedule: o.schedule,
            min_lr: o.min_lr,
            eras_per_step: o.eras_per_step,
            ema: o.ema,
            feature_noise: o.feature_noise,
            row_sample: o.row_sample,
            data_checksum,
        }
    }

    /// The first setting that differs, as (flag, saved value, new value).
    pub fn diff(&self, new: &Settings) -> Option<(&'static str, String, String)> {
        let pairs: [(&'static str, String, String); 12] = [
            ("--seed", self.seed.to_string(), new.seed.to_string()),
            ("--lr", self.lr.to_string(), new.lr.to_string()),
            (
                "--weight-decay",
                self.weight_decay.to_string(),
                new.weight_decay.to_string(),
            ),
            ("--clip", self.clip.to_string(), new.clip.to_string()),
            ("--warmup", self.warmup.to_string(), new.warmup.to_string()),
            (
                "--schedule",
                self.schedule.as_str().into(),
                new.schedule.as_str().into(),
            ),
            ("--min-lr", self.min_lr.to_string(), new.min_lr.to_string()),
            (
                "--eras-per-step",
                self.eras_per_step.to_string(),
                new.eras_per_step.to_string(),
            ),
            ("--ema", self.ema.to_string(), new.ema.to_string()),
            (
                "--feature-noise",
                self.feature_noise.to_string(),
                new.feature_noise.to_string(),
            ),
            (
                "--row-sample",
                self.row_sample.to_string(),
                new.row_sample.to_string(),
            ),
            (
                "--data",
                format!("data checksum {:016x}", self.data_checksum),
                format!("data checksum {:016x}", new.data_checksum),
            ),
        ];
        pairs.into_iter().find(|(_, a, b)| a != b)
    }

    fn write(&self, meta: &mut Map<String, Value>) {
        let mut put = |k: &str, v: String| {
            meta.insert(format!("settings.{k}"), Value::String(v));
        };
        put("seed", self.seed.to_string());
        put("lr", format!("{:e}", self.lr));
        put("weight_decay", format!("{:e}", self.weight_decay));
        put("clip", format!("{:e}", self.clip));
        put("warmup", self.warmup.to_string());
        put("schedule", self.schedule.as_str().into());
        put("min_lr", format!("{:e}", self.min_lr));
        put("eras_per_step", self.eras_per_step.to_string());
        put("ema", format!("{:e}", self.ema));
        put("feature_noise", format!("{:e}", self.feature_noise));
        put("row_sample", format!("{:e}", self.row_sample));
        put("data_checksum", format!("{:016x}", self.data_checksum));
    }

    /// `None` when the file predates recorded settings.
    fn read(meta: &Map<String, Value>, path: &Path) -> Result<Option<Self>> {
        if !meta.contains_key("settings.seed") {
            return Ok(None);
        }
        let get = |k: &str| -> Result<&str> {
            meta.get(&format!("settings.{k}"))
                .and_then(|v| v.as_str())
                .ok_or_else(|| {
                    Error::format(path, format!("__metadata__.settings.{k}"), "is missing")
                })
        };
        fn parse<T: std::str::FromStr>(path: &Path, k: &str, v: &str) -> Result<T> {
            v.parse().map_err(|_| {
                Error::format(
                    path,
                    format!("__metadata__.settings.{k}"),
                    format!("cannot read '{v}'"),
                )
            })
        }
        let f = |k: &str| -> Result<f32> { parse(path, k, get(k)?) };
        let u = |k: &str| -> Result<u64> { parse(path, k, get(k)?) };
        let sum = get("data_checksum")?;
        Ok(Some(Settings {
            seed: u("seed")?,
            lr: f("lr")?,
            weight_decay: f("weight_decay")?,
            clip: f("clip")?,
            warmup: u("warmup")?,
            schedule: Schedule::parse(get("schedule")?).map_err(|_| {
                Error::format(path, "__metadata__.settings.schedule", "unknown schedule")
            })?,
            min_lr: f("min_lr")?,
            eras_per_step: u("eras_per_step")? as usize,
            ema: f("ema")?,
            feature_noise: f("feature_noise")?,
            // state files written before --row-sample existed trained every row
            row_sample: if meta.contains_key("settings.row_sample") {
                f("row_sample")?
            } else {
                1.0
            },
            data_checksum: u64::from_str_radix(sum, 16).map_err(|_| {
                Error::format(path, "__metadata__.settings.data_checksum", "not hex")
            })?,
        }))
    }
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
        let best = |f: fn(&ValidScore) -> String| s(self.best.as_ref().map_or("none".into(), f));
        meta.insert("best_corr".into(), best(|b| format!("{:e}", b.mean)));
        meta.insert("best_std".into(), best(|b| format!("{:e}", b.std)));
        meta.insert("best_sharpe".into(), best(|b| format!("{:e}", b.sharpe)));
        meta.insert("best_eras".into(), best(|b| b.eras.to_string()));
        if let Some(st) = &self.settings {
            st.write(&mut meta);
        }
        let mut t: HostTensors = Vec::new();
        for (n, sh, d) in &self.m {
            t.push((format!("m.{n}"), sh.clone(), d.clone()));
        }
        for (n, sh, d) in &self.v {
            t.push((format!("v.{n}"), sh.clone(), d.clone()));
        }
        for (n, sh, d) in self.ema.iter().flatten() {
            t.push((format!("ema.{n}"), sh.clone(), d.clone()));
        }
        crate::io::write_atomic(path, &to_bytes(&t, &meta))
    }

    /// Reads the state for parameters `params` (names and shapes in model order).
    pub fn load(path: &Path, params: &[(String, Vec<usize>)]) -> Result<Self> {
        let bytes = crate::checkpoint::read_file(path)?;
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
        let best_corr: Option<f64> = match opt("best_corr")? {
            None => None,
            Some(v) => Some(v.parse().map_err(|_| {
                Error::format(path, "__metadata__.best_corr", "expected a number or none")
            })?),
        };
        // Optional extras (older files hold only the mean).
        let extra = |k: &str| -> Option<f64> {
            meta.get(k)
                .and_then(|v| v.as_str())
                .and_then(|v| v.parse().ok())
        };
        let best = best_corr.map(|mean| ValidScore {
            mean,
            std: extra("best_std").unwrap_or(0.0),
            sharpe: extra("best_sharpe").unwrap_or(0.0),
            eras: extra("best_eras").map_or(0, |e| e as usize),
        });
        let settings = Settings::read(&meta, path)?;
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
        let ema = match &settings {
            Some(st) if st.ema > 0.0 => Some(find("ema")?),
            _ => None,
        };
        Ok(OptimState {
            m: find("m")?,
            v: find("v")?,
            adam_step: num("adam_step")? as u32,
            global_step: num("global_step")?,
            epoch: num("epoch")? as usize,
            best_epoch,
            best,
            since_best: num("since_best")? as usize,
            settings,
            ema,
        })
    }
}
