//! TFT's gated residual network and variable selection network as composites of tape ops
//! (docs/model.md). Used by `model/mod.rs` for `--ffn grn` (each layer's feed-forward
//! block) and `--selection vsn` (the feature selection in place of the gate).
//!
//!   GRN(a, c) = LN(a + Dropout(GLU(W1 ELU(W2 a + b2 + W3 c + b3) + b1)))
//!   GLU(γ) = σ(W4 γ + b4) ⊙ (W5 γ + b5)
//! a: [n, in]; W2 [hid, in], W3 [hid, C] (absent without an era context), W1 [mid, hid],
//! W4, W5 [in, mid]; LN over `in`. b3 is a second bias on the context term (b2 + b3 act as one).
//! (This file names no other file of `model/`, so `model/mod.rs` can use it without a circle.)

use crate::device::Backend;
use crate::ops::elementwise::unary::Unary;
use crate::ops::gate::select::GateSelect;
use crate::ops::vsn::VsnOut;
use crate::params::{ParamId, Params};
use crate::tape::{Tape, T};
use crate::{Error, Result};

/// Dropout key tensor of the GRN replacing layer l's feed-forward block: `GRN_DROPOUT_KEY + l`.
pub const GRN_DROPOUT_KEY: u32 = 0x100;
/// Dropout key tensor of the variable selection network's GRN.
pub const VSN_DROPOUT_KEY: u32 = 0x200;

/// Widths of one GRN: input/output `inp`, hidden `hid`, GLU input `mid`, context `ctx` (0 = none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrnDims {
    pub inp: usize,
    pub hid: usize,
    pub mid: usize,
    pub ctx: usize,
}

/// Parameter names and shapes of a GRN under `prefix` (`w1`…`w5`, weight then bias; w3 only when
/// `dims.ctx > 0`), in checkpoint order: w1, w2, w3, w4, w5. The LayerNorm's parameters are named
/// by the caller.
pub fn grn_specs(prefix: &str, dims: GrnDims) -> Vec<(String, Vec<usize>)> {
    let GrnDims { inp, hid, mid, ctx } = dims;
    let mut v = Vec::new();
    let mut lin = |name: &str, out: usize, k: usize| {
        v.push((format!("{prefix}.{name}.weight"), vec![out, k]));
        v.push((format!("{prefix}.{name}.bias"), vec![out]));
    };
    lin("w1", mid, hid);
    lin("w2", hid, inp);
    if ctx > 0 {
        lin("w3", hid, ctx);
    }
    lin("w4", inp, mid);
    lin("w5", inp, mid);
    v
}

/// The parameter ids of one GRN.
pub struct Grn {
    dims: GrnDims,
    /// (weight, bias) of w1, w2, w4, w5
    w: [(ParamId, ParamId); 4],
    w3: Option<(ParamId, ParamId)>,
    /// LayerNorm (γ, β) over `inp`
    norm: (ParamId, ParamId),
}

impl Grn {
    /// Binds the GRN under `prefix` and the LayerNorm named `norm` (`{norm}.weight`, `.bias`).
    pub fn bind<B: Backend>(
        p: &Params<B>,
        prefix: &str,
        norm: &str,
        dims: GrnDims,
    ) -> Result<Self> {
        let id = |n: String| {
            p.id(&n)
                .ok_or_else(|| Error::shape(format!("parameter '{n}' is missing")))
        };
        let lin = |name: &str| -> Result<(ParamId, ParamId)> {
            Ok((
                id(format!("{prefix}.{name}.weight"))?,
                id(format!("{prefix}.{name}.bias"))?,
            ))
        };
        Ok(Grn {
            dims,
            w: [lin("w1")?, lin("w2")?, lin("w4")?, lin("w5")?],
            w3: if dims.ctx > 0 { Some(lin("w3")?) } else { None },
            norm: (id(format!("{norm}.weight"))?, id(format!("{norm}.bias"))?),
        })
    }

    /// GRN(a, c) over n rows; `c` is the [C] context row (required when the GRN has W3);
    /// `drop` applies the dropout before the residual.
    #[allow(clippy::too_many_arguments)]
    pub fn forward<B: Backend>(
        &self,
        dev: &B,
        tape: &mut Tape<B>,
        p: &Params<B>,
        a: T,
        c: Option<T>,
        n: usize,
        drop: impl FnOnce(&mut Tape<B>, T) -> Result<T>,
    ) -> Result<T> {
        let GrnDims { inp, hid, mid, ctx } = self.dims;
        let [w1, w2, w4, w5] = self.w;
        let mut h = tape.linear(dev, p, a, w2.0, w2.1, n, inp, hid)?;
        match (self.w3, c) {
            (Some(w3), Some(cv)) => {
                let cc = tape.linear(dev, p, cv, w3.0, w3.1, 1, ctx, hid)?;
                h = tape.row_add(dev, h, cc, n, hid)?;
            }
            (Some(_), None) => {
                return Err(Error::shape(
                    "the GRN has a context weight but no era context was given".to_string(),
                ))
            }
            _ => {}
        }
        let e = tape.unary(dev, Unary::Elu, h)?;
        let g = tape.linear(dev, p, e, w1.0, w1.1, n, hid, mid)?;
        let ga = tape.linear(dev, p, g, w4.0, w4.1, n, mid, inp)?;
        let gb = tape.linear(dev, p, g, w5.0, w5.1, n, mid, inp)?;
        let gl = tape.glu(dev, ga, gb, n, inp)?;
        let gl = drop(tape, gl)?;
        let r = tape.add(dev, a, gl)?;
        tape.layer_norm(dev, p, r, self.norm.0, self.norm.1, n, inp)
    }
}

/// Parameter names and shapes of the variable selection network (F features, width d, context C):
/// `vsn.w1`…`vsn.w5` (GRN with in = F, hid = d, mid = d) and `vsn.norm` [F].
pub fn vsn_specs(f: usize, d: usize, ctx: usize) -> Vec<(String, Vec<usize>)> {
    let mut v = grn_specs(
        "vsn",
        GrnDims {
            inp: f,
            hid: d,
            mid: d,
            ctx,
        },
    );
    v.push(("vsn.norm.weight".into(), vec![f]));
    v.push(("vsn.norm.bias".into(), vec![f]));
    v
}

/// The variable selection network: its GRN gives per-row logits over the F features.
pub struct Vsn {
    grn: Grn,
}

impl Vsn {
    pub fn bind<B: Backend>(p: &Params<B>, f: usize, d: usize, ctx: usize) -> Result<Self> {
        let dims = GrnDims {
            inp: f,
            hid: d,
            mid: d,
            ctx,
        };
        Ok(Vsn {
            grn: Grn::bind(p, "vsn", "vsn.norm", dims)?,
        })
    }

    /// v = softmax(GRN(x, c)) per row, then the era-mean weights, the selection and F·v⊙x⊙keep.
    #[allow(clippy::too_many_arguments)]
    pub fn forward<B: Backend>(
        &self,
        dev: &B,
        tape: &mut Tape<B>,
        p: &Params<B>,
        x: T,
        mask: T,
        c: Option<T>,
        select: GateSelect,
        n: usize,
        drop: impl FnOnce(&mut Tape<B>, T) -> Result<T>,
    ) -> Result<VsnOut> {
        let z = self.grn.forward(dev, tape, p, x, c, n, drop)?;
        tape.vsn(dev, z, x, mask, select, n, self.grn.dims.inp)
    }
}
