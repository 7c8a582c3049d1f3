//! [`GpuBackend<L>`]: every `Backend` op as kernels of `kernels/*.cu`, one launch recipe per op for every
//! launcher. Each op checks buffer lengths against the shape letters before launching (a kernel
//! trusts its sizes), then launches; reductions use per-block partials and a second pass, so results
//! do not depend on scheduling.

use super::params::*;
use super::{CudaLauncher, EmuLauncher, LaunchCfg, Launcher, Order};
use crate::device::Backend;
use crate::ops::elementwise::DropoutKey;
use crate::ops::gate::GateSelect;
use crate::ops::loss::LossParts;
use crate::ops::optim::AdamArgs;
use crate::{Error, Result};
use bytemuck::Pod;
use std::sync::Arc;

/// Threads per block of the elementwise and reduction kernels.
const BLOCK: u32 = 256;
/// Cap on the grid of grid-stride kernels.
const MAX_GRID: u32 = 4096;
/// Cap on the blocks of the partial-sum reductions (sizes of the second pass).
const MAX_REDUCE_BLOCKS: u32 = 256;
/// Dynamic shared memory available without opt-in.
const MAX_DYN_SHARED: usize = 48 << 10;
/// Output tile edge of the GEMM kernel (`kernels/linear.cu`) and its inner-dimension slice.
const GEMM_TILE: u32 = 64;
const GEMM_K: u32 = 16;
/// Rows of dout/inp summed by one split of the dw product (as the CPU op's blocks of 256 rows).
const DW_SPLIT_ROWS: u32 = 256;
/// Cap on the splits of the dw product.
const MAX_DW_SPLITS: u32 = 64;

/// A device buffer of f32 owned by the backend; freed on drop.
pub struct GpuBuf<L: Launcher> {
    ptr: u64,
    len: usize,
    launcher: Arc<L>,
}

impl<L: Launcher> GpuBuf<L> {
    /// The device address (for launching test kernels directly).
    pub fn ptr(&self) -> u64 {
        self.ptr
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<L: Launcher> Drop for GpuBuf<L> {
    fn drop(&mut self) {
        // SAFETY: ptr came from alloc of this launcher and is dropped once.
        unsafe { self.launcher.free(self.ptr) }
    }
}

/// The GPU backend over launcher `L`.
pub struct GpuBackend<L: Launcher> {
    launcher: Arc<L>,
}

impl GpuBackend<CudaLauncher> {
    /// The first CUDA device; Err with the reason when there is none (never a panic).
    pub fn new() -> Result<Self> {
        Ok(Self::with_launcher(CudaLauncher::new()?))
    }
}

impl GpuBackend<EmuLauncher> {
    /// The CPU emulator running a block's threads in `order`.
    pub fn new(order: Order) -> Self {
        Self::with_launcher(EmuLauncher::new(order))
    }
}

fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v)
        .map_err(|_| Error::shape(format!("{what} = {v} exceeds the kernels' 32-bit sizes")))
}

fn expect_len<L: Launcher>(op: &str, name: &str, b: &GpuBuf<L>, want: usize) -> Result<()> {
    if b.len != want {
        return Err(Error::shape(format!(
            "{op}: {name} has {} elements, expected {want}",
            b.len
        )));
    }
    Ok(())
}

fn blocks_for(n: usize, per_block: u32, cap: u32) -> u32 {
    let b = n.div_ceil(per_block as usize).max(1);
    b.min(cap as usize) as u32
}

impl<L: Launcher> GpuBackend<L> {
    pub fn with_launcher(launcher: L) -> Self {
        GpuBackend {
            launcher: Arc::new(launcher),
        }
    }

    pub fn launcher(&self) -> &L {
        &self.launcher
    }

    /// Uninitialised-free scratch of `bytes` (zeroed), freed on drop; `len` counts f32 words.
    fn scratch(&self, bytes: usize) -> Result<GpuBuf<L>> {
        let ptr = self.launcher.alloc(bytes)?;
        Ok(GpuBuf {
            ptr,
            len: bytes.div_ceil(4),
            launcher: self.launcher.clone(),
        })
    }

    /// Launches `kernel` with `params`.
    ///
    /// # Safety
    /// The device addresses in `params` are live buffers of this backend, sized for `cfg`.
    unsafe fn go<P: Pod>(&self, kernel: &str, cfg: LaunchCfg, params: &P) -> Result<()> {
        self.launcher
            .launch(kernel, cfg, bytemuck::bytes_of(params))
    }

    fn elementwise(
        &self,
        kernel: &str,
        out: &mut GpuBuf<L>,
        a: &GpuBuf<L>,
        b: Option<&GpuBuf<L>>,
    ) -> Result<()> {
        expect_len(kernel, "a", a, out.len)?;
        if let Some(b) = b {
            expect_len(kernel, "b", b, out.len)?;
        }
        if out.len == 0 {
            return Ok(());
        }
        let p = EltParams {
            out: out.ptr,
            a: a.ptr,
            b: b.map_or(0, |b| b.ptr),
            n: u32_of("n", out.len)?,
            pad: 0,
        };
        let cfg = LaunchCfg::linear(blocks_for(out.len, BLOCK, MAX_GRID), BLOCK, 0);
        // SAFETY: lengths checked above; the kernel touches [0, n) of each buffer.
        unsafe { self.go(kernel, cfg, &p) }
    }

    fn dropout(
        &self,
        kernel: &str,
        out: &mut GpuBuf<L>,
        inp: &GpuBuf<L>,
        p: f32,
        key: DropoutKey,
    ) -> Result<()> {
        expect_len(kernel, "input", inp, out.len)?;
        if p.is_nan() {
            return Err(Error::usage("dropout probability is NaN"));
        }
        // p ≤ 0 keeps everything unscaled, as the CPU op does
        let p = p.max(0.0);
        if out.len == 0 {
            return Ok(());
        }
        let params = DropoutParams {
            out: out.ptr,
            inp: inp.ptr,
            n: u32_of("n", out.len)?,
            p,
            scale: 1.0 / (1.0 - p),
            seed_lo: key.seed as u32,
            seed_hi: (key.seed >> 32) as u32,
            step: key.step,
            tensor: key.tensor,
            pad: 0,
        };
        let cfg = LaunchCfg::linear(blocks_for(out.len, BLOCK, MAX_GRID), BLOCK, 0);
        // SAFETY: lengths checked above.
        unsafe { self.go(kernel, cfg, &params) }
    }

    /// One tiled GEMM launch (`kernels/linear.cu`): C (op)= A·B over `g`, split `splits` ways along
    /// the inner dimension in mode 2.
    ///
    /// # Safety
    /// `g` addresses live buffers: a and b span the strided ranges, out rows·cols floats (times
    /// `splits` in mode 2), bias cols floats or 0.
    unsafe fn gemm(&self, kernel: &str, g: GemmParams, splits: u32) -> Result<()> {
        let gx = g.cols.div_ceil(GEMM_TILE).max(1);
        let gy = g.rows.div_ceil(GEMM_TILE).max(1);
        if gy > 65535 || splits > 65535 {
            return Err(Error::shape(format!(
                "{kernel}: {} rows exceed the launch grid",
                g.rows
            )));
        }
        let cfg = LaunchCfg {
            grid: [gx, gy, splits.max(1)],
            block: [256, 1, 1],
            shmem: 0,
        };
        self.go(kernel, cfg, &g)
    }

    /// s[c] = Σ_i rowmask[i]·a[i,c]·b[i,c] over n rows, into `out_f64` (=, f64 scratch) or
    /// `out_f32` (+=).
    ///
    /// # Safety
    /// a (and b) hold n·cols floats, rowmask n floats or is 0, the output cols values.
    unsafe fn column_sum(&self, p: ColumnSumParams) -> Result<()> {
        if p.cols == 0 {
            return Ok(());
        }
        let cfg = LaunchCfg::linear(p.cols.div_ceil(32), 256, 0);
        self.go("column_sum_bwd_f32", cfg, &p)
    }

    /// Heads split for attention: dh = d / h, with h dividing d.
    fn head_dim(op: &str, d: usize, h: usize) -> Result<usize> {
        if h == 0 || !d.is_multiple_of(h) {
            return Err(Error::shape(format!(
                "{op}: {h} heads do not divide d = {d}"
            )));
        }
        Ok(d / h)
    }

    /// Σ over rows of the linear-attention state (S, z forward; dS, dz backward) into `s`, `z`
    /// (h·dh² and h·dh floats): per-(chunk, head) partials, then an ordered f64 reduction.
    ///
    /// # Safety
    /// `st` addresses live [n, d] tensors (x, y), `mask` [n] (forward) or `rowscale` [n·h·2]
    /// (backward); `s`, `z` hold h·dh² and h·dh floats.
    unsafe fn la_state(
        &self,
        kernel: &str,
        mut st: LinAttnStateParams,
        s: u64,
        z: u64,
    ) -> Result<()> {
        let (n, h, dh) = (st.n as usize, st.h as usize, st.dh as usize);
        let entries = dh * dh + dh;
        // rows per chunk: 64 (the CPU op's f32 block) or fewer when the tile would not fit
        let rows = (MAX_DYN_SHARED / 4 - 64) / (2 * dh + 1);
        let rows = rows.min(64);
        if rows == 0 {
            return Err(Error::shape(format!(
                "{kernel}: head width {dh} needs more shared memory than a block has"
            )));
        }
        let chunks = n.div_ceil(rows);
        if h > 65535 {
            return Err(Error::shape(format!(
                "{kernel}: {h} heads exceed the launch grid"
            )));
        }
        let total = u32_of("chunks·h·(dh²+dh)", chunks * h * entries)?;
        let partial = self.scratch(total as usize * 4)?;
        st.partial = partial.ptr;
        st.rows = rows as u32;
        let threads = (entries.div_ceil(32) * 32).min(BLOCK as usize) as u32;
        let cfg = LaunchCfg {
            grid: [u32_of("chunks", chunks)?, h as u32, 1],
            block: [threads, 1, 1],
            shmem: ((2 * rows * dh + rows) * 4) as u32,
        };
        self.go(kernel, cfg, &st)?;
        let r = LinAttnReduceParams {
            s,
            z,
            partial: partial.ptr,
            chunks: chunks as u32,
            h: st.h,
            dh: st.dh,
            pad: 0,
        };
        let cfg = LaunchCfg::linear(blocks_for(h * entries, BLOCK, MAX_GRID), BLOCK, 0);
        self.go("linear_attention_reduce_fwd_f32", cfg, &r)
    }

    /// Launch shape of the softmax attention kernels for head width `dh` and `rows` per-thread rows
    /// of shared memory: (threads per block, rows per tile, row stride, dynamic shared bytes).
    fn sa_shape(op: &str, dh: usize, rows: usize) -> Result<(u32, u32, u32, u32)> {
        let stride = dh | 1; // odd: consecutive threads' rows fall in different banks
        let words = MAX_DYN_SHARED / 4;
        for threads in [64usize, 32] {
            let own = threads * stride * rows;
            if own >= words {
                continue;
            }
            let tile = ((words - own) / (2 * dh + 2)).min(32);
            if tile > 0 {
                let bytes = (own + tile * (2 * dh + 2)) * 4;
                return Ok((threads as u32, tile as u32, stride as u32, bytes as u32));
            }
        }
        Err(Error::shape(format!(
            "{op}: head width {dh} needs more shared memory than a block has"
        )))
    }

    /// Grid of the softmax attention kernels: (⌈n / threads⌉, h).
    fn sa_grid(op: &str, n: usize, h: usize, threads: u32, shmem: u32) -> Result<LaunchCfg> {
        if h > 65535 {
            return Err(Error::shape(format!(
                "{op}: {h} heads exceed the launch grid"
            )));
        }
        Ok(LaunchCfg {
            grid: [u32_of("blocks", n.div_ceil(threads as usize))?, h as u32, 1],
            block: [threads, 1, 1],
            shmem,
        })
    }

    /// Loss partial sums into a fresh `parts` buffer (loss, mse, sparsity, count) on the device.
    #[allow(clippy::too_many_arguments)]
    fn loss_parts(
        &self,
        yhat: &GpuBuf<L>,
        y: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        g: &GpuBuf<L>,
        lambda: f32,
        n: usize,
        t: usize,
    ) -> Result<GpuBuf<L>> {
        let op = "mse_sparsity";
        expect_len(op, "yhat", yhat, n * t)?;
        expect_len(op, "y", y, n * t)?;
        expect_len(op, "mask", mask, n)?;
        let f = g.len;
        let blocks = blocks_for((n * t).max(f), BLOCK, MAX_REDUCE_BLOCKS);
        let partial = self.scratch(blocks as usize * 3 * 4)?;
        let parts = self.scratch(4 * 4)?;
        let p1 = LossFwdParams {
            partial: partial.ptr,
            yhat: yhat.ptr,
            y: y.ptr,
            mask: mask.ptr,
            g: g.ptr,
            n: u32_of("n", n)?,
            t: u32_of("t", t)?,
            f: u32_of("f", f)?,
            pad: 0,
        };
        u32_of("n·t", n * t)?;
        let p2 = LossReduceParams {
            parts: parts.ptr,
            partial: partial.ptr,
            blocks,
            f: p1.f,
            lambda,
            pad: 0,
        };
        // SAFETY: lengths checked above; partial holds `blocks` triples, parts 4 floats.
        unsafe {
            self.go(
                "mse_sparsity_fwd_f32",
                LaunchCfg::linear(blocks, BLOCK, 0),
                &p1,
            )?;
            self.go(
                "mse_sparsity_reduce_fwd_f32",
                LaunchCfg::linear(1, 32, 0),
                &p2,
            )?;
        }
        Ok(parts)
    }
}

#[allow(clippy::too_many_arguments)]
impl<L: Launcher> Backend for GpuBackend<L> {
    type Buf = GpuBuf<L>;

    fn name(&self) -> String {
        format!("gpu/{}", self.launcher.name())
    }
    fn len(&self, buf: &GpuBuf<L>) -> usize {
        buf.len
    }
    fn zeros(&self, len: usize) -> Result<GpuBuf<L>> {
        let ptr = self.launcher.alloc(len * 4)?;
        Ok(GpuBuf {
            ptr,
            len,
            launcher: self.launcher.clone(),
        })
    }
    fn upload(&self, host: &[f32]) -> Result<GpuBuf<L>> {
        let b = self.zeros(host.len())?;
        // SAFETY: b holds host.len() floats.
        unsafe { self.launcher.htod(b.ptr, bytemuck::cast_slice(host))? };
        Ok(b)
    }
    fn download(&self, buf: &GpuBuf<L>) -> Result<Vec<f32>> {
        let mut v = vec![0.0f32; buf.len];
        // SAFETY: buf holds buf.len floats.
        unsafe {
            self.launcher
                .dtoh(bytemuck::cast_slice_mut(&mut v), buf.ptr)?
        };
        Ok(v)
    }
    fn fill_zero(&self, buf: &mut GpuBuf<L>) -> Result<()> {
        // SAFETY: buf holds buf.len floats.
        unsafe { self.launcher.memset_zero(buf.ptr, buf.len * 4) }
    }
    fn copy(&self, dst: &mut GpuBuf<L>, src: &GpuBuf<L>) -> Result<()> {
        expect_len("copy", "src", src, dst.len)?;
        // SAFETY: equal lengths, distinct buffers (dst is borrowed mutably).
        unsafe { self.launcher.dtod(dst.ptr, src.ptr, dst.len * 4) }
    }

    fn linear_fwd(
        &self,
        out: &mut GpuBuf<L>,
        inp: &GpuBuf<L>,
        w: &GpuBuf<L>,
        b: Option<&GpuBuf<L>>,
        n: usize,
        k: usize,
        m: usize,
    ) -> Result<()> {
        let op = "linear_fwd";
        expect_len(op, "out", out, n * m)?;
        expect_len(op, "inp", inp, n * k)?;
        expect_len(op, "w", w, m * k)?;
        if let Some(b) = b {
            expect_len(op, "b", b, m)?;
        }
        if n == 0 || m == 0 {
            return Ok(());
        }
        u32_of("n·k", n * k)?;
        u32_of("n·m", n * m)?;
        u32_of("m·k", m * k)?;
        let g = GemmParams {
            out: out.ptr,
            a: inp.ptr,
            b: w.ptr,
            bias: b.map_or(0, |b| b.ptr),
            rows: u32_of("n", n)?,
            cols: u32_of("m", m)?,
            inner: u32_of("k", k)?,
            a_rs: k as u32,
            a_is: 1,
            b_is: 1,
            b_cs: k as u32,
            mode: 0,
            k_chunk: k as u32,
            pad: 0,
        };
        // SAFETY: lengths checked above; inp [n,k], w [m,k], out [n,m], bias [m].
        unsafe { self.gemm("linear_fwd_f32", g, 1) }
    }

    fn linear_bwd(
        &self,
        dinp: Option<&mut GpuBuf<L>>,
        dw: &mut GpuBuf<L>,
        db: Option<&mut GpuBuf<L>>,
        dout: &GpuBuf<L>,
        inp: &GpuBuf<L>,
        w: &GpuBuf<L>,
        n: usize,
        k: usize,
        m: usize,
    ) -> Result<()> {
        let op = "linear_bwd";
        expect_len(op, "dout", dout, n * m)?;
        expect_len(op, "inp", inp, n * k)?;
        expect_len(op, "w", w, m * k)?;
        expect_len(op, "dw", dw, m * k)?;
        if let Some(d) = &dinp {
            expect_len(op, "dinp", d, n * k)?;
        }
        if let Some(d) = &db {
            expect_len(op, "db", d, m)?;
        }
        if n == 0 || m == 0 {
            return Ok(());
        }
        let (n32, k32, m32) = (u32_of("n", n)?, u32_of("k", k)?, u32_of("m", m)?);
        u32_of("n·k", n * k)?;
        u32_of("n·m", n * m)?;
        if k > 0 {
            if let Some(dinp) = dinp {
                // dinp[n,k] += dout[n,m] · w[m,k]
                let g = GemmParams {
                    out: dinp.ptr,
                    a: dout.ptr,
                    b: w.ptr,
                    bias: 0,
                    rows: n32,
                    cols: k32,
                    inner: m32,
                    a_rs: m32,
                    a_is: 1,
                    b_is: k32,
                    b_cs: 1,
                    mode: 1,
                    k_chunk: m32,
                    pad: 0,
                };
                // SAFETY: lengths checked above.
                unsafe { self.gemm("linear_bwd_f32", g, 1)? };
            }
            // dw[m,k] += doutᵀ[m,n] · inp[n,k]: split over rows, partials summed in a second pass
            let splits = n32.div_ceil(DW_SPLIT_ROWS).clamp(1, MAX_DW_SPLITS);
            let k_chunk = n32.div_ceil(splits).div_ceil(GEMM_K) * GEMM_K;
            let len = u32_of("splits·m·k", splits as usize * m * k)?;
            let partial = self.scratch(len as usize * 4)?;
            let g = GemmParams {
                out: partial.ptr,
                a: dout.ptr,
                b: inp.ptr,
                bias: 0,
                rows: m32,
                cols: k32,
                inner: n32,
                a_rs: 1,
                a_is: m32,
                b_is: k32,
                b_cs: 1,
                mode: 2,
                k_chunk,
                pad: 0,
            };
            let r = SplitReduceParams {
                out: dw.ptr,
                partial: partial.ptr,
                splits,
                len: (m * k) as u32,
            };
            let cfg = LaunchCfg::linear(blocks_for(m * k, BLOCK, MAX_GRID), BLOCK, 0);
            // SAFETY: partial holds splits·m·k floats; dw m·k.
            unsafe {
                self.gemm("linear_bwd_f32", g, splits)?;
                self.go("linear_reduce_bwd_f32", cfg, &r)?;
            }
        }
        if let Some(db) = db {
            let p = ColumnSumParams {
                out_f32: db.ptr,
                out_f64: 0,
                a: dout.ptr,
                b: 0,
                rowmask: 0,
                n: n32,
                cols: m32,
            };
            // SAFETY: dout holds n·m floats, db m.
            unsafe { self.column_sum(p)? };
        }
        Ok(())
    }

    fn linear_attention_fwd(
        &self,
        out: &mut GpuBuf<L>,
        s: &mut GpuBuf<L>,
        z: &mut GpuBuf<L>,
        q: &GpuBuf<L>,
        k: &GpuBuf<L>,
        v: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        n: usize,
        d: usize,
        h: usize,
    ) -> Result<()> {
        let op = "linear_attention_fwd";
        if d == 0 {
            return Ok(());
        }
        let dh = Self::head_dim(op, d, h)?;
        for (name, b) in [("out", &*out), ("q", q), ("k", k), ("v", v)] {
            expect_len(op, name, b, n * d)?;
        }
        expect_len(op, "mask", mask, n)?;
        expect_len(op, "s", s, h * dh * dh)?;
        expect_len(op, "z", z, h * dh)?;
        if n == 0 {
            self.fill_zero(s)?;
            return self.fill_zero(z);
        }
        u32_of("n·d", n * d)?;
        let st = LinAttnStateParams {
            partial: 0,
            x: k.ptr,
            y: v.ptr,
            rowscale: 0,
            mask: mask.ptr,
            n: n as u32,
            d: d as u32,
            h: h as u32,
            dh: dh as u32,
            rows: 0,
            pad: 0,
        };
        let rp = LinAttnRowsParams {
            out: out.ptr,
            out2: 0,
            x: q.ptr,
            y: 0,
            s: s.ptr,
            z: z.ptr,
            rowscale: 0,
            mask: mask.ptr,
            n: n as u32,
            d: d as u32,
            h: h as u32,
            dh: dh as u32,
        };
        let cfg = LaunchCfg::linear(blocks_for(n * d, BLOCK, MAX_GRID), BLOCK, 0);
        // SAFETY: lengths checked above.
        unsafe {
            self.la_state("linear_attention_state_fwd_f32", st, s.ptr, z.ptr)?;
            self.go("linear_attention_out_fwd_f32", cfg, &rp)
        }
    }

    fn linear_attention_bwd(
        &self,
        dq: &mut GpuBuf<L>,
        dk: &mut GpuBuf<L>,
        dv: &mut GpuBuf<L>,
        dout: &GpuBuf<L>,
        q: &GpuBuf<L>,
        k: &GpuBuf<L>,
        v: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        s: &GpuBuf<L>,
        z: &GpuBuf<L>,
        n: usize,
        d: usize,
        h: usize,
    ) -> Result<()> {
        let op = "linear_attention_bwd";
        if d == 0 {
            return Ok(());
        }
        let dh = Self::head_dim(op, d, h)?;
        for (name, b) in [
            ("dq", &*dq),
            ("dk", &*dk),
            ("dv", &*dv),
            ("dout", dout),
            ("q", q),
            ("k", k),
            ("v", v),
        ] {
            expect_len(op, name, b, n * d)?;
        }
        expect_len(op, "mask", mask, n)?;
        expect_len(op, "s", s, h * dh * dh)?;
        expect_len(op, "z", z, h * dh)?;
        if n == 0 {
            return Ok(());
        }
        u32_of("n·d", n * d)?;
        let rowscale = self.scratch(n * h * 2 * 4)?;
        let ds = self.scratch(h * dh * dh * 4)?;
        let dz = self.scratch(h * dh * 4)?;
        let rows = |out: u64, out2: u64, x: u64, y: u64, s: u64, z: u64| LinAttnRowsParams {
            out,
            out2,
            x,
            y,
            s,
            z,
            rowscale: rowscale.ptr,
            mask: mask.ptr,
            n: n as u32,
            d: d as u32,
            h: h as u32,
            dh: dh as u32,
        };
        let st = LinAttnStateParams {
            partial: 0,
            x: q.ptr,
            y: dout.ptr,
            rowscale: rowscale.ptr,
            mask: 0,
            n: n as u32,
            d: d as u32,
            h: h as u32,
            dh: dh as u32,
            rows: 0,
            pad: 0,
        };
        let per_row = LaunchCfg::linear(blocks_for(n * h, BLOCK, MAX_GRID), BLOCK, 0);
        let per_elt = LaunchCfg::linear(blocks_for(n * d, BLOCK, MAX_GRID), BLOCK, 0);
        // SAFETY: lengths checked above; scratch sized for n·h pairs, h·dh², h·dh.
        unsafe {
            self.go(
                "linear_attention_rows_bwd_f32",
                per_row,
                &rows(0, 0, q.ptr, dout.ptr, s.ptr, z.ptr),
            )?;
            self.go(
                "linear_attention_dq_bwd_f32",
                per_elt,
                &rows(dq.ptr, 0, q.ptr, dout.ptr, s.ptr, z.ptr),
            )?;
            self.la_state("linear_attention_state_bwd_f32", st, ds.ptr, dz.ptr)?;
            self.go(
                "linear_attention_dkv_bwd_f32",
                per_elt,
                &rows(dk.ptr, dv.ptr, k.ptr, v.ptr, ds.ptr, dz.ptr),
            )
        }
    }

    fn gate_fwd(
        &self,
        xt: &mut GpuBuf<L>,
        g: &mut GpuBuf<L>,
        keep: &mut GpuBuf<L>,
        xbar: &mut GpuBuf<L>,
        u: &mut GpuBuf<L>,
        x: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        w: &GpuBuf<L>,
        a: &GpuBuf<L>,
        b: &GpuBuf<L>,
        select: GateSelect,
        n: usize,
        f: usize,
        r: usize,
    ) -> Result<()> {
        let op = "gate_fwd";
        expect_len(op, "xt", xt, n * f)?;
        expect_len(op, "x", x, n * f)?;
        expect_len(op, "mask", mask, n)?;
        for (name, buf) in [("g", &*g), ("keep", &*keep), ("xbar", &*xbar), ("w", w)] {
            expect_len(op, name, buf, f)?;
        }
        expect_len(op, "a", a, f * r)?;
        expect_len(op, "b", b, f * r)?;
        if u.len < r {
            return Err(Error::shape(format!(
                "{op}: u has {} elements, expected at least {r}",
                u.len
            )));
        }
        if f == 0 {
            return Ok(());
        }
        let (n32, f32_, r32) = (u32_of("n", n)?, u32_of("f", f)?, u32_of("r", r)?);
        u32_of("n·f", n * f)?;
        let (mode, tau, topk) = match select {
            GateSelect::Threshold(tau) => (0, tau, 0),
            GateSelect::TopK(k) => (1, 0.0, u32::try_from(k).unwrap_or(u32::MAX)),
        };
        let work = self.scratch((f + r) * 8)?;
        let cs = ColumnSumParams {
            out_f32: 0,
            out_f64: work.ptr,
            a: x.ptr,
            b: 0,
            rowmask: mask.ptr,
            n: n32,
            cols: f32_,
        };
        let gp = GateParams {
            g: g.ptr,
            keep: keep.ptr,
            xbar: xbar.ptr,
            u: u.ptr,
            work: work.ptr,
            w: w.ptr,
            a: a.ptr,
            b: b.ptr,
            mask: mask.ptr,
            n: n32,
            f: f32_,
            r: r32,
            mode,
            tau,
            topk,
        };
        let ap = GateApplyParams {
            xt: xt.ptr,
            x: x.ptr,
            g: g.ptr,
            keep: keep.ptr,
            n: n32,
            f: f32_,
        };
        // SAFETY: lengths checked above; work holds f + r doubles.
        unsafe {
            self.column_sum(cs)?;
            self.go("gate_fwd_f32", LaunchCfg::linear(1, BLOCK, 0), &gp)?;
            if n > 0 {
                let cfg = LaunchCfg::linear(blocks_for(n * f, BLOCK, MAX_GRID), BLOCK, 0);
                self.go("gate_apply_fwd_f32", cfg, &ap)?;
            }
        }
        Ok(())
    }

    fn gate_bwd(
        &self,
        dw: &mut GpuBuf<L>,
        da: &mut GpuBuf<L>,
        db: &mut GpuBuf<L>,
        dg: &mut GpuBuf<L>,
        dxt: &GpuBuf<L>,
        x: &GpuBuf<L>,
        xbar: &GpuBuf<L>,
        u: &GpuBuf<L>,
        g: &GpuBuf<L>,
        keep: &GpuBuf<L>,
        b: &GpuBuf<L>,
        n: usize,
        f: usize,
        r: usize,
    ) -> Result<()> {
        let op = "gate_bwd";
        expect_len(op, "dxt", dxt, n * f)?;
        expect_len(op, "x", x, n * f)?;
        for (name, buf) in [
            ("dw", &*dw),
            ("dg", &*dg),
            ("xbar", xbar),
            ("g", g),
            ("keep", keep),
        ] {
            expect_len(op, name, buf, f)?;
        }
        for (name, buf) in [("da", &*da), ("db", &*db), ("b", b)] {
            expect_len(op, name, buf, f * r)?;
        }
        if u.len < r {
            return Err(Error::shape(format!(
                "{op}: u has {} elements, expected at least {r}",
                u.len
            )));
        }
        if f == 0 {
            return Ok(());
        }
        let (n32, f32_, r32) = (u32_of("n", n)?, u32_of("f", f)?, u32_of("r", r)?);
        u32_of("n·f", n * f)?;
        u32_of("f·r", f * r)?;
        let work = self.scratch((2 * f + r) * 8)?;
        let cs = ColumnSumParams {
            out_f32: 0,
            out_f64: work.ptr,
            a: dxt.ptr,
            b: x.ptr,
            rowmask: 0,
            n: n32,
            cols: f32_,
        };
        let bp = GateBwdParams {
            dw: dw.ptr,
            da: da.ptr,
            db: db.ptr,
            dg: dg.ptr,
            work: work.ptr,
            g: g.ptr,
            keep: keep.ptr,
            xbar: xbar.ptr,
            u: u.ptr,
            b: b.ptr,
            f: f32_,
            r: r32,
        };
        // SAFETY: lengths checked above; work holds 2f + r doubles.
        unsafe {
            self.column_sum(cs)?;
            self.go("gate_bwd_f32", LaunchCfg::linear(1, BLOCK, 0), &bp)
        }
    }

    fn pos_enc_add(&self, h: &mut GpuBuf<L>, n: usize, d: usize) -> Result<()> {
        expect_len("pos_enc_add", "h", h, n * d)?;
        if n == 0 || d == 0 {
            return Ok(());
        }
        let p = PosEncParams {
            h: h.ptr,
            n: u32_of("n", n)?,
            d: u32_of("d", d)?,
        };
        let cfg = LaunchCfg::linear(blocks_for(n * d, BLOCK, MAX_GRID), BLOCK, 0);
        // SAFETY: h holds n·d floats.
        unsafe { self.go("pos_enc_add_fwd_f32", cfg, &p) }
    }

    fn softmax_attention_fwd(
        &self,
        out: &mut GpuBuf<L>,
        lse: &mut GpuBuf<L>,
        q: &GpuBuf<L>,
        k: &GpuBuf<L>,
        v: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        n: usize,
        d: usize,
        h: usize,
    ) -> Result<()> {
        let op = "softmax_attention_fwd";
        if n == 0 || d == 0 {
            return Ok(());
        }
        let dh = Self::head_dim(op, d, h)?;
        for (name, b) in [("out", &*out), ("q", q), ("k", k), ("v", v)] {
            expect_len(op, name, b, n * d)?;
        }
        expect_len(op, "mask", mask, n)?;
        expect_len(op, "lse", lse, h * n)?;
        u32_of("n·d", n * d)?;
        let (threads, tile, stride, shmem) = Self::sa_shape(op, dh, 1)?;
        let p = SoftmaxAttnParams {
            out: out.ptr,
            out2: lse.ptr,
            dd: 0,
            q: q.ptr,
            k: k.ptr,
            v: v.ptr,
            dout: 0,
            o: 0,
            lse: 0,
            mask: mask.ptr,
            n: n as u32,
            d: d as u32,
            h: h as u32,
            dh: dh as u32,
            tile,
            stride,
            scale: 1.0 / (dh as f32).sqrt(),
            pad: 0,
        };
        let cfg = Self::sa_grid(op, n, h, threads, shmem)?;
        // SAFETY: lengths checked above; shared memory sized by sa_shape.
        unsafe { self.go("softmax_attention_fwd_f32", cfg, &p) }
    }

    fn softmax_attention_bwd(
        &self,
        dq: &mut GpuBuf<L>,
        dk: &mut GpuBuf<L>,
        dv: &mut GpuBuf<L>,
        dout: &GpuBuf<L>,
        out: &GpuBuf<L>,
        lse: &GpuBuf<L>,
        q: &GpuBuf<L>,
        k: &GpuBuf<L>,
        v: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        n: usize,
        d: usize,
        h: usize,
    ) -> Result<()> {
        let op = "softmax_attention_bwd";
        if n == 0 || d == 0 {
            return Ok(());
        }
        let dh = Self::head_dim(op, d, h)?;
        for (name, b) in [
            ("dq", &*dq),
            ("dk", &*dk),
            ("dv", &*dv),
            ("dout", dout),
            ("out", out),
            ("q", q),
            ("k", k),
            ("v", v),
        ] {
            expect_len(op, name, b, n * d)?;
        }
        expect_len(op, "mask", mask, n)?;
        expect_len(op, "lse", lse, h * n)?;
        u32_of("n·d", n * d)?;
        let dd = self.scratch(h * n * 4)?;
        let base = SoftmaxAttnParams {
            out: 0,
            out2: 0,
            dd: dd.ptr,
            q: q.ptr,
            k: k.ptr,
            v: v.ptr,
            dout: dout.ptr,
            o: out.ptr,
            lse: lse.ptr,
            mask: mask.ptr,
            n: n as u32,
            d: d as u32,
            h: h as u32,
            dh: dh as u32,
            tile: 0,
            stride: 0,
            scale: 1.0 / (dh as f32).sqrt(),
            pad: 0,
        };
        let (tq, tile_q, stride_q, sh_q) = Self::sa_shape(op, dh, 1)?;
        let (tk, tile_k, stride_k, sh_k) = Self::sa_shape(op, dh, 2)?;
        let pq = SoftmaxAttnParams {
            out: dq.ptr,
            tile: tile_q,
            stride: stride_q,
            ..base
        };
        let pk = SoftmaxAttnParams {
            out: dk.ptr,
            out2: dv.ptr,
            tile: tile_k,
            stride: stride_k,
            ..base
        };
        let cfg_d = LaunchCfg::linear(blocks_for(n * h, BLOCK, MAX_GRID), BLOCK, 0);
        let cfg_q = Self::sa_grid(op, n, h, tq, sh_q)?;
        let cfg_k = Self::sa_grid(op, n, h, tk, sh_k)?;
        // SAFETY: lengths checked above; dd holds h·n floats; shared memory sized by sa_shape.
        unsafe {
            self.go("softmax_attention_d_bwd_f32", cfg_d, &base)?;
            self.go("softmax_attention_dq_bwd_f32", cfg_q, &pq)?;
            self.go("softmax_attention_dkv_bwd_f32", cfg_k, &pk)
        }
    }

    fn layer_norm_fwd(
        &self,
        out: &mut GpuBuf<L>,
        mean: &mut GpuBuf<L>,
        rstd: &mut GpuBuf<L>,
        inp: &GpuBuf<L>,
        gamma: &GpuBuf<L>,
        beta: &GpuBuf<L>,
        n: usize,
        d: usize,
    ) -> Result<()> {
        let op = "layer_norm_fwd";
        expect_len(op, "out", out, n * d)?;
        expect_len(op, "inp", inp, n * d)?;
        expect_len(op, "mean", mean, n)?;
        expect_len(op, "rstd", rstd, n)?;
        expect_len(op, "gamma", gamma, d)?;
        expect_len(op, "beta", beta, d)?;
        if n == 0 || d == 0 {
            return Ok(());
        }
        let p = LayerNormFwdParams {
            out: out.ptr,
            mean: mean.ptr,
            rstd: rstd.ptr,
            inp: inp.ptr,
            gamma: gamma.ptr,
            beta: beta.ptr,
            n: u32_of("n", n)?,
            d: u32_of("d", d)?,
        };
        u32_of("n·d", n * d)?;
        let warps = BLOCK / 32;
        let cfg = LaunchCfg::linear(n.div_ceil(warps as usize) as u32, BLOCK, 0);
        // SAFETY: lengths checked above; one warp per row.
        unsafe { self.go("layer_norm_fwd_f32", cfg, &p) }
    }

    fn layer_norm_bwd(
        &self,
        dinp: &mut GpuBuf<L>,
        dgamma: &mut GpuBuf<L>,
        dbeta: &mut GpuBuf<L>,
        dout: &GpuBuf<L>,
        inp: &GpuBuf<L>,
        mean: &GpuBuf<L>,
        rstd: &GpuBuf<L>,
        gamma: &GpuBuf<L>,
        n: usize,
        d: usize,
    ) -> Result<()> {
        let op = "layer_norm_bwd";
        expect_len(op, "dinp", dinp, n * d)?;
        expect_len(op, "dout", dout, n * d)?;
        expect_len(op, "inp", inp, n * d)?;
        expect_len(op, "mean", mean, n)?;
        expect_len(op, "rstd", rstd, n)?;
        expect_len(op, "gamma", gamma, d)?;
        expect_len(op, "dgamma", dgamma, d)?;
        expect_len(op, "dbeta", dbeta, d)?;
        if n == 0 || d == 0 {
            return Ok(());
        }
        // each warp keeps 2d floats of dγ/dβ in shared memory
        let warps = (MAX_DYN_SHARED / (8 * d)).min(8);
        if warps == 0 {
            return Err(Error::shape(format!(
                "{op}: d = {d} needs more shared memory than a block has"
            )));
        }
        let blocks = blocks_for(n, warps as u32, MAX_REDUCE_BLOCKS);
        let partial = self.scratch(blocks as usize * 2 * d * 4)?;
        let p1 = LayerNormBwdParams {
            dinp: dinp.ptr,
            partial: partial.ptr,
            dout: dout.ptr,
            inp: inp.ptr,
            mean: mean.ptr,
            rstd: rstd.ptr,
            gamma: gamma.ptr,
            n: u32_of("n", n)?,
            d: u32_of("d", d)?,
        };
        u32_of("n·d", n * d)?;
        let p2 = LayerNormParamsBwdParams {
            dgamma: dgamma.ptr,
            dbeta: dbeta.ptr,
            partial: partial.ptr,
            blocks,
            d: p1.d,
        };
        let shmem = (warps * 8 * d) as u32;
        // SAFETY: lengths checked above; partial holds blocks·2d floats.
        unsafe {
            self.go(
                "layer_norm_bwd_f32",
                LaunchCfg::linear(blocks, warps as u32 * 32, shmem),
                &p1,
            )?;
            self.go(
                "layer_norm_params_bwd_f32",
                LaunchCfg::linear(blocks_for(d, BLOCK, u32::MAX), BLOCK, 0),
                &p2,
            )
        }
    }

    fn gelu_fwd(&self, out: &mut GpuBuf<L>, inp: &GpuBuf<L>) -> Result<()> {
        self.elementwise("gelu_fwd_f32", out, inp, None)
    }
    fn gelu_bwd(&self, dinp: &mut GpuBuf<L>, dout: &GpuBuf<L>, inp: &GpuBuf<L>) -> Result<()> {
        self.elementwise("gelu_bwd_f32", dinp, inp, Some(dout))
    }
    fn elu1_fwd(&self, out: &mut GpuBuf<L>, inp: &GpuBuf<L>) -> Result<()> {
        self.elementwise("elu1_fwd_f32", out, inp, None)
    }
    fn elu1_bwd(&self, dinp: &mut GpuBuf<L>, dout: &GpuBuf<L>, inp: &GpuBuf<L>) -> Result<()> {
        self.elementwise("elu1_bwd_f32", dinp, inp, Some(dout))
    }
    fn add_fwd(&self, out: &mut GpuBuf<L>, a: &GpuBuf<L>, b: &GpuBuf<L>) -> Result<()> {
        self.elementwise("add_fwd_f32", out, a, Some(b))
    }
    fn accumulate(&self, dst: &mut GpuBuf<L>, src: &GpuBuf<L>) -> Result<()> {
        self.elementwise("accumulate_fwd_f32", dst, src, None)
    }
    fn dropout_fwd(
        &self,
        out: &mut GpuBuf<L>,
        inp: &GpuBuf<L>,
        p: f32,
        key: DropoutKey,
    ) -> Result<()> {
        self.dropout("dropout_fwd_f32", out, inp, p, key)
    }
    fn dropout_bwd(
        &self,
        dinp: &mut GpuBuf<L>,
        dout: &GpuBuf<L>,
        p: f32,
        key: DropoutKey,
    ) -> Result<()> {
        self.dropout("dropout_bwd_f32", dinp, dout, p, key)
    }

    fn mse_sparsity_fwd(
        &self,
        yhat: &GpuBuf<L>,
        y: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        g: &GpuBuf<L>,
        lambda: f32,
        n: usize,
        t: usize,
    ) -> Result<LossParts> {
        let parts = self.loss_parts(yhat, y, mask, g, lambda, n, t)?;
        let v = self.download(&parts)?;
        Ok(LossParts {
            loss: v[0],
            mse: v[1],
            sparsity: v[2],
            count: v[3],
        })
    }

    fn mse_sparsity_bwd(
        &self,
        dyhat: &mut GpuBuf<L>,
        dg: &mut GpuBuf<L>,
        yhat: &GpuBuf<L>,
        y: &GpuBuf<L>,
        mask: &GpuBuf<L>,
        lambda: f32,
        n: usize,
        t: usize,
    ) -> Result<()> {
        expect_len("mse_sparsity_bwd", "dyhat", dyhat, n * t)?;
        let f = dg.len;
        // the count of scored targets stays on the device: no host round trip
        let parts = self.loss_parts(yhat, y, mask, dg, lambda, n, t)?;
        let len = (n * t).max(f);
        if len == 0 {
            return Ok(());
        }
        let p = LossBwdParams {
            dyhat: dyhat.ptr,
            dg: dg.ptr,
            yhat: yhat.ptr,
            y: y.ptr,
            mask: mask.ptr,
            parts: parts.ptr,
            n: u32_of("n", n)?,
            t: u32_of("t", t)?,
            f: u32_of("f", f)?,
            lambda,
        };
        let cfg = LaunchCfg::linear(blocks_for(len, BLOCK, MAX_GRID), BLOCK, 0);
        // SAFETY: lengths checked in loss_parts and above.
        unsafe { self.go("mse_sparsity_bwd_f32", cfg, &p) }
    }

    fn corr_loss_fwd(
        &self,
        _stats: &mut GpuBuf<L>,
        _yhat: &GpuBuf<L>,
        _y: &GpuBuf<L>,
        _mask: &GpuBuf<L>,
        _n: usize,
        _t: usize,
    ) -> Result<crate::ops::corr_loss::CorrParts> {
        Err(Error::device("corr_loss: TODO-WIRE".to_string()))
    }
    fn corr_loss_bwd(
        &self,
        _dyhat: &mut GpuBuf<L>,
        _yhat: &GpuBuf<L>,
        _y: &GpuBuf<L>,
        _mask: &GpuBuf<L>,
        _stats: &GpuBuf<L>,
        _weight: f32,
        _n: usize,
        _t: usize,
    ) -> Result<()> {
        Err(Error::device("corr_loss: TODO-WIRE".to_string()))
    }
    fn film_fwd(
        &self,
        _out: &mut GpuBuf<L>,
        _inp: &GpuBuf<L>,
        _gamma: &GpuBuf<L>,
        _beta: &GpuBuf<L>,
        _n: usize,
        _d: usize,
    ) -> Result<()> {
        Err(Error::device("film: TODO-WIRE".to_string()))
    }
    fn film_bwd(
        &self,
        _dinp: &mut GpuBuf<L>,
        _dgamma: &mut GpuBuf<L>,
        _dbeta: &mut GpuBuf<L>,
        _dout: &GpuBuf<L>,
        _inp: &GpuBuf<L>,
        _gamma: &GpuBuf<L>,
        _n: usize,
        _d: usize,
    ) -> Result<()> {
        Err(Error::device("film: TODO-WIRE".to_string()))
    }
    fn sum_squares(&self, g: &GpuBuf<L>) -> Result<f64> {
        if g.len == 0 {
            return Ok(0.0);
        }
        let blocks = blocks_for(g.len, BLOCK, MAX_REDUCE_BLOCKS);
        let partial = self.scratch(blocks as usize * 8)?;
        let out = self.scratch(8)?;
        let p1 = SumSqParams {
            partial: partial.ptr,
            g: g.ptr,
            n: u32_of("n", g.len)?,
            pad: 0,
        };
        let p2 = SumSqReduceParams {
            out: out.ptr,
            partial: partial.ptr,
            blocks,
            pad: 0,
        };
        let mut bytes = [0u8; 8];
        // SAFETY: partial holds `blocks` f64, out one f64.
        unsafe {
            self.go(
                "sum_squares_fwd_f32",
                LaunchCfg::linear(blocks, BLOCK, 0),
                &p1,
            )?;
            self.go(
                "sum_squares_reduce_fwd_f32",
                LaunchCfg::linear(1, 32, 0),
                &p2,
            )?;
            self.launcher.dtoh(&mut bytes, out.ptr)?;
        }
        Ok(f64::from_ne_bytes(bytes))
    }

    fn adam_step(
        &self,
        p: &mut GpuBuf<L>,
        g: &GpuBuf<L>,
        m: &mut GpuBuf<L>,
        v: &mut GpuBuf<L>,
        args: &AdamArgs,
    ) -> Result<()> {
        let op = "adam_step";
        expect_len(op, "g", g, p.len)?;
        expect_len(op, "m", m, p.len)?;
        expect_len(op, "v", v, p.len)?;
        if p.len == 0 {
            return Ok(());
        }
        // bias corrections as the CPU op computes them (f64 powers, step 0 counts as 1)
        let step = i32::try_from(args.step.max(1)).unwrap_or(i32::MAX);
        let params = AdamParams {
            p: p.ptr,
            g: g.ptr,
            m: m.ptr,
            v: v.ptr,
            n: u32_of("n", p.len)?,
            lr: args.lr,
            beta1: args.beta1,
            beta2: args.beta2,
            eps: args.eps,
            weight_decay: args.weight_decay,
            grad_scale: args.grad_scale,
            bc1: (1.0 - (args.beta1 as f64).powi(step)) as f32,
            bc2: (1.0 - (args.beta2 as f64).powi(step)) as f32,
            pad: 0,
        };
        let cfg = LaunchCfg::linear(blocks_for(p.len, BLOCK, MAX_GRID), BLOCK, 0);
        // SAFETY: lengths checked above.
        unsafe { self.go("adam_fwd_f32", cfg, &params) }
    }
}
