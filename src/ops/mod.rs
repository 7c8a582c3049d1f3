//! CPU reference ops: plain forward/backward pairs over slices (llm.c style), one file per op.
//!
//! Conventions (every op follows them; the CUDA kernels in `kernels/` mirror them):
//! - Row-major buffers; shape letters in the signature: n rows, d model width, f features, r gate
//!   rank, t targets, h heads.
//! - A forward overwrites its outputs and saves exactly what its backward needs (named in the doc).
//! - A backward ACCUMULATES (`+=`) into every gradient it writes, so a tensor used twice needs no
//!   special case; callers zero gradient buffers once per step.
//! - `mask` is an f32 slice of length n: 1.0 for a real row, 0.0 for padding.
//! - Multi-threaded over rows/heads with `std::thread::scope` via [`par`]; inner loops live in one
//!   place per op so a later issue can swap them for faster ones.

pub mod attention;
pub mod corr_loss;
pub mod elementwise;
pub mod film;
pub mod gate;
pub mod layer_norm;
pub mod linear;
pub mod loss;
pub mod optim;
pub mod par;
