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

pub use super::columns::{
    default_features, feature_from_float, feature_from_int, map_columns, target_value, ColumnMap,
    EraSink,
};
use super::store::StoreWriter;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

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
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            features: FeatureChoice::AllPrefixed,
            targets: None,
            data_type: None,
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
    import_with_progress(inputs, out, opts, &mut |_| {})
}

/// Rows in a parquet file from its footer (None for CSV or an unreadable footer).
#[cfg(feature = "parquet")]
fn rows_hint(path: &Path) -> Option<u64> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let f = std::fs::File::open(path).ok()?;
    let r = SerializedFileReader::new(f).ok()?;
    u64::try_from(r.metadata().file_metadata().num_rows()).ok()
}

#[cfg(not(feature = "parquet"))]
fn rows_hint(_path: &Path) -> Option<u64> {
    None
}

/// [`import`] that reports the rows read so far (of the total, when every input is parquet)
/// to `on_progress`.
pub fn import_with_progress(
    inputs: &[PathBuf],
    out: &Path,
    opts: &ImportOptions,
    on_progress: &mut dyn FnMut(&crate::progress::Progress),
) -> Result<ImportSummary> {
    let first = inputs
        .first()
        .ok_or_else(|| Error::usage("import needs at least one input file"))?;
    let named: Vec<(&str, &Path)> = inputs.iter().map(|p| ("input", p.as_path())).collect();
    crate::io::check_outputs(&[("--out", out)], &named)?;
    let _ = crate::io::remove_stale_temps(out);
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
    let total_rows = inputs
        .iter()
        .map(|p| match input_kind(p) {
            Ok(InputKind::Parquet) => rows_hint(p),
            _ => None,
        })
        .sum::<Option<u64>>();
    let mut sink = EraSink::new(
        writer,
        features.len(),
        targets.len(),
        total_rows,
        Some(on_progress),
    );
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
