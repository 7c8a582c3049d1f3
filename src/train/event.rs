//! Progress as a stream of events: the library calls a sink (`FnMut(&Event)`) and prints nothing;
//! the CLI decides what a person sees.

use super::{EpochReport, ValidScore};

#[derive(Clone, Debug)]
pub enum Event {
    /// A `--resume`d run continues after this epoch and step.
    Resumed { epoch: usize, step: u64 },
    /// Training runs without validation, and why (e.g. the validation store has no targets).
    NoValidation { reason: String },
    /// One training era is done (`done` of `total` in this epoch; mean loss so far).
    Era {
        epoch: usize,
        epochs: usize,
        done: usize,
        total: usize,
        loss: f64,
        eras_per_s: f64,
    },
    /// Validation after an epoch (`ema`: scored with the moving-average weights).
    Validation {
        epoch: usize,
        score: ValidScore,
        ema: bool,
    },
    /// One epoch is done.
    Epoch {
        report: EpochReport,
        epochs: usize,
        n_features: usize,
    },
    /// No better validation corr for `patience` epochs.
    EarlyStop { patience: usize },
    /// Ensembles: member `index` (0-based) of `total`, trained with `seed`, starts.
    Member {
        index: usize,
        total: usize,
        seed: u64,
    },
    /// Walk-forward: era `era` was predicted after training on eras `first..=last`.
    WalkEra {
        done: usize,
        total: usize,
        first: String,
        last: String,
        era: String,
        corr: Option<f64>,
        /// Seconds since this run began
        secs: f64,
        /// Seconds left at this run's rate so far
        eta_s: f64,
    },
    /// Walk-forward continues after a kill from the last finished era.
    WalkResumed { done: usize, total: usize },
}

impl Event {
    /// A one-line rendering (what the CLI prints for non-progress events).
    pub fn line(&self) -> String {
        match self {
            Event::Resumed { epoch, step } => format!("resuming after epoch {epoch} (step {step})"),
            Event::NoValidation { reason } => format!("training without validation: {reason}"),
            Event::Era {
                epoch,
                epochs,
                done,
                total,
                loss,
                eras_per_s,
            } => format!(
                "epoch {epoch}/{epochs} era {done}/{total}  loss {loss:.5}  {eras_per_s:.1} eras/s"
            ),
            Event::Validation { epoch, score, ema } => format!(
                "epoch {epoch} validation{}: corr {:+.4} sharpe {:+.2} ({} eras)",
                if *ema { " (EMA weights)" } else { "" },
                score.mean,
                score.sharpe,
                score.eras
            ),
            Event::Epoch {
                report,
                epochs,
                n_features,
            } => format_report(report, *epochs, *n_features),
            Event::EarlyStop { patience } => {
                format!(
                    "early stop: no better validation corr for {}",
                    crate::progress::epochs(*patience)
                )
            }
            Event::Member { index, total, seed } => {
                format!("ensemble member {}/{total}: seed {seed}", index + 1)
            }
            Event::WalkEra {
                done,
                total,
                first,
                last,
                era,
                corr,
                secs,
                eta_s,
            } => format!(
                "walk-forward {done}/{total} ({:.0}%): trained on eras {first}..{last}, era {era} corr {}  ({secs:.1} s, {eta_s:.0} s left)",
                100.0 * *done as f64 / (*total).max(1) as f64,
                corr.map_or("n/a".to_string(), |c| format!("{c:+.4}"))
            ),
            Event::WalkResumed { done, total } => {
                format!("walk-forward: resuming after era {done}/{total}")
            }
        }
    }
}

pub fn format_report(r: &EpochReport, epochs: usize, n_features: usize) -> String {
    let v = match r.valid {
        Some(v) => format!(
            "valid corr {:+.4} sharpe {:+.2} ({} eras)",
            v.mean, v.sharpe, v.eras
        ),
        None => "no validation data".to_string(),
    };
    let ortho = if r.train_ortho > 0.0 {
        format!("  ortho {:.5}", r.train_ortho)
    } else {
        String::new()
    };
    format!(
        "epoch {:>3}/{epochs}  loss {:.5}  mse {:.5}{ortho}  {v}  gate {:.3} ({}/{} kept)  {:.1} eras/s",
        r.epoch, r.train_loss, r.train_mse, r.mean_gate, r.features_kept, n_features, r.eras_per_s
    )
}
