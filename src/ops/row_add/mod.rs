//! Row-broadcast add (docs/model.md: the GRN's context term W3 c + b3 added to every row).
//! x, out: [n, m]; r: [m], one row:
//!   out_ij = x_ij + r_j
//! Nothing is saved. Backward (ACCUMULATES): dx_ij += dout_ij; dr_j += Σ_i dout_ij (the sum over
//! rows in f64, in row order).

use super::par;
use super::shape::expect_len;
use crate::device::Backend;
use crate::tape::base::{Node, Tape, T};
use crate::{Error, Result};

pub(crate) mod gpu;

pub fn row_add_fwd(out: &mut [f32], x: &[f32], r: &[f32], n: usize, m: usize) {
    if n == 0 || m == 0 {
        return;
    }
    let chunk = par::chunk_rows(n, m);
    par::run(out[..n * m].chunks_mut(chunk * m).enumerate(), |(c, o)| {
        let r0 = c * chunk;
        for (ii, orow) in o.chunks_mut(m).enumerate() {
            let xr = &x[(r0 + ii) * m..(r0 + ii + 1) * m];
            for ((ov, &xv), &rv) in orow.iter_mut().zip(xr).zip(r) {
                *ov = xv + rv;
            }
        }
    });
}

/// dx += dout (when given); dr += Σ_i dout_i.
pub fn row_add_bwd(dx: Option<&mut [f32]>, dr: &mut [f32], dout: &[f32], n: usize, m: usize) {
    if n == 0 || m == 0 {
        return;
    }
    if let Some(dx) = dx {
        crate::ops::elementwise::unary::acc2(
            &mut dx[..n * m],
            &dout[..n * m],
            &dout[..n * m],
            1,
            |g, _| g,
        );
    }
    let mut s = vec![0f64; m];
    for row in dout[..n * m].chunks(m) {
        for (sv, &g) in s.iter_mut().zip(row) {
            *sv += g as f64;
        }
    }
    for (d, sv) in dr[..m].iter_mut().zip(s) {
        *d = (*d as f64 + sv) as f32;
    }
}

/// Shape rule on every device: out, x [n·m]; r [m].
pub fn check(out: usize, x: usize, r: usize, n: usize, m: usize) -> Result<()> {
    let len = n
        .checked_mul(m)
        .ok_or_else(|| Error::shape(format!("row_add: n·m = {n}·{m} overflows")))?;
    expect_len("row_add", "out", out, len)?;
    expect_len("row_add", "x", x, len)?;
    expect_len("row_add", "r", r, m)
}

impl<B: Backend> Tape<B> {
    /// out = x + r with r: [m] added to each of the n rows of x: [n, m].
    pub fn row_add(&mut self, dev: &B, x: T, r: T, n: usize, m: usize) -> Result<T> {
        check(n * m, self.len_of(x), self.len_of(r), n, m)?;
        let out = self.new_tensor(dev, n * m)?;
        let mut o = self.take(out)?;
        let res = dev.row_add_fwd(&mut o, self.buf(x)?, self.buf(r)?, n, m);
        self.put(out, o);
        res?;
        self.record(Node::RowAdd { out, x, r, n, m });
        Ok(out)
    }
}

/// Backward of [`Node::RowAdd`].
pub(crate) fn backward<B: Backend>(tape: &mut Tape<B>, dev: &B, node: &Node) -> Result<()> {
    let Node::RowAdd { out, x, r, n, m } = *node else {
        return Err(Error::device(
            "row_add::backward on another node".to_string(),
        ));
    };
    if let Some(dout) = tape.take_grad_if_any(out) {
        let mut dx = if tape.requires_grad(x) {
            Some(tape.take_grad(dev, x)?)
        } else {
            None
        };
        let mut dr = tape.take_grad(dev, r)?;
        let res = dev.row_add_bwd(dx.as_mut(), &mut dr, &dout, n, m);
        if let Some(dx) = dx {
            tape.put_grad(x, dx);
        }
        tape.put_grad(r, dr);
        dev.recycle(dout);
        res?;
    }
    tape.free(dev, out);
    Ok(())
}
