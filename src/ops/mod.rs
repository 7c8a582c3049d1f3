//! The ops, one folder per op (dfdx's habit): `<op>/mod.rs` holds the math in its doc comment, the
//! CPU reference forward/backward over plain slices (llm.c style), the shape rule every device
//! checks, and the tape recorder with its backward; `<op>/gpu.rs` the launch recipe for
//! `GpuBackend`; the kernel is `kernels/<op>.cu`. See docs/architecture.md, "adding an op".
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
pub mod codes;
pub mod col_scale;
pub mod corr_loss;
pub mod elementwise;
pub mod film;
pub mod gate;
pub mod gemm;
pub mod glu;
pub mod layer_norm;
pub mod linear;
pub mod loss;
pub mod mask_fill;
pub mod optim;
pub mod ortho_loss;
pub mod par;
pub mod row_add;
pub mod scalar;
pub mod shape;
pub mod vsn;
