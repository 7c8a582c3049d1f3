//! Launch recipe of the code decode for [`GpuBackend`] (`kernels/codes.cu`): grid-stride over the
//! n outputs, one byte read and one float written each.

use super::check;
use crate::gpu::backend::{blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_GRID};
use crate::gpu::params::{kernel, CodesParams};
use crate::gpu::{LaunchCfg, Launcher};
use crate::Result;

pub(crate) fn codes_fwd<L: Launcher>(
    be: &GpuBackend<L>,
    packed: &GpuBuf<L>,
    n: usize,
) -> Result<GpuBuf<L>> {
    use crate::device::Backend;
    check("codes_fwd", packed.len(), n)?;
    let out = be.unset(n)?;
    if n == 0 {
        return Ok(out);
    }
    let p = CodesParams {
        out: out.ptr(),
        codes: packed.ptr(),
        n: n as u64,
    };
    let cfg = LaunchCfg::linear(blocks_for(n, BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: out holds n floats and packed ⌈n / 4⌉ words, i.e. at least n bytes (checked above);
    // the kernel touches out[0, n) and bytes [0, n) of packed.
    unsafe { be.go(kernel::CODES_FWD_F32, cfg, &p) }?;
    Ok(out)
}
