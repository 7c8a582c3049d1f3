//! Numerai parquet / CSV → era store.
//!
//! Inputs are read in order (train then validation, say) and concatenated. Rows stream through an
//! `EraSink` that buffers one era at a time and hands it to the `StoreWriter`, so memory is bounded
//! by the largest era (plus the ids), whatever the file size.
//!
//! Columns (Numerai v5): `id` (the pandas index: a column `id`, or `__index_level_0__` when the
//! index had no name), `era` (string), `data_type` (optional), `feature_*` (int8; legacy floats
//! 0, 0.25, ..., 1 become round(4v); NaN/null becomes `MISSING`), `target` and `target_*` (float,
//! NaN = missing). Default features: every `feature_*` column of the first input, in file order;
//! default targets: `target` alone. An input with no target column at all (a live file) gets NaN
//! targets.

use super::store::{StoreWriter, MISSING};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which features to keep.
#[derive(Clone, Debug)]
pub enum FeatureChoice {
    /// Every `feature_*` column of the first input, in file order.
    AllPrefixed,
    /// These names, in this order.
    List(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub features: FeatureChoice,
    /// Targets to keep; the first is target 0. `None`: `target` alone.
    pub targets: Option<Vec<String>>,
    /// Keep only rows whose `data_type` equals this.
    pub data_type: Option<String>,
    /// Progress on stderr.
    pub progress: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            features: FeatureChoice::AllPrefixed,
            targets: None,
            data_type: None,
            progress: false,
        }
    }
}

/// What an import did.
#[derive(Clone, Debug, Default)]
pub struct ImportSummary {
    pub rows_read: u64,
    pub rows: u64,
    pub eras: usize,
    pub features: usize,
    pub targets: usize,
}

/// Input kinds, by extension or by the file's first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    Parquet,
    Csv,
    Store,
}

pub fn input_kind(path: &Path) -> Result<InputKind> {
    use std::io::Read;
    let mut head = [0u8; 8];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = f.read(&mut head).map_err(|e| Error::io(path, e))?;
    if n >= 8 && head == super::store::MAGIC {
        return Ok(InputKind::Store);
    }
    if n >= 4 && &head[..4] == b"PAR1" {
        return Ok(InputKind::Parquet);
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "parquet" | "pq" => Ok(InputKind::Parquet),
        "csv" | "txt" => Ok(InputKind::Csv),
        _ if n == 0 => Err(Error::format(path, "", "the file is empty")),
        // anything else that is text is tried as CSV
        _ => Ok(InputKind::Csv),
    }
}

/// Read a features.json and return the feature set `name` (`feature_sets.<name>`).
pub fn feature_set(json_path: &Path, name: &str) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(json_path).map_err(|e| Error::io(json_path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(json_path, "", format!("not valid JSON: {e}")))?;
    let sets = v
        .get("feature_sets")
        .and_then(|s| s.as_object())
        .ok_or_else(|| {
            Error::format(
                json_path,
                "feature_sets",
                "no \"feature_sets\" object (expected Numerai's features.json)",
            )
        })?;
    let set = sets.get(name).ok_or_else(|| {
        let mut names: Vec<&str> = sets.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        Error::format(
            json_path,
            "feature_sets",
            format!("no feature set {name:?}; available: {}", names.join(", ")),
        )
    })?;
    let arr = set.as_array().ok_or_else(|| {
        Error::format(
            json_path,
            format!("feature_sets.{name}"),
            "expected a list of feature names",
        )
    })?;
    let mut out = Vec::with_capacity(arr.len());
    for (i, x) in arr.iter().enumerate() {
        match x.as_str() {
            Some(s) => out.push(s.to_string()),
            None => {
                return Err(Error::format(
                    json_path,
                    format!("feature_sets.{name}[{i}]"),
                    format!("expected a feature name string, got {x}"),
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(Error::format(
            json_path,
            format!("feature_sets.{name}"),
            "the feature set is empty",
        ));
    }
    Ok(out)
}

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
pub struct EraSink {
    writer: StoreWriter,
    n_features: usize,
    n_targets: usize,
    cur: Option<EraBuf>,
    pub rows_read: u64,
    pub rows_kept: u64,
    progress: bool,
    started: Instant,
    last_report: Instant,
}

impl EraSink {
    pub fn new(writer: StoreWriter, n_features: usize, n_targets: usize, progress: bool) -> Self {
        EraSink {
            writer,
            n_features,
            n_targets,
            cur: None,
            rows_read: 0,
            rows_kept: 0,
            progress,
            started: Instant::now(),
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
        if self.progress && self.last_report.elapsed().as_secs_f64() > 1.0 {
            self.last_report = Instant::now();
            let s = self.started.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "import: {} eras, {} rows ({:.0} rows/s)",
                self.writer.n_eras(),
                self.writer.n_rows(),
                self.writer.n_rows() as f64 / s
            );
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<(u64, usize)> {
        self.flush()?;
        let (rows, eras) = (self.writer.n_rows(), self.writer.n_eras());
        self.writer.finish()?;
        Ok((rows, eras))
    }
}

/// Column names of an input (parquet schema leaves or the CSV header).
pub fn input_columns(path: &Path) -> Result<Vec<String>> {
    match input_kind(path)? {
        InputKind::Csv => super::csv::header(path),
        InputKind::Parquet => parquet_columns(path),
        InputKind::Store => Err(Error::usage(format!(
            "{}: is already an era store (use --verify to check it)",
            path.display()
        ))),
    }
}

#[cfg(feature = "parquet")]
fn parquet_columns(path: &Path) -> Result<Vec<String>> {
    super::pq::columns(path)
}

#[cfg(not(feature = "parquet"))]
fn parquet_columns(path: &Path) -> Result<Vec<String>> {
    Err(no_parquet(path))
}

#[cfg(not(feature = "parquet"))]
fn no_parquet(path: &Path) -> Error {
    Error::usage(format!(
        "{}: parquet input needs eraengine built with the \"parquet\" feature (cargo build --features parquet); convert it to CSV or rebuild",
        path.display()
    ))
}

/// Import `inputs` (concatenated in order) into a new store at `out`. On any error nothing is
/// left at `out` (nor any temporary file).
pub fn import(inputs: &[PathBuf], out: &Path, opts: &ImportOptions) -> Result<ImportSummary> {
    let first = inputs
        .first()
        .ok_or_else(|| Error::usage("import needs at least one input file"))?;
    for p in inputs {
        if p == out {
            return Err(Error::usage(format!(
                "{}: the output would overwrite an input",
                out.display()
            )));
        }
    }
    let features = match &opts.features {
        FeatureChoice::List(l) => l.clone(),
        FeatureChoice::AllPrefixed => {
            let cols = input_columns(first)?;
            let f = default_features(&cols);
            if f.is_empty() {
                return Err(Error::format(
                    first,
                    "columns",
                    "no feature_* columns (name features with --features or --feature-set)",
                ));
            }
            f
        }
    };
    let targets = opts
        .targets
        .clone()
        .unwrap_or_else(|| vec!["target".to_string()]);
    if targets.is_empty() {
        return Err(Error::usage("--targets needs at least one name"));
    }
    let writer = StoreWriter::create(out, &features, &targets)?;
    let mut sink = EraSink::new(writer, features.len(), targets.len(), opts.progress);
    for path in inputs {
        let dt = opts.data_type.as_deref();
        match input_kind(path)? {
            InputKind::Csv => super::csv::read(path, &features, &targets, dt, &mut sink)?,
            InputKind::Parquet => read_parquet(path, &features, &targets, dt, &mut sink)?,
            InputKind::Store => {
                return Err(Error::usage(format!(
                    "{}: is an era store, not a parquet/CSV file (use --verify to check a store)",
                    path.display()
                )))
            }
        }
    }
    let rows_read = sink.rows_read;
    let (rows, eras) = sink.finish()?;
    Ok(ImportSummary {
        rows_read,
        rows,
        eras,
        features: features.len(),
        targets: targets.len(),
    })
}

#[cfg(feature = "parquet")]
fn read_parquet(
    path: &Path,
    features: &[String],
    targets: &[String],
    data_type: Option<&str>,
    sink: &mut EraSink,
) -> Result<()> {
    super::pq::read(path, features, targets, data_type, sink)
}

#[cfg(not(feature = "parquet"))]
fn read_parquet(
    path: &Path,
    _features: &[String],
    _targets: &[String],
    _data_type: Option<&str>,
    _sink: &mut EraSink,
) -> Result<()> {
    Err(no_parquet(path))
}
