//! [`GpuBackend<L>`]: device buffers, the launcher, scratch and the typed launch. The op recipes
//! live in `crate::ops::<op>::gpu` (each checks buffer lengths against the shape letters before
//! launching: a kernel trusts its sizes); `super::device` wires them into `Backend`.

use super::params::Typed;
use super::{CudaLauncher, EmuLauncher, LaunchCfg, Launcher, Order};
use crate::Result;
use bytemuck::Pod;
use std::sync::Arc;

/// Threads per block of the elementwise and reduction kernels.
pub(crate) const BLOCK: u32 = 256;
/// Cap on the grid of grid-stride kernels.
pub(crate) const MAX_GRID: u32 = 4096;
/// Cap on the blocks of the partial-sum reductions (sizes of the second pass).
pub(crate) const MAX_REDUCE_BLOCKS: u32 = 256;
/// Dynamic shared memory available without opt-in.
pub(crate) const MAX_DYN_SHARED: usize = 48 << 10;
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

/// Blocks of `per_block` for n items, at least 1, at most `cap`.
pub(crate) fn blocks_for(n: usize, per_block: u32, cap: u32) -> u32 {
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
    pub(crate) fn scratch(&self, bytes: usize) -> Result<GpuBuf<L>> {
        let ptr = self.launcher.alloc(bytes)?;
        Ok(GpuBuf {
            ptr,
            len: bytes.div_ceil(4),
            launcher: self.launcher.clone(),
        })
    }

    /// Launches `kernel` with its parameter struct.
    ///
    /// # Safety
    /// The device addresses in `params` are live buffers of this backend, sized for `cfg`.
    pub(crate) unsafe fn go<P: Pod>(
        &self,
        kernel: Typed<P>,
        cfg: LaunchCfg,
        params: &P,
    ) -> Result<()> {
        self.launcher
            .launch_kernel(kernel.id, cfg, bytemuck::bytes_of(params))
    }

    /// `len` zeroed floats.
    pub(crate) fn alloc_f32(&self, len: usize) -> Result<GpuBuf<L>> {
        let ptr = self.launcher.alloc(len * 4)?;
        Ok(GpuBuf {
            ptr,
            len,
            launcher: self.launcher.clone(),
        })
    }

    /// Zeroes `buf`.
    pub(crate) fn zero(&self, buf: &mut GpuBuf<L>) -> Result<()> {
        // SAFETY: buf holds buf.len floats.
        unsafe { self.launcher.memset_zero(buf.ptr, buf.len * 4) }
    }
}
