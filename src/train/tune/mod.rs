//! `tune`: random search with successive halving. Trial i's configuration and training seed are
//! functions of (`--seed`, i) alone. Every trial runs the first rung (e.g. 1 epoch); the best
//! 1/eta of them by validation mean corr run the next rung (e.g. 3 epochs, trained afresh), and so
//! on. Each (trial, rung) result is a file written atomically in `DIR/trials/`, so a killed run
//! that is started again reuses what was finished and, training being deterministic, ends with the
//! same table as an uninterrupted run. The trainer is a callback: the library knows nothing of
//! flags or devices, and trials share no mutable state (each trains a fresh model).

pub mod space;

use super::ValidScore;
use crate::{Error, Result};
use serde_json::{json, Map, Value};
use space::{trial_seed, Space};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How many trials, and the successive-halving schedule.
#[derive(Clone, Debug)]
pub struct TuneOptions {
    pub trials: usize,
    pub seed: u64,
    /// epochs of each rung, increasing
    pub rungs: Vec<usize>,
    /// the best max(1, n / eta) of a rung's n scored trials go on
    pub eta: usize,
}

impl TuneOptions {
    pub fn validate(&self) -> Result<()> {
        if self.trials == 0 {
            return Err(Error::usage("--trials must be at least 1"));
        }
        if self.rungs.is_empty() || self.rungs[0] == 0 {
            return Err(Error::usage("--rungs needs epochs >= 1, e.g. 1,3,9"));
        }
        if self.rungs.windows(2).any(|w| w[1] <= w[0]) {
            return Err(Error::usage(format!(
                "--rungs must increase, got {:?}",
                self.rungs
            )));
        }
        if self.eta < 2 {
            return Err(Error::usage("--eta must be at least 2"));
        }
        Ok(())
    }
}

/// One training run the tuner asks for.
#[derive(Clone, Debug)]
pub struct Trial {
    pub index: usize,
    pub seed: u64,
    pub epochs: usize,
    pub params: Map<String, Value>,
}

/// What the trainer reports for a trial: its best validation score, or why it failed
/// (e.g. the loss became NaN at a large learning rate; such a trial ranks last).
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Scored {
        valid: ValidScore,
        best_epoch: usize,
    },
    Failed(String),
}

/// A finished (trial, rung).
#[derive(Clone, Debug, PartialEq)]
pub struct TrialResult {
    pub trial: usize,
    pub seed: u64,
    pub epochs: usize,
    pub params: Map<String, Value>,
    pub outcome: Outcome,
    pub secs: f64,
}

impl TrialResult {
    pub fn corr(&self) -> Option<f64> {
        match &self.outcome {
            Outcome::Scored { valid, .. } => Some(valid.mean),
            Outcome::Failed(_) => None,
        }
    }

    pub fn to_json(&self) -> Value {
        let (valid, best_epoch, error) = match &self.outcome {
            Outcome::Scored { valid, best_epoch } => (
                json!({"mean": valid.mean, "std": valid.std, "sharpe": valid.sharpe, "eras": valid.eras}),
                Value::from(*best_epoch),
                Value::Null,
            ),
            Outcome::Failed(e) => (Value::Null, Value::Null, Value::from(e.as_str())),
        };
        json!({
            "trial": self.trial,
            "seed": self.seed,
            "epochs": self.epochs,
            "valid": valid,
            "best_epoch": best_epoch,
            "error": error,
            "secs": self.secs,
            "params": self.params,
        })
    }

    /// `to_json` with the scores as decimal strings, which Rust parses back to the same bits
    /// (serde_json's own float parsing may be one ulp off): the form of the per-trial files.
    pub fn to_file_json(&self) -> Value {
        let mut v = self.to_json();
        if let Value::Object(s) = &mut v["valid"] {
            for k in ["mean", "std", "sharpe"] {
                if let Some(x) = s.get(k).and_then(Value::as_f64) {
                    s.insert(k.into(), Value::from(x.to_string()));
                }
            }
        }
        v["secs"] = Value::from(self.secs.to_string());
        v
    }

    /// Reads `to_json` or `to_file_json`.
    pub fn from_json(v: &Value, path: &Path) -> Result<TrialResult> {
        let bad = |what: &str| Error::format(path, what, "missing or of the wrong type");
        let u = |k: &str| v[k].as_u64().ok_or_else(|| bad(k));
        let outcome = match (&v["valid"], v["error"].as_str()) {
            (Value::Object(s), _) => {
                let f = |k: &str| match s.get(k) {
                    Some(Value::String(t)) => t.parse::<f64>().map_err(|_| bad("valid")),
                    Some(x) => x.as_f64().ok_or_else(|| bad("valid")),
                    None => Err(bad("valid")),
                };
                Outcome::Scored {
                    valid: ValidScore {
                        mean: f("mean")?,
                        std: f("std")?,
                        sharpe: f("sharpe")?,
                        eras: s
                            .get("eras")
                            .and_then(Value::as_u64)
                            .ok_or_else(|| bad("valid"))? as usize,
                    },
                    best_epoch: u("best_epoch")? as usize,
                }
            }
            (_, Some(e)) => Outcome::Failed(e.to_string()),
            _ => return Err(bad("valid")),
        };
        Ok(TrialResult {
            trial: u("trial")? as usize,
            seed: u("seed")?,
            epochs: u("epochs")? as usize,
            params: v["params"]
                .as_object()
                .cloned()
                .ok_or_else(|| bad("params"))?,
            outcome,
            secs: match &v["secs"] {
                Value::String(t) => t.parse().unwrap_or(0.0),
                x => x.as_f64().unwrap_or(0.0),
            },
        })
    }
}

/// Progress, for the CLI to print.
#[derive(Clone, Debug)]
pub enum TuneEvent {
    /// A rung starts with these trials.
    Rung {
        rung: usize,
        rungs: usize,
        epochs: usize,
        trials: usize,
    },
    /// A trial of a rung is done (`reused`: read from an earlier, killed run).
    Trial {
        done: usize,
        total: usize,
        result: TrialResult,
        reused: bool,
    },
}

impl TuneEvent {
    pub fn line(&self) -> String {
        match self {
            TuneEvent::Rung {
                rung,
                rungs,
                epochs,
                trials,
            } => format!(
                "rung {}/{rungs}: {trials} trials of {}",
                rung + 1,
                crate::progress::epochs(*epochs)
            ),
            TuneEvent::Trial {
                done,
                total,
                result,
                reused,
            } => {
                let score = match &result.outcome {
                    Outcome::Scored { valid, best_epoch } => format!(
                        "valid corr {:+.4} sharpe {:+.2} (epoch {best_epoch})",
                        valid.mean, valid.sharpe
                    ),
                    Outcome::Failed(e) => format!("failed: {e}"),
                };
                format!(
                    "  trial {:>3} [{done}/{total}] {score}  {}{}",
                    result.trial,
                    if *reused {
                        "(done before)".to_string()
                    } else {
                        format!("{:.1} s", result.secs)
                    },
                    if *reused {
                        String::new()
                    } else {
                        format!("  {}", Value::Object(result.params.clone()))
                    }
                )
            }
        }
    }
}

/// The file holding trial `trial`'s result after `epochs` epochs.
pub fn result_path(dir: &Path, trial: usize, epochs: usize) -> PathBuf {
    dir.join("trials")
        .join(format!("trial-{trial:04}-epochs-{epochs}.json"))
}

/// The run's identity (space, seed, and what the caller adds: data checksums, device): a rerun
/// into the same directory must match it to reuse results.
const MANIFEST: &str = "tune.json";

/// Runs the search into `dir` and returns the table (one row per trial: its result at the
/// highest rung it reached), best first. Writes DIR/trials.csv, DIR/trials.json, DIR/best.json.
pub fn tune(
    dir: &Path,
    space: &Space,
    o: &TuneOptions,
    fingerprint: &Value,
    train: &mut dyn FnMut(&Trial) -> Result<Outcome>,
    on_event: &mut dyn FnMut(&TuneEvent),
) -> Result<Vec<TrialResult>> {
    o.validate()?;
    std::fs::create_dir_all(dir.join("trials")).map_err(|e| Error::io(dir, e))?;
    let identity = json!({
        "format": "eraengine-tune",
        "space": space.to_json(),
        "seed": o.seed,
        "run": fingerprint,
    });
    let manifest = dir.join(MANIFEST);
    if manifest.exists() {
        let text = std::fs::read_to_string(&manifest).map_err(|e| Error::io(&manifest, e))?;
        let old: Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(&manifest, "", format!("not JSON: {e}")))?;
        if old != identity {
            return Err(Error::usage(format!(
                "{} holds a tune run with another space, seed, data or device ({}); use another --out or remove it",
                dir.display(),
                first_difference(&old, &identity)
            )));
        }
    } else {
        crate::io::write_atomic(&manifest, pretty(&identity).as_bytes())?;
    }
    let mut best_of: Vec<Option<TrialResult>> = vec![None; o.trials];
    let mut alive: Vec<usize> = (0..o.trials).collect();
    for (r, &epochs) in o.rungs.iter().enumerate() {
        on_event(&TuneEvent::Rung {
            rung: r,
            rungs: o.rungs.len(),
            epochs,
            trials: alive.len(),
        });
        let mut scored = Vec::new();
        for (k, &i) in alive.iter().enumerate() {
            let trial = Trial {
                index: i,
                seed: trial_seed(o.seed, i),
                epochs,
                params: space.sample(o.seed, i),
            };
            let path = result_path(dir, i, epochs);
            let (res, reused) = if path.exists() {
                (load_result(&path, &trial)?, true)
            } else {
                let t0 = Instant::now();
                let outcome = train(&trial)?;
                let res = TrialResult {
                    trial: i,
                    seed: trial.seed,
                    epochs,
                    params: trial.params.clone(),
                    outcome,
                    secs: t0.elapsed().as_secs_f64(),
                };
                crate::io::write_atomic(&path, pretty(&res.to_file_json()).as_bytes())?;
                (res, false)
            };
            on_event(&TuneEvent::Trial {
                done: k + 1,
                total: alive.len(),
                result: res.clone(),
                reused,
            });
            if let Some(c) = res.corr() {
                scored.push((c, i));
            }
            best_of[i] = Some(res);
        }
        // Promote the best max(1, n / eta) scored trials (ties: the lower trial index).
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let keep = (alive.len() / o.eta).max(1).min(scored.len());
        alive = scored.iter().take(keep).map(|&(_, i)| i).collect();
        if alive.is_empty() {
            break;
        }
    }
    let mut table: Vec<TrialResult> = best_of.into_iter().flatten().collect();
    sort_table(&mut table);
    write_table(dir, &table)?;
    Ok(table)
}

/// Best first: the highest rung reached, then validation corr (failures last), then trial index.
pub fn sort_table(t: &mut [TrialResult]) {
    t.sort_by(|a, b| {
        b.epochs
            .cmp(&a.epochs)
            .then_with(|| match (a.corr(), b.corr()) {
                (Some(x), Some(y)) => y.total_cmp(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then(a.trial.cmp(&b.trial))
    });
}

/// The config `train --config` reads for a result: its parameters, epochs and seed.
pub fn best_config(r: &TrialResult) -> Value {
    let mut m = r.params.clone();
    m.insert("epochs".into(), Value::from(r.epochs));
    m.insert("seed".into(), Value::from(r.seed));
    Value::Object(m)
}

/// DIR/trials.csv (no timings: equal for a resumed and an uninterrupted run), DIR/trials.json
/// and DIR/best.json.
fn write_table(dir: &Path, table: &[TrialResult]) -> Result<()> {
    let mut keys: Vec<&String> = table.iter().flat_map(|r| r.params.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut csv = String::from("rank,trial,seed,epochs,valid_corr,valid_sharpe,best_epoch,error");
    for k in &keys {
        let _ = write!(csv, ",{k}");
    }
    csv.push('\n');
    for (rank, r) in table.iter().enumerate() {
        let (corr, sharpe, epoch, error) = match &r.outcome {
            Outcome::Scored { valid, best_epoch } => (
                valid.mean.to_string(),
                valid.sharpe.to_string(),
                best_epoch.to_string(),
                String::new(),
            ),
            Outcome::Failed(e) => (String::new(), String::new(), String::new(), csv_field(e)),
        };
        let _ = write!(
            csv,
            "{},{},{},{},{corr},{sharpe},{epoch},{error}",
            rank + 1,
            r.trial,
            r.seed,
            r.epochs
        );
        for k in &keys {
            let cell = match r.params.get(k.as_str()) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => csv_field(s),
                Some(v) => v.to_string(),
            };
            let _ = write!(csv, ",{cell}");
        }
        csv.push('\n');
    }
    crate::io::write_atomic(&dir.join("trials.csv"), csv.as_bytes())?;
    let rows: Vec<Value> = table
        .iter()
        .enumerate()
        .map(|(rank, r)| {
            let mut v = r.to_json();
            v["rank"] = Value::from(rank + 1);
            v
        })
        .collect();
    crate::io::write_atomic(
        &dir.join("trials.json"),
        pretty(&Value::Array(rows)).as_bytes(),
    )?;
    if let Some(best) = table.first().filter(|r| r.corr().is_some()) {
        crate::io::write_atomic(
            &dir.join("best.json"),
            pretty(&best_config(best)).as_bytes(),
        )?;
    }
    Ok(())
}

/// A finished result from an earlier run; it must be the trial this run would train.
fn load_result(path: &Path, trial: &Trial) -> Result<TrialResult> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        Error::format(
            path,
            "",
            format!("not JSON: {e}; remove it to rerun the trial"),
        )
    })?;
    let r = TrialResult::from_json(&v, path)?;
    if r.trial != trial.index
        || r.seed != trial.seed
        || r.epochs != trial.epochs
        || r.params != trial.params
    {
        return Err(Error::format(
            path,
            "",
            "holds another trial than this run draws (another --seed or --space?); remove it to rerun the trial",
        ));
    }
    Ok(r)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

/// The first top-level key whose value differs, for the error message.
fn first_difference(old: &Value, new: &Value) -> String {
    for k in ["space", "seed", "run"] {
        if old[k] != new[k] {
            return format!("{k} differs");
        }
    }
    "format differs".into()
}
