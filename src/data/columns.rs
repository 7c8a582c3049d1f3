//! Values and rows shared by the CSV and parquet readers: where the needed columns sit in a
//! file (`map_columns`), the conversion of one feature or target value, and `EraSink`, which
//! groups consecutive rows of one era and hands each era to the `StoreWriter`.
//!
//! A leaf below `import`, `csv` and `pq`: it uses only the store writer.

use super::store::{StoreWriter, MISSING};
use crate::progress::{Progress, Stage};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;
/// Where the columns an import needs sit in one input file.
#[derive(Clone, Debug)]
pub struct ColumnMap {
    pub id: usize,
    pub era: usize,
    pub data_type: Option<usize>,
    pub features: Vec<usize>,
    /// `None`: the file has no target columns at all (live data): NaN.
    pub targets: Vec<Option<usize>>,
}

/// Is this the name pandas gives the id index column?
fn is_id_column(name: &str) -> bool {
    name == "id" || name == "__index_level_0__"
}

/// Resolve the output columns against one file's column names.
pub fn map_columns(
    path: &Path,
    columns: &[String],
    features: &[String],
    targets: &[String],
    data_type: bool,
) -> Result<ColumnMap> {
    let find = |name: &str| columns.iter().position(|c| c == name);
    let listing = || {
        let mut s: Vec<&str> = columns.iter().take(12).map(|c| c.as_str()).collect();
        if columns.len() > 12 {
            s.push("...");
        }
        s.join(", ")
    };
    let id = columns
        .iter()
        .position(|c| c == "id")
        .or_else(|| columns.iter().position(|c| is_id_column(c)))
        .ok_or_else(|| {
            Error::format(
                path,
                "columns",
                format!(
                    "no id column (expected \"id\" or the pandas index \"__index_level_0__\"); columns: {}",
                    listing()
                ),
            )
        })?;
    let era = find("era").ok_or_else(|| {
        Error::format(
            path,
            "columns",
            format!("no \"era\" column; columns: {}", listing()),
        )
    })?;
    let dt = find("data_type");
    if data_type && dt.is_none() {
        return Err(Error::format(
            path,
            "columns",
            "--data-type was given but the file has no \"data_type\" column",
        ));
    }
    let mut fcols = Vec::with_capacity(features.len());
    for f in features {
        fcols.push(find(f).ok_or_else(|| {
            Error::format(
                path,
                format!("column {f}"),
                "feature column not found in this file",
            )
        })?);
    }
    let has_targets = columns
        .iter()
        .any(|c| c == "target" || c.starts_with("target_"));
    let mut tcols = Vec::with_capacity(targets.len());
    for t in targets {
        match find(t) {
            Some(i) => tcols.push(Some(i)),
            None if !has_targets => tcols.push(None),
            None => {
                return Err(Error::format(
                    path,
                    format!("column {t}"),
                    "target column not found in this file",
                ))
            }
        }
    }
    Ok(ColumnMap {
        id,
        era,
        data_type: dt,
        features: fcols,
        targets: tcols,
    })
}

/// The feature columns of a file by default: every `feature_*` column, in order.
pub fn default_features(columns: &[String]) -> Vec<String> {
    columns
        .iter()
        .filter(|c| c.starts_with("feature_"))
        .cloned()
        .collect()
}

/// An integer feature value → code 0..4.
pub fn feature_from_int(v: i64, path: &Path, place: impl FnOnce() -> String) -> Result<i8> {
    if (0..=4).contains(&v) {
        Ok(v as i8)
    } else {
        Err(Error::format(
            path,
            place(),
            format!("feature value {v} outside 0..4"),
        ))
    }
}

/// A float feature value (legacy 0, 0.25, ..., 1) → round(4v); NaN → `MISSING`.
pub fn feature_from_float(v: f64, path: &Path, place: impl FnOnce() -> String) -> Result<i8> {
    if v.is_nan() {
        return Ok(MISSING);
    }
    let s = 4.0 * v;
    let r = s.round();
    if (s - r).abs() <= 1e-6 && (0.0..=4.0).contains(&r) {
        Ok(r as i8)
    } else {
        Err(Error::format(
            path,
            place(),
            format!(
                "float feature value {v} is not one of 0, 0.25, 0.5, 0.75, 1 (legacy features map to round(4v); integer codes 0..4 must be stored as integers)"
            ),
        ))
    }
}

/// A target value: NaN stays NaN (missing), ±Inf is an error.
pub fn target_value(v: f64, path: &Path, place: impl FnOnce() -> String) -> Result<f32> {
    if v.is_infinite() {
        return Err(Error::format(
            path,
            place(),
            format!("target value {v} (must be finite or NaN)"),
        ));
    }
    Ok(v as f32)
}

struct EraBuf {
    name: String,
    ids: Vec<String>,
    features: Vec<i8>,
    targets: Vec<f32>,
    file: PathBuf,
    start: String,
}

/// Receives rows in file order, groups consecutive rows of one era, writes each era when the
/// next begins.
pub struct EraSink<'a> {
    writer: StoreWriter,
    n_features: usize,
    n_targets: usize,
    cur: Option<EraBuf>,
    pub rows_read: u64,
    pub rows_kept: u64,
    on_progress: Option<ProgressFn<'a>>,
    stage: Stage,
    last_report: Instant,
}

/// The callback that receives an [`EraSink`]'s progress (rows read so far).
pub type ProgressFn<'a> = &'a mut dyn FnMut(&Progress);

impl<'a> EraSink<'a> {
    /// A sink writing into `writer`. `on_progress` receives the rows read so far (of `total_rows`
    /// when known) at most once a quarter second, and once more when the sink finishes.
    pub fn new(
        writer: StoreWriter,
        n_features: usize,
        n_targets: usize,
        total_rows: Option<u64>,
        on_progress: Option<ProgressFn<'a>>,
    ) -> Self {
        EraSink {
            writer,
            n_features,
            n_targets,
            cur: None,
            rows_read: 0,
            rows_kept: 0,
            on_progress,
            stage: Stage::new("import", total_rows, "rows"),
            last_report: Instant::now(),
        }
    }

    /// One row. `place` describes the row in its file (for errors about the era it starts).
    pub fn push_row(
        &mut self,
        file: &Path,
        place: impl FnOnce() -> String,
        id: &str,
        era: &str,
        features: &[i8],
        targets: &[f32],
    ) -> Result<()> {
        debug_assert_eq!(features.len(), self.n_features);
        debug_assert_eq!(targets.len(), self.n_targets);
        let same = matches!(&self.cur, Some(c) if c.name == era);
        if !same {
            self.flush()?;
            self.cur = Some(EraBuf {
                name: era.to_string(),
                ids: Vec::new(),
                features: Vec::new(),
                targets: Vec::new(),
                file: file.to_path_buf(),
                start: place(),
            });
        }
        if let Some(c) = self.cur.as_mut() {
            c.ids.push(id.to_string());
            c.features.extend_from_slice(features);
            c.targets.extend_from_slice(targets);
        }
        self.rows_kept += 1;
        Ok(())
    }

    /// Write the buffered era.
    pub fn flush(&mut self) -> Result<()> {
        let Some(c) = self.cur.take() else {
            return Ok(());
        };
        self.writer
            .push_era(&c.name, &c.ids, &c.features, &c.targets)
            .map_err(|e| match e {
                Error::Format { place, msg, .. } => {
                    let place = if place == format!("era {}", c.name) || place.is_empty() {
                        format!("era {} starting at {}", c.name, c.start)
                    } else {
                        format!("{place} (the era starts at {})", c.start)
                    };
                    Error::format(&c.file, place, msg)
                }
                other => other,
            })?;
        if self.last_report.elapsed().as_secs_f64() >= 0.25 {
            self.last_report = Instant::now();
            let p = self.stage.at(self.rows_read, false);
            if let Some(f) = self.on_progress.as_mut() {
                f(&p);
            }
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<(u64, usize)> {
        self.flush()?;
        let (rows, eras) = (self.writer.n_rows(), self.writer.n_eras());
        self.writer.finish()?;
        let p = self.stage.at(self.rows_read, true);
        if let Some(f) = self.on_progress.as_mut() {
            f(&p);
        }
        Ok((rows, eras))
    }
}
