//! Scoring as Numerai does it (SPEC §5), and SVG charts.
//!
//! `corr`: the per-era math (norm_ppf, ranks, numerai_corr, feature-neutral corr, least squares);
//! `summary`: `evaluate` over eras, JSON and table output; `predictions`: reading predictions and the
//! meta model; `svg`: charts. Everything takes plain slices, so it does not depend on the era store.

pub mod corr;
pub mod predictions;
pub mod summary;
pub mod svg;

pub use corr::{
    feature_exposure, feature_neutral_corr, gaussianize, lstsq, neutralize, neutralize_qrcp,
    neutralize_svd, norm_ppf, numerai_corr, pearson, pearson_present, rank_average,
    rank_percentile, rank_predictions, rank_predictions_per_era,
};
pub use predictions::{read_meta_model, read_predictions};
pub use summary::{evaluate, max_drawdown, mean_std, summarize, EraInput, EraScore, Evaluation};
pub use svg::{corr_chart, line_chart};

use crate::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed and synced,
/// then renamed over `path`, so readers never see a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::usage(format!("{}: not a file path", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
