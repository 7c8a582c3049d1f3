//! Exponential moving average of the weights (`--ema DECAY`): after every optimizer step
//! `ema ← decay · ema + (1 − decay) · w`, starting from the weights the run starts with. The
//! average is what validation scores and what the best checkpoint holds; training continues from
//! the raw weights.
//!
//! Host-side: the weights are downloaded after each step and averaged in f32 on the CPU. That costs a
//! device-to-host copy of every parameter per step; the GPU gets an in-place kernel later.

use crate::device::Backend;
use crate::params::{HostTensors, Params};
use crate::Result;

#[derive(Clone, Debug, PartialEq)]
pub struct Ema {
    pub decay: f32,
    pub tensors: HostTensors,
}

impl Ema {
    /// An average that starts at `start`.
    pub fn new(decay: f32, start: HostTensors) -> Self {
        Ema {
            decay,
            tensors: start,
        }
    }

    /// One update with the current weights `w` (same names and order).
    pub fn update_host(&mut self, w: &HostTensors) {
        let d = self.decay;
        for ((_, _, e), (_, _, x)) in self.tensors.iter_mut().zip(w) {
            for (e, &x) in e.iter_mut().zip(x) {
                *e = d * *e + (1.0 - d) * x;
            }
        }
    }

    /// One update with the parameters on a device.
    pub fn update<B: Backend>(&mut self, dev: &B, params: &Params<B>) -> Result<()> {
        let w = params.to_host(dev)?;
        self.update_host(&w);
        Ok(())
    }
}
