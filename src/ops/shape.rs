//! Shape checks shared by every device: an op checks its buffer lengths against the shape letters
//! here, once, before the CPU loops or a kernel launch run, so a wrong length is `Error::Shape` on
//! every device (never a slice panic on the CPU, never an out-of-bounds kernel on the GPU).

use crate::{Error, Result};

/// `have == want`, else `Error::Shape` naming the op and the buffer.
pub fn expect_len(op: &str, name: &str, have: usize, want: usize) -> Result<()> {
    if have != want {
        return Err(Error::shape(format!(
            "{op}: {name} has {have} elements, expected {want}"
        )));
    }
    Ok(())
}

/// Every (name, length) of `bufs` equals `want`.
pub fn expect_all(op: &str, bufs: &[(&str, usize)], want: usize) -> Result<()> {
    for &(name, have) in bufs {
        expect_len(op, name, have, want)?;
    }
    Ok(())
}

/// `have ≥ want`, else `Error::Shape`.
pub fn expect_at_least(op: &str, name: &str, have: usize, want: usize) -> Result<()> {
    if have < want {
        return Err(Error::shape(format!(
            "{op}: {name} has {have} elements, expected at least {want}"
        )));
    }
    Ok(())
}

/// Head width dh = d / h, with h dividing d.
pub fn head_dim(op: &str, d: usize, h: usize) -> Result<usize> {
    if h == 0 || !d.is_multiple_of(h) {
        return Err(Error::shape(format!(
            "{op}: {h} heads do not divide d = {d}"
        )));
    }
    Ok(d / h)
}

/// `v` as the kernels' 32-bit size, else `Error::Shape`.
pub fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v)
        .map_err(|_| Error::shape(format!("{what} = {v} exceeds the kernels' 32-bit sizes")))
}
