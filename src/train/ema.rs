//! Exponential moving average of the weights (`--ema DECAY`): after every optimizer step
//! `ema ← decay · ema + (1 − decay) · w`, starting from the weights the run starts with. The
//! average is what validation scores and what the best checkpoint holds; training continues from
//! the raw weights.
//!
//! [`DeviceEma`] keeps the average beside the weights on their device and updates it in place
//! (`Backend::ema_update`: one `ema_fwd_f32` launch per tensor on a GPU, no host round trip); it is
//! read back only to score or save (and to store in the resume state). [`update_slice`] is the
//! definition: the CPU backend runs it, and `ema_fwd_f32` computes exactly it.

use crate::device::Backend;
use crate::params::{HostTensors, Params};
use crate::Result;

/// ema = decay · ema + (1 − decay) · w elementwise, each product and the sum rounded on their own
/// (`ema_fwd_f32` computes exactly this).
pub fn update_slice(ema: &mut [f32], w: &[f32], decay: f32) {
    let keep = 1.0 - decay;
    for (e, &x) in ema.iter_mut().zip(w) {
        *e = decay * *e + keep * x;
    }
}

/// The moving average on the weights' device (module doc).
pub struct DeviceEma<B: Backend> {
    pub decay: f32,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    bufs: Vec<B::Buf>,
}

impl<B: Backend> DeviceEma<B> {
    /// An average that starts at `start` (host tensors in parameter order).
    pub fn new(dev: &B, decay: f32, start: &HostTensors) -> Result<Self> {
        Ok(DeviceEma {
            decay,
            names: start.iter().map(|t| t.0.clone()).collect(),
            shapes: start.iter().map(|t| t.1.clone()).collect(),
            bufs: start
                .iter()
                .map(|t| dev.upload(&t.2))
                .collect::<Result<_>>()?,
        })
    }

    /// One update with the parameters (same order as `start`), in place on the device.
    pub fn update(&mut self, dev: &B, params: &Params<B>) -> Result<()> {
        if params.values.len() != self.bufs.len() {
            return Err(crate::Error::shape(format!(
                "ema: {} averaged tensors, {} parameters",
                self.bufs.len(),
                params.values.len()
            )));
        }
        for (e, w) in self.bufs.iter_mut().zip(&params.values) {
            dev.ema_update(e, w, self.decay)?;
        }
        Ok(())
    }

    /// The average as host tensors (for scoring and saving).
    pub fn to_host(&self, dev: &B) -> Result<HostTensors> {
        self.names
            .iter()
            .zip(&self.shapes)
            .zip(&self.bufs)
            .map(|((n, s), b)| Ok((n.clone(), s.clone(), dev.download(b)?)))
            .collect()
    }
}
