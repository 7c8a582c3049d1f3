//! `--device auto|cpu|cuda`: picks the backend at run time and runs a generic job on it.

use crate::device::Cpu;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda,
}

/// Resolves a `--device` flag. `auto` picks CUDA only when a usable GPU and complete backend exist.
pub fn resolve(flag: &str, quiet: bool) -> Result<DeviceChoice> {
    match flag {
        "cpu" => Ok(DeviceChoice::Cpu),
        "cuda" => Err(Error::device(format!(
            "--device cuda: {}",
            crate::cli::device::cuda_unavailable_reason()
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

/// Why training cannot run on CUDA here.
pub fn cuda_unavailable_reason() -> String {
    "no CUDA training backend in this build".to_string()
}

/// The CPU backend (the only complete one so far).
pub fn cpu() -> Cpu {
    Cpu
}
