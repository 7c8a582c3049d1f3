//! The EraTransformer of SPEC §3, built from ops on the tape. Reads like the spec:
//! gate → mapper → (pos enc) → L × [MHLA, add, LN, dropout, FFN, add, LN, dropout] → head.

pub mod config;
pub mod grn;
pub mod induced;

pub use config::{Attention, Config, Ffn, Preset, Selection};

use self::grn::{Grn, GrnDims, Vsn, GRN_DROPOUT_KEY, VSN_DROPOUT_KEY};
use crate::device::Backend;
use crate::ops::elementwise::DropoutKey;
use crate::ops::gate::GateSelect;
use crate::params::{ParamId, Params};
use crate::rng::Rng;
use crate::tape::{Tape, T};
use crate::{Error, Result};

/// Parameter names and shapes in checkpoint order (SPEC §4).
pub fn param_specs(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let (f, d, dff, r, t) = (
        cfg.n_features,
        cfg.d_model,
        cfg.d_ff,
        cfg.gate_rank,
        cfg.n_targets,
    );
    let mut v: Vec<(String, Vec<usize>)> = Vec::new();
    match cfg.selection {
        Selection::Gate => {
            v.push(("gate.w".into(), vec![f]));
            if r > 0 {
                v.push(("gate.a".into(), vec![f, r]));
                v.push(("gate.b".into(), vec![f, r]));
            }
        }
        // docs/model.md
        Selection::Vsn => v.extend(grn::vsn_specs(f, d, cfg.context_dim)),
    }
    let lin = |v: &mut Vec<(String, Vec<usize>)>, name: String, out: usize, inp: usize| {
        v.push((format!("{name}.weight"), vec![out, inp]));
        v.push((format!("{name}.bias"), vec![out]));
    };
    lin(&mut v, "mapper.0".into(), d, f);
    lin(&mut v, "mapper.1".into(), d, d);
    for l in 0..cfg.layers {
        for x in ["q", "k", "v", "o"] {
            lin(&mut v, format!("layers.{l}.attn.{x}"), d, d);
        }
        if cfg.attention == Attention::Induced {
            induced::param_specs(&mut v, l, d, cfg.inducing);
        }
        v.push((format!("layers.{l}.norm1.weight"), vec![d]));
        v.push((format!("layers.{l}.norm1.bias"), vec![d]));
        match cfg.ffn {
            Ffn::Gelu => {
                lin(&mut v, format!("layers.{l}.ffn.0"), dff, d);
                lin(&mut v, format!("layers.{l}.ffn.1"), d, dff);
            }
            Ffn::Grn => v.extend(grn::grn_specs(
                &format!("layers.{l}.grn"),
                ffn_grn_dims(cfg),
            )),
        }
        v.push((format!("layers.{l}.norm2.weight"), vec![d]));
        v.push((format!("layers.{l}.norm2.bias"), vec![d]));
        if cfg.context_dim > 0 {
            lin(&mut v, format!("layers.{l}.film.gamma"), d, cfg.context_dim);
            lin(&mut v, format!("layers.{l}.film.beta"), d, cfg.context_dim);
        }
    }
    if cfg.context_dim > 0 {
        lin(&mut v, "context.proj".into(), cfg.context_dim, 2 * f);
    }
    lin(&mut v, "head.0".into(), d, d);
    lin(&mut v, "head.1".into(), t, d);
    v
}

/// The tensors of masked-feature pretraining (docs/model.md), kept in a pretrained
/// checkpoint after the model's: the mask value [F] and the reconstruction head d → d → F.
pub fn pretrain_specs(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let (f, d) = (cfg.n_features, cfg.d_model);
    vec![
        ("pretrain.mask_value".into(), vec![f]),
        ("pretrain.head.0.weight".into(), vec![d, d]),
        ("pretrain.head.0.bias".into(), vec![d]),
        ("pretrain.head.1.weight".into(), vec![f, d]),
        ("pretrain.head.1.bias".into(), vec![f]),
    ]
}

/// Widths of the GRN that replaces a layer's feed-forward block (docs/model.md).
fn ffn_grn_dims(cfg: &Config) -> GrnDims {
    GrnDims {
        inp: cfg.d_model,
        hid: cfg.d_ff,
        mid: cfg.d_model,
        ctx: cfg.context_dim,
    }
}

/// Tensors a checkpoint holds besides the parameters, never trained: the era context's
/// standardisation (docs/model.md), written by the trainer, not by `init_params`.
pub fn buffer_specs(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    if cfg.context_dim == 0 {
        return Vec::new();
    }
    vec![
        ("context.mean".to_string(), vec![2 * cfg.n_features]),
        ("context.std".to_string(), vec![2 * cfg.n_features]),
    ]
}

/// Deterministic initialisation from the seed (SPEC §3): linear weights and biases
/// U(−1/√fan_in, 1/√fan_in), LN γ = 1, β = 0, gate w = 2, A ~ N(0, 0.01²), B = 0. Parameter i
/// draws from its own Philox stream i.
pub fn init_params(cfg: &Config, seed: u64) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let specs = param_specs(cfg);
    specs
        .iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let len: usize = shape.iter().product();
            let mut rng = Rng::new(seed, i as u32);
            let data: Vec<f32> = if induced::is_points(name) {
                induced::init_points(&mut rng, shape)
            } else if name == "gate.w" {
                vec![2.0; len]
            } else if name == "gate.a" {
                (0..len).map(|_| 0.01 * rng.normal()).collect()
            } else if name == "gate.b"
                || name.contains(".film.")
                || (name.contains("norm") && name.ends_with(".bias"))
            {
                // FiLM starts as the identity (docs/model.md)
                vec![0.0; len]
            } else if name.contains("norm") {
                vec![1.0; len]
            } else {
                // Linear weight [out, in] or bias [out]: fan_in is the weight's input width.
                let fan_in = if name.ends_with(".weight") {
                    shape[1]
                } else {
                    let wname = name.trim_end_matches(".bias").to_string() + ".weight";
                    specs
                        .iter()
                        .find(|(n, _)| *n == wname)
                        .map(|(_, s)| s[1])
                        .unwrap_or(1)
                };
                let bound = 1.0 / (fan_in as f32).sqrt();
                (0..len).map(|_| rng.uniform(-bound, bound)).collect()
            };
            (name.clone(), shape.clone(), data)
        })
        .collect()
}

struct Lin {
    w: ParamId,
    b: ParamId,
}

struct Layer {
    q: Lin,
    k: Lin,
    v: Lin,
    o: Lin,
    norm1: Lin,
    /// `--ffn gelu`: ffn.0, ffn.1 and norm2
    ffn: Option<(Lin, Lin, Lin)>,
    /// `--ffn grn`: the GRN (its LayerNorm is norm2)
    grn: Option<Grn>,
    /// FiLM (γ, β) maps from the era context, when the config has one
    film: Option<(Lin, Lin)>,
    /// The inducing points and their maps, with induced attention
    induced: Option<induced::InducedLayer>,
}

/// The model: its config and the ids of its parameters in a [`Params`] store.
pub struct EraTransformer {
    pub cfg: Config,
    /// the gate's w (`--selection gate`)
    gate_w: Option<ParamId>,
    gate_ab: Option<(ParamId, ParamId)>,
    /// `--selection vsn`
    vsn: Option<Vsn>,
    mapper0: Lin,
    mapper1: Lin,
    layers: Vec<Layer>,
    head0: Lin,
    head1: Lin,
    context: Option<Lin>,
}

/// The era as tape tensors: preprocessed features [n, F], row mask [n], targets [n, T] (NaN = missing).
pub struct EraInputs {
    pub x: T,
    /// x as its era codes packed four to a word (src/ops/codes), on a device whose weight
    /// gradients read codes (`Backend::linear_bwd_reads_codes`: the CPU) when the era has them: the
    /// gated mapper's weight gradient reads these instead of x, a quarter of the bytes for the
    /// same bits
    pub codes: Option<T>,
    pub mask: T,
    pub y: T,
    pub n: usize,
    /// [2F] standardised era statistics (docs/model.md), when the model has an era context
    pub ctx: Option<T>,
    /// [F] x's column sums over the real rows, when the era loader computed them
    /// (`EraBatch::col_sums`): the gate's x̄ without another pass over x
    pub col_sums: Option<Vec<f64>>,
}

/// What a forward pass produced.
pub struct Outputs {
    /// [n, T] predictions, one column per target
    pub yhat: T,
    /// [F] gate values (`--selection vsn`: the era-mean selection weights m)
    pub g: T,
    /// [F] what the loss's sparsity term averages: `g` for the gate; for VSN the vector s whose
    /// mean is the normalised entropy of m (docs/model.md)
    pub sparsity: T,
    /// [F] 1.0 where the feature was selected
    pub keep: T,
    /// [n, d] the final hidden state (the input of head.0)
    pub hidden: T,
}

/// Dropout is on when this is given: the seed and step key the Philox masks.
#[derive(Clone, Copy, Debug)]
pub struct TrainCtx {
    pub seed: u64,
    pub step: u32,
}

impl EraTransformer {
    /// Binds a config to a parameter store, checking that every tensor exists with its shape.
    pub fn new<B: Backend>(cfg: Config, params: &Params<B>) -> Result<Self> {
        cfg.validate()?;
        for (name, shape) in param_specs(&cfg) {
            let id = params
                .id(&name)
                .ok_or_else(|| Error::shape(format!("parameter '{name}' is missing")))?;
            if params.shapes[id.0] != shape {
                return Err(Error::shape(format!(
                    "parameter '{name}' has shape {:?}, the config needs {:?}",
                    params.shapes[id.0], shape
                )));
            }
        }
        let id = |n: &str| {
            params
                .id(n)
                .ok_or_else(|| Error::shape(format!("parameter '{n}' is missing")))
        };
        let lin = |n: &str| -> Result<Lin> {
            Ok(Lin {
                w: id(&format!("{n}.weight"))?,
                b: id(&format!("{n}.bias"))?,
            })
        };
        let mut layers = Vec::new();
        for l in 0..cfg.layers {
            layers.push(Layer {
                q: lin(&format!("layers.{l}.attn.q"))?,
                k: lin(&format!("layers.{l}.attn.k"))?,
                v: lin(&format!("layers.{l}.attn.v"))?,
                o: lin(&format!("layers.{l}.attn.o"))?,
                norm1: lin(&format!("layers.{l}.norm1"))?,
                ffn: match cfg.ffn {
                    Ffn::Gelu => Some((
                        lin(&format!("layers.{l}.ffn.0"))?,
                        lin(&format!("layers.{l}.ffn.1"))?,
                        lin(&format!("layers.{l}.norm2"))?,
                    )),
                    Ffn::Grn => None,
                },
                grn: match cfg.ffn {
                    Ffn::Grn => Some(Grn::bind(
                        params,
                        &format!("layers.{l}.grn"),
                        &format!("layers.{l}.norm2"),
                        ffn_grn_dims(&cfg),
                    )?),
                    Ffn::Gelu => None,
                },
                film: if cfg.context_dim > 0 {
                    Some((
                        lin(&format!("layers.{l}.film.gamma"))?,
                        lin(&format!("layers.{l}.film.beta"))?,
                    ))
                } else {
                    None
                },
                induced: if cfg.attention == Attention::Induced {
                    Some(induced::bind(params, l)?)
                } else {
                    None
                },
            });
        }
        let gate = cfg.selection == Selection::Gate;
        let gate_ab = if gate && cfg.gate_rank > 0 {
            Some((id("gate.a")?, id("gate.b")?))
        } else {
            None
        };
        Ok(EraTransformer {
            gate_w: if gate { Some(id("gate.w")?) } else { None },
            gate_ab,
            vsn: match cfg.selection {
                Selection::Vsn => Some(Vsn::bind(
                    params,
                    cfg.n_features,
                    cfg.d_model,
                    cfg.context_dim,
                )?),
                Selection::Gate => None,
            },
            mapper0: lin("mapper.0")?,
            mapper1: lin("mapper.1")?,
            layers,
            head0: lin("head.0")?,
            head1: lin("head.1")?,
            context: if cfg.context_dim > 0 {
                Some(lin("context.proj")?)
            } else {
                None
            },
            cfg,
        })
    }

    pub fn select(&self) -> GateSelect {
        match self.cfg.top_k {
            Some(k) => GateSelect::TopK(k),
            None => GateSelect::Threshold(self.cfg.threshold),
        }
    }

    /// Records the forward pass of one era (or a padded batch slot) on the tape.
    pub fn forward<B: Backend>(
        &self,
        dev: &B,
        tape: &mut Tape<B>,
        p: &Params<B>,
        era: &EraInputs,
        train: Option<TrainCtx>,
    ) -> Result<Outputs> {
        let enc = self.encode(dev, tape, p, era, train, None)?;
        let (n, d) = (era.n, self.cfg.d_model);
        let o0 = tape.linear(dev, p, enc.hidden, self.head0.w, self.head0.b, n, d, d)?;
        let o1 = tape.gelu(dev, o0)?;
        let yhat = tape.linear(
            dev,
            p,
            o1,
            self.head1.w,
            self.head1.b,
            n,
            d,
            self.cfg.n_targets,
        )?;
        Ok(Outputs { yhat, ..enc })
    }

    /// The encoder: the forward pass up to the final hidden state (gate → mapper → layers);
    /// `yhat` of the result is the hidden state itself (no head ran). `fill` = (fill [n, F], mask
    /// value parameter [F]) replaces the masked entries of the gated input by the mask value
    /// (pretraining, docs/model.md).
    pub fn encode<B: Backend>(
        &self,
        dev: &B,
        tape: &mut Tape<B>,
        p: &Params<B>,
        era: &EraInputs,
        train: Option<TrainCtx>,
        fill: Option<(T, ParamId)>,
    ) -> Result<Outputs> {
        let c = &self.cfg;
        let (n, f, d, h) = (era.n, c.n_features, c.d_model, c.heads);
        let drop = |tape: &mut Tape<B>, x: T, tensor: u32| -> Result<T> {
            match train {
                Some(ctx) if c.dropout > 0.0 => tape.dropout(
                    dev,
                    x,
                    c.dropout,
                    DropoutKey {
                        seed: ctx.seed,
                        step: ctx.step,
                        tensor,
                    },
                ),
                _ => Ok(x),
            }
        };
        // Era context: c = W_c s̃ + b_c, one row (docs/model.md).
        let ctx = match (&self.context, era.ctx) {
            (Some(cl), Some(s)) => {
                Some(tape.linear(dev, p, s, cl.w, cl.b, 1, 2 * f, c.context_dim)?)
            }
            (Some(_), None) => {
                return Err(Error::shape(
                    "the model has an era context but the era came without its statistics"
                        .to_string(),
                ))
            }
            _ => None,
        };
        // induced attention: every one of the M results is a valid key
        let all_m = match c.attention {
            Attention::Induced => Some(tape.input(dev, &vec![1.0; c.inducing])?),
            _ => None,
        };
        // The sigmoid gate without pretraining's fill: s = g ⊙ keep is folded into the mapper's
        // first weight, h₀ = x (W₀ ⊙ s)ᵀ + b₀ (src/ops/col_scale), the same map without x̃.
        let (h0, g, keep, sparsity) =
            if let (None, Some(gate_w), None) = (&self.vsn, self.gate_w, &fill) {
                let (g, keep) = tape.gate_select(
                    dev,
                    p,
                    era.x,
                    era.mask,
                    era.col_sums.as_deref(),
                    gate_w,
                    self.gate_ab,
                    self.select(),
                    n,
                    f,
                    c.gate_rank,
                )?;
                let h0 = tape.gated_linear(
                    dev,
                    p,
                    (era.x, era.codes),
                    (g, keep),
                    (self.mapper0.w, self.mapper0.b),
                    n,
                    f,
                    d,
                )?;
                (h0, g, keep, g)
            } else {
                let (xt, g, keep, sparsity) = match (&self.vsn, self.gate_w) {
                    // Variable selection network (docs/model.md)
                    (Some(vsn), _) => {
                        let o = vsn.forward(
                            dev,
                            tape,
                            p,
                            era.x,
                            era.mask,
                            ctx,
                            self.select(),
                            n,
                            |t, x| drop(t, x, VSN_DROPOUT_KEY),
                        )?;
                        (o.xt, o.m, o.keep, o.s)
                    }
                    // Feature gate: x̃ = x ⊙ s.
                    (None, Some(gate_w)) => {
                        let (xt, g, keep) = tape.gate(
                            dev,
                            p,
                            era.x,
                            era.mask,
                            gate_w,
                            self.gate_ab,
                            self.select(),
                            n,
                            f,
                            c.gate_rank,
                        )?;
                        (xt, g, keep, g)
                    }
                    (None, None) => {
                        return Err(Error::device(
                            "the model has no feature selection".to_string(),
                        ))
                    }
                };
                // Pretraining: the masked entries of the selected input take the learned mask value.
                let xt = match fill {
                    Some((m, mv)) => tape.mask_fill(dev, p, xt, m, mv, n, f)?,
                    None => xt,
                };
                // Mapper: two linear maps, no activation between them.
                let h0 = tape.linear(dev, p, xt, self.mapper0.w, self.mapper0.b, n, f, d)?;
                (h0, g, keep, sparsity)
            };
        let mut hs = tape.linear(dev, p, h0, self.mapper1.w, self.mapper1.b, n, d, d)?;
        if c.pos_enc {
            tape.pos_enc_add(dev, hs, n, d)?;
        }
        for (l, ly) in self.layers.iter().enumerate() {
            let q = tape.linear(dev, p, hs, ly.q.w, ly.q.b, n, d, d)?;
            let k = tape.linear(dev, p, hs, ly.k.w, ly.k.b, n, d, d)?;
            let v = tape.linear(dev, p, hs, ly.v.w, ly.v.b, n, d, d)?;
            let att = match (c.attention, &ly.induced, all_m) {
                (Attention::Linear, _, _) => {
                    tape.linear_attention(dev, q, k, v, era.mask, n, d, h)?
                }
                (Attention::Softmax, _, _) => {
                    tape.softmax_attention(dev, q, k, v, era.mask, n, d, h)?
                }
                (Attention::Induced, Some(il), Some(ones)) => induced::attend(
                    dev,
                    tape,
                    p,
                    il,
                    [q, k, v],
                    era.mask,
                    ones,
                    n,
                    c.inducing,
                    d,
                    h,
                )?,
                (Attention::Induced, _, _) => {
                    return Err(Error::shape(
                        "induced attention without its inducing points".to_string(),
                    ))
                }
            };
            let a = tape.linear(dev, p, att, ly.o.w, ly.o.b, n, d, d)?;
            let r1 = tape.add(dev, hs, a)?;
            let n1 = tape.layer_norm(dev, p, r1, ly.norm1.w, ly.norm1.b, n, d)?;
            let h1 = drop(tape, n1, 2 * l as u32)?;
            let mut n2 = match (&ly.ffn, &ly.grn) {
                (Some((ffn0, ffn1, norm2)), _) => {
                    let f0 = tape.linear(dev, p, h1, ffn0.w, ffn0.b, n, d, c.d_ff)?;
                    let f1 = tape.gelu(dev, f0)?;
                    let f2 = tape.linear(dev, p, f1, ffn1.w, ffn1.b, n, c.d_ff, d)?;
                    let r2 = tape.add(dev, h1, f2)?;
                    tape.layer_norm(dev, p, r2, norm2.w, norm2.b, n, d)?
                }
                // GRN(h1, c) in place of the block (docs/model.md)
                (None, Some(grn)) => grn.forward(dev, tape, p, h1, ctx, n, |t, x| {
                    drop(t, x, GRN_DROPOUT_KEY + l as u32)
                })?,
                (None, None) => {
                    return Err(Error::device(
                        "a layer without a feed-forward block".to_string(),
                    ))
                }
            };
            if let (Some((gl, bl)), Some(cv)) = (&ly.film, ctx) {
                let cd = c.context_dim;
                let gamma = tape.linear(dev, p, cv, gl.w, gl.b, 1, cd, d)?;
                let beta = tape.linear(dev, p, cv, bl.w, bl.b, 1, cd, d)?;
                n2 = tape.film(dev, n2, gamma, beta, n, d)?;
            }
            hs = drop(tape, n2, 2 * l as u32 + 1)?;
        }
        Ok(Outputs {
            yhat: hs,
            g,
            sparsity,
            keep,
            hidden: hs,
        })
    }
}
