//! The search space of `tune`: a JSON object of `train` flag names → a fixed value or a
//! distribution, and the deterministic draw of trial `i`'s configuration from it.

use crate::rng::Rng;
use crate::{Error, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// How one flag's value is drawn.
#[derive(Clone, Debug, PartialEq)]
pub enum Dist {
    /// always this value
    Fixed(Value),
    /// uniform in [lo, hi]
    Uniform(f64, f64),
    /// log-uniform in [lo, hi] (lo > 0)
    LogUniform(f64, f64),
    /// a whole number in lo..=hi, each equally likely
    Int(i64, i64),
    /// one of the values, each equally likely (`null` = the flag's default)
    Choice(Vec<Value>),
}

/// Flag name (with `_`) → distribution; drawn in key order.
#[derive(Clone, Debug, PartialEq)]
pub struct Space {
    pub params: BTreeMap<String, Dist>,
}

/// Keys a space may not hold: the tuner sets them per rung and per trial.
const RESERVED: &[&str] = &["epochs", "seed"];

impl Space {
    /// Parses a space file's text. `known` lists the accepted keys (`train --config`'s keys);
    /// every error names `path` and the key.
    pub fn parse(text: &str, path: &Path, known: &[&str]) -> Result<Space> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::format(path, "", format!("not JSON: {e}")))?;
        Space::from_json(&v, path, known)
    }

    pub fn from_json(v: &Value, path: &Path, known: &[&str]) -> Result<Space> {
        let obj = v.as_object().ok_or_else(|| {
            Error::format(
                path,
                "",
                "expected a JSON object of flag names to values or distributions, e.g. {\"lr\": {\"log_uniform\": [1e-4, 1e-2]}, \"dropout\": 0}",
            )
        })?;
        let mut params = BTreeMap::new();
        for (key, spec) in obj {
            let k = key.replace('-', "_");
            if RESERVED.contains(&k.as_str()) {
                return Err(Error::format(
                    path,
                    key,
                    "tune sets the epochs (--rungs) and each trial's seed (--seed) itself; remove this key",
                ));
            }
            if k == "refit" || k == "head_blend" {
                return Err(Error::format(
                    path,
                    key,
                    "trials are scored on the validation eras by output 0 alone, as trained; `train --config best.json` refits the winner and chooses its head blend on those eras (the defaults); remove this key",
                ));
            }
            if !known.contains(&k.as_str()) {
                return Err(Error::format(
                    path,
                    key,
                    format!("unknown key; known keys: {}", known.join(", ")),
                ));
            }
            if params.contains_key(&k) {
                return Err(Error::format(path, key, "given twice"));
            }
            params.insert(k, parse_dist(spec, path, key)?);
        }
        Ok(Space { params })
    }

    /// The space used when `--space` is absent (documented in docs/tuning.md).
    pub fn default_space() -> Space {
        let v = json!({
            "lr": {"log_uniform": [3e-4, 1e-2]},
            "dropout": {"uniform": [0.0, 0.2]},
            "d_model": {"choice": [32, 64]},
            "heads": {"choice": [2, 4]},
            "layers": {"int": [1, 3]},
            "d_ff": {"choice": [64, 128]},
            "lambda": {"log_uniform": [1e-4, 1e-2]},
            "threshold": {"choice": [0.0, 0.02, 0.05]},
            "weight_decay": {"choice": [0.0, 1e-4, 1e-3]},
            "warmup": {"choice": [0, 50, 200]},
            "schedule": {"choice": ["constant", "cosine"]},
            "eras_per_step": {"choice": [1, 2, 4]},
        });
        let mut params = BTreeMap::new();
        if let Some(obj) = v.as_object() {
            for (k, spec) in obj {
                // The literal above is well formed; a failure here would be a bug caught by tests.
                if let Ok(d) = parse_dist(spec, Path::new("<default space>"), k) {
                    params.insert(k.clone(), d);
                }
            }
        }
        Space { params }
    }

    /// The space as JSON (the form `parse` reads).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (k, d) in &self.params {
            let v = match d {
                Dist::Fixed(v) => v.clone(),
                Dist::Uniform(lo, hi) => json!({"uniform": [lo, hi]}),
                Dist::LogUniform(lo, hi) => json!({"log_uniform": [lo, hi]}),
                Dist::Int(lo, hi) => json!({"int": [lo, hi]}),
                Dist::Choice(c) => json!({ "choice": c }),
            };
            m.insert(k.clone(), v);
        }
        Value::Object(m)
    }

    /// Trial `trial`'s configuration: a function of (`seed`, `trial`) only, so trial i is the
    /// same whatever `--trials` is. Real numbers keep 4 significant digits.
    pub fn sample(&self, seed: u64, trial: usize) -> Map<String, Value> {
        let mut rng = Rng::new(trial_seed(seed, trial), 0x7E5E);
        let mut out = Map::new();
        for (k, d) in &self.params {
            let v = match d {
                Dist::Fixed(v) => v.clone(),
                Dist::Uniform(lo, hi) => real(lo + (hi - lo) * unit(&mut rng)),
                Dist::LogUniform(lo, hi) => {
                    real((lo.ln() + (hi.ln() - lo.ln()) * unit(&mut rng)).exp())
                }
                Dist::Int(lo, hi) => {
                    let span = (hi - lo + 1) as u64;
                    Value::from(lo + (below(&mut rng, span)) as i64)
                }
                Dist::Choice(c) => c[below(&mut rng, c.len() as u64) as usize].clone(),
            };
            out.insert(k.clone(), v);
        }
        out
    }
}

/// Trial `trial`'s seed (its training seed and the seed of its draw): splitmix64 of the pair.
pub fn trial_seed(seed: u64, trial: usize) -> u64 {
    let mut z = seed
        .wrapping_add((trial as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) >> 1 // below 2^63: prints the same in every JSON reader
}

/// Uniform in [0, 1) with 53 random bits.
fn unit(rng: &mut Rng) -> f64 {
    let hi = rng.next_u32() as u64;
    let lo = rng.next_u32() as u64;
    (((hi << 21) ^ (lo >> 11)) & ((1u64 << 53) - 1)) as f64 / (1u64 << 53) as f64
}

/// Uniform in 0..n (n ≥ 1), without modulo bias worth noticing for small n.
fn below(rng: &mut Rng, n: u64) -> u64 {
    let x = ((rng.next_u32() as u64) << 32) | rng.next_u32() as u64;
    x % n.max(1)
}

/// A real number rounded to 4 significant digits.
fn real(x: f64) -> Value {
    let r: f64 = format!("{x:.3e}").parse().unwrap_or(x);
    Value::from(r)
}

fn parse_dist(spec: &Value, path: &Path, key: &str) -> Result<Dist> {
    let Value::Object(o) = spec else {
        return Ok(Dist::Fixed(spec.clone()));
    };
    let err = |msg: String| Error::format(path, key, msg);
    if o.len() != 1 {
        return Err(err(format!(
            "expected one of {{\"uniform\": [lo, hi]}}, {{\"log_uniform\": [lo, hi]}}, {{\"int\": [lo, hi]}}, {{\"choice\": [...]}}, got {spec}"
        )));
    }
    let (kind, arg) = o.iter().next().ok_or_else(|| err("empty".into()))?;
    let pair = || -> Result<(f64, f64)> {
        let a = arg.as_array().filter(|a| a.len() == 2);
        let lh = a.and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)));
        match lh {
            Some((lo, hi)) if lo.is_finite() && hi.is_finite() && lo <= hi => Ok((lo, hi)),
            _ => Err(err(format!(
                "\"{kind}\" needs [lo, hi] with two numbers lo <= hi, got {arg}"
            ))),
        }
    };
    match kind.as_str() {
        "uniform" => {
            let (lo, hi) = pair()?;
            Ok(Dist::Uniform(lo, hi))
        }
        "log_uniform" => {
            let (lo, hi) = pair()?;
            if lo <= 0.0 {
                return Err(err(format!("\"log_uniform\" needs lo > 0, got {arg}")));
            }
            Ok(Dist::LogUniform(lo, hi))
        }
        "int" => {
            let a = arg.as_array().filter(|a| a.len() == 2);
            match a.and_then(|a| Some((a[0].as_i64()?, a[1].as_i64()?))) {
                Some((lo, hi)) if lo <= hi => Ok(Dist::Int(lo, hi)),
                _ => Err(err(format!(
                    "\"int\" needs [lo, hi] with two whole numbers lo <= hi, got {arg}"
                ))),
            }
        }
        "choice" => match arg.as_array() {
            Some(c) if !c.is_empty() => Ok(Dist::Choice(c.clone())),
            _ => Err(err(format!(
                "\"choice\" needs a non-empty list of values, got {arg}"
            ))),
        },
        other => Err(err(format!(
            "unknown distribution \"{other}\"; expected uniform, log_uniform, int or choice"
        ))),
    }
}
