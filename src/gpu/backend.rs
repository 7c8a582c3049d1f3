//! [`GpuBackend<L>`]: device buffers, the launcher, scratch and the typed launch. The op recipes
//! live in `crate::ops::<op>::gpu` (each checks buffer lengths against the shape letters before
//! launching: a kernel trusts its sizes); `super::device` wires them into `Backend`.

use super::params::Typed;
use super::stats;
use super::{CudaLauncher, EmuLauncher, LaunchCfg, Launcher, Order};
use crate::Error;
use crate::Result;
use bytemuck::Pod;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Threads per block of the elementwise and reduction kernels.
pub(crate) const BLOCK: u32 = 256;
/// Cap on the grid of grid-stride kernels.
pub(crate) const MAX_GRID: u32 = 4096;
/// Cap on the blocks of the partial-sum reductions (sizes of the second pass).
pub(crate) const MAX_REDUCE_BLOCKS: u32 = 256;
/// Dynamic shared memory available without opt-in.
pub(crate) const MAX_DYN_SHARED: usize = 48 << 10;

/// Default cap on the bytes the free-list cache keeps (`ERAENGINE_GPU_CACHE_MB` overrides).
const DEFAULT_CACHE_BYTES: usize = 2 << 30;

/// The launcher and the free-list cache of device buffers, shared by the backend and its buffers.
pub(crate) struct Shared<L: Launcher> {
    launcher: L,
    /// free device blocks by size class (bytes), reused before asking the launcher
    cache: Mutex<Cache>,
    /// host copies of the buffers read back with the loss (each served to the next `download` of
    /// it when nothing has written to the device since)
    readback: Mutex<Vec<(u64, Vec<f32>)>>,
}

#[derive(Default)]
struct Cache {
    free: HashMap<usize, Vec<u64>>,
    bytes: usize,
    cap: usize,
}

/// The size class of a request: a multiple of 256 bytes below 4 KiB, else rounded up to a
/// quarter of its power of two (at most 25% over), so eras of different row counts reuse blocks.
pub(crate) fn size_class(bytes: usize) -> usize {
    let b = bytes.max(1);
    if b <= 4096 {
        return b.div_ceil(256) * 256;
    }
    let top = usize::BITS - 1 - b.leading_zeros();
    let quarter = 1usize << (top - 2);
    b.div_ceil(quarter) * quarter
}

impl<L: Launcher> Shared<L> {
    fn take(&self, bytes: usize) -> Result<(u64, usize)> {
        let class = if self.launcher.exact_sizes() {
            bytes.max(1)
        } else {
            size_class(bytes)
        };
        let hit = {
            let mut c = self
                .cache
                .lock()
                .map_err(|_| Error::device("gpu: buffer cache poisoned"))?;
            let ptr = c.free.get_mut(&class).and_then(|v| v.pop());
            if ptr.is_some() {
                c.bytes -= class;
            }
            ptr
        };
        match hit {
            Some(ptr) => {
                stats::count_cache_hit();
                // SAFETY: ptr is a live block of `class` ≥ bytes bytes owned by the cache.
                unsafe { self.launcher.memset_zero(ptr, bytes.max(1))? };
                Ok((ptr, class))
            }
            None => {
                stats::count_alloc();
                Ok((self.launcher.alloc(class)?, class))
            }
        }
    }

    fn give(&self, ptr: u64, class: usize) {
        let kept = match self.cache.lock() {
            Ok(mut c) if c.bytes + class <= c.cap => {
                c.bytes += class;
                c.free.entry(class).or_default().push(ptr);
                true
            }
            _ => false,
        };
        if !kept {
            stats::count_free();
            // SAFETY: ptr came from alloc of this launcher and is handed back once.
            unsafe { self.launcher.free(ptr) }
        }
    }

    /// Forgets the stashed read-back (something may have written the device).
    fn dirty(&self) {
        if let Ok(mut r) = self.readback.lock() {
            r.clear();
        }
    }
}

impl<L: Launcher> Drop for Shared<L> {
    fn drop(&mut self) {
        if let Ok(c) = self.cache.get_mut() {
            for (_, ptrs) in c.free.drain() {
                for p in ptrs {
                    stats::count_free();
                    // SAFETY: cached blocks are live allocations of this launcher, freed once.
                    unsafe { self.launcher.free(p) }
                }
            }
        }
    }
}

/// A device buffer of f32 owned by the backend; back to the backend's cache on drop.
pub struct GpuBuf<L: Launcher> {
    ptr: u64,
    len: usize,
    class: usize,
    shared: Arc<Shared<L>>,
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
        self.shared.give(self.ptr, self.class)
    }
}

/// The GPU backend over launcher `L`.
pub struct GpuBackend<L: Launcher> {
    shared: Arc<Shared<L>>,
    /// the device table of parameter tensors of the fused optimizer launches, with the host copy
    /// it was uploaded from (uploaded again only when the parameter buffers change)
    pub(crate) param_table: Mutex<Option<(Vec<u8>, GpuBuf<L>)>>,
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

    /// The emulator in a dry run: every launch is checked against the hardware limits and
    /// counted (with its FLOPs and bytes), none is executed.
    pub fn dry_run() -> Self {
        Self::with_launcher(EmuLauncher::dry_run())
    }
}

/// Blocks of `per_block` for n items, at least 1, at most `cap`.
pub(crate) fn blocks_for(n: usize, per_block: u32, cap: u32) -> u32 {
    let b = n.div_ceil(per_block as usize).max(1);
    b.min(cap as usize) as u32
}

impl<L: Launcher> GpuBackend<L> {
    pub fn with_launcher(launcher: L) -> Self {
        let cap = std::env::var("ERAENGINE_GPU_CACHE_MB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(DEFAULT_CACHE_BYTES, |mb| mb << 20);
        GpuBackend {
            shared: Arc::new(Shared {
                launcher,
                cache: Mutex::new(Cache {
                    cap,
                    ..Cache::default()
                }),
                readback: Mutex::new(Vec::new()),
            }),
            param_table: Mutex::new(None),
        }
    }

    pub fn launcher(&self) -> &L {
        &self.shared.launcher
    }

    /// Zeroed scratch of `bytes`, back to the cache on drop; `len` counts f32 words.
    pub(crate) fn scratch(&self, bytes: usize) -> Result<GpuBuf<L>> {
        let (ptr, class) = self.shared.take(bytes)?;
        Ok(GpuBuf {
            ptr,
            len: bytes.div_ceil(4),
            class,
            shared: self.shared.clone(),
        })
    }

    /// Launches `kernel` with its parameter struct, after checking the launch against the
    /// hardware limits (an `Err`, never a bad launch) and counting it.
    ///
    /// # Safety
    /// The device addresses in `params` are live buffers of this backend, sized for `cfg`.
    pub(crate) unsafe fn go<P: Pod>(
        &self,
        kernel: Typed<P>,
        cfg: LaunchCfg,
        params: &P,
    ) -> Result<()> {
        let k = kernel.id;
        let bytes = bytemuck::bytes_of(params);
        stats::validate(
            k.name(),
            k.max_threads(),
            Some(k.param_bytes()),
            cfg,
            bytes.len(),
        )?;
        stats::count_launch(k, cfg, bytes);
        self.shared.dirty();
        self.launcher().launch_kernel(k, cfg, bytes)
    }

    /// `len` zeroed floats.
    pub(crate) fn alloc_f32(&self, len: usize) -> Result<GpuBuf<L>> {
        let (ptr, class) = self.shared.take(len * 4)?;
        Ok(GpuBuf {
            ptr,
            len,
            class,
            shared: self.shared.clone(),
        })
    }

    /// Zeroes `buf`.
    pub(crate) fn zero(&self, buf: &mut GpuBuf<L>) -> Result<()> {
        self.shared.dirty();
        // SAFETY: buf holds buf.len floats.
        unsafe { self.launcher().memset_zero(buf.ptr, buf.len * 4) }
    }

    /// Copies `host` into `buf` (same length), without waiting for the copy.
    pub(crate) fn write(&self, buf: &mut GpuBuf<L>, host: &[f32]) -> Result<()> {
        crate::ops::shape::expect_len("upload", "host", host.len(), buf.len)?;
        self.shared.dirty();
        stats::count_h2d(host.len() * 4);
        // SAFETY: buf holds host.len() floats.
        unsafe { self.launcher().htod(buf.ptr, bytemuck::cast_slice(host)) }
    }

    /// dst = src on the device.
    pub(crate) fn copy_dev(&self, dst: &mut GpuBuf<L>, src: &GpuBuf<L>) -> Result<()> {
        crate::ops::shape::expect_len("copy", "src", src.len, dst.len)?;
        self.shared.dirty();
        // SAFETY: equal lengths, distinct buffers (dst is borrowed mutably).
        unsafe { self.launcher().dtod(dst.ptr, src.ptr, dst.len * 4) }
    }

    /// Reads every buffer back with ONE host synchronisation (the copies queue, then one wait).
    /// `f64s` buffers are read as raw words; callers reinterpret.
    pub(crate) fn read_back(&self, bufs: &[&GpuBuf<L>]) -> Result<Vec<Vec<f32>>> {
        let mut out: Vec<Vec<f32>> = bufs.iter().map(|b| vec![0.0f32; b.len]).collect();
        for (b, v) in bufs.iter().zip(&mut out) {
            stats::count_d2h(b.len * 4);
            // SAFETY: b holds b.len floats; v is as long.
            unsafe { self.launcher().dtoh(bytemuck::cast_slice_mut(v), b.ptr)? };
        }
        self.launcher().synchronize()?;
        Ok(out)
    }

    /// Keeps the host copy of `buf` (just read back) for the next [`GpuBackend::download_cached`]
    /// of it, until anything writes to the device.
    pub(crate) fn stash(&self, buf: &GpuBuf<L>, host: Vec<f32>) {
        if let Ok(mut r) = self.shared.readback.lock() {
            r.retain(|(p, _)| *p != buf.ptr);
            r.push((buf.ptr, host));
        }
    }

    /// `buf` on the host: its stashed copy when it is current, else one read-back.
    pub(crate) fn download_cached(&self, buf: &GpuBuf<L>) -> Result<Vec<f32>> {
        if let Ok(mut r) = self.shared.readback.lock() {
            if let Some(i) = r
                .iter()
                .position(|(p, v)| *p == buf.ptr && v.len() == buf.len)
            {
                return Ok(r.swap_remove(i).1);
            }
        }
        Ok(self.read_back(&[buf])?.remove(0))
    }
}
