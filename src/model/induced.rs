//! Induced set attention (Set Transformer, Lee et al. 2019; docs/model.md): per layer,
//! M learned inducing points I [M, d] attend over the era's unmasked rows, then every row attends
//! over the M results. Two softmax cross-attentions of n·M pairs replace the n × n one, so a layer
//! costs O(n·M·d).
//!
//! With X the layer input [n, d], m the era's row mask and the layer's attn.q/k/v maps:
//!   H = MHA(Q = I W_iqᵀ + b_iq, K = X W_kᵀ + b_k, V = X W_vᵀ + b_v, key mask m)      [M, d]
//!   A = MHA(Q = X W_qᵀ + b_q, K = H W_ikᵀ + b_ik, V = H W_ivᵀ + b_iv, all M keys)  [n, d]
//! and A goes through attn.o, the residual and norm1 as in the other attentions.

use super::Lin;
use crate::device::Backend;
use crate::params::{ParamId, Params};
use crate::rng::Rng;
use crate::tape::{Tape, T};
use crate::{Error, Result};

/// The layer's extra tensors: the inducing points and the three maps of the induced side.
pub(super) struct InducedLayer {
    pub(super) points: ParamId,
    pub(super) iq: Lin,
    pub(super) ik: Lin,
    pub(super) iv: Lin,
}

/// Name of layer `l`'s inducing points.
pub fn points_name(l: usize) -> String {
    format!("layers.{l}.attn.inducing")
}

/// Appends layer `l`'s tensors in checkpoint order: `layers.{l}.attn.inducing` [M, d], then
/// `layers.{l}.attn.{iq,ik,iv}.{weight [d, d], bias [d]}`.
pub(super) fn param_specs(v: &mut Vec<(String, Vec<usize>)>, l: usize, d: usize, m: usize) {
    v.push((points_name(l), vec![m, d]));
    for x in ["iq", "ik", "iv"] {
        v.push((format!("layers.{l}.attn.{x}.weight"), vec![d, d]));
        v.push((format!("layers.{l}.attn.{x}.bias"), vec![d]));
    }
}

/// Whether `name` is a tensor of inducing points (initialised by [`init_points`]).
pub(super) fn is_points(name: &str) -> bool {
    name.starts_with("layers.") && name.ends_with(".attn.inducing")
}

/// Inducing points [M, d]: N(0, 1)/√d, drawn from the parameter's own Philox stream.
pub(super) fn init_points(rng: &mut Rng, shape: &[usize]) -> Vec<f32> {
    let d = shape.last().copied().unwrap_or(1).max(1);
    let len: usize = shape.iter().product();
    let s = 1.0 / (d as f32).sqrt();
    (0..len).map(|_| s * rng.normal()).collect()
}

/// Binds layer `l`'s tensors by name.
pub(super) fn bind<B: Backend>(params: &Params<B>, l: usize) -> Result<InducedLayer> {
    let id = |n: &str| {
        params
            .id(n)
            .ok_or_else(|| Error::shape(format!("parameter '{n}' is missing")))
    };
    let lin = |x: &str| -> Result<Lin> {
        Ok(Lin {
            w: id(&format!("layers.{l}.attn.{x}.weight"))?,
            b: id(&format!("layers.{l}.attn.{x}.bias"))?,
        })
    };
    Ok(InducedLayer {
        points: id(&points_name(l))?,
        iq: lin("iq")?,
        ik: lin("ik")?,
        iv: lin("iv")?,
    })
}

/// The two cross-attentions of one layer, from the layer's q, k, v [n, d] (already mapped by
/// attn.q/k/v) to A [n, d] (before attn.o). `mask` is the era's row mask [n], `all_m` a constant
/// all-ones key mask [M].
#[allow(clippy::too_many_arguments)]
pub(super) fn attend<B: Backend>(
    dev: &B,
    tape: &mut Tape<B>,
    p: &Params<B>,
    ly: &InducedLayer,
    qkv: [T; 3],
    mask: T,
    all_m: T,
    n: usize,
    m: usize,
    d: usize,
    h: usize,
) -> Result<T> {
    let [q, k, v] = qkv;
    let pts = tape.param(dev, p, ly.points)?;
    let iq = tape.linear(dev, p, pts, ly.iq.w, ly.iq.b, m, d, d)?;
    // step 1: the M points over the era's valid rows
    let hm = tape.cross_attention(dev, iq, k, v, mask, m, n, d, h)?;
    let ik = tape.linear(dev, p, hm, ly.ik.w, ly.ik.b, m, d, d)?;
    let iv = tape.linear(dev, p, hm, ly.iv.w, ly.iv.b, m, d, d)?;
    // step 2: every row over the M results
    tape.cross_attention(dev, q, ik, iv, all_m, n, m, d, h)
}
