//! [`EmuLauncher`]: kernels run by the CPU emulator (`kernels/emu`), linked as a static library.

use super::{LaunchCfg, Launcher};
use crate::{Error, Result};
use std::ffi::{c_char, c_int, c_void, CStr, CString};

extern "C" {
    fn emu_alloc(bytes: usize) -> *mut c_void;
    fn emu_free(p: *mut c_void);
    fn emu_kernel_count() -> usize;
    fn emu_kernel_name(i: usize) -> *const c_char;
    #[allow(clippy::too_many_arguments)]
    fn emu_launch(
        kernel: *const c_char,
        grid: *const u32,
        block: *const u32,
        shmem: usize,
        params: *const c_void,
        params_len: usize,
        order: c_int,
        seed: u64,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// The order in which the emulator runs a block's threads between synchronisation points. A kernel
/// that forgets a barrier gives different answers under different orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Forward,
    Reverse,
    /// a seeded shuffle, different per block
    Shuffle(u64),
}

/// The CPU emulator as a [`Launcher`]. Device memory is `malloc`'d (ASan redzones apply).
#[derive(Clone, Copy, Debug)]
pub struct EmuLauncher {
    pub order: Order,
    /// a dry run: launches are checked and counted but no kernel runs (device memory and copies
    /// are real, so read-backs see zeros) — the counts and the roofline of any shape, fast
    pub dry: bool,
}

impl EmuLauncher {
    pub fn new(order: Order) -> Self {
        EmuLauncher { order, dry: false }
    }

    /// The dry-run launcher (see [`EmuLauncher::dry`]).
    pub fn dry_run() -> Self {
        EmuLauncher {
            order: Order::Forward,
            dry: true,
        }
    }

    /// Names of every kernel the emulator knows (product and emulator-only test kernels).
    pub fn kernels() -> Vec<String> {
        // SAFETY: the table is static; names are NUL-terminated literals.
        unsafe {
            (0..emu_kernel_count())
                .filter_map(|i| {
                    let p = emu_kernel_name(i);
                    (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
                })
                .collect()
        }
    }
}

impl Launcher for EmuLauncher {
    fn name(&self) -> String {
        if self.dry {
            return "emu (dry run: launches checked and counted, no kernel executed)".into();
        }
        format!("emu ({:?} thread order)", self.order)
    }
    fn exact_sizes(&self) -> bool {
        cfg!(eraengine_emu_asan)
    }
    fn alloc(&self, bytes: usize) -> Result<u64> {
        // SAFETY: plain malloc; zeroed below.
        let p = unsafe { emu_alloc(bytes) };
        if p.is_null() {
            return Err(Error::device(format!(
                "emulator: cannot allocate {bytes} bytes"
            )));
        }
        // SAFETY: p holds at least `bytes` bytes.
        unsafe { std::ptr::write_bytes(p as *mut u8, 0, bytes) };
        Ok(p as u64)
    }
    unsafe fn free(&self, ptr: u64) {
        emu_free(ptr as *mut c_void)
    }
    unsafe fn htod(&self, dst: u64, src: &[u8]) -> Result<()> {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len());
        Ok(())
    }
    unsafe fn dtoh(&self, dst: &mut [u8], src: u64) -> Result<()> {
        std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len());
        Ok(())
    }
    unsafe fn memset_zero(&self, ptr: u64, bytes: usize) -> Result<()> {
        std::ptr::write_bytes(ptr as *mut u8, 0, bytes);
        Ok(())
    }
    unsafe fn dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, bytes);
        Ok(())
    }
    unsafe fn launch(&self, kernel: &str, cfg: LaunchCfg, params: &[u8]) -> Result<()> {
        super::stats::validate(
            kernel,
            super::stats::MAX_BLOCK_THREADS,
            None,
            cfg,
            params.len(),
        )?;
        let name = CString::new(kernel)
            .map_err(|_| Error::device(format!("bad kernel name {kernel:?}")))?;
        if self.dry {
            return Ok(());
        }
        let (order, seed) = match self.order {
            Order::Forward => (0, 0),
            Order::Reverse => (1, 0),
            Order::Shuffle(s) => (2, s),
        };
        let mut err = vec![0u8; 1024];
        let rc = emu_launch(
            name.as_ptr(),
            cfg.grid.as_ptr(),
            cfg.block.as_ptr(),
            cfg.shmem as usize,
            params.as_ptr() as *const c_void,
            params.len(),
            order,
            seed,
            err.as_mut_ptr() as *mut c_char,
            err.len(),
        );
        if rc == 0 {
            return Ok(());
        }
        let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
        Err(Error::device(format!(
            "emulator: {}",
            String::from_utf8_lossy(&err[..end])
        )))
    }
    fn synchronize(&self) -> Result<()> {
        // the emulator is synchronous; counted where a GPU would wait
        super::stats::count_sync();
        Ok(())
    }
}
