//! What the built-in `train` prints after training, beside the validation corr: the yardsticks
//! of its synthetic data (a row-wise ridge model and the Bayes limit, docs/synthetic-data.md) on
//! the validation eras, and the written model's score on the test eras that follow them.

use crate::checkpoint::Checkpoint;
use crate::data::store::Store;
use crate::data::synth::Builtin;
use crate::device::cpu::Cpu;
use crate::Result;
use std::path::Path;

/// Prints the yardstick lines; `valid_corr` is the early-stopped model's validation mean corr.
pub fn print(files: &Builtin, valid_corr: f64, checkpoint: &Checkpoint) -> Result<()> {
    if let Some((ridge, bayes)) = yardsticks(&files.bayes_json, "validation") {
        println!(
            "on the same validation eras: a row-wise ridge model {ridge:+.4}, the Bayes limit \
             {bayes:+.4}; this model reaches {:.0}% of the limit",
            100.0 * valid_corr / bayes
        );
    }
    // The test eras come after the validation eras and chose nothing: the honest score of
    // the model written, refit or not.
    if let (Some((ridge, bayes)), Ok(test)) = (
        yardsticks(&files.bayes_json, "test"),
        Store::open(&files.test),
    ) {
        let m = crate::train::Trained::from_checkpoint(&Cpu, checkpoint)?;
        let map = crate::train::era::ColumnMap::for_model(&test, &m.features, &m.targets)?;
        let t = m.validate(&Cpu, &test, &map)?;
        println!(
            "on the {} test eras after them (used for nothing else): this model {:+.4}, ridge \
             {ridge:+.4}, the Bayes limit {bayes:+.4}; {:.0}% of the limit",
            t.eras,
            t.mean,
            100.0 * t.mean / bayes
        );
    }
    Ok(())
}

/// The built-in data's yardsticks on one split (`validation` or `test`), read from its
/// `bayes.json`: (a row-wise ridge model's mean corr, the Bayes limit) (docs/synthetic-data.md).
/// None when unreadable.
fn yardsticks(bayes_json: &Path, split: &str) -> Option<(f64, f64)> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bayes_json).ok()?).ok()?;
    Some((
        v["ridge_mean_corr"][split].as_f64()?,
        v["bayes_mean_corr"][split].as_f64()?,
    ))
}
