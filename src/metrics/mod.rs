//! Scoring as Numerai does it (SPEC §5), and SVG charts.
//!
//! `corr`: the per-era math (norm_ppf, ranks, numerai_corr, feature-neutral corr, least squares);
//! `summary`: `evaluate` over eras, JSON and table output; `predictions`: reading predictions and the
//! meta model; `svg`: charts. Everything takes plain slices, so it does not depend on the era store.

pub mod chol;
pub mod corr;
pub mod fnc;
pub mod lstsq;
pub mod predictions;
pub mod summary;
pub mod svg;

pub use corr::{
    feature_exposure, feature_neutral_corr, gaussianize, lstsq, neutralize, neutralize_qrcp,
    neutralize_svd, norm_ppf, numerai_corr, pearson, pearson_present, rank_average,
    rank_percentile, rank_predictions, rank_predictions_per_era,
};
pub use fnc::{
    neutralize as neutralize_per_era, neutralize_era, neutralize_features, neutralize_normal,
};
pub use predictions::{
    csv_field, era_predictions_csv, predictions_csv, read_meta_model, read_predictions,
    validate_submission,
};
pub use summary::{
    evaluate, evaluate_with, evaluate_with_progress, max_drawdown, mean_std, summarize, EraInput,
    EraScore, Evaluation,
};
pub use svg::{corr_chart, line_chart};

pub use crate::io::write_atomic;
