//! The named parameter store: values, gradients and Adam moments, one buffer per named tensor,
//! in a fixed order (so zeroing, Adam, clipping and checkpointing are each one loop).

use crate::device::Backend;
use crate::ops::optim::AdamArgs;
use crate::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamId(pub usize);

/// Tensors on the host: (name, shape, values).
pub type HostTensors = Vec<(String, Vec<usize>, Vec<f32>)>;

pub struct Params<B: Backend> {
    pub names: Vec<String>,
    pub shapes: Vec<Vec<usize>>,
    pub values: Vec<B::Buf>,
    pub grads: Vec<B::Buf>,
}

impl<B: Backend> Params<B> {
    /// Upload host tensors (name, shape, values) in order.
    pub fn from_host(dev: &B, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<Self> {
        let mut p = Params {
            names: Vec::new(),
            shapes: Vec::new(),
            values: Vec::new(),
            grads: Vec::new(),
        };
        for (name, shape, data) in tensors {
            p.names.push(name.clone());
            p.shapes.push(shape.clone());
            p.values.push(dev.upload(data)?);
            p.grads.push(dev.zeros(data.len())?);
        }
        Ok(p)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn id(&self, name: &str) -> Option<ParamId> {
        self.names.iter().position(|n| n == name).map(ParamId)
    }

    /// Total number of scalars.
    pub fn numel(&self) -> usize {
        self.shapes
            .iter()
            .map(|s| s.iter().product::<usize>())
            .sum()
    }

    pub fn zero_grads(&mut self, dev: &B) -> Result<()> {
        for g in &mut self.grads {
            dev.fill_zero(g)?;
        }
        Ok(())
    }

    pub fn to_host(&self, dev: &B) -> Result<HostTensors> {
        self.grads_or_values(dev, false)
    }

    pub fn grads_to_host(&self, dev: &B) -> Result<HostTensors> {
        self.grads_or_values(dev, true)
    }

    fn grads_or_values(&self, dev: &B, grads: bool) -> Result<HostTensors> {
        let src = if grads { &self.grads } else { &self.values };
        self.names
            .iter()
            .zip(&self.shapes)
            .zip(src)
            .map(|((n, s), b)| Ok((n.clone(), s.clone(), dev.download(b)?)))
            .collect()
    }
}

/// Adam / AdamW moments for every parameter, and the step count.
pub struct Adam<B: Backend> {
    pub m: Vec<B::Buf>,
    pub v: Vec<B::Buf>,
    pub step: u32,
    pub lr: f32,
    pub weight_decay: f32,
    /// every gradient's Σg² of the last clipped step, where the backend keeps them on the device
    sums: Option<B::Buf>,
    /// the step whose `sums` have not been checked on the host yet
    pending: Option<u64>,
}

impl<B: Backend> Adam<B> {
    pub fn new(dev: &B, params: &Params<B>, lr: f32, weight_decay: f32) -> Result<Self> {
        let mut m = Vec::new();
        let mut v = Vec::new();
        for p in &params.values {
            m.push(dev.zeros(dev.len(p))?);
            v.push(dev.zeros(dev.len(p))?);
        }
        Ok(Adam {
            m,
            v,
            step: 0,
            lr,
            weight_decay,
            // allocated with the moments, so the first steps' buffer cache stays as it will be
            sums: Some(dev.zeros(2 * params.len().max(1))?),
            pending: None,
        })
    }

    /// Moments and step restored from a saved state (same parameter order).
    pub fn from_state(
        dev: &B,
        m: &HostTensors,
        v: &HostTensors,
        step: u32,
        lr: f32,
        weight_decay: f32,
    ) -> Result<Self> {
        Ok(Adam {
            m: m.iter()
                .map(|(_, _, d)| dev.upload(d))
                .collect::<Result<_>>()?,
            v: v.iter()
                .map(|(_, _, d)| dev.upload(d))
                .collect::<Result<_>>()?,
            step,
            lr,
            weight_decay,
            sums: Some(dev.zeros(2 * m.len().max(1))?),
            pending: None,
        })
    }

    /// Moments on the host, named like the parameters.
    pub fn to_host(&self, dev: &B, params: &Params<B>) -> Result<(HostTensors, HostTensors)> {
        let get = |bufs: &Vec<B::Buf>| -> Result<HostTensors> {
            params
                .names
                .iter()
                .zip(&params.shapes)
                .zip(bufs)
                .map(|((n, s), b)| Ok((n.clone(), s.clone(), dev.download(b)?)))
                .collect()
        };
        Ok((get(&self.m)?, get(&self.v)?))
    }

    fn args(&self, grad_scale: f32) -> AdamArgs {
        AdamArgs {
            lr: self.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: self.weight_decay,
            step: self.step,
            grad_scale,
        }
    }

    /// One global-norm-clipped update of every parameter with the gradients of `eras` summed
    /// eras (`ops::optim::clip_scale`: the clip bounds the mean gradient's norm). A NaN or Inf
    /// gradient is an error naming `step` and the tensor, with nothing updated. Where the backend
    /// keeps the norms on the device (a GPU), that check is deferred to [`Adam::check_pending`]
    /// (the device skips the update itself), so the step has no host wait.
    pub fn clipped_update(
        &mut self,
        dev: &B,
        params: &mut Params<B>,
        clip: f32,
        eras: usize,
        step: u64,
    ) -> Result<()> {
        self.check_pending(dev, params)?;
        self.step += 1;
        let args = self.args(1.0);
        let sums = match &mut self.sums {
            Some(s) => s,
            none => none.insert(dev.zeros(2 * params.len().max(1))?),
        };
        match dev.clipped_adam(
            &mut params.values,
            &params.grads,
            &mut self.m,
            &mut self.v,
            &args,
            clip,
            eras,
            sums,
        )? {
            Some(s) => check_sums(&s, &params.names, step),
            None => {
                self.pending = Some(step);
                Ok(())
            }
        }
    }

    /// The device buffer of gradient norms still to be checked, to read back with the next
    /// loss ([`crate::tape::Tape::loss_with`]); None when nothing is pending.
    pub fn pending_sums(&self) -> Option<&B::Buf> {
        self.pending.and(self.sums.as_ref())
    }

    /// Checks the gradient norms a deferred [`Adam::clipped_update`] left on the device (free
    /// when they were read back with the loss, else one host wait): an error naming that step
    /// and the first tensor whose gradient had NaN or Inf values (the device skipped the update).
    pub fn check_pending(&mut self, dev: &B, params: &Params<B>) -> Result<()> {
        let (Some(step), Some(buf)) = (self.pending.take(), &self.sums) else {
            return Ok(());
        };
        let words = dev.download(buf)?;
        let n = params.len().min(words.len() / 2);
        let sums: Vec<f64> = (0..n)
            .map(|i| crate::ops::optim::gpu::f64_at(&words, i))
            .collect();
        check_sums(&sums, &params.names, step)
    }
}

/// The error for the first tensor whose Σg² is not finite.
fn check_sums(sums: &[f64], names: &[String], step: u64) -> Result<()> {
    match sums.iter().position(|s| !s.is_finite()) {
        None => Ok(()),
        Some(i) => Err(crate::Error::Numeric {
            step,
            tensor: format!(
                "{} (gradient)",
                names.get(i).map_or("a parameter", String::as_str)
            ),
            msg: "gradient has NaN or Inf values".into(),
        }),
    }
}
