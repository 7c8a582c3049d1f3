//! Era-dependent feature gate (SPEC §3), x: [n,f] preprocessed features, a, b: [f,r].
//! x̄ = Σ_i m_i x_i / Σ_i m_i (zeros if no real row); u = Aᵀ x̄ [r]; ℓ = w + B u; g = sigmoid(ℓ);
//! keep_f = 1[g_f ≥ τ] (or top-k: the k largest g, ties to the lower index); xt = x ⊙ (g ⊙ keep).
//! Saves xbar[f], u[r], g[f], keep[f] (1.0/0.0).
//! Backward (keep is a constant): ds_f = Σ_i dxt_if x_if; dg_f (input, e.g. from the sparsity term)
//! += ds_f keep_f; dℓ = dg ⊙ g(1−g); dw += dℓ; db[f,j] += dℓ_f u_j; dA[f,j] += x̄_f Σ_f' dℓ_f' B[f',j].
//!
//! r = 0 is the static gate: ℓ = w, and a, b, u, da, db are empty. Sums over rows are f64.

use super::gemm::Simd;
use super::par;
use super::shape::{expect_all, expect_at_least, expect_len};
use crate::device::Backend;
use crate::params::{ParamId, Params};
use crate::tape::base::{three_mut, Node, Tape, T};
use crate::{Error, Result};

pub(crate) mod gpu;

pub mod select;
pub use select::{select_gates, GateSelect};

/// Columns whose sums [`col_sums`] keeps in registers over all the rows (four zmm of f64).
const COL_GROUP: usize = 32;

/// out[ff] += Σ_i (row i's term for column ff), i in order, in f64, for the columns of an [n, f]
/// matrix: `row(i, f0, out_part)` adds row i's terms for columns f0.. f0 + out_part.len() to
/// `out_part`. Split over threads by ranges of columns, so every thread count sums in the same
/// order (the same bits), and compiled at the machine's SIMD width. Each group of
/// [`COL_GROUP`] columns runs through all the rows with its sums in a local array that stays in
/// registers when `row` reads exactly `out_part.len()` values of each row (summed into `out` in
/// place, every row stored its sums and loaded them back: FiLM's backward at 2,600 × 64 was
/// 4.5× slower); the same additions in the same order.
pub(crate) fn col_sums(
    out: &mut [f64],
    n: usize,
    f: usize,
    row: impl Fn(usize, usize, &mut [f64]) + Sync,
) {
    let threads = if n * f >= 1 << 16 { par::threads() } else { 1 };
    let fc = f.div_ceil(threads.max(1)).max(1);
    let simd = Simd::detect();
    par::run(out[..f].chunks_mut(fc).enumerate(), |(c, part)| {
        simd.run(
            #[inline(always)]
            || {
                let mut groups = part.chunks_exact_mut(COL_GROUP);
                for (q, grp) in groups.by_ref().enumerate() {
                    let mut acc = [0f64; COL_GROUP];
                    acc.copy_from_slice(grp);
                    for i in 0..n {
                        row(i, c * fc + q * COL_GROUP, &mut acc);
                    }
                    grp.copy_from_slice(&acc);
                }
                let tail = groups.into_remainder();
                if !tail.is_empty() {
                    let f0 = c * fc + (fc.min(f - c * fc) - tail.len());
                    for i in 0..n {
                        row(i, f0, tail);
                    }
                }
            },
        )
    });
}

#[allow(clippy::too_many_arguments)]
pub fn gate_fwd(
    xt: Option<&mut [f32]>,
    g: &mut [f32],
    keep: &mut [f32],
    xbar: &mut [f32],
    u: &mut [f32],
    x: &[f32],
    mask: &[f32],
    sums: Option<&[f64]>,
    w: &[f32],
    a: &[f32],
    b: &[f32],
    select: GateSelect,
    n: usize,
    f: usize,
    r: usize,
) {
    if f == 0 {
        return;
    }
    // x̄: masked mean over rows
    let mut sum = vec![0f64; f];
    let count: f64 = mask[..n]
        .iter()
        .filter(|&&mi| mi != 0.0)
        .map(|&mi| mi as f64)
        .sum();
    match sums {
        // the era loader's sums (`EraBatch::col_sums`): the same terms added in the same order
        // (the tape checks their length; any other length is not x's and is not used)
        Some(s) if s.len() == f => sum.copy_from_slice(s),
        _ => col_sums(
            &mut sum,
            n,
            f,
            #[inline(always)]
            |i, f0, sc| {
                let mi = mask[i];
                if mi != 0.0 {
                    let w = sc.len();
                    for (s, &xv) in sc.iter_mut().zip(&x[i * f + f0..][..w]) {
                        *s += mi as f64 * xv as f64;
                    }
                }
            },
        ),
    }
    let xbar64: Vec<f64> = if count > 0.0 {
        sum.iter().map(|s| s / count).collect()
    } else {
        vec![0.0; f]
    };
    for (o, &v) in xbar[..f].iter_mut().zip(&xbar64) {
        *o = v as f32;
    }
    // u = Aᵀ x̄
    let mut u64v = vec![0f64; r];
    for ff in 0..f {
        for (uj, &av) in u64v.iter_mut().zip(&a[ff * r..(ff + 1) * r]) {
            *uj += av as f64 * xbar64[ff];
        }
    }
    for (o, &v) in u[..r].iter_mut().zip(&u64v) {
        *o = v as f32;
    }
    // g = sigmoid(w + B u)
    for ff in 0..f {
        let mut l = w[ff] as f64;
        for (&bv, &uj) in b[ff * r..(ff + 1) * r].iter().zip(&u64v) {
            l += bv as f64 * uj;
        }
        g[ff] = (1.0 / (1.0 + (-l).exp())) as f32;
    }
    select_gates(&mut keep[..f], &g[..f], select);
    let Some(xt) = xt else {
        return;
    };
    if n == 0 {
        return;
    }
    let s: Vec<f32> = (0..f).map(|ff| g[ff] * keep[ff]).collect();
    let s = &s;
    let chunk = par::chunk_rows(n, f);
    par::run(xt[..n * f].chunks_mut(chunk * f).enumerate(), |(c, xc)| {
        let r0 = c * chunk;
        for (ii, row) in xc.chunks_mut(f).enumerate() {
            let xr = &x[(r0 + ii) * f..(r0 + ii + 1) * f];
            for ((o, &xv), &sv) in row.iter_mut().zip(xr).zip(s) {
                *o = xv * sv;
            }
        }
    });
}

/// `dg` holds the gradient already flowing into g (from the sparsity term) and is consumed.
#[allow(clippy::too_many_arguments)]
pub fn gate_bwd(
    dw: &mut [f32],
    da: &mut [f32],
    db: &mut [f32],
    dg: &mut [f32],
    dxt: &[f32],
    x: &[f32],
    xbar: &[f32],
    u: &[f32],
    g: &[f32],
    keep: &[f32],
    b: &[f32],
    n: usize,
    f: usize,
    r: usize,
) {
    if f == 0 {
        return;
    }
    // ds_f = Σ_i dxt_if x_if, in f64 over rows
    let mut ds = vec![0f64; f];
    col_sums(
        &mut ds,
        n,
        f,
        #[inline(always)]
        |i, f0, sc| {
            let w = sc.len();
            let (gr, xr) = (&dxt[i * f + f0..][..w], &x[i * f + f0..][..w]);
            for ((s, &gv), &xv) in sc.iter_mut().zip(gr).zip(xr) {
                *s += gv as f64 * xv as f64;
            }
        },
    );
    let mut dl = vec![0f64; f];
    for ff in 0..f {
        dg[ff] = (dg[ff] as f64 + ds[ff] * keep[ff] as f64) as f32;
        let gv = g[ff] as f64;
        dl[ff] = dg[ff] as f64 * gv * (1.0 - gv);
        dw[ff] += dl[ff] as f32;
    }
    if r == 0 {
        return;
    }
    // du_j = Σ_f dℓ_f B[f, j]
    let mut du = vec![0f64; r];
    for ff in 0..f {
        for (duj, &bv) in du.iter_mut().zip(&b[ff * r..(ff + 1) * r]) {
            *duj += dl[ff] * bv as f64;
        }
    }
    for ff in 0..f {
        for j in 0..r {
            db[ff * r + j] += (dl[ff] * u[j] as f64) as f32;
            da[ff * r + j] += (xbar[ff] as f64 * du[j]) as f32;
        }
    }
}

// ---- shapes, tape record and backward -------------------------------------------------------

/// Shape rule of the gate forward on every device (the length of xt when given, then those of g,
/// keep, xbar, u, x, mask, w, a, b).
pub fn check_fwd(xt: Option<usize>, lens: [usize; 9], n: usize, f: usize, r: usize) -> Result<()> {
    let op = "gate_fwd";
    let [g, keep, xbar, u, x, mask, w, a, b] = lens;
    if let Some(xt) = xt {
        expect_len(op, "xt", xt, n * f)?;
    }
    expect_len(op, "x", x, n * f)?;
    expect_len(op, "mask", mask, n)?;
    expect_all(op, &[("g", g), ("keep", keep), ("xbar", xbar), ("w", w)], f)?;
    expect_len(op, "a", a, f * r)?;
    expect_len(op, "b", b, f * r)?;
    expect_at_least(op, "u", u, r)
}

/// Shape rule of the gate backward on every device (lengths of dw, da, db, dg, dxt, x, xbar, u,
/// g, keep, b).
pub fn check_bwd(lens: [usize; 11], n: usize, f: usize, r: usize) -> Result<()> {
    let op = "gate_bwd";
    let [dw, da, db, dg, dxt, x, xbar, u, g, keep, b] = lens;
    expect_len(op, "dxt", dxt, n * f)?;
    expect_len(op, "x", x, n * f)?;
    expect_all(
        op,
        &[
            ("dw", dw),
            ("dg", dg),
            ("xbar", xbar),
            ("g", g),
            ("keep", keep),
        ],
        f,
    )?;
    expect_all(op, &[("da", da), ("db", db), ("b", b)], f * r)?;
    expect_at_least(op, "u", u, r)
}

impl<B: Backend> Tape<B> {
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
        let (xt, g, keep) =
            self.gate_impl(dev, p, (x, mask, None), w, ab, select, (n, f, r), true)?;
        let xt = xt.ok_or_else(|| Error::device("the gate made no x̃".to_string()))?;
        Ok((xt, g, keep))
    }

    /// The feature gate without x̃: returns (g, keep) for an op that folds s = g ⊙ keep into a
    /// weight ([`Tape::gated_linear`]); the gradient reaches the gate through g. `sums`: x's
    /// column sums when the era loader has them ([`Backend::gate_fwd`]).
    #[allow(clippy::too_many_arguments)]
    pub fn gate_select(
        &mut self,
        dev: &B,
        p: &Params<B>,
        x: T,
        mask: T,
        sums: Option<&[f64]>,
        w: ParamId,
        ab: Option<(ParamId, ParamId)>,
        select: GateSelect,
        n: usize,
        f: usize,
        r: usize,
    ) -> Result<(T, T)> {
        let (_, g, keep) =
            self.gate_impl(dev, p, (x, mask, sums), w, ab, select, (n, f, r), false)?;
        Ok((g, keep))
    }

    #[allow(clippy::too_many_arguments)]
    fn gate_impl(
        &mut self,
        dev: &B,
        p: &Params<B>,
        (x, mask, sums): (T, T, Option<&[f64]>),
        w: ParamId,
        ab: Option<(ParamId, ParamId)>,
        select: GateSelect,
        (n, f, r): (usize, usize, usize),
        apply: bool,
    ) -> Result<(Option<T>, T, T)> {
        if let Some(s) = sums {
            expect_len("gate", "column sums", s.len(), f)?;
        }
        let xt = if apply {
            Some(self.new_tensor(dev, n * f)?)
        } else {
            None
        };
        let g = self.new_tensor(dev, f)?;
        let keep = self.new_tensor(dev, f)?;
        let xbar = self.new_tensor(dev, f)?;
        let u = self.new_tensor(dev, r.max(1))?;
        let empty = dev.zeros(0)?;
        let (av, bv) = match ab {
            Some((a, b)) => (&p.values[a.0], &p.values[b.0]),
            None => (&empty, &empty),
        };
        let mut xtb = match xt {
            Some(t) => Some(self.take(t)?),
            None => None,
        };
        let (mut gb, mut kb, mut xb, mut ub) = (
            self.take(g)?,
            self.take(keep)?,
            self.take(xbar)?,
            self.take(u)?,
        );
        let res = dev.gate_fwd(
            xtb.as_mut(),
            &mut gb,
            &mut kb,
            &mut xb,
            &mut ub,
            self.buf(x)?,
            self.buf(mask)?,
            sums,
            &p.values[w.0],
            av,
            bv,
            select,
            n,
            f,
            r,
        );
        if let (Some(t), Some(b)) = (xt, xtb) {
            self.put(t, b);
        }
        self.put(g, gb);
        self.put(keep, kb);
        self.put(xbar, xb);
        self.put(u, ub);
        res?;
        self.record(Node::Gate {
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
}

/// Backward of [`Node::Gate`].
pub(crate) fn backward<B: Backend>(
    tape: &mut Tape<B>,
    dev: &B,
    p: &mut Params<B>,
    node: &Node,
) -> Result<()> {
    let Node::Gate {
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
    } = *node
    else {
        return Err(Error::device("gate::backward on another node".to_string()));
    };
    // Without x̃ (the gate folded into the next weight, `Tape::gate_select`) the gradient came
    // into g already: the backward runs over zero rows, so it adds nothing from x̃.
    let (dxt, rows, no_x) = match xt {
        Some(t) => match tape.take_grad_if_any(t) {
            Some(d) => (d, n, None),
            None => (dev.zeros(n * f)?, n, None),
        },
        None => (dev.zeros(0)?, 0, Some(dev.zeros(0)?)),
    };
    let mut dg = tape.take_grad(dev, g)?;
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
        match &no_x {
            Some(e) => e,
            None => tape.buf(x)?,
        },
        tape.buf(xbar)?,
        tape.buf(u)?,
        tape.buf(g)?,
        tape.buf(keep)?,
        bval,
        rows,
        f,
        r,
    )?;
    dev.recycle(dxt);
    dev.recycle(dg);
    if let Some(e) = no_x {
        dev.recycle(e);
    }
    for t in xt.into_iter().chain([g, keep, xbar, u]) {
        tape.free(dev, t);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Column sums have the bits of the plain loop (each column's terms added in row order, in
    /// f64, onto what `out` held) for widths around the register group, one row, and eras large
    /// enough to split over threads; a `row` that reads past its part's columns too.
    #[test]
    fn col_sums_have_the_bits_of_the_row_order_loop() {
        let mut rng = crate::rng::Rng::new(3, 4);
        for (n, f) in [
            (1, 1),
            (7, 31),
            (300, 32),
            (1000, 33),
            (2600, 64),
            (130, 705),
            (97, 1),
        ] {
            let x: Vec<f32> = (0..n * f).map(|_| rng.uniform(-2.0, 2.0)).collect();
            let start: Vec<f64> = (0..f).map(|j| j as f64 * 0.125).collect();
            let mut want = start.clone();
            for i in 0..n {
                for j in 0..f {
                    want[j] += x[i * f + j] as f64 * 3.0;
                }
            }
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let mut exact = start.clone();
            col_sums(&mut exact, n, f, |i, f0, part| {
                let w = part.len();
                for (s, &v) in part.iter_mut().zip(&x[i * f + f0..][..w]) {
                    *s += v as f64 * 3.0;
                }
            });
            assert!(bits(&exact) == bits(&want), "{n} x {f}");
            let mut open = start.clone();
            col_sums(&mut open, n, f, |i, f0, part| {
                for (s, &v) in part.iter_mut().zip(&x[i * f + f0..(i + 1) * f]) {
                    *s += v as f64 * 3.0;
                }
            });
            assert!(bits(&open) == bits(&want), "{n} x {f}, open-ended rows");
        }
    }
}
