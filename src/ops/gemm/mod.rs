//! f32 GEMM: C[m,n] = act(alpha · op(A) · op(B) + beta · C + bias), beta ∈ {0, 1}.
//!
//! op(A) is [m,k]: A stored row-major [m,k] (`ta = false`) or [k,m] (`ta = true`); op(B) is [k,n]:
//! B stored [k,n] (`tb = false`) or [n,k] (`tb = true`). No transpose is ever materialised: the
//! packing routines read either layout. The linear op's three products are
//! - forward  out = inp · Wᵀ + b:   `ta = false, tb = true`,  bias fused;
//! - dinp    += dout · W:           `ta = false, tb = false`, accumulate;
//! - dW      += doutᵀ · inp:        `ta = true,  tb = false`, accumulate.
//!
//! Structure (BLIS / Goto): loop over NC-wide column blocks of C, KC-deep slices of k (B packed
//! into NR-wide panels, zero-padded), MC-tall row blocks (A packed into MR-tall panels), then an
//! MR × NR register tile per microkernel call. Packing is skipped where it would cost as much as it
//! saves: row-major A when n is small, and transposed A and plain B when their strides are short
//! (the weight gradient's per-block products); those are read in place (B: full panels only).
//! Row-major A read in place over more than one KC slice packs B whole where it fits L2
//! ([`whole_b`]), so each row panel of C stays in L1 across the slices.
//! Microkernels: AVX-512 (12 × 32, 24 zmm accumulators), AVX2 + FMA (6 × 16, 12 ymm), portable
//! (4 × 16 plain arrays); each has a half-width variant for the last panel so n = 42 computes 48
//! columns, not 64, and an instance per row count, so a last row panel of r < MR rows computes r
//! rows (m = 64 is 5 × 12 + 4, not 6 × 12) and is read in place like the full ones. The path is
//! picked at run time ([`Simd::detect`], cached) and can be forced ([`Gemm::simd`]) for tests.
//!
//! The epilogue (alpha, beta, bias) runs in registers when the tile is full; edge tiles go through a
//! stack buffer. `act` (e.g. GELU) is applied to each finished tile row while it is in cache.
//!
//! Parallel over [`par`]: one row slab of C per thread (multiples of MR) when m is large, else
//! split-k with the partial products summed in chunk order (deterministic for a given thread count).
//!
//! B stored [k, n] may also be an era's codes ([`Src::Codes`]: one byte per value, (c − 2) / 2,
//! src/ops/codes), decoded into its usual panels while they are packed: the same f32 values reach
//! the same microkernel operations, so the product is bit for bit that of the decoded matrix, from
//! a quarter of the bytes (the mapper's weight gradient doutᵀ · x over its 5,000 × F input, whose
//! f32 packing is bound by reading x). As A the codes would have to be decoded where the f32 A is
//! read in place, for no gain (measured: the mapper's forward as fast at F 705, 8% slower at
//! F 2,376), so only B takes them.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod pack;
mod portable;
mod simd;
mod tile;
mod whole_b;

pub use simd::Simd;
use tile::tile;
use whole_b::whole_b;

use super::par;
use crate::error::{Error, Result};
use std::cell::RefCell;

/// B as stored: f32 values, or era codes read as (c − 2) / 2 (exact in f32), which must be stored
/// [k, n] (`tb` false).
#[derive(Clone, Copy)]
pub enum Src<'a> {
    F32(&'a [f32]),
    Codes(&'a [u8]),
}

impl Src<'_> {
    fn len(&self) -> usize {
        match self {
            Src::F32(v) => v.len(),
            Src::Codes(c) => c.len(),
        }
    }
}

/// Below this many flops (2·m·n·k) the product runs on the calling thread.
const PAR_FLOPS: usize = 4 << 20;
/// With A row-major, A is packed only when n exceeds this (each packed value is then reused over
/// enough columns to pay for the transposing copy); else the microkernel reads A in place, its MR
/// rows held in L1 across the column panels. Measured on the Intel VM (2 threads, alternated in
/// one process, medians): in place was 7–24% faster at n = 192–1,024 (5,000 × 128 × 256 1.89
/// against 2.02 ms, × 2,376 × 256 31.8 against 41.7, × 705 × 1,024 39.0 against 45.2) and packing
/// 7–15% faster from n = 2,048 (2,048³, 4,096³, 5,000 × 512 × 2,048).
const PACK_A_MIN_COLS: usize = 1024;
/// A stored transposed ([k, m]) and B stored [k, n] are read in place when their row stride is at
/// most this many values (1 KiB): the weight gradient's per-block products, whose operands sit in
/// L2 and whose packing copies cost as much as the product (B's partial last column panel is still
/// packed, zero-padded). Longer strides are packed, as BLIS does.
const IN_PLACE_MAX_LD: usize = 256;

/// An activation applied in place to finished runs of C (one tile row at a time).
pub type Act<'a> = &'a (dyn Fn(&mut [f32]) + Sync);

/// One GEMM call: shapes, layouts and epilogue. Build with [`Gemm::new`], adjust fields, [`run`].
///
/// [`run`]: Gemm::run
#[derive(Clone, Copy)]
pub struct Gemm<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A is stored [k,m] (op(A) = Aᵀ).
    pub ta: bool,
    /// B is stored [n,k] (op(B) = Bᵀ).
    pub tb: bool,
    /// Row strides of the stored A, B, C (at least their stored row lengths).
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub alpha: f32,
    /// beta = 1 (C += …) when true, beta = 0 (C = …, C's old values never read) when false.
    pub accumulate: bool,
    /// Added to every row of C (length ≥ n), once.
    pub bias: Option<&'a [f32]>,
    /// Applied in place to the finished output.
    pub act: Option<Act<'a>>,
    /// Force a microkernel family (error if the CPU lacks it); None picks [`Simd::detect`].
    pub simd: Option<Simd>,
    /// Threads to split over (None: [`par::threads`]).
    pub threads: Option<usize>,
}

impl<'a> Gemm<'a> {
    /// Dense operands (strides = stored row lengths), alpha 1, C overwritten, no epilogue.
    pub fn new(ta: bool, tb: bool, m: usize, n: usize, k: usize) -> Self {
        Gemm {
            m,
            n,
            k,
            ta,
            tb,
            lda: if ta { m } else { k },
            ldb: if tb { k } else { n },
            ldc: n,
            alpha: 1.0,
            accumulate: false,
            bias: None,
            act: None,
            simd: None,
            threads: None,
        }
    }

    /// Runs the product. Errors (nothing written) on a slice too short for its shape and stride,
    /// a stride below the stored row length, a short bias, or a forced path the CPU lacks.
    pub fn run(&self, a: &[f32], b: &[f32], c: &mut [f32]) -> Result<()> {
        self.run_src(a, Src::F32(b), c)
    }

    /// [`Gemm::run`] with B given as f32 values or as codes ([`Src`]); codes with `tb` are an
    /// error.
    pub fn run_src(&self, a: &[f32], b: Src, c: &mut [f32]) -> Result<()> {
        let (m, n, k) = (self.m, self.n, self.k);
        let (ar, ac) = if self.ta { (k, m) } else { (m, k) };
        let (br, bc) = if self.tb { (n, k) } else { (k, n) };
        need("A", a.len(), ar, ac, self.lda)?;
        need("B", b.len(), br, bc, self.ldb)?;
        if self.tb && matches!(b, Src::Codes(_)) {
            return Err(Error::usage(
                "gemm: a B of codes must be stored [k, n] (tb false)".to_string(),
            ));
        }
        need("C", c.len(), m, n, self.ldc)?;
        if let Some(bias) = self.bias {
            if bias.len() < n {
                return Err(Error::shape(format!(
                    "gemm: bias has {} values, n = {n}",
                    bias.len()
                )));
            }
        }
        let simd = match self.simd {
            Some(s) if !s.available() => {
                return Err(Error::usage(format!(
                    "gemm: this CPU cannot run the {} path",
                    s.name()
                )))
            }
            Some(s) => s,
            None => Simd::detect(),
        };
        if m == 0 || n == 0 {
            return Ok(());
        }
        let prob = Prob {
            m,
            n,
            k,
            a: View::new(Src::F32(a), self.lda, self.ta),
            b: View::new(b, self.ldb, self.tb),
            alpha: self.alpha,
            beta: self.accumulate,
            bias: self.bias,
            act: self.act,
            bpacked: None,
        };
        let c = Out { c, ldc: self.ldc };
        if k == 0 {
            // alpha · (empty product) = 0: only the epilogue remains.
            finish(&prob, c, &[]);
            return Ok(());
        }
        let threads = self.threads.unwrap_or_else(par::threads).max(1);
        match simd {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => split::<avx512::Avx512>(&prob, c, threads),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => split::<avx2::Avx2>(&prob, c, threads),
            _ => split::<portable::Portable>(&prob, c, threads),
        }
        Ok(())
    }
}

/// BLAS-style entry point: C = op(A)·op(B) (+ C if `accumulate`), on `simd` or the detected path.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    simd: Option<Simd>,
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) -> Result<()> {
    Gemm {
        lda,
        ldb,
        ldc,
        accumulate,
        simd,
        ..Gemm::new(ta, tb, m, n, k)
    }
    .run(a, b, c)
}

/// Checks that a stored [rows, cols] matrix with row stride `ld` fits in `len` values.
fn need(what: &str, len: usize, rows: usize, cols: usize, ld: usize) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    if ld < cols {
        return Err(Error::shape(format!(
            "gemm: {what} is stored [{rows}, {cols}] but its stride is {ld}"
        )));
    }
    let want = (rows - 1).checked_mul(ld).and_then(|x| x.checked_add(cols));
    match want {
        Some(w) if w <= len => Ok(()),
        _ => Err(Error::shape(format!(
            "gemm: {what} is stored [{rows}, {cols}] with stride {ld} but has {len} values"
        ))),
    }
}

/// A stored matrix read as its logical op(X): element (r, c) of op(X) is `data[idx(r, c)]`, or
/// decoded from `codes[idx(r, c)]` when `codes` is given (B only: `data` is then empty, `trans`
/// false).
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    codes: Option<&'a [u8]>,
    ld: usize,
    trans: bool,
}

impl<'a> View<'a> {
    fn new(src: Src<'a>, ld: usize, trans: bool) -> Self {
        let (data, codes) = match src {
            Src::F32(v) => (v, None),
            Src::Codes(c) => (&[][..], Some(c)),
        };
        View {
            data,
            codes,
            ld,
            trans,
        }
    }

    #[inline(always)]
    fn idx(&self, r: usize, c: usize) -> usize {
        if self.trans {
            c * self.ld + r
        } else {
            r * self.ld + c
        }
    }

    /// The view whose (0, 0) is this view's (r0, c0); (r0, c0) must be an element.
    fn shift(self, r0: usize, c0: usize) -> View<'a> {
        let i = self.idx(r0, c0);
        match self.codes {
            Some(c) => View {
                codes: Some(&c[i..]),
                ..self
            },
            None => View {
                data: &self.data[i..],
                ..self
            },
        }
    }
}

/// A validated problem: every A(i,p), B(p,j) with i < m, p < k, j < n indexes inside its slice.
#[derive(Clone, Copy)]
struct Prob<'a> {
    m: usize,
    n: usize,
    k: usize,
    a: View<'a>,
    b: View<'a>,
    alpha: f32,
    beta: bool,
    bias: Option<&'a [f32]>,
    act: Option<Act<'a>>,
    /// op(B) already packed, whole (k ≤ KC, n ≤ NC: one block, laid out as `pack::b` writes it),
    /// by the caller that split C into row slabs, so each slab does not pack it again.
    bpacked: Option<&'a [f32]>,
}

/// The output: (m - 1)·ldc + n ≤ c.len() for the problem it belongs to.
struct Out<'c> {
    c: &'c mut [f32],
    ldc: usize,
}

/// What a microkernel reads and writes for one rows × width tile (rows ≤ MR; width = NR, or NR/2
/// if `half`).
pub(super) struct Tile {
    /// Rows of the tile, 1..=MR: a last panel of fewer rows computes only those (no zero padding).
    pub rows: usize,
    pub kc: usize,
    /// Direct: A(r, p) at a + r·lda + p. Otherwise at a + p·a_step + r: a packed panel
    /// (a_step = MR), or a transposed A read in place (a_step = its stride).
    pub a: *const f32,
    pub lda: usize,
    pub a_step: usize,
    pub direct: bool,
    /// B(p, j) at b + p·b_step + j: a packed panel (b_step = width) or B read in place.
    pub b: *const f32,
    pub b_step: usize,
    pub half: bool,
    /// C(r, j) at c + r·ldc + j.
    pub c: *mut f32,
    pub ldc: usize,
    pub alpha: f32,
    /// C = alpha·AB (+ C if beta) (+ bias[j] unless bias is null).
    pub beta: bool,
    pub bias: *const f32,
}

/// A microkernel family and its blocking.
pub(super) trait Kernel {
    const MR: usize;
    const NR: usize;
    const KC: usize;
    const MC: usize;
    const NC: usize;
    /// # Safety
    /// The CPU supports the family's instructions; 1 ≤ `t.rows` ≤ MR; `t.a` is readable for
    /// `t.rows` rows × kc as laid out per `t.direct` / `t.a_step`, `t.b` for kc × width at stride
    /// `t.b_step`, `t.c` readable and writable for `t.rows` rows × width at stride `t.ldc`, and
    /// `t.bias` is null or readable for width values.
    unsafe fn tile(t: &Tile);
}

/// `body::<NV, DIRECT, R>(t)` for R = `t.rows` (1..=MR as listed; a larger value runs MR rows, 0
/// none): a microkernel family's dispatch to its row-count instances.
macro_rules! by_rows {
    ($body:ident, $nv:literal, $direct:literal, $t:expr; $($r:literal)+; $mr:literal) => {
        match $t.rows {
            0 => {}
            $($r => $body::<$nv, $direct, $r>($t),)+
            _ => $body::<$nv, $direct, $mr>($t),
        }
    };
}
pub(super) use by_rows;

/// Largest MR × NR over the families (the edge-tile buffer).
const TILE_MAX: usize = 12 * 32;

#[repr(C, align(64))]
struct TileBuf([f32; TILE_MAX]);

thread_local! {
    /// Packing buffers, kept per thread (the pool's workers are persistent).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The most packing scratch (f32 values) any problem needs of [`serial`]: a KC slice of B at NC
/// columns and one of A at MC rows, or B packed whole ([`whole_b::WHOLE_B_MAX`], A read in place),
/// and 64 values of alignment slack.
fn scratch_bound<K: Kernel>() -> usize {
    let blocked = K::KC * (K::NC.div_ceil(K::NR) * K::NR + K::MC.div_ceil(K::MR) * K::MR);
    blocked.max(whole_b::WHOLE_B_MAX) + 64
}

/// Splits the problem over threads and runs each part.
fn split<K: Kernel>(p: &Prob, out: Out, threads: usize) {
    // the work the microkernels do, not the useful flops: a narrow C still fills half-panels of
    // NR/2 columns (the one-output head: 1 column of 16 computed), and a short k still pays each
    // tile's loads and stores (counted as at least 16 steps of k)
    let flops = 2usize
        .saturating_mul(p.m)
        .saturating_mul(p.n.next_multiple_of(K::NR / 2))
        .saturating_mul(p.k.max(16));
    if threads <= 1 || flops < PAR_FLOPS {
        return serial::<K>(p, out);
    }
    if p.m >= 4 * K::MR * threads {
        // one row slab per thread, a whole number of MR panels, like the row chunks of the ops
        // around it (layer norm, dropout, GELU, attention, the weight gradient): the calling
        // thread always runs the first chunk (`par::run`), so with two threads each core works
        // on the rows already in its L2 (slabs dealt out dynamically, 4 per thread, made the
        // training step 2–5% slower)
        let slab = p.m.div_ceil(threads).div_ceil(K::MR) * K::MR;
        // a B that every slab would pack alike (the forward's weight) is packed once, here
        let packed_b;
        let shared;
        let p = if !b_in_place(p) && p.k <= K::KC && p.n <= K::NC {
            let mut v = vec![0f32; p.k * p.n.div_ceil(K::NR) * K::NR];
            pack::b(&mut v, &p.b, 0, p.k, 0, p.n, K::NR);
            packed_b = v;
            shared = Prob {
                bpacked: Some(&packed_b[..]),
                ..*p
            };
            &shared
        } else {
            p
        };
        let ldc = out.ldc;
        let mut items = Vec::with_capacity(threads);
        let mut rest = out.c;
        let mut r0 = 0;
        while r0 < p.m {
            let rows = slab.min(p.m - r0);
            // the slab's rows; the last slab keeps whatever tail the caller's slice has
            let take = if r0 + rows < p.m {
                rows * ldc
            } else {
                rest.len()
            };
            let (mine, tail) = rest.split_at_mut(take);
            rest = tail;
            items.push((r0, rows, mine));
            r0 += rows;
        }
        par::run(items, |(r0, rows, c)| {
            let sub = Prob {
                m: rows,
                a: p.a.shift(r0, 0),
                ..*p
            };
            serial::<K>(&sub, Out { c, ldc });
        });
        return;
    }
    if p.k >= 128 * threads {
        // split-k: partial products into scratch, summed in order
        let chunk = p.k.div_ceil(threads);
        let parts = par::run(par::ranges(p.k, chunk), |kr| {
            let mut part = vec![0f32; p.m * p.n];
            let sub = Prob {
                k: kr.len(),
                a: p.a.shift(0, kr.start),
                b: p.b.shift(kr.start, 0),
                alpha: 1.0,
                beta: false,
                bias: None,
                act: None,
                ..*p
            };
            serial::<K>(
                &sub,
                Out {
                    c: &mut part,
                    ldc: p.n,
                },
            );
            part
        });
        let mut sum = parts.first().cloned().unwrap_or_default();
        for part in parts.iter().skip(1) {
            for (s, &v) in sum.iter_mut().zip(part) {
                *s += v;
            }
        }
        finish(p, out, &sum);
        return;
    }
    serial::<K>(p, out)
}

/// C = act(alpha·prod + beta·C + bias) with `prod` [m, n] dense (empty: a zero product).
fn finish(p: &Prob, out: Out, prod: &[f32]) {
    for i in 0..p.m {
        let row = &mut out.c[i * out.ldc..][..p.n];
        for (j, cv) in row.iter_mut().enumerate() {
            let mut v = prod.get(i * p.n + j).map_or(0.0, |&x| p.alpha * x);
            if p.beta {
                v += *cv;
            }
            if let Some(b) = p.bias {
                v += b[j];
            }
            *cv = v;
        }
        if let Some(act) = p.act {
            act(row);
        }
    }
}

/// Aligns a scratch region to 64 bytes: returns the first aligned index.
fn align64(v: &[f32]) -> usize {
    let addr = v.as_ptr() as usize;
    ((64 - addr % 64) % 64) / std::mem::size_of::<f32>()
}

/// How a thread's GEMM reads A.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AMode {
    /// Every panel packed (MR values per step of k).
    Packed,
    /// Row-major A read in place (a partial last panel too: the microkernel computes its rows only).
    Rows,
    /// Transposed A read in place: MR (or, last, fewer) consecutive values per step of k at
    /// stride lda.
    Cols,
}

/// Whether op(B) is read in place (plain f32 B with a short row stride) rather than packed.
fn b_in_place(p: &Prob) -> bool {
    !p.b.trans && p.b.ld <= IN_PLACE_MAX_LD && p.b.codes.is_none()
}

/// One thread's GEMM on a validated problem.
fn serial<K: Kernel>(p: &Prob, out: Out) {
    let mode = if p.a.trans {
        if p.a.ld <= IN_PLACE_MAX_LD {
            AMode::Cols
        } else {
            AMode::Packed
        }
    } else if p.n > PACK_A_MIN_COLS {
        AMode::Packed
    } else {
        AMode::Rows
    };
    let b_in_place = b_in_place(p);
    let pack_a = mode == AMode::Packed;
    let kc_max = if whole_b::<K>(p, mode, b_in_place) {
        p.k
    } else {
        K::KC.min(p.k)
    };
    let nc_max = if p.bpacked.is_some() {
        0
    } else {
        K::NC.min(p.n).div_ceil(K::NR) * K::NR
    };
    let mc_max = if pack_a {
        K::MC.min(p.m).div_ceil(K::MR) * K::MR
    } else {
        0
    };
    let b_len = kc_max * nc_max;
    let a_len = kc_max * mc_max;
    let total = b_len + a_len + 64;
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < total {
                // a thread's first GEMM reserves the bound (pages untouched until used), so no
                // later shape reallocates: a step's allocations do not depend on which thread ran
                // which parts of the steps before it
                let more = scratch_bound::<K>().max(total) - buf.len();
                buf.reserve_exact(more);
                buf.resize(total, 0.0);
            }
            run_blocks::<K>(p, out, &mut buf[..], b_len, mode, b_in_place);
        }
        // re-entered from an `act` callback: use a fresh buffer
        Err(_) => run_blocks::<K>(p, out, &mut vec![0f32; total], b_len, mode, b_in_place),
    })
}

/// Per-(jc, pc, ic) block state shared by every tile of the block.
struct Block<'p, 'a> {
    p: &'p Prob<'a>,
    bpack: &'p [f32],
    apack: &'p [f32],
    mode: AMode,
    b_in_place: bool,
    ic: usize,
    mc: usize,
    jc: usize,
    nc: usize,
    pc: usize,
    kc: usize,
    first: bool,
    last: bool,
}

fn run_blocks<K: Kernel>(
    p: &Prob,
    out: Out,
    buf: &mut [f32],
    b_len: usize,
    mode: AMode,
    b_in_place: bool,
) {
    const { assert!(K::MR * K::NR <= TILE_MAX, "edge tile buffer too small") };
    let off = align64(buf);
    let (bpack, apack) = buf[off..].split_at_mut(b_len);
    let (m, n, k) = (p.m, p.n, p.k);
    let Out { c, ldc } = out;
    let mut tb = TileBuf([0.0; TILE_MAX]);
    if whole_b::<K>(p, mode, b_in_place) {
        return whole_b::run::<K>(p, c, ldc, bpack, apack, &mut tb);
    }
    for jc in (0..n).step_by(K::NC) {
        let nc = K::NC.min(n - jc);
        for pc in (0..k).step_by(K::KC) {
            let kc = K::KC.min(k - pc);
            // a B packed by the caller is one block (jc = pc = 0): nothing to pack here
            if p.bpacked.is_none() {
                if !b_in_place {
                    pack::b(bpack, &p.b, pc, kc, jc, nc, K::NR);
                } else {
                    // only a partial last panel is packed (zero-padded); full ones are read in
                    // place
                    let jq = (nc - 1) / K::NR * K::NR;
                    let cols = nc - jq;
                    if cols != K::NR && cols != K::NR / 2 {
                        pack::b(&mut bpack[jq * kc..], &p.b, pc, kc, jc + jq, cols, K::NR);
                    }
                }
            }
            for ic in (0..m).step_by(K::MC) {
                let mc = K::MC.min(m - ic);
                if mode == AMode::Packed {
                    pack::a(apack, &p.a, ic, mc, pc, kc, K::MR);
                }
                let blk = Block {
                    p,
                    bpack: p.bpacked.unwrap_or(bpack),
                    apack,
                    mode,
                    b_in_place,
                    ic,
                    mc,
                    jc,
                    nc,
                    pc,
                    kc,
                    first: pc == 0,
                    last: pc + kc == k,
                };
                if mode != AMode::Rows {
                    // B micro-panel stays in L1 while the A panels stream from L2
                    for jr in (0..nc).step_by(K::NR) {
                        for ir in (0..mc).step_by(K::MR) {
                            tile::<K>(&blk, ir, jr, c, ldc, &mut tb);
                        }
                    }
                } else {
                    // A read in place: its MR rows stay in L1 across the (few) column panels
                    for ir in (0..mc).step_by(K::MR) {
                        for jr in (0..nc).step_by(K::NR) {
                            tile::<K>(&blk, ir, jr, c, ldc, &mut tb);
                        }
                    }
                }
            }
        }
    }
}
