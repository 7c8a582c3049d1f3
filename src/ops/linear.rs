//! Linear map (GEMM with bias), PyTorch `nn.Linear` layout.
//! out[n,m] = inp[n,k] · w[m,k]ᵀ + b[m].
//! Backward: dinp[n,k] += dout · w; dw[m,k] += doutᵀ · inp; db[m] += Σ_rows dout.
//!
//! Loop orders keep the innermost loop an axpy over a contiguous row (so it vectorises): the
//! forward transposes w once to [k,m] and runs i-k-j; dinp runs i-j-k over rows of w; dw keeps f64
//! accumulators for a block of 4 output rows and streams the input rows once per block.

use super::par;

/// Output rows of dw handled together, so each input row is read once per block.
const DW_BLOCK: usize = 4;

pub fn linear_fwd(
    out: &mut [f32],
    inp: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    n: usize,
    k: usize,
    m: usize,
) {
    if n == 0 || m == 0 {
        return;
    }
    // wt[kk, j] = w[j, kk]
    let mut wt = vec![0f32; k * m];
    for j in 0..m {
        for kk in 0..k {
            wt[kk * m + j] = w[j * k + kk];
        }
    }
    let wt = &wt;
    let chunk = par::chunk_rows(n, 2 * k * m);
    par::run(out[..n * m].chunks_mut(chunk * m).enumerate(), |(c, o)| {
        let r0 = c * chunk;
        for (ii, orow) in o.chunks_mut(m).enumerate() {
            let i = r0 + ii;
            match b {
                Some(b) => orow.copy_from_slice(&b[..m]),
                None => orow.fill(0.0),
            }
            // seek to the input row inp[i, :]
            let x = &inp[i * k..(i + 1) * k];
            for (kk, &xv) in x.iter().enumerate() {
                let wr = &wt[kk * m..(kk + 1) * m];
                for (ov, &wv) in orow.iter_mut().zip(wr) {
                    *ov += xv * wv;
                }
            }
        }
    });
}

#[allow(clippy::too_many_arguments)]
pub fn linear_bwd(
    dinp: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    dout: &[f32],
    inp: &[f32],
    w: &[f32],
    n: usize,
    k: usize,
    m: usize,
) {
    if n == 0 || m == 0 {
        return;
    }
    if let Some(dinp) = dinp {
        if k > 0 {
            let chunk = par::chunk_rows(n, 2 * k * m);
            par::run(
                dinp[..n * k].chunks_mut(chunk * k).enumerate(),
                |(c, di)| {
                    let r0 = c * chunk;
                    for (ii, drow) in di.chunks_mut(k).enumerate() {
                        let i = r0 + ii;
                        let g = &dout[i * m..(i + 1) * m];
                        for (j, &gv) in g.iter().enumerate() {
                            if gv == 0.0 {
                                continue;
                            }
                            let wr = &w[j * k..(j + 1) * k];
                            for (dv, &wv) in drow.iter_mut().zip(wr) {
                                *dv += gv * wv;
                            }
                        }
                    }
                },
            );
        }
    }
    if k > 0 {
        let chunk = par::chunk_rows(m, 2 * n * k);
        par::run(dw[..m * k].chunks_mut(chunk * k).enumerate(), |(c, dwc)| {
            let j_start = c * chunk;
            let rows = dwc.len() / k;
            let mut acc = vec![0f64; DW_BLOCK * k];
            let mut jb0 = 0;
            while jb0 < rows {
                let jb = DW_BLOCK.min(rows - jb0);
                acc.fill(0.0);
                for i in 0..n {
                    let x = &inp[i * k..(i + 1) * k];
                    // dout[i, j_start + jb0 ..][..jb]
                    let g = &dout[i * m + j_start + jb0..][..jb];
                    for (jj, &gv) in g.iter().enumerate() {
                        if gv == 0.0 {
                            continue;
                        }
                        let gv = gv as f64;
                        for (a, &xv) in acc[jj * k..(jj + 1) * k].iter_mut().zip(x) {
                            *a += gv * xv as f64;
                        }
                    }
                }
                for jj in 0..jb {
                    let row = &mut dwc[(jb0 + jj) * k..(jb0 + jj + 1) * k];
                    for (d, &a) in row.iter_mut().zip(&acc[jj * k..(jj + 1) * k]) {
                        *d = (*d as f64 + a) as f32;
                    }
                }
                jb0 += jb;
            }
        });
    }
    if let Some(db) = db {
        let mut acc = vec![0f64; m];
        for g in dout[..n * m].chunks(m) {
            for (a, &gv) in acc.iter_mut().zip(g) {
                *a += gv as f64;
            }
        }
        for (d, a) in db[..m].iter_mut().zip(acc) {
            *d = (*d as f64 + a) as f32;
        }
    }
}
