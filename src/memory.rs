//! Bounded memory: what a model config and an era need, estimated before anything is allocated, and
//! a refusal that says what was asked, what it needs and what is available (`/proc/meminfo`
//! MemAvailable) instead of being killed by the kernel or aborting on an allocation failure.
//!
//! The estimate counts f32 tensors: parameters with their gradient and Adam's two moments (and an
//! EMA copy when asked), and the tape's activations for the largest era, each kept with its
//! gradient for the backward pass. Per transformer layer the tape records q, k, v, the attention
//! output, o, two residual sums, two layer norms (with their row statistics), two dropout outputs
//! and masks, and the feed-forward's two `[n, d_ff]` tensors; softmax attention adds its
//! `[heads, n, n]` scores and probabilities; induced attention its M inducing rows' tensors. The gate records `x̃`, the mask and the gate values;
//! the mapper and head their linear outputs. The count errs high rather than low.

use crate::model::{param_specs, Attention, Config};
use crate::{Error, Result};

/// Bytes of one f32.
const F32: u128 = 4;

/// Number of parameters of `cfg` (saturating: a config whose count overflows needs "too much").
pub fn n_params(cfg: &Config) -> u128 {
    param_specs(cfg)
        .iter()
        .map(|(_, s)| s.iter().fold(1u128, |a, &x| a.saturating_mul(x as u128)))
        .fold(0u128, u128::saturating_add)
}

/// f32 elements the tape holds for one forward pass over an era of `rows` rows.
pub fn activation_elems(cfg: &Config, rows: usize) -> u128 {
    let n = rows as u128;
    let (f, d, dff, h, t) = (
        cfg.n_features as u128,
        cfg.d_model as u128,
        cfg.d_ff as u128,
        cfg.heads.max(1) as u128,
        cfg.n_targets as u128,
    );
    let m = |a: u128, b: u128| a.saturating_mul(b);
    // inputs, mask, gated inputs, gate values and their low-rank terms
    let gate = m(3, m(n, f)).saturating_add(m(4, f));
    // mapper (2), head (2) outputs, output yhat
    let ends = m(4, m(n, d)).saturating_add(m(n, t));
    let dh = d / h;
    let attention_extra = match cfg.attention {
        // per head state φ(K)ᵀV and normaliser, φ(Q), φ(K)
        Attention::Linear => m(h, m(dh, dh) + dh).saturating_add(m(2, m(n, d))),
        // scores and probabilities [heads, n, n]
        Attention::Softmax => m(2, m(h, m(n, n))),
        // fused cross-attentions (no score matrix): per layer the M inducing rows' tensors
        // (the points, their query map, H, its key and value maps) with gradients, the two
        // attentions' log-sum-exps [heads, M] and [heads, n], and the all-valid key mask [M]
        Attention::Induced => {
            let mi = cfg.inducing as u128;
            m(10, m(mi, d))
                .saturating_add(m(2, m(h, mi.saturating_add(n))))
                .saturating_add(mi)
        }
    };
    let per_layer = m(14, m(n, d))
        .saturating_add(m(2, m(n, dff)))
        .saturating_add(m(4, n))
        .saturating_add(attention_extra);
    gate.saturating_add(ends)
        .saturating_add(m(cfg.layers as u128, per_layer))
}

/// Bytes a training run needs: parameters, gradients, Adam moments (+ EMA), and the activations
/// of the largest era with their gradients (`eras_at_once` eras alive together).
pub fn train_bytes(cfg: &Config, max_rows: usize, ema: bool, eras_at_once: usize) -> u128 {
    let copies = if ema { 5 } else { 4 } + 1; // + the host copy for checkpoints
    let params = n_params(cfg).saturating_mul(copies);
    let act = activation_elems(cfg, max_rows)
        .saturating_mul(2)
        .saturating_mul(eras_at_once.max(1) as u128);
    params.saturating_add(act).saturating_mul(F32)
}

/// Bytes prediction needs: the parameters (host and device) and one era's activations.
pub fn predict_bytes(cfg: &Config, max_rows: usize) -> u128 {
    n_params(cfg)
        .saturating_mul(2)
        .saturating_add(activation_elems(cfg, max_rows))
        .saturating_mul(F32)
}

/// MemAvailable from `/proc/meminfo`, in bytes; None where it cannot be read (not Linux).
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

/// The MemAvailable line of a `/proc/meminfo` text, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line
        .trim_start_matches("MemAvailable:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

/// The limit an address-space rlimit (`ulimit -v`, `prlimit --as`) puts on this process, in bytes
/// (None when unlimited or unknown). Read from `/proc/self/limits`.
pub fn address_space_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max address space"))?;
    let soft = line.split_whitespace().nth(3)?;
    soft.parse().ok()
}

/// What this process may still allocate: the smaller of MemAvailable and the address-space limit
/// (less what is mapped already is not subtracted: the limit is a bound, not an exact budget).
pub fn available() -> Option<u64> {
    match (mem_available(), address_space_limit()) {
        (Some(a), Some(l)) => Some(a.min(l)),
        (a, l) => a.or(l),
    }
}

/// Human-readable size: `1.5 GiB`, `12.0 MiB`, `3 bytes`; more than an exabyte reads `> 1 EiB`.
pub fn human(bytes: u128) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut v = bytes as f64;
    for (i, u) in UNITS.iter().enumerate() {
        v /= 1024.0;
        if v < 1024.0 || i == UNITS.len() - 1 {
            if v >= 1024.0 {
                return "> 1024 EiB".into();
            }
            return format!("{v:.1} {u}");
        }
    }
    unreachable!("the loop returns at its last unit")
}

/// Refuses `asked` (e.g. "train --d-model 65536 on eras of up to 5000 rows") when `need` bytes
/// exceed what is available (`available` bytes; None = unknown, then only needs beyond the
/// address space of this machine, 2^47 bytes, are refused).
pub fn ensure_with(asked: &str, need: u128, available: Option<u64>) -> Result<()> {
    let limit = available.map_or(1u128 << 47, |a| a as u128);
    if need <= limit {
        return Ok(());
    }
    Err(Error::usage(format!(
        "{asked} needs about {} of memory, and {} is available{}; use a smaller model or fewer rows per era",
        human(need),
        available.map_or("less than that".to_string(), |a| human(a as u128)),
        if available.is_some() {
            " (MemAvailable in /proc/meminfo, or the process's address-space limit)"
        } else {
            ""
        }
    )))
}

/// [`ensure_with`] against what this machine has available now.
pub fn ensure(asked: &str, need: u128) -> Result<()> {
    ensure_with(asked, need, available())
}

/// The model flags of `cfg` for a message: `d_model 64, d_ff 128, layers 2, heads 4, ...`.
pub fn describe(cfg: &Config) -> String {
    format!(
        "d_model {}, d_ff {}, layers {}, heads {}, {} features, attention {}",
        cfg.d_model,
        cfg.d_ff,
        cfg.layers,
        cfg.heads,
        cfg.n_features,
        cfg.attention.as_str()
    )
}

/// Refuses a training run of `cfg` on eras of up to `max_rows` rows that would not fit.
pub fn check_train(cfg: &Config, max_rows: usize, ema: bool, eras_at_once: usize) -> Result<()> {
    ensure(
        &format!(
            "training a model with {} ({} parameters) on eras of up to {max_rows} rows",
            describe(cfg),
            n_params(cfg)
        ),
        train_bytes(cfg, max_rows, ema, eras_at_once),
    )
}

/// Refuses prediction with `cfg` on eras of up to `max_rows` rows that would not fit.
pub fn check_predict(cfg: &Config, max_rows: usize) -> Result<()> {
    ensure(
        &format!(
            "predicting with a model of {} on eras of up to {max_rows} rows",
            describe(cfg)
        ),
        predict_bytes(cfg, max_rows),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_sizes() {
        let t = "MemTotal: 100 kB\nMemAvailable:    2048 kB\n";
        assert_eq!(parse_meminfo(t), Some(2048 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
        assert_eq!(human(3), "3 bytes");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(u128::MAX), "> 1024 EiB");
    }

    #[test]
    fn estimates_grow_with_the_config_and_refuse_beyond_the_limit() {
        let small = Config::new(10, 1);
        let mut big = small.clone();
        big.d_model = 65536;
        big.d_ff = 2 * 65536;
        assert!(n_params(&big) > 30_000_000_000);
        assert!(train_bytes(&big, 100, false, 1) > train_bytes(&small, 100, false, 1));
        assert!(ensure_with("x", train_bytes(&small, 100, false, 1), Some(1 << 30)).is_ok());
        let e = ensure_with(
            "train --d-model 65536",
            train_bytes(&big, 100, false, 1),
            Some(1 << 30),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("train --d-model 65536") && e.contains("1.0 GiB"),
            "{e}"
        );
        big.d_ff = 1_000_000_000_000;
        assert!(ensure_with("x", train_bytes(&big, 100, false, 1), None).is_err());
    }
}
