//! `eraengine bench`: times each op and a training step on every available device.

use super::BenchArgs;
use crate::model::Config;
use crate::{Error, Result};

pub fn run(a: &BenchArgs) -> Result<()> {
    let rows = a.rows.unwrap_or(5000);
    let features = a.features.unwrap_or(42);
    if rows == 0 || features == 0 {
        return Err(Error::usage("--rows and --features must be at least 1"));
    }
    let _ = super::device::resolve(&a.device, true)?;
    let cfg = Config::new(features, 1);
    let dev = super::device::cpu();
    let reps = if rows * features > 2_000_000 { 3 } else { 5 };
    let report = crate::bench::run(&dev, cfg, rows, reps)?;
    if a.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
