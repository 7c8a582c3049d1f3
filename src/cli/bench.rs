//! `eraengine bench`: times each op and a training step on every available device.

use super::device::DeviceChoice;
use super::BenchArgs;
use crate::model::{Attention, Config};
use crate::{Error, Result};

pub fn run(a: &BenchArgs) -> Result<()> {
    let rows = a.rows;
    let features = a.features;
    if rows == 0 || features == 0 || a.layers == 0 {
        return Err(Error::usage(
            "--rows, --features and --layers must be at least 1",
        ));
    }
    let mut cfg = crate::model::Preset::parse(&a.preset)?.config(features, 1);
    cfg.d_model = a.d_model;
    cfg.d_ff = 2 * a.d_model;
    cfg.heads = a.heads;
    cfg.layers = a.layers;
    cfg.dropout = a.dropout.unwrap_or(cfg.dropout);
    cfg.attention = Attention::parse(&a.attention)?;
    cfg.validate()?;
    let reps = match a.reps {
        0 if rows * features > 2_000_000 || cfg.attention == Attention::Softmax => 3,
        0 => 10,
        r => r,
    };
    // Every available device: the CPU always, CUDA when a usable GPU is found (or the one named).
    let mut choices = vec![];
    if a.dry_run {
        if a.device != "emu" {
            return Err(Error::usage(format!(
                "--dry-run counts the emulator's launches without running them; use it with --device emu (got --device {})",
                a.device
            )));
        }
        choices.push(DeviceChoice::EmuDry);
    } else {
        match a.device.as_str() {
            "auto" => {
                choices.push(DeviceChoice::Cpu);
                if crate::gpu::cuda_available() {
                    choices.push(DeviceChoice::Cuda);
                }
            }
            other => choices.push(super::device::resolve(other, true)?),
        }
    }
    let mut reports = Vec::new();
    for c in choices {
        reports.push(super::device::dispatch(
            c,
            BenchJob {
                cfg: cfg.clone(),
                rows,
                reps,
            },
        )?);
    }
    if a.json {
        // One device: the object of SPEC §2; several: an array of them.
        if reports.len() == 1 {
            println!("{}", reports[0].to_json());
        } else {
            let all: Vec<_> = reports.iter().map(|r| r.to_json()).collect();
            println!("{}", serde_json::Value::Array(all));
        }
    } else {
        for r in &reports {
            print!("{}", r.table());
        }
    }
    Ok(())
}

struct BenchJob {
    cfg: Config,
    rows: usize,
    reps: usize,
}

impl super::device::DeviceJob for BenchJob {
    type Out = crate::bench::BenchReport;
    fn run<B: crate::device::Backend>(self, dev: &B) -> Result<Self::Out> {
        crate::bench::run(dev, self.cfg, self.rows, self.reps)
    }
}
