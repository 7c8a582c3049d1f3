//! FiLM: feature-wise scale and shift of every row by era-level vectors (docs/model.md, "Era
//! context"). inp, out: [n, d]; gamma, beta: [d]:
//!   out_ij = inp_ij · (1 + γ_j) + β_j
//! (1 + γ so that γ = β = 0 is the identity.) Nothing is saved beyond the input.
//! Backward (ACCUMULATES): dinp_ij += dout_ij (1 + γ_j); dγ_j += Σ_i dout_ij inp_ij; dβ_j += Σ_i dout_ij,
//! the sums over rows in f64.

use super::gate::col_sums;
use super::gemm::Simd;
use super::par;
use super::shape::expect_len;
use crate::device::Backend;
use crate::tape::base::{Node, Tape, T};
use crate::{Error, Result};

pub(crate) mod gpu;

pub fn film_fwd(out: &mut [f32], inp: &[f32], gamma: &[f32], beta: &[f32], n: usize, d: usize) {
    if n == 0 || d == 0 {
        return;
    }
    let chunk = par::chunk_rows(n, d);
    let items = out[..n * d].chunks_mut(chunk * d).enumerate();
    let simd = Simd::detect();
    par::run(items, |(c, o)| {
        let r0 = c * chunk;
        // at the machine's SIMD width: each value alone, the same bits at any width
        simd.run(
            #[inline(always)]
            || {
                for (ii, orow) in o.chunks_mut(d).enumerate() {
                    let x = &inp[(r0 + ii) * d..(r0 + ii + 1) * d];
                    for (((ov, &xv), &gv), &bv) in orow.iter_mut().zip(x).zip(gamma).zip(beta) {
                        *ov = xv * (1.0 + gv) + bv;
                    }
                }
            },
        )
    });
}

#[allow(clippy::too_many_arguments)]
pub fn film_bwd(
    dinp: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    gamma: &[f32],
    n: usize,
    d: usize,
) {
    if n == 0 || d == 0 {
        return;
    }
    let chunk = par::chunk_rows(n, d);
    let items = dinp[..n * d].chunks_mut(chunk * d).enumerate();
    let simd = Simd::detect();
    par::run(items, |(c, di)| {
        let r0 = c * chunk;
        simd.run(
            #[inline(always)]
            || {
                for (ii, drow) in di.chunks_mut(d).enumerate() {
                    let go = &dout[(r0 + ii) * d..(r0 + ii + 1) * d];
                    for ((dv, &g), &gv) in drow.iter_mut().zip(go).zip(gamma) {
                        *dv += g * (1.0 + gv);
                    }
                }
            },
        )
    });
    // per column, in row order, in f64: split over threads by columns, at SIMD width
    let mut sg = vec![0f64; d];
    let mut sb = vec![0f64; d];
    col_sums(
        &mut sg,
        n,
        d,
        #[inline(always)]
        |i, j0, part| {
            let w = part.len();
            let row = dout[i * d + j0..][..w].iter().zip(&inp[i * d + j0..][..w]);
            for (s, (&g, &x)) in part.iter_mut().zip(row) {
                *s += g as f64 * x as f64;
            }
        },
    );
    col_sums(
        &mut sb,
        n,
        d,
        #[inline(always)]
        |i, j0, part| {
            let w = part.len();
            for (s, &g) in part.iter_mut().zip(&dout[i * d + j0..][..w]) {
                *s += g as f64;
            }
        },
    );
    for j in 0..d {
        dgamma[j] = (dgamma[j] as f64 + sg[j]) as f32;
        dbeta[j] = (dbeta[j] as f64 + sb[j]) as f32;
    }
}

// ---- shapes, tape record and backward -------------------------------------------------------

/// Shape rule on every device: inp, out [n,d], gamma, beta [d].
pub fn check(out: usize, inp: usize, gamma: usize, beta: usize, n: usize, d: usize) -> Result<()> {
    expect_len("film", "out", out, n * d)?;
    expect_len("film", "inp", inp, n * d)?;
    expect_len("film", "gamma", gamma, d)?;
    expect_len("film", "beta", beta, d)
}

impl<B: Backend> Tape<B> {
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
        self.record(Node::Film {
            out,
            inp,
            gamma,
            beta,
            n,
            d,
        });
        Ok(out)
    }
}

/// Backward of [`Node::Film`].
pub(crate) fn backward<B: Backend>(tape: &mut Tape<B>, dev: &B, node: &Node) -> Result<()> {
    let Node::Film {
        out,
        inp,
        gamma,
        beta,
        n,
        d,
    } = *node
    else {
        return Err(Error::device("film::backward on another node".to_string()));
    };
    if let Some(dout) = tape.take_grad_if_any(out) {
        let mut di = tape.take_grad(dev, inp)?;
        let mut dg = tape.take_grad(dev, gamma)?;
        let mut db = tape.take_grad(dev, beta)?;
        let r = dev.film_bwd(
            &mut di,
            &mut dg,
            &mut db,
            &dout,
            tape.buf(inp)?,
            tape.buf(gamma)?,
            n,
            d,
        );
        tape.put_grad(inp, di);
        tape.put_grad(gamma, dg);
        tape.put_grad(beta, db);
        dev.recycle(dout);
        r?;
    }
    tape.free(dev, out);
    Ok(())
}
