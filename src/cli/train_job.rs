//! One training run on the chosen device (`TrainJob`, shared by `train`, its refit and its
//! ensemble members) and the progress lines it prints (`Render`).

use crate::checkpoint::Checkpoint;
use crate::data::store::Store;
use crate::model::Config;
use crate::train::era::EraSource;
use crate::train::{train_on, Event, TrainOptions, TrainResult};
use crate::Result;
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Renders training events on stderr: progress lines overwrite each other on a terminal.
pub struct Render {
    quiet: bool,
    tty: bool,
    last: Instant,
    partial: bool,
}

impl Render {
    pub fn new(quiet: bool) -> Self {
        Render {
            quiet,
            tty: std::io::stderr().is_terminal(),
            last: Instant::now(),
            partial: false,
        }
    }

    pub fn show(&mut self, e: &Event) {
        if self.quiet {
            return;
        }
        match e {
            Event::Era { .. } => {
                if self.tty && self.last.elapsed().as_millis() > 300 {
                    eprint!("\r{}   ", e.line());
                    let _ = std::io::stderr().flush();
                    self.last = Instant::now();
                    self.partial = true;
                }
            }
            // The epoch line carries the score; say so only when it is the average's.
            Event::Validation { ema: false, .. } => {}
            _ => {
                if self.partial {
                    eprint!("\r{:70}\r", "");
                    self.partial = false;
                }
                eprintln!("{}", e.line());
            }
        }
    }
}

/// `train_on` with the CLI's progress rendering, as a device job.
pub struct TrainJob<'a> {
    pub cfg: Config,
    pub init: Option<&'a Checkpoint>,
    pub train: &'a EraSource<'a>,
    pub valid: Option<&'a Store>,
    pub opts: &'a TrainOptions,
    pub render: &'a mut Render,
}

impl super::device::DeviceJob for TrainJob<'_> {
    type Out = TrainResult;
    fn run<B: crate::device::Backend>(self, dev: &B) -> Result<Self::Out> {
        if !self.opts.quiet {
            eprintln!("training on device {}", dev.name());
        }
        let render = self.render;
        train_on(
            dev,
            self.cfg,
            self.init,
            self.train,
            self.valid,
            self.opts,
            &mut |e| render.show(e),
        )
    }
}
