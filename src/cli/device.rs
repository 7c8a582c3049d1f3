//! `--device auto|cpu|cuda|emu`: picks the backend at run time and runs a device-generic job on it.
//!
//! - `cpu`: the reference path, everywhere.
//! - `cuda`: the hand-written kernels through cudarc; an error naming the reason when no usable
//!   GPU/driver is found.
//! - `auto`: CUDA when the probe finds a usable GPU and driver, else the CPU; it says which.
//! - `emu`: the same GPU backend with the CPU emulator standing in for the GPU (very slow: for
//!   checking the GPU code path end to end on a machine without one).

use crate::device::{Backend, Cpu};
use crate::gpu::{CudaLauncher, EmuLauncher, GpuBackend, Order};
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    Emu,
    /// the emulator checking and counting launches without executing them (`bench --dry-run`)
    EmuDry,
}

/// A job that runs on any backend (the training loop, prediction, the bench).
pub trait DeviceJob {
    type Out;
    fn run<B: Backend>(self, dev: &B) -> Result<Self::Out>;
}

/// Resolves a `--device` flag (`quiet` silences the line saying what `auto` picked).
pub fn resolve(flag: &str, quiet: bool) -> Result<DeviceChoice> {
    match flag {
        "cpu" => Ok(DeviceChoice::Cpu),
        "emu" => Ok(DeviceChoice::Emu),
        "cuda" => {
            if crate::gpu::cuda_available() {
                Ok(DeviceChoice::Cuda)
            } else {
                Err(Error::device(format!(
                    "--device cuda: {}",
                    crate::gpu::cuda_info()
                )))
            }
        }
        "auto" => {
            let cuda = crate::gpu::cuda_available();
            if !quiet {
                eprintln!(
                    "device: {}",
                    if cuda {
                        "cuda".to_string()
                    } else {
                        format!("cpu ({})", crate::gpu::cuda_info())
                    }
                );
            }
            Ok(if cuda {
                DeviceChoice::Cuda
            } else {
                DeviceChoice::Cpu
            })
        }
        other => Err(Error::usage(format!(
            "--device must be auto, cpu, cuda or emu, got '{other}'"
        ))),
    }
}

/// Runs `job` on the chosen device.
pub fn dispatch<J: DeviceJob>(choice: DeviceChoice, job: J) -> Result<J::Out> {
    match choice {
        DeviceChoice::Cpu => job.run(&Cpu),
        DeviceChoice::Cuda => {
            let dev = GpuBackend::<CudaLauncher>::new()?;
            job.run(&dev)
        }
        DeviceChoice::Emu => {
            let dev = GpuBackend::<EmuLauncher>::new(Order::Forward);
            job.run(&dev)
        }
        DeviceChoice::EmuDry => job.run(&GpuBackend::<EmuLauncher>::dry_run()),
    }
}
