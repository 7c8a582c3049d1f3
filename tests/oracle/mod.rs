//! A deliberately naive f64 oracle for every CPU op, straight from SPEC §3: index loops, no fusion,
//! no threads, softmax attention through the full n × n matrix. Used only by the tests, which check
//! the f32 ops' forwards against it and their backwards against its central finite differences.
#![allow(dead_code)]

use eraengine::ops::elementwise::DropoutKey;
use eraengine::rng::dropout_uniform;
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------------------------
// test data

/// SplitMix64: a data generator independent of the product's RNG.
pub struct Gen(u64);

impl Gen {
    pub fn new(seed: u64) -> Self {
        Gen(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// uniform in [lo, hi)
    pub fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    pub fn vec(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.f32(lo, hi)).collect()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Row masks of the kinds the tests cover: 0 all real, 1 random, 2 all padding, 3 one real row.
pub fn mask(kind: u8, n: usize, g: &mut Gen) -> Vec<f32> {
    match kind % 4 {
        0 => vec![1.0; n],
        1 => (0..n)
            .map(|_| if g.below(3) == 0 { 0.0 } else { 1.0 })
            .collect(),
        2 => vec![0.0; n],
        _ => {
            let keep = g.below(n);
            (0..n).map(|i| if i == keep { 1.0 } else { 0.0 }).collect()
        }
    }
}

pub fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

// ---------------------------------------------------------------------------------------------
// comparisons

/// |got − want| ≤ atol · max(1, max|want|) + rtol · |want| for every element.
pub fn close(
    what: &str,
    got: &[f32],
    want: &[f64],
    rtol: f64,
    atol: f64,
) -> Result<(), TestCaseError> {
    if got.len() != want.len() {
        return Err(TestCaseError::fail(format!(
            "{what}: length {} vs {}",
            got.len(),
            want.len()
        )));
    }
    let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        // a NaN anywhere fails
        if err.is_nan() || err > atol * scale + rtol * w.abs() {
            return Err(TestCaseError::fail(format!(
                "{what}[{i}]: got {g}, want {w} (err {err:.3e}, scale {scale:.3e})"
            )));
        }
    }
    Ok(())
}

/// Forward tolerance: f32 against f64.
pub const FWD_RTOL: f64 = 1e-4;
pub const FWD_ATOL: f64 = 1e-5;
/// Backward tolerance: f32 gradients against central differences of the f64 oracle.
pub const BWD_RTOL: f64 = 2e-4;
pub const BWD_ATOL: f64 = 5e-5;

/// Central finite differences of a scalar f at x: (f(x + h e_i) − f(x − h e_i)) / 2h.
pub fn fd_grad(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-6;
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let x0 = xp[i];
            xp[i] = x0 + h;
            let fp = f(&xp);
            xp[i] = x0 - h;
            let fm = f(&xp);
            xp[i] = x0;
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

/// Σ c·out, the random linear functional whose gradient the backward tests check.
pub fn functional(c: &[f32], out: &[f64]) -> f64 {
    c.iter().zip(out).map(|(&a, &b)| a as f64 * b).sum()
}

/// The increment a backward added to a buffer pre-filled with `before` (checks the `+=` rule).
pub fn added(after: &[f32], before: &[f32]) -> Vec<f32> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

// ---------------------------------------------------------------------------------------------
// the ops

/// out[i, j] = Σ_k inp[i, k] w[j, k] + b[j]
pub fn linear(inp: &[f64], w: &[f64], b: Option<&[f64]>, n: usize, k: usize, m: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            let mut s = b.map_or(0.0, |b| b[j]);
            for kk in 0..k {
                s += inp[i * k + kk] * w[j * k + kk];
            }
            out[i * m + j] = s;
        }
    }
    out
}

pub const LN_EPS: f64 = 1e-5;

pub fn layer_norm(inp: &[f64], gamma: &[f64], beta: &[f64], n: usize, d: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * d];
    for i in 0..n {
        let row = &inp[i * d..(i + 1) * d];
        let mu = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / d as f64;
        for c in 0..d {
            out[i * d + c] = (row[c] - mu) / (var + LN_EPS).sqrt() * gamma[c] + beta[c];
        }
    }
    out
}

pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

/// φ(x) = elu(x) + 1
pub fn elu1(x: f64) -> f64 {
    if x > 0.0 {
        x + 1.0
    } else {
        x.exp_m1() + 1.0
    }
}

pub fn map(x: &[f64], f: impl Fn(f64) -> f64) -> Vec<f64> {
    x.iter().map(|&v| f(v)).collect()
}

pub fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// Inverted dropout: element e is kept iff dropout_uniform(key, e) ≥ p, then scaled by 1/(1 − p).
pub fn dropout(inp: &[f64], p: f64, key: DropoutKey) -> Vec<f64> {
    inp.iter()
        .enumerate()
        .map(|(e, &x)| {
            if dropout_uniform(key, e as u64) as f64 >= p {
                x / (1.0 - p)
            } else {
                0.0
            }
        })
        .collect()
}

/// PE(i, 2j) = sin(i / 10000^(2j/d)), PE(i, 2j+1) = cos(i / 10000^(2j/d))
pub fn pos_enc(n: usize, d: usize) -> Vec<f64> {
    let mut pe = vec![0.0; n * d];
    for i in 0..n {
        for c in 0..d {
            let j = c / 2;
            let angle = i as f64 / 10000f64.powf(2.0 * j as f64 / d as f64);
            pe[i * d + c] = if c % 2 == 0 { angle.sin() } else { angle.cos() };
        }
    }
    pe
}

pub const ATTN_EPS: f64 = 1e-6;

/// O_i = φ(Q_i)ᵀ S / (φ(Q_i)ᵀ z + ε), S = Σ_j m_j φ(K_j) V_jᵀ, z = Σ_j m_j φ(K_j), per head.
#[allow(clippy::too_many_arguments)]
pub fn linear_attention(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    mask: &[f32],
    n: usize,
    d: usize,
    h: usize,
) -> Vec<f64> {
    let dh = d / h;
    let mut out = vec![0.0; n * d];
    for hd in 0..h {
        let col = |i: usize, a: usize| i * d + hd * dh + a;
        let mut s = vec![vec![0.0; dh]; dh];
        let mut z = vec![0.0; dh];
        for j in 0..n {
            for a in 0..dh {
                let pk = mask[j] as f64 * elu1(k[col(j, a)]);
                z[a] += pk;
                for b in 0..dh {
                    s[a][b] += pk * v[col(j, b)];
                }
            }
        }
        for i in 0..n {
            let mut den = ATTN_EPS;
            for a in 0..dh {
                den += elu1(q[col(i, a)]) * z[a];
            }
            for b in 0..dh {
                let mut num = 0.0;
                for a in 0..dh {
                    num += elu1(q[col(i, a)]) * s[a][b];
                }
                out[col(i, b)] = num / den;
            }
        }
    }
    out
}

/// O_i = Σ_j softmax over real keys j of (Q_i·K_j/√dh) · V_j, through the n × n score matrix;
/// 0 for a row with no real key.
pub fn softmax_attention(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    mask: &[f32],
    n: usize,
    d: usize,
    h: usize,
) -> Vec<f64> {
    let dh = d / h;
    let mut out = vec![0.0; n * d];
    for hd in 0..h {
        let col = |i: usize, a: usize| i * d + hd * dh + a;
        let mut scores = vec![vec![f64::NEG_INFINITY; n]; n];
        for i in 0..n {
            for j in 0..n {
                if mask[j] != 0.0 {
                    let dot: f64 = (0..dh).map(|a| q[col(i, a)] * k[col(j, a)]).sum();
                    scores[i][j] = dot / (dh as f64).sqrt();
                }
            }
        }
        for i in 0..n {
            let mx = scores[i].iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            if mx == f64::NEG_INFINITY {
                continue;
            }
            let e: Vec<f64> = scores[i].iter().map(|s| (s - mx).exp()).collect();
            let total: f64 = e.iter().sum();
            for b in 0..dh {
                out[col(i, b)] = (0..n).map(|j| e[j] / total * v[col(j, b)]).sum();
            }
        }
    }
    out
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Everything the gate computes.
pub struct GateOut {
    pub xt: Vec<f64>,
    pub g: Vec<f64>,
    pub keep: Vec<f64>,
    pub xbar: Vec<f64>,
    pub u: Vec<f64>,
}

/// Which gates the oracle keeps: a threshold, the k largest (ties to the lower index, found by
/// counting how many gates beat each one), or a given 0/1 vector (keep held constant for the
/// finite differences).
pub enum Keep<'a> {
    Threshold(f64),
    TopK(usize),
    Fixed(&'a [f64]),
}

#[allow(clippy::too_many_arguments)]
pub fn gate(
    x: &[f64],
    mask: &[f32],
    w: &[f64],
    a: &[f64],
    b: &[f64],
    keep: Keep,
    n: usize,
    f: usize,
    r: usize,
) -> GateOut {
    let real: f64 = mask.iter().map(|&m| m as f64).sum();
    let mut xbar = vec![0.0; f];
    if real > 0.0 {
        for c in 0..f {
            xbar[c] = (0..n).map(|i| mask[i] as f64 * x[i * f + c]).sum::<f64>() / real;
        }
    }
    let u: Vec<f64> = (0..r)
        .map(|j| (0..f).map(|c| a[c * r + j] * xbar[c]).sum())
        .collect();
    let g: Vec<f64> = (0..f)
        .map(|c| sigmoid(w[c] + (0..r).map(|j| b[c * r + j] * u[j]).sum::<f64>()))
        .collect();
    let keep: Vec<f64> = match keep {
        Keep::Threshold(tau) => g
            .iter()
            .map(|&v| if v >= tau { 1.0 } else { 0.0 })
            .collect(),
        Keep::TopK(k) => (0..f)
            .map(|c| {
                // gates ranked before c: larger, or equal with a lower index
                let before = (0..f)
                    .filter(|&o| g[o] > g[c] || (g[o] == g[c] && o < c))
                    .count();
                if before < k {
                    1.0
                } else {
                    0.0
                }
            })
            .collect(),
        Keep::Fixed(kv) => kv.to_vec(),
    };
    let mut xt = vec![0.0; n * f];
    for i in 0..n {
        for c in 0..f {
            xt[i * f + c] = x[i * f + c] * g[c] * keep[c];
        }
    }
    GateOut {
        xt,
        g,
        keep,
        xbar,
        u,
    }
}

/// (loss, mse, sparsity, count) of SPEC §3.
pub fn mse_sparsity(
    yhat: &[f64],
    y: &[f32],
    mask: &[f32],
    g: &[f64],
    lambda: f64,
    n: usize,
    t: usize,
) -> (f64, f64, f64, f64) {
    let mut sse = 0.0;
    let mut count = 0.0;
    for i in 0..n {
        for c in 0..t {
            let yv = y[i * t + c];
            if mask[i] != 0.0 && !yv.is_nan() {
                let tw = mask[i] as f64;
                sse += tw * (yhat[i * t + c] - yv as f64).powi(2);
                count += tw;
            }
        }
    }
    let mse = if count > 0.0 { sse / count } else { 0.0 };
    let sparsity = if g.is_empty() {
        0.0
    } else {
        g.iter().sum::<f64>() / g.len() as f64
    };
    (mse + lambda * sparsity, mse, sparsity, count)
}

/// One Adam/AdamW step on f64 copies: returns (p, m, v).
#[allow(clippy::too_many_arguments)]
pub fn adam(
    p: &[f64],
    g: &[f64],
    m: &[f64],
    v: &[f64],
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    wd: f64,
    step: i32,
    scale: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut po = p.to_vec();
    let mut mo = m.to_vec();
    let mut vo = v.to_vec();
    for i in 0..p.len() {
        let gi = g[i] * scale;
        mo[i] = beta1 * m[i] + (1.0 - beta1) * gi;
        vo[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi;
        let mhat = mo[i] / (1.0 - beta1.powi(step));
        let vhat = vo[i] / (1.0 - beta2.powi(step));
        po[i] = p[i] - lr * (mhat / (vhat.sqrt() + eps) + wd * p[i]);
    }
    (po, mo, vo)
}
