//! Pretraining as a device job, shared by `eraengine pretrain` and `train --pretrain-epochs`:
//! runs `train::pretrain` on the chosen device and renders its progress and epoch lines on stderr
//! (nothing under `--quiet`).

use super::device::DeviceJob;
use super::progress::Meter;
use crate::data::Store;
use crate::train::pretrain::{pretrain, PretrainEvent, PretrainOptions, PretrainResult};
use crate::Result;

/// One pretraining run.
pub struct Job<'a> {
    pub cfg: crate::model::Config,
    pub train: &'a Store,
    pub valid: Option<&'a Store>,
    pub opts: &'a PretrainOptions,
    pub quiet: bool,
}

impl DeviceJob for Job<'_> {
    type Out = PretrainResult;
    fn run<B: crate::device::Backend>(self, dev: &B) -> Result<PretrainResult> {
        if !self.quiet {
            eprintln!("pretraining on device {}", dev.name());
        }
        let mut meter = Meter::new(self.quiet);
        let quiet = self.quiet;
        pretrain(
            dev,
            self.cfg,
            self.train,
            self.valid,
            self.opts,
            &mut |e| match e {
                PretrainEvent::Progress(p) => meter.show(p),
                PretrainEvent::Epoch {
                    epoch,
                    epochs,
                    train_mse,
                    valid_mse,
                } if !quiet => eprintln!(
                    "epoch {epoch:>3}/{epochs}  reconstruction mse {train_mse:.5}  valid {}",
                    valid_mse.map_or("n/a".to_string(), |v| format!("{v:.5}"))
                ),
                PretrainEvent::EarlyStop { patience } if !quiet => eprintln!(
                    "early stop: no better validation reconstruction for {}",
                    crate::progress::epochs(*patience)
                ),
                _ => {}
            },
        )
    }
}
