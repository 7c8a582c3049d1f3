//! `--device auto|cpu|cuda`: picks the backend at run time.
//!
//! The CUDA backend (`crate::gpu`) has kernels for layer norm, the loss, the elementwise ops and
//! Adam; linear, attention and the gate kernels are the next step. Until every op has a kernel,
//! training and prediction run on the CPU: `auto` says so, and `cuda` is a clear error rather than a
//! run that stops at the first op without a kernel.

use crate::device::Cpu;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
}

/// Ops the model needs that have no CUDA kernel yet.
pub const CUDA_MISSING_OPS: &[&str] = &[
    "linear",
    "linear/softmax attention",
    "feature gate",
    "positional encoding",
];

/// Resolves a `--device` flag.
pub fn resolve(flag: &str, quiet: bool) -> Result<DeviceChoice> {
    match flag {
        "cpu" => Ok(DeviceChoice::Cpu),
        "cuda" => Err(Error::device(format!(
            "--device cuda: {}",
            cuda_unavailable_reason()
        ))),
        "auto" => {
            if !quiet {
                eprintln!("device: cpu ({})", cuda_unavailable_reason());
            }
            Ok(DeviceChoice::Cpu)
        }
        other => Err(Error::usage(format!(
            "--device must be auto, cpu or cuda, got '{other}'"
        ))),
    }
}

/// Why the model cannot run on CUDA here.
pub fn cuda_unavailable_reason() -> String {
    if crate::gpu::cuda_available() {
        format!(
            "a GPU is present, but the CUDA backend has no kernels yet for: {}",
            CUDA_MISSING_OPS.join(", ")
        )
    } else {
        crate::gpu::cuda_info()
    }
}

/// The CPU backend.
pub fn cpu() -> Cpu {
    Cpu
}
