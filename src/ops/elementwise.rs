//! Elementwise ops: GELU (tanh form), ELU+1 (φ of linear attention), residual add, inverted dropout
//! with a Philox4x32-10 mask, sinusoidal positional encoding.

/// Which dropout mask: Philox keyed by seed; counter from step, tensor id and element index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutKey {
    pub seed: u64,
    pub step: u32,
    pub tensor: u32,
}

pub fn gelu_fwd(out: &mut [f32], inp: &[f32]) {
    todo!()
}
pub fn gelu_bwd(dinp: &mut [f32], dout: &[f32], inp: &[f32]) {
    todo!()
}
pub fn elu1_fwd(out: &mut [f32], inp: &[f32]) {
    todo!()
}
pub fn elu1_bwd(dinp: &mut [f32], dout: &[f32], inp: &[f32]) {
    todo!()
}
pub fn add_fwd(out: &mut [f32], a: &[f32], b: &[f32]) {
    todo!()
}
pub fn add_bwd(da: &mut [f32], db: &mut [f32], dout: &[f32]) {
    todo!()
}
/// keep element e iff philox_uniform(key, e) >= p; out = inp / (1 − p) where kept, else 0.
pub fn dropout_fwd(out: &mut [f32], inp: &[f32], p: f32, key: DropoutKey) {
    todo!()
}
pub fn dropout_bwd(dinp: &mut [f32], dout: &[f32], p: f32, key: DropoutKey) {
    todo!()
}
/// h[i, :] += PE(i, :) for the sinusoidal encoding of SPEC §3.
pub fn pos_enc_add(h: &mut [f32], n: usize, d: usize) {
    todo!()
}
