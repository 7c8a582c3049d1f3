//! The autograd tape (micrograd's habit): ops are recorded in execution order as plain enum
//! records; `backward` walks the record in reverse, so the reversed record is a valid topological
//! order. Every backward accumulates (`+=`) into gradient buffers, so a tensor used twice gets the
//! sum over its paths. Once a node's backward has run, the tensors it produced (activations, saved
//! statistics, their gradients) are freed.

use crate::device::Backend;
use crate::ops::elementwise::DropoutKey;
use crate::ops::gate::GateSelect;
use crate::ops::loss::LossParts;
use crate::params::{ParamId, Params};
use crate::{Error, Result};

/// A tensor on the tape (index into its buffers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct T(pub usize);

/// One recorded op: enough to run its backward.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Linear {
        out: T,
        inp: T,
        w: ParamId,
        b: ParamId,
        n: usize,
        k: usize,
        m: usize,
    },
    LayerNorm {
        out: T,
        mean: T,
        rstd: T,
        inp: T,
        gamma: ParamId,
        beta: ParamId,
        n: usize,
        d: usize,
    },
    Gelu {
        out: T,
        inp: T,
    },
    Add {
        out: T,
        a: T,
        b: T,
    },
    Dropout {
        out: T,
        inp: T,
        p: f32,
        key: DropoutKey,
    },
    LinearAttention {
        out: T,
        s: T,
        z: T,
        q: T,
        k: T,
        v: T,
        mask: T,
        n: usize,
        d: usize,
        h: usize,
    },
    SoftmaxAttention {
        out: T,
        lse: T,
        q: T,
        k: T,
        v: T,
        mask: T,
        n: usize,
        d: usize,
        h: usize,
    },
    Gate {
        xt: T,
        g: T,
        keep: T,
        xbar: T,
        u: T,
        x: T,
        mask: T,
        w: ParamId,
        a: Option<ParamId>,
        b: Option<ParamId>,
        n: usize,
        f: usize,
        r: usize,
    },
    CorrLoss {
        yhat: T,
        y: T,
        mask: T,
        stats: T,
        weight: f32,
        n: usize,
        t: usize,
    },
    Film {
        out: T,
        inp: T,
        gamma: T,
        beta: T,
        n: usize,
        d: usize,
    },
    Loss {
        yhat: T,
        y: T,
        mask: T,
        g: T,
        lambda: f32,
        n: usize,
        t: usize,
    },
}

pub struct Tape<B: Backend> {
    pub nodes: Vec<Node>,
    bufs: Vec<Option<B::Buf>>,
    grads: Vec<Option<B::Buf>>,
    requires_grad: Vec<bool>,
    lens: Vec<usize>,
    backward_done: bool,
}

impl<B: Backend> Default for Tape<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend> Tape<B> {
    pub fn new() -> Self {
        Tape {
            nodes: Vec::new(),
            bufs: Vec::new(),
            grads: Vec::new(),
            requires_grad: Vec::new(),
            lens: Vec::new(),
            backward_done: false,
        }
    }

    fn push(&mut self, buf: B::Buf, len: usize, requires_grad: bool) -> T {
        self.bufs.push(Some(buf));
        self.grads.push(None);
        self.requires_grad.push(requires_grad);
        self.lens.push(len);
        T(self.bufs.len() - 1)
    }

    /// A constant input (data, mask, targets): no gradient flows into it.
    pub fn input(&mut self, dev: &B, host: &[f32]) -> Result<T> {
        let b = dev.upload(host)?;
        Ok(self.push(b, host.len(), false))
    }

    /// A leaf that receives a gradient (used by tests to differentiate w.r.t. inputs).
    pub fn leaf(&mut self, dev: &B, host: &[f32]) -> Result<T> {
        let b = dev.upload(host)?;
        Ok(self.push(b, host.len(), true))
    }

    fn new_tensor(&mut self, dev: &B, len: usize) -> Result<T> {
        let b = dev.zeros(len)?;
        Ok(self.push(b, len, true))
    }

    pub fn buf(&self, t: T) -> Result<&B::Buf> {
        self.bufs
            .get(t.0)
            .and_then(|b| b.as_ref())
            .ok_or_else(|| Error::device(format!("tape tensor {} was already freed", t.0)))
    }

    fn buf_mut(&mut self, t: T) -> Result<&mut B::Buf> {
        self.bufs
            .get_mut(t.0)
            .and_then(|b| b.as_mut())
            .ok_or_else(|| Error::device(format!("tape tensor {} was already freed", t.0)))
    }

    pub fn len_of(&self, t: T) -> usize {
        self.lens[t.0]
    }

    pub fn download(&self, dev: &B, t: T) -> Result<Vec<f32>> {
        dev.download(self.buf(t)?)
    }

    /// The gradient of a leaf after `backward` (zeros if nothing flowed into it).
    pub fn grad(&self, dev: &B, t: T) -> Result<Vec<f32>> {
        match &self.grads[t.0] {
            Some(g) => dev.download(g),
            None => Ok(vec![0.0; self.lens[t.0]]),
        }
    }

    // ---- forward ops -------------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    pub fn linear(
        &mut self,
        dev: &B,
        p: &Params<B>,
        inp: T,
        w: ParamId,
        b: ParamId,
        n: usize,
        k: usize,
        m: usize,
    ) -> Result<T> {
        let out = self.new_tensor(dev, n * m)?;
        let mut o = self.take(out)?;
        let r = dev.linear_fwd(
            &mut o,
            self.buf(inp)?,
            &p.values[w.0],
            Some(&p.values[b.0]),
            n,
            k,
            m,
        );
        self.put(out, o);
        r?;
        self.nodes.push(Node::Linear {
            out,
            inp,
            w,
            b,
            n,
            k,
            m,
        });
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm(
        &mut self,
        dev: &B,
        p: &Params<B>,
        inp: T,
        gamma: ParamId,
        beta: ParamId,
        n: usize,
        d: usize,
    ) -> Result<T> {
        let out = self.new_tensor(dev, n * d)?;
        let mean = self.new_tensor(dev, n)?;
        let rstd = self.new_tensor(dev, n)?;
        let (mut o, mut mu, mut rs) = (self.take(out)?, self.take(mean)?, self.take(rstd)?);
        let r = dev.layer_norm_fwd(
            &mut o,
            &mut mu,
            &mut rs,
            self.buf(inp)?,
            &p.values[gamma.0],
            &p.values[beta.0],
            n,
            d,
        );
        self.put(out, o);
        self.put(mean, mu);
        self.put(rstd, rs);
        r?;
        self.nodes.push(Node::LayerNorm {
            out,
            mean,
            rstd,
            inp,
            gamma,
            beta,
            n,
            d,
        });
        Ok(out)
    }

    pub fn gelu(&mut self, dev: &B, inp: T) -> Result<T> {
        let out = self.new_tensor(dev, self.len_of(inp))?;
        let mut o = self.take(out)?;
        let r = dev.gelu_fwd(&mut o, self.buf(inp)?);
        self.put(out, o);
        r?;
        self.nodes.push(Node::Gelu { out, inp });
        Ok(out)
    }

    pub fn add(&mut self, dev: &B, a: T, b: T) -> Result<T> {
        if self.len_of(a) != self.len_of(b) {
            return Err(Error::shape(format!(
                "add of {} and {} elements",
                self.len_of(a),
                self.len_of(b)
            )));
        }
        let out = self.new_tensor(dev, self.len_of(a))?;
        let mut o = self.take(out)?;
        let r = dev.add_fwd(&mut o, self.buf(a)?, self.buf(b)?);
        self.put(out, o);
        r?;
        self.nodes.push(Node::Add { out, a, b });
        Ok(out)
    }

    /// Inverted dropout; p = 0 records nothing and returns `inp`.
    pub fn dropout(&mut self, dev: &B, inp: T, p: f32, key: DropoutKey) -> Result<T> {
        if p <= 0.0 {
            return Ok(inp);
        }
        let out = self.new_tensor(dev, self.len_of(inp))?;
        let mut o = self.take(out)?;
        let r = dev.dropout_fwd(&mut o, self.buf(inp)?, p, key);
        self.put(out, o);
        r?;
        self.nodes.push(Node::Dropout { out, inp, p, key });
        Ok(out)
    }

    /// Adds the sinusoidal positional encoding in place (its gradient is the identity).
    pub fn pos_enc_add(&mut self, dev: &B, h: T, n: usize, d: usize) -> Result<()> {
        let buf = self.buf_mut(h)?;
        dev.pos_enc_add(buf, n, d)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn linear_attention(
        &mut self,
        dev: &B,
        q: T,
        k: T,
        v: T,
        mask: T,
        n: usize,
        d: usize,
        h: usize,
    ) -> Result<T> {
        let dh = d / h;
        let out = self.new_tensor(dev, n * d)?;
        let s = self.new_tensor(dev, h * dh * dh)?;
        let z = self.new_tensor(dev, h * dh)?;
        let (mut o, mut sb, mut zb) = (self.take(out)?, self.take(s)?, self.take(z)?);
        let r = dev.linear_attention_fwd(
            &mut o,
            &mut sb,
            &mut zb,
            self.buf(q)?,
            self.buf(k)?,
            self.buf(v)?,
            self.buf(mask)?,
            n,
            d,
            h,
        );
        self.put(out, o);
        self.put(s, sb);
        self.put(z, zb);
        r?;
        self.nodes.push(Node::LinearAttention {
            out,
            s,
            z,
            q,
            k,
            v,
            mask,
            n,
            d,
            h,
        });
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn softmax_attention(
        &mut self,
        dev: &B,
        q: T,
        k: T,
        v: T,
        mask: T,
        n: usize,
        d: usize,
        h: usize,
    ) -> Result<T> {
        let out = self.new_tensor(dev, n * d)?;
        let lse = self.new_tensor(dev, h * n)?;
        let (mut o, mut l) = (self.take(out)?, self.take(lse)?);
        let r = dev.softmax_attention_fwd(
            &mut o,
            &mut l,
            self.buf(q)?,
            self.buf(k)?,
            self.buf(v)?,
            self.buf(mask)?,
            n,
            d,
            h,
        );
        self.put(out, o);
        self.put(lse, l);
        r?;
        self.nodes.push(Node::SoftmaxAttention {
            out,
            lse,
            q,
            k,
            v,
            mask,
            n,
            d,
            h,
        });
        Ok(out)
    }

    /// The feature gate; returns (x̃, g, keep). With rank 0 (`a`, `b` None) the gate is static.
    #[allow(clippy::too_many_arguments)]
    pub fn gate(
        &mut self,
        dev: &B,
        p: &Params<B>,
        x: T,
        mask: T,
        w: ParamId,
        ab: Option<(ParamId, ParamId)>,
        select: GateSelect,
        n: usize,
        f: usize,
        r: usize,
    ) -> Result<(T, T, T)> {
        let xt = self.new_tensor(dev, n * f)?;
        let g = self.new_tensor(dev, f)?;
        let keep = self.new_tensor(dev, f)?;
        let xbar = self.new_tensor(dev, f)?;
        let u = self.new_tensor(dev, r.max(1))?;
        let empty = dev.zeros(0)?;
        let (av, bv) = match ab {
            Some((a, b)) => (&p.values[a.0], &p.values[b.0]),
            None => (&empty, &empty),
        };
        let (mut xtb, mut gb, mut kb, mut xb, mut ub) = (
            self.take(xt)?,
            self.take(g)?,
            self.take(keep)?,
            self.take(xbar)?,
            self.take(u)?,
        );
        let res = dev.gate_fwd(
            &mut xtb,
            &mut gb,
            &mut kb,
            &mut xb,
            &mut ub,
            self.buf(x)?,
            self.buf(mask)?,
            &p.values[w.0],
            av,
            bv,
            select,
            n,
            f,
            r,
        );
        self.put(xt, xtb);
        self.put(g, gb);
        self.put(keep, kb);
        self.put(xbar, xb);
        self.put(u, ub);
        res?;
        self.nodes.push(Node::Gate {
            xt,
            g,
            keep,
            xbar,
            u,
            x,
            mask,
            w,
            a: ab.map(|x| x.0),
            b: ab.map(|x| x.1),
            n,
            f,
            r,
        });
        Ok((xt, g, keep))
    }

    /// The per-era correlation loss term w · (1 − corr) (docs/model.md). Record it before `loss`,
    /// which stays the root of the graph.
    #[allow(clippy::too_many_arguments)]
    pub fn corr_loss(
        &mut self,
        dev: &B,
        yhat: T,
        y: T,
        mask: T,
        weight: f32,
        n: usize,
        t: usize,
    ) -> Result<crate::ops::corr_loss::CorrParts> {
        let stats = self.new_tensor(dev, t * crate::ops::corr_loss::CORR_STATS)?;
        let mut sb = self.take(stats)?;
        let r = dev.corr_loss_fwd(
            &mut sb,
            self.buf(yhat)?,
            self.buf(y)?,
            self.buf(mask)?,
            n,
            t,
        );
        self.put(stats, sb);
        let parts = r?;
        self.nodes.push(Node::CorrLoss {
            yhat,
            y,
            mask,
            stats,
            weight,
            n,
            t,
        });
        Ok(parts)
    }

    /// FiLM: out = inp ⊙ (1 + γ) + β per row, γ and β tape tensors of length d.
    pub fn film(&mut self, dev: &B, inp: T, gamma: T, beta: T, n: usize, d: usize) -> Result<T> {
        let out = self.new_tensor(dev, n * d)?;
        let mut o = self.take(out)?;
        let r = dev.film_fwd(
            &mut o,
            self.buf(inp)?,
            self.buf(gamma)?,
            self.buf(beta)?,
            n,
            d,
        );
        self.put(out, o);
        r?;
        self.nodes.push(Node::Film {
            out,
            inp,
            gamma,
            beta,
            n,
            d,
        });
        Ok(out)
    }

    /// MSE over present targets + λ·mean(g): the root of the graph.
    #[allow(clippy::too_many_arguments)]
    pub fn loss(
        &mut self,
        dev: &B,
        yhat: T,
        y: T,
        mask: T,
        g: T,
        lambda: f32,
        n: usize,
        t: usize,
    ) -> Result<LossParts> {
        let parts = dev.mse_sparsity_fwd(
            self.buf(yhat)?,
            self.buf(y)?,
            self.buf(mask)?,
            self.buf(g)?,
            lambda,
            n,
            t,
        )?;
        self.nodes.push(Node::Loss {
            yhat,
            y,
            mask,
            g,
            lambda,
            n,
            t,
        });
        Ok(parts)
    }

    // ---- backward ----------------------------------------------------------------------------

    fn take(&mut self, t: T) -> Result<B::Buf> {
        self.bufs[t.0]
            .take()
            .ok_or_else(|| Error::device(format!("tape tensor {} was already freed", t.0)))
    }

    fn put(&mut self, t: T, b: B::Buf) {
        self.bufs[t.0] = Some(b);
    }

    /// The gradient buffer of `t`, allocated (zeroed) on first use, taken out of the tape.
    fn take_grad(&mut self, dev: &B, t: T) -> Result<B::Buf> {
        match self.grads[t.0].take() {
            Some(g) => Ok(g),
            None => dev.zeros(self.lens[t.0]),
        }
    }

    fn put_grad(&mut self, t: T, g: B::Buf) {
        self.grads[t.0] = Some(g);
    }

    /// Frees a tensor produced by a node whose backward has run.
    fn free(&mut self, dev: &B, t: T) {
        if let Some(b) = self.bufs[t.0].take() {
            dev.recycle(b);
        }
        if let Some(g) = self.grads[t.0].take() {
            dev.recycle(g);
        }
    }

    /// Hands every buffer still on the tape back to the device for reuse (end of a step).
    pub fn release(mut self, dev: &B) {
        for b in self.bufs.drain(..).chain(self.grads.drain(..)).flatten() {
            dev.recycle(b);
        }
    }

    /// Backpropagates from the loss (the last node, seeded with dL = 1) into `params.grads` (`+=`)
    /// and into leaves. Calling it twice on one recording is an error.
    pub fn backward(&mut self, dev: &B, params: &mut Params<B>) -> Result<()> {
        if self.backward_done {
            return Err(Error::device(
                "backward called twice on one tape: record the forward again".to_string(),
            ));
        }
        match self.nodes.last() {
            Some(Node::Loss { .. }) => {}
            _ => {
                return Err(Error::device(
                    "backward needs a tape that ends with a loss".to_string(),
                ))
            }
        }
        self.backward_done = true;
        let nodes = std::mem::take(&mut self.nodes);
        for node in nodes.iter().rev() {
            self.backward_node(dev, params, node)?;
        }
        self.nodes = nodes;
        Ok(())
    }

    fn backward_node(&mut self, dev: &B, p: &mut Params<B>, node: &Node) -> Result<()> {
        match *node {
            Node::Loss {
                yhat,
                y,
                mask,
                g,
                lambda,
                n,
                t,
            } => {
                let mut dy = self.take_grad(dev, yhat)?;
                let mut dg = self.take_grad(dev, g)?;
                dev.mse_sparsity_bwd(
                    &mut dy,
                    &mut dg,
                    self.buf(yhat)?,
                    self.buf(y)?,
                    self.buf(mask)?,
                    lambda,
                    n,
                    t,
                )?;
                self.put_grad(yhat, dy);
                self.put_grad(g, dg);
            }
            Node::CorrLoss {
                yhat,
                y,
                mask,
                stats,
                weight,
                n,
                t,
            } => {
                let mut dy = self.take_grad(dev, yhat)?;
                dev.corr_loss_bwd(
                    &mut dy,
                    self.buf(yhat)?,
                    self.buf(y)?,
                    self.buf(mask)?,
                    self.buf(stats)?,
                    weight,
                    n,
                    t,
                )?;
                self.put_grad(yhat, dy);
                self.free(dev, stats);
            }
            Node::Film {
                out,
                inp,
                gamma,
                beta,
                n,
                d,
            } => {
                if let Some(dout) = self.grads[out.0].take() {
                    let mut di = self.take_grad(dev, inp)?;
                    let mut dg = self.take_grad(dev, gamma)?;
                    let mut db = self.take_grad(dev, beta)?;
                    let r = dev.film_bwd(
                        &mut di,
                        &mut dg,
                        &mut db,
                        &dout,
                        self.buf(inp)?,
                        self.buf(gamma)?,
                        n,
                        d,
                    );
                    self.put_grad(inp, di);
                    self.put_grad(gamma, dg);
                    self.put_grad(beta, db);
                    dev.recycle(dout);
                    r?;
                }
                self.free(dev, out);
            }
            Node::Linear {
                out,
                inp,
                w,
                b,
                n,
                k,
                m,
            } => {
                if let Some(dout) = self.grads[out.0].take() {
                    let mut dinp = if self.requires_grad[inp.0] {
                        Some(self.take_grad(dev, inp)?)
                    } else {
                        None
                    };
                    let (pw, pg) = (&p.values, &mut p.grads);
                    let (dw, db) = two_mut(pg, w.0, b.0)?;
                    dev.linear_bwd(
                        dinp.as_mut(),
                        dw,
                        Some(db),
                        &dout,
                        self.buf(inp)?,
                        &pw[w.0],
                        n,
                        k,
                        m,
                    )?;
                    if let Some(d) = dinp {
                        self.put_grad(inp, d);
                    }
                }
                self.free(dev, out);
            }
            Node::LayerNorm {
                out,
                mean,
                rstd,
                inp,
                gamma,
                beta,
                n,
                d,
            } => {
                if let Some(dout) = self.grads[out.0].take() {
                    let mut dinp = self.take_grad(dev, inp)?;
                    let (pw, pg) = (&p.values, &mut p.grads);
                    let (dgamma, dbeta) = two_mut(pg, gamma.0, beta.0)?;
                    dev.layer_norm_bwd(
                        &mut dinp,
                        dgamma,
                        dbeta,
                        &dout,
                        self.buf(inp)?,
                        self.buf(mean)?,
                        self.buf(rstd)?,
                        &pw[gamma.0],
                        n,
                        d,
                    )?;
                    self.put_grad(inp, dinp);
                }
                self.free(dev, out);
                self.free(dev, mean);
                self.free(dev, rstd);
            }
            Node::Gelu { out, inp } => {
                if let Some(dout) = self.grads[out.0].take() {
                    let mut dinp = self.take_grad(dev, inp)?;
                    dev.gelu_bwd(&mut dinp, &dout, self.buf(inp)?)?;
                    self.put_grad(inp, dinp);
                }
                self.free(dev, out);
            }
            Node::Add { out, a, b } => {
                if let Some(dout) = self.grads[out.0].take() {
                    for x in [a, b] {
                        if self.requires_grad[x.0] {
                            let mut dx = self.take_grad(dev, x)?;
                            dev.accumulate(&mut dx, &dout)?;
                            self.put_grad(x, dx);
                        }
                    }
                }
                self.free(dev, out);
            }
            Node::Dropout {
                out,
                inp,
                p: prob,
                key,
            } => {
                if let Some(dout) = self.grads[out.0].take() {
                    let mut dinp = self.take_grad(dev, inp)?;
                    dev.dropout_bwd(&mut dinp, &dout, prob, key)?;
                    self.put_grad(inp, dinp);
                }
                self.free(dev, out);
            }
            Node::LinearAttention {
                out,
                s,
                z,
                q,
                k,
                v,
                mask,
                n,
                d,
                h,
            } => {
                if let Some(dout) = self.grads[out.0].take() {
                    let (mut dq, mut dk, mut dv) = (
                        self.take_grad(dev, q)?,
                        self.take_grad(dev, k)?,
                        self.take_grad(dev, v)?,
                    );
                    dev.linear_attention_bwd(
                        &mut dq,
                        &mut dk,
                        &mut dv,
                        &dout,
                        self.buf(q)?,
                        self.buf(k)?,
                        self.buf(v)?,
                        self.buf(mask)?,
                        self.buf(s)?,
                        self.buf(z)?,
                        n,
                        d,
                        h,
                    )?;
                    self.put_grad(q, dq);
                    self.put_grad(k, dk);
                    self.put_grad(v, dv);
                }
                self.free(dev, out);
                self.free(dev, s);
                self.free(dev, z);
            }
            Node::SoftmaxAttention {
                out,
                lse,
                q,
                k,
                v,
                mask,
                n,
                d,
                h,
            } => {
                if let Some(dout) = self.grads[out.0].take() {
                    let (mut dq, mut dk, mut dv) = (
                        self.take_grad(dev, q)?,
                        self.take_grad(dev, k)?,
                        self.take_grad(dev, v)?,
                    );
                    dev.softmax_attention_bwd(
                        &mut dq,
                        &mut dk,
                        &mut dv,
                        &dout,
                        self.buf(out)?,
                        self.buf(lse)?,
                        self.buf(q)?,
                        self.buf(k)?,
                        self.buf(v)?,
                        self.buf(mask)?,
                        n,
                        d,
                        h,
                    )?;
                    self.put_grad(q, dq);
                    self.put_grad(k, dk);
                    self.put_grad(v, dv);
                }
                self.free(dev, out);
                self.free(dev, lse);
            }
            Node::Gate {
                xt,
                g,
                keep,
                xbar,
                u,
                x,
                mask: _,
                w,
                a,
                b,
                n,
                f,
                r,
            } => {
                let dxt = match self.grads[xt.0].take() {
                    Some(d) => d,
                    None => dev.zeros(n * f)?,
                };
                let mut dg = self.take_grad(dev, g)?;
                let mut empty_a = dev.zeros(0)?;
                let mut empty_b = dev.zeros(0)?;
                let empty_bv = dev.zeros(0)?;
                let grads = &mut p.grads;
                // Three distinct parameter gradients, borrowed at once.
                let (dw, da, db, bval) = match (a, b) {
                    (Some(a), Some(b)) => {
                        let (dw, da, db) = three_mut(grads, w.0, a.0, b.0)?;
                        (dw, da, db, &p.values[b.0])
                    }
                    _ => (&mut grads[w.0], &mut empty_a, &mut empty_b, &empty_bv),
                };
                dev.gate_bwd(
                    dw,
                    da,
                    db,
                    &mut dg,
                    &dxt,
                    self.buf(x)?,
                    self.buf(xbar)?,
                    self.buf(u)?,
                    self.buf(g)?,
                    self.buf(keep)?,
                    bval,
                    n,
                    f,
                    r,
                )?;
                for t in [xt, g, keep, xbar, u] {
                    self.free(dev, t);
                }
            }
        }
        Ok(())
    }
}

fn two_mut<X>(v: &mut [X], i: usize, j: usize) -> Result<(&mut X, &mut X)> {
    if i == j || i >= v.len() || j >= v.len() {
        return Err(Error::device(format!(
            "parameter ids {i} and {j} must differ and exist"
        )));
    }
    if i < j {
        let (lo, hi) = v.split_at_mut(j);
        Ok((&mut lo[i], &mut hi[0]))
    } else {
        let (lo, hi) = v.split_at_mut(i);
        Ok((&mut hi[0], &mut lo[j]))
    }
}

fn three_mut<X>(v: &mut [X], i: usize, j: usize, k: usize) -> Result<(&mut X, &mut X, &mut X)> {
    if i == j || j == k || i == k || i.max(j).max(k) >= v.len() {
        return Err(Error::device(format!(
            "parameter ids {i}, {j}, {k} must differ and exist"
        )));
    }
    let mut refs: Vec<Option<&mut X>> = v.iter_mut().map(Some).collect();
    let a = refs[i].take();
    let b = refs[j].take();
    let c = refs[k].take();
    match (a, b, c) {
        (Some(a), Some(b), Some(c)) => Ok((a, b, c)),
        _ => Err(Error::device("parameter borrow failed".to_string())),
    }
}
