//! `train --config FILE.json` (and `tune`'s trials): a JSON object of flag names → values applied
//! onto the `train` flags that were not given on the command line.

use super::TrainArgs;
use crate::{Error, Result};
use std::path::Path;

/// `--config FILE.json`: reads the file and applies it with `apply_config`.
pub fn apply_config_file(a: &mut TrainArgs) -> Result<()> {
    let Some(path) = a.config.clone() else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(&path, "", format!("not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| {
        Error::format(
            &path,
            "",
            "expected a JSON object of flag names to values, e.g. {\"lr\": 0.003, \"d_model\": 64}",
        )
    })?;
    apply_config(a, &path, obj)
}

/// The keys `apply_config` accepts (flag names with `_` for `-`; `d-model` is accepted too).
pub const CONFIG_KEYS: &[&str] = &[
    "epochs",
    "seed",
    "max_steps",
    "lr",
    "warmup",
    "schedule",
    "min_lr",
    "eras_per_step",
    "ema",
    "feature_noise",
    "row_sample",
    "dropout",
    "clip",
    "threshold_warmup",
    "d_model",
    "heads",
    "layers",
    "d_ff",
    "gate_rank",
    "threshold",
    "top_k",
    "lambda",
    "corr_weight",
    "context_dim",
    "context_noise",
    "weight_decay",
    "attention",
    "inducing",
    "ffn",
    "selection",
    "ortho_weight",
    "pos_enc",
    "patience",
    "min_epochs",
    "refit",
    "head_blend",
    "window",
    "embargo",
    "rehearsal",
    "rehearsal_size",
];

/// Maps a JSON object of flag names → values onto the fields of `a` that were not given on the
/// command line (a flag given there wins). Every value is type-checked, used or not; an unknown
/// key or a wrong type is an error naming `path` and the key. `null` leaves the field at its
/// default (e.g. `"top_k": null` = no top-k). Data, output and device flags are not config keys.
pub fn apply_config(
    a: &mut TrainArgs,
    path: &Path,
    obj: &serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    use serde_json::Value;
    fn fill<T>(slot: &mut Option<T>, x: Option<T>) {
        if slot.is_none() {
            *slot = x;
        }
    }
    for (key, v) in obj {
        let k = key.replace('-', "_");
        let bad = |want: &str| Error::format(path, key, format!("expected {want}, got {v}"));
        let num = || -> Result<Option<f32>> {
            match v {
                Value::Null => Ok(None),
                _ => match v.as_f64() {
                    Some(x) if x.is_finite() => Ok(Some(x as f32)),
                    _ => Err(bad("a number")),
                },
            }
        };
        let int = || -> Result<Option<u64>> {
            match v {
                Value::Null => Ok(None),
                _ => v
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| bad("a whole number >= 0")),
            }
        };
        let size = || -> Result<Option<usize>> { Ok(int()?.map(|x| x as usize)) };
        let text = || -> Result<Option<String>> {
            match v {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s.clone())),
                _ => Err(bad("a string")),
            }
        };
        match k.as_str() {
            "epochs" => fill(&mut a.epochs, size()?),
            "seed" => fill(&mut a.seed, int()?),
            "max_steps" => fill(&mut a.max_steps, int()?),
            "lr" => fill(&mut a.lr, num()?),
            "warmup" => fill(&mut a.warmup, int()?),
            "schedule" => fill(&mut a.schedule, text()?),
            "min_lr" => fill(&mut a.min_lr, num()?),
            "eras_per_step" => fill(&mut a.eras_per_step, size()?),
            "ema" => fill(&mut a.ema, num()?),
            "feature_noise" => fill(&mut a.feature_noise, num()?),
            "row_sample" => fill(&mut a.row_sample, num()?),
            "dropout" => fill(&mut a.dropout, num()?),
            "clip" => fill(&mut a.clip, num()?),
            "threshold_warmup" => fill(&mut a.threshold_warmup, size()?),
            "d_model" => fill(&mut a.d_model, size()?),
            "heads" => fill(&mut a.heads, size()?),
            "layers" => fill(&mut a.layers, size()?),
            "d_ff" => fill(&mut a.d_ff, size()?),
            "gate_rank" => fill(&mut a.gate_rank, size()?),
            "threshold" => fill(&mut a.threshold, num()?),
            "top_k" => fill(&mut a.top_k, size()?),
            "lambda" => fill(&mut a.lambda_sparsity, num()?),
            "corr_weight" => fill(&mut a.corr_weight, num()?),
            "context_dim" => fill(&mut a.context_dim, size()?),
            "context_noise" => fill(&mut a.context_noise, num()?),
            "weight_decay" => fill(&mut a.weight_decay, num()?),
            "attention" => fill(&mut a.attention, text()?),
            "inducing" => fill(&mut a.inducing, size()?),
            "ffn" => fill(&mut a.ffn, text()?),
            "selection" => fill(&mut a.selection, text()?),
            "ortho_weight" => fill(&mut a.ortho_weight, num()?),
            "pos_enc" => match v {
                Value::Bool(b) => a.pos_enc |= *b,
                Value::Null => {}
                _ => return Err(bad("true or false")),
            },
            "patience" => fill(&mut a.patience, size()?),
            "min_epochs" => fill(&mut a.min_epochs, size()?),
            "refit" => match v {
                Value::Bool(b) => fill(&mut a.refit, Some(if *b { "on" } else { "off" }.into())),
                _ => fill(&mut a.refit, text()?),
            },
            "head_blend" => fill(&mut a.head_blend, text()?),
            "window" => fill(&mut a.window, size()?),
            "embargo" => fill(&mut a.embargo, size()?),
            "rehearsal" => fill(&mut a.rehearsal, num()?),
            "rehearsal_size" => fill(&mut a.rehearsal_size, size()?),
            _ => {
                return Err(Error::format(
                    path,
                    key,
                    format!("unknown key; known keys: {}", CONFIG_KEYS.join(", ")),
                ))
            }
        }
    }
    Ok(())
}
