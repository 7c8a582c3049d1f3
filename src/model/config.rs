//! Model configuration (SPEC §3 defaults) and its JSON form in checkpoints (SPEC §4).

use crate::{Error, Result};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attention {
    Linear,
    Softmax,
    /// Induced set attention (Set Transformer): `inducing` learned points attend over the era's
    /// rows, then every row attends over them (docs/model.md)
    Induced,
}

impl Attention {
    pub fn as_str(&self) -> &'static str {
        match self {
            Attention::Linear => "linear",
            Attention::Softmax => "softmax",
            Attention::Induced => "induced",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "linear" => Ok(Attention::Linear),
            "softmax" => Ok(Attention::Softmax),
            "induced" => Ok(Attention::Induced),
            other => Err(Error::usage(format!(
                "attention must be 'linear', 'softmax' or 'induced', got '{other}'"
            ))),
        }
    }
}

/// The feed-forward block of each layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ffn {
    /// SPEC §3: LN(h + W₂ GELU(W₁ h + b₁) + b₂)
    Gelu,
    /// TFT gated residual network with the era context as its covariate (docs/model.md)
    Grn,
}

impl Ffn {
    pub fn as_str(&self) -> &'static str {
        match self {
            Ffn::Gelu => "gelu",
            Ffn::Grn => "grn",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "gelu" => Ok(Ffn::Gelu),
            "grn" => Ok(Ffn::Grn),
            other => Err(Error::usage(format!(
                "ffn must be 'gelu' or 'grn', got '{other}'"
            ))),
        }
    }
}

/// How the model weighs its input features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// SPEC §3: the era-dependent sigmoid feature gate
    Gate,
    /// TFT variable selection network: per-row softmax weights over the features (docs/model.md)
    Vsn,
}

impl Selection {
    pub fn as_str(&self) -> &'static str {
        match self {
            Selection::Gate => "gate",
            Selection::Vsn => "vsn",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "gate" => Ok(Selection::Gate),
            "vsn" => Ok(Selection::Vsn),
            other => Err(Error::usage(format!(
                "selection must be 'gate' or 'vsn', got '{other}'"
            ))),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub n_features: usize,
    pub n_targets: usize,
    pub d_model: usize,
    pub heads: usize,
    pub layers: usize,
    pub d_ff: usize,
    pub gate_rank: usize,
    pub threshold: f32,
    pub top_k: Option<usize>,
    pub dropout: f32,
    pub pos_enc: bool,
    pub attention: Attention,
    pub lambda_sparsity: f32,
    pub eps_attention: f32,
    pub eps_layer_norm: f32,
    /// Weight w of the per-era correlation loss term w · (1 − corr) (docs/model.md; 0 = off)
    pub corr_weight: f32,
    /// Width C of the era context that modulates every layer through FiLM (docs/model.md; 0 = off)
    pub context_dim: usize,
    /// Standard deviation of the noise added to the standardised era statistics in training
    pub context_noise: f32,
    /// Feed-forward block: SPEC's GELU MLP or a gated residual network (docs/model.md)
    pub ffn: Ffn,
    /// Feature selection: SPEC's gate or a variable selection network (docs/model.md)
    pub selection: Selection,
    /// Inducing points M of induced set attention (used with `Attention::Induced` only)
    pub inducing: usize,
    /// Weight μ of the orthogonal-embedding loss on the final hidden states (docs/model.md; 0 = off)
    pub ortho_weight: f32,
}

/// An f32 as the f64 with the same shortest decimal form (0.1, not 0.10000000149011612).
fn short(x: f32) -> f64 {
    format!("{x}").parse().unwrap_or(x as f64)
}

/// `--min-epochs` of the recommended preset (docs/defaults.md round 13): every measured member
/// whose validation corr peaked before epoch 7 scored better on later eras when made to keep a
/// later epoch (by up to 0.06 corr); a floor of 8 moved members that peaked at 7 either way.
pub const MIN_EPOCHS_RECOMMENDED: usize = 7;

/// Named starting configs for `train` (`--preset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// What measurement chose (docs/defaults.md): the base model without dropout, trained with the
    /// per-era correlation loss, with an 8-wide era context modulating every layer (FiLM).
    Recommended,
    /// SPEC §3 exactly (dropout 0.1, MSE + sparsity, no era context).
    Spec,
}

impl Preset {
    /// The weights' moving-average decay `train` uses unless `--ema` says otherwise
    /// (docs/defaults.md round 9).
    pub fn ema(self) -> f32 {
        match self {
            Preset::Recommended => 0.995,
            Preset::Spec => 0.0,
        }
    }

    /// The share of each training era's rows every epoch trains on unless `--row-sample` says
    /// otherwise (docs/defaults.md round 12; 1 = every row).
    pub fn row_sample(self) -> f32 {
        match self {
            Preset::Recommended => 0.5,
            Preset::Spec => 1.0,
        }
    }

    /// The earliest epoch early stopping may keep unless `--min-epochs` says otherwise
    /// (docs/defaults.md round 13; 1 = any epoch).
    pub fn min_epochs(self) -> usize {
        match self {
            Preset::Recommended => MIN_EPOCHS_RECOMMENDED,
            Preset::Spec => 1,
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "recommended" => Ok(Preset::Recommended),
            "spec" => Ok(Preset::Spec),
            other => Err(Error::usage(format!(
                "--preset must be 'recommended' or 'spec', got '{other}'"
            ))),
        }
    }

    pub fn config(self, n_features: usize, n_targets: usize) -> Config {
        match self {
            Preset::Recommended => Config::recommended(n_features, n_targets),
            Preset::Spec => Config::new(n_features, n_targets),
        }
    }
}

impl Config {
    /// The defaults measurement chose (docs/defaults.md, the table there): SPEC §3 with dropout 0,
    /// the correlation loss at weight 1 and an era context of width 8 with noise 0.5.
    pub fn recommended(n_features: usize, n_targets: usize) -> Self {
        Config {
            dropout: 0.0,
            corr_weight: 1.0,
            context_dim: 8,
            context_noise: 0.5,
            ..Config::new(n_features, n_targets)
        }
    }

    /// SPEC §3 defaults for a store with `n_features` features and `n_targets` targets.
    pub fn new(n_features: usize, n_targets: usize) -> Self {
        Config {
            n_features,
            n_targets,
            d_model: 64,
            heads: 4,
            layers: 2,
            d_ff: 128,
            gate_rank: 8,
            threshold: 0.0,
            top_k: None,
            dropout: 0.1,
            pos_enc: false,
            attention: Attention::Linear,
            lambda_sparsity: 1e-3,
            eps_attention: crate::ops::attention::ATTN_EPS,
            eps_layer_norm: crate::ops::layer_norm::LN_EPS,
            corr_weight: 0.0,
            context_dim: 0,
            context_noise: 0.0,
            ffn: Ffn::Gelu,
            selection: Selection::Gate,
            inducing: 32,
            ortho_weight: 0.0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::usage(m));
        if self.n_features == 0 {
            return bad("the model needs at least one feature".into());
        }
        if self.n_targets == 0 {
            return bad("the model needs at least one target".into());
        }
        if self.d_model == 0 || self.heads == 0 || !self.d_model.is_multiple_of(self.heads) {
            return bad(format!(
                "d_model ({}) must be a positive multiple of heads ({})",
                self.d_model, self.heads
            ));
        }
        if self.d_ff == 0 {
            return bad("d_ff must be positive".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return bad(format!(
                "threshold must be in [0, 1], got {}",
                self.threshold
            ));
        }
        if let Some(k) = self.top_k {
            if k == 0 || k > self.n_features {
                return bad(format!(
                    "top-k must be in 1..={} (the feature count), got {k}",
                    self.n_features
                ));
            }
        }
        if !self.lambda_sparsity.is_finite() || self.lambda_sparsity < 0.0 {
            return bad(format!("lambda must be >= 0, got {}", self.lambda_sparsity));
        }
        if !self.corr_weight.is_finite() || self.corr_weight < 0.0 {
            return bad(format!(
                "corr weight must be >= 0, got {}",
                self.corr_weight
            ));
        }
        if !self.context_noise.is_finite() || self.context_noise < 0.0 {
            return bad(format!(
                "context noise must be >= 0, got {}",
                self.context_noise
            ));
        }
        if self.attention == Attention::Induced && self.inducing == 0 {
            return bad("induced attention needs at least one inducing point".into());
        }
        if !self.ortho_weight.is_finite() || self.ortho_weight < 0.0 {
            return bad(format!(
                "ortho weight must be >= 0, got {}",
                self.ortho_weight
            ));
        }
        if (self.eps_attention - crate::ops::attention::ATTN_EPS).abs() > 0.0
            || (self.eps_layer_norm - crate::ops::layer_norm::LN_EPS).abs() > 0.0
        {
            return bad(format!(
                "this build supports eps_attention {} and eps_layer_norm {} only",
                crate::ops::attention::ATTN_EPS,
                crate::ops::layer_norm::LN_EPS
            ));
        }
        Ok(())
    }

    pub fn to_json(&self) -> Value {
        json!({
            "n_features": self.n_features,
            "n_targets": self.n_targets,
            "d_model": self.d_model,
            "heads": self.heads,
            "layers": self.layers,
            "d_ff": self.d_ff,
            "gate_rank": self.gate_rank,
            "threshold": short(self.threshold),
            "top_k": self.top_k,
            "dropout": short(self.dropout),
            "pos_enc": self.pos_enc,
            "attention": self.attention.as_str(),
            "lambda_sparsity": short(self.lambda_sparsity),
            "eps_attention": short(self.eps_attention),
            "eps_layer_norm": short(self.eps_layer_norm),
            "corr_weight": short(self.corr_weight),
            "context_dim": self.context_dim,
            "context_noise": short(self.context_noise),
            "ffn": self.ffn.as_str(),
            "selection": self.selection.as_str(),
            "inducing": self.inducing,
            "ortho_weight": short(self.ortho_weight),
        })
    }

    /// Parse the checkpoint's `config` object; `ctx` names the file for errors.
    pub fn from_json(v: &Value, ctx: &std::path::Path) -> Result<Self> {
        let place = "__metadata__.config";
        let err = |m: String| Error::format(ctx, place, m);
        let obj = v
            .as_object()
            .ok_or_else(|| err("is not a JSON object".into()))?;
        let uint = |k: &str| -> Result<usize> {
            obj.get(k)
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| err(format!("key '{k}' missing or not a non-negative integer")))
        };
        let float = |k: &str| -> Result<f32> {
            obj.get(k)
                .and_then(Value::as_f64)
                .map(|x| x as f32)
                .ok_or_else(|| err(format!("key '{k}' missing or not a number")))
        };
        let opt_float = |k: &str, default: f32| -> Result<f32> {
            match obj.get(k) {
                None => Ok(default),
                Some(v) => v
                    .as_f64()
                    .map(|x| x as f32)
                    .ok_or_else(|| err(format!("key '{k}' is not a number"))),
            }
        };
        let opt_uint = |k: &str, default: usize| -> Result<usize> {
            match obj.get(k) {
                None => Ok(default),
                Some(v) => v
                    .as_u64()
                    .map(|x| x as usize)
                    .ok_or_else(|| err(format!("key '{k}' is not a non-negative integer"))),
            }
        };
        let top_k = match obj.get("top_k") {
            None | Some(Value::Null) => None,
            Some(x) => Some(
                x.as_u64()
                    .ok_or_else(|| err("key 'top_k' must be null or an integer".into()))?
                    as usize,
            ),
        };
        let pos_enc = obj
            .get("pos_enc")
            .and_then(Value::as_bool)
            .ok_or_else(|| err("key 'pos_enc' missing or not a bool".into()))?;
        let attention = obj
            .get("attention")
            .and_then(Value::as_str)
            .ok_or_else(|| err("key 'attention' missing or not a string".into()))?;
        let opt_text = |k: &str, default: &'static str| -> Result<String> {
            match obj.get(k) {
                None => Ok(default.to_string()),
                Some(v) => v
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| err(format!("key '{k}' is not a string"))),
            }
        };
        let cfg = Config {
            n_features: uint("n_features")?,
            n_targets: uint("n_targets")?,
            d_model: uint("d_model")?,
            heads: uint("heads")?,
            layers: uint("layers")?,
            d_ff: uint("d_ff")?,
            gate_rank: uint("gate_rank")?,
            threshold: float("threshold")?,
            top_k,
            dropout: float("dropout")?,
            pos_enc,
            attention: Attention::parse(attention).map_err(|e| err(e.to_string()))?,
            lambda_sparsity: float("lambda_sparsity")?,
            eps_attention: float("eps_attention")?,
            eps_layer_norm: float("eps_layer_norm")?,
            // keys added after format_version 1's first release: absent means the base model
            corr_weight: opt_float("corr_weight", 0.0)?,
            context_dim: opt_uint("context_dim", 0)?,
            context_noise: opt_float("context_noise", 0.0)?,
            ffn: Ffn::parse(&opt_text("ffn", "gelu")?).map_err(|e| err(e.to_string()))?,
            selection: Selection::parse(&opt_text("selection", "gate")?)
                .map_err(|e| err(e.to_string()))?,
            inducing: opt_uint("inducing", 32)?,
            ortho_weight: opt_float("ortho_weight", 0.0)?,
        };
        cfg.validate().map_err(|e| err(e.to_string()))?;
        Ok(cfg)
    }
}
