//! Numerai parquet through the `parquet` crate's low-level column API (no arrow).
//!
//! Reading: every needed column of a row group gets its own column reader, and rows are pulled in
//! batches of a few thousand across all of them, so memory is one page per column plus a batch,
//! whatever the row-group size. Writing (for `synth --parquet`): the Numerai schema, int8 features
//! (INT32 with the INT(8, signed) annotation, as pyarrow writes them), float targets, in
//! `write.rs`.
//!
//! The feature columns of a batch are decoded on every thread (`ops::par`), a run of columns
//! each, each run writing its own columns of the batch; the threads share the file through
//! positioned reads (`Shared`). The ids, eras and targets, and the rows' way into the store, stay
//! on the calling thread.

mod write;
pub use write::{write_numerai, NumeraiRows};

use super::columns::{feature_from_float, feature_from_int, map_columns, target_value, EraSink};
use super::store::MISSING;
use crate::{Error, Result};
use parquet::basic::Type as Physical;
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{
    ByteArray, ByteArrayType, DataType, DoubleType, FloatType, Int32Type, Int64Type,
};
use parquet::file::reader::{ChunkReader, FileReader, Length, SerializedFileReader};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

fn pq_err(path: &Path, place: impl Into<String>, e: parquet::errors::ParquetError) -> Error {
    Error::format(path, place, format!("parquet: {e}"))
}

/// The file as column readers on several threads share it: every read names its offset (the
/// parquet crate's reader for `File` seeks a shared offset, then reads, so two threads reading
/// columns at once would get each other's bytes).
struct Shared {
    file: Arc<Handle>,
    len: u64,
}

#[cfg(unix)]
type Handle = File;
#[cfg(not(unix))]
type Handle = std::sync::Mutex<File>;

/// Up to `buf.len()` bytes of the file from `pos`, in one `pread`.
#[cfg(unix)]
fn read_at(file: &Handle, pos: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, pos)
}

/// Up to `buf.len()` bytes of the file from `pos`: a seek and a read under the lock.
#[cfg(not(unix))]
fn read_at(file: &Handle, pos: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::{Seek, SeekFrom};
    // a poisoned lock only means another reader panicked; the file itself is unharmed
    let mut f = file
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f.seek(SeekFrom::Start(pos))?;
    f.read(buf)
}

/// A reader of `Shared` from an offset on.
struct At {
    file: Arc<Handle>,
    pos: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = read_at(&self.file, self.pos, buf)?;
        self.pos += k as u64;
        Ok(k)
    }
}

impl Length for Shared {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Shared {
    type T = At;
    fn get_read(&self, start: u64) -> parquet::errors::Result<At> {
        Ok(At {
            file: Arc::clone(&self.file),
            pos: start,
        })
    }
    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        let mut buf = vec![0u8; length];
        self.get_read(start)?.read_exact(&mut buf)?;
        Ok(buf.into())
    }
}

fn open(path: &Path) -> Result<SerializedFileReader<Shared>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let file = Arc::new(Handle::from(f));
    SerializedFileReader::new(Shared { file, len }).map_err(|e| pq_err(path, "footer", e))
}

/// Run `f`, turning a panic inside the parquet crate (it has a few on malformed files) into an
/// error naming the file.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(Error::format(
                path,
                "",
                format!("the parquet reader failed on this file (corrupt?): {msg}"),
            ))
        }
    }
}

/// Leaf column names, in schema order.
pub fn columns(path: &Path) -> Result<Vec<String>> {
    guarded(path, || {
        let r = open(path)?;
        let schema = r.metadata().file_metadata().schema_descr();
        Ok((0..schema.num_columns())
            .map(|i| schema.column(i).name().to_string())
            .collect())
    })
}

/// A typed reader for one column of one row group.
enum Col {
    I32(ColumnReaderImpl<Int32Type>),
    I64(ColumnReaderImpl<Int64Type>),
    F32(ColumnReaderImpl<FloatType>),
    F64(ColumnReaderImpl<DoubleType>),
    Bytes(ColumnReaderImpl<ByteArrayType>),
}

/// One batch of one column, nulls as `None`.
enum Vals {
    I32(Vec<Option<i32>>),
    I64(Vec<Option<i64>>),
    F32(Vec<Option<f32>>),
    F64(Vec<Option<f64>>),
    Str(Vec<Option<ByteArray>>),
}

/// Read `n` records of a typed column; values expanded with `None` for nulls.
fn read_typed<T: DataType>(
    r: &mut ColumnReaderImpl<T>,
    n: usize,
    max_def: i16,
    out: &mut Vec<Option<T::T>>,
) -> parquet::errors::Result<()> {
    out.clear();
    let mut def = Vec::new();
    let mut vals: Vec<T::T> = Vec::new();
    while out.len() < n {
        def.clear();
        vals.clear();
        let want = n - out.len();
        let (recs, _, _) = if max_def > 0 {
            r.read_records(want, Some(&mut def), None, &mut vals)?
        } else {
            r.read_records(want, None, None, &mut vals)?
        };
        if recs == 0 {
            break;
        }
        if max_def > 0 {
            let mut it = vals.drain(..);
            for &d in &def {
                if d == max_def {
                    out.push(it.next());
                } else {
                    out.push(None);
                }
            }
        } else {
            out.extend(vals.drain(..).map(Some));
        }
    }
    Ok(())
}

impl Col {
    fn new(r: ColumnReader) -> Option<Col> {
        Some(match r {
            ColumnReader::Int32ColumnReader(r) => Col::I32(r),
            ColumnReader::Int64ColumnReader(r) => Col::I64(r),
            ColumnReader::FloatColumnReader(r) => Col::F32(r),
            ColumnReader::DoubleColumnReader(r) => Col::F64(r),
            ColumnReader::ByteArrayColumnReader(r) => Col::Bytes(r),
            _ => return None,
        })
    }

    fn read(&mut self, n: usize, max_def: i16) -> parquet::errors::Result<Vals> {
        macro_rules! typed {
            ($r:expr, $variant:ident) => {{
                let mut v = Vec::with_capacity(n);
                read_typed($r, n, max_def, &mut v)?;
                Vals::$variant(v)
            }};
        }
        Ok(match self {
            Col::I32(r) => typed!(r, I32),
            Col::I64(r) => typed!(r, I64),
            Col::F32(r) => typed!(r, F32),
            Col::F64(r) => typed!(r, F64),
            Col::Bytes(r) => typed!(r, Str),
        })
    }
}

impl Vals {
    fn len(&self) -> usize {
        match self {
            Vals::I32(v) => v.len(),
            Vals::I64(v) => v.len(),
            Vals::F32(v) => v.len(),
            Vals::F64(v) => v.len(),
            Vals::Str(v) => v.len(),
        }
    }

    /// Value `i` as a number (integers exactly, floats widened); `Err` for text.
    fn number(&self, i: usize) -> std::result::Result<Option<Num>, ()> {
        Ok(match self {
            Vals::I32(v) => v[i].map(|x| Num::Int(i64::from(x))),
            Vals::I64(v) => v[i].map(Num::Int),
            Vals::F32(v) => v[i].map(|x| Num::Float(f64::from(x))),
            Vals::F64(v) => v[i].map(Num::Float),
            Vals::Str(_) => return Err(()),
        })
    }
}

#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

/// Column `j` of a batch into row-major `out[i * stride + j]` as feature codes, for the rows `keep`
/// accepts. One type dispatch per column; the loop per type is tight.
/// `dst[i * cols + j] = src[j * rows + i]`: a column-major [cols, rows] block to row-major
/// [rows, cols], in 64 × 64 tiles so both sides stay in cache.
fn transpose_i8(src: &[i8], dst: &mut [i8], cols: usize, rows: usize) {
    const T: usize = 64;
    for i0 in (0..rows).step_by(T) {
        for j0 in (0..cols).step_by(T) {
            for i in i0..(i0 + T).min(rows) {
                let drow = &mut dst[i * cols..(i + 1) * cols];
                for j in j0..(j0 + T).min(cols) {
                    drow[j] = src[j * rows + i];
                }
            }
        }
    }
}

fn features_into(
    v: &Vals,
    keep: &[bool],
    out: &mut [i8],
    stride: usize,
    j: usize,
    mut err: impl FnMut(usize, Num) -> Error,
) -> Result<()> {
    macro_rules! ints {
        ($x:expr) => {
            for (i, o) in $x.iter().enumerate() {
                if keep[i] {
                    out[i * stride + j] = match *o {
                        None => MISSING,
                        Some(v) if (0..=4).contains(&v) => v as i8,
                        Some(v) => return Err(err(i, Num::Int(v as i64))),
                    };
                }
            }
        };
    }
    macro_rules! floats {
        ($x:expr) => {
            for (i, o) in $x.iter().enumerate() {
                if keep[i] {
                    out[i * stride + j] = match *o {
                        None => MISSING,
                        Some(v) => {
                            let v = f64::from(v);
                            let s = 4.0 * v;
                            let r = s.round();
                            if v.is_nan() {
                                MISSING
                            } else if (s - r).abs() <= 1e-6 && (0.0..=4.0).contains(&r) {
                                r as i8
                            } else {
                                return Err(err(i, Num::Float(v)));
                            }
                        }
                    };
                }
            }
        };
    }
    match v {
        Vals::I32(x) => ints!(x),
        Vals::I64(x) => ints!(x),
        Vals::F32(x) => floats!(x),
        Vals::F64(x) => floats!(x),
        Vals::Str(_) => return Err(err(0, Num::Int(0))),
    }
    Ok(())
}

/// A string-ish column value (id, era, data_type): UTF-8 bytes, or an integer printed.
fn text(v: &Vals, i: usize, era_pad: bool) -> std::result::Result<Option<String>, String> {
    let int = |x: Option<i64>| {
        x.map(|x| {
            if era_pad {
                format!("{x:04}")
            } else {
                x.to_string()
            }
        })
    };
    match v {
        Vals::Str(s) => match &s[i] {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b.data())
                .map(|x| Some(x.to_string()))
                .map_err(|_| "not valid UTF-8".to_string()),
        },
        Vals::I32(s) => Ok(int(s[i].map(i64::from))),
        Vals::I64(s) => Ok(int(s[i])),
        _ => Err("a float column where text was expected".to_string()),
    }
}

/// Stream the rows of a Numerai parquet file into `sink`.
pub fn read(
    path: &Path,
    features: &[String],
    targets: &[String],
    data_type: Option<&str>,
    sink: &mut EraSink,
) -> Result<()> {
    guarded(path, || {
        read_inner(path, features, targets, data_type, sink)
    })
}

fn read_inner(
    path: &Path,
    features: &[String],
    targets: &[String],
    data_type: Option<&str>,
    sink: &mut EraSink,
) -> Result<()> {
    let reader = open(path)?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let names: Vec<String> = (0..schema.num_columns())
        .map(|i| schema.column(i).name().to_string())
        .collect();
    let map = map_columns(path, &names, features, targets, data_type.is_some())?;
    // every column we read, in one list: id, era, [data_type], features..., targets...
    let mut needed = vec![map.id, map.era];
    if let Some(c) = map.data_type {
        needed.push(c);
    }
    needed.extend(&map.features);
    needed.extend(map.targets.iter().flatten());
    for &c in &needed {
        let d = schema.column(c);
        if d.max_rep_level() > 0 {
            return Err(Error::format(
                path,
                format!("column {}", d.name()),
                "a repeated (list) column; expected one value per row",
            ));
        }
        let ok = match d.physical_type() {
            Physical::INT32 | Physical::INT64 | Physical::FLOAT | Physical::DOUBLE => true,
            Physical::BYTE_ARRAY => c == map.id || c == map.era || Some(c) == map.data_type,
            _ => false,
        };
        if !ok {
            return Err(Error::format(
                path,
                format!("column {}", d.name()),
                format!("unsupported physical type {:?}", d.physical_type()),
            ));
        }
    }
    let (nf, nt) = (features.len(), targets.len());
    // rows per batch: about 2 M values (the batch's codes column by column, then row by row, 2 MiB
    // each; one column's decoded values a thread)
    let batch = (1usize << 21)
        .checked_div(nf + nt + 3)
        .unwrap_or(4096)
        .clamp(256, 65536);
    let (mut keep, mut fb, mut tb) = (Vec::new(), Vec::new(), Vec::new());
    let mut cb: Vec<i8> = Vec::new();
    let mut file_row = 0u64;
    for g in 0..reader.num_row_groups() {
        let rg = reader
            .get_row_group(g)
            .map_err(|e| pq_err(path, format!("row group {g}"), e))?;
        let rows = rg.metadata().num_rows().max(0) as usize;
        let mut cols = Vec::with_capacity(needed.len());
        for &c in &needed {
            let r = rg
                .get_column_reader(c)
                .map_err(|e| pq_err(path, format!("row group {g}, column {}", names[c]), e))?;
            let col = Col::new(r).ok_or_else(|| {
                Error::format(path, format!("column {}", names[c]), "unsupported type")
            })?;
            cols.push((c, schema.column(c).max_def_level(), col));
        }
        // the feature columns' readers apart: they are decoded in parallel, a run of them a thread
        let f0 = if map.data_type.is_some() { 3 } else { 2 };
        let mut fcols: Vec<_> = cols.drain(f0..f0 + nf).collect();
        let per = nf.div_ceil(crate::ops::par::threads()).max(1);
        let read = |(c, max_def, col): &mut (usize, i16, Col), n: usize| -> Result<Vals> {
            let v = col
                .read(n, *max_def)
                .map_err(|e| pq_err(path, format!("row group {g}, column {}", names[*c]), e))?;
            if v.len() != n {
                return Err(Error::format(
                    path,
                    format!("row group {g}, column {}", names[*c]),
                    format!(
                        "{} values where the row group promises {n} more rows",
                        v.len()
                    ),
                ));
            }
            Ok(v)
        };
        let mut done = 0usize;
        while done < rows {
            let n = batch.min(rows - done);
            let vals = cols
                .iter_mut()
                .map(|c| read(c, n))
                .collect::<Result<Vec<_>>>()?;
            let (id_v, era_v) = (&vals[0], &vals[1]);
            let first = file_row + done as u64;
            let at = |i: usize, c: usize| format!("row {}, column {}", first + i as u64, names[c]);
            // which rows pass the data_type filter
            keep.clear();
            keep.resize(n, true);
            if let (Some(want), Some(c)) = (data_type, map.data_type) {
                for (i, k) in keep.iter_mut().enumerate() {
                    let got =
                        text(&vals[2], i, false).map_err(|m| Error::format(path, at(i, c), m))?;
                    *k = got.as_deref() == Some(want);
                }
            }
            // features and targets column by column into row-major batch buffers
            // each column into its own contiguous run of a column-major buffer (sequential writes),
            // then one blocked transpose into the row-major batch: writing columns straight into
            // row-major rows touches a new cache line per value
            cb.clear();
            cb.resize(n * nf, 0);
            let (keep, at) = (&keep, &at);
            let parts = crate::ops::par::run(
                fcols.chunks_mut(per).zip(cb.chunks_mut(per * n)),
                |(fc, out)| -> Result<()> {
                    for (col, out) in fc.iter_mut().zip(out.chunks_mut(n)) {
                        let (c, v) = (col.0, read(col, n)?);
                        features_into(&v, keep, out, 1, 0, |i, x| match x {
                            _ if matches!(v, Vals::Str(_)) => Error::format(
                                path,
                                format!("column {}", names[c]),
                                "a text feature column",
                            ),
                            Num::Int(x) => feature_from_int(x, path, || at(i, c))
                                .err()
                                .unwrap_or_else(|| {
                                    Error::format(path, at(i, c), format!("feature value {x}"))
                                }),
                            Num::Float(x) => feature_from_float(x, path, || at(i, c))
                                .err()
                                .unwrap_or_else(|| {
                                    Error::format(path, at(i, c), format!("feature value {x}"))
                                }),
                        })?;
                    }
                    Ok(())
                },
            );
            // the first column in file order that failed, as one thread reading them all would say
            parts.into_iter().collect::<Result<()>>()?;
            fb.clear();
            fb.resize(n * nf, 0);
            transpose_i8(&cb, &mut fb, nf, n);
            tb.clear();
            tb.resize(n * nt, f32::NAN);
            let mut k = f0;
            for (j, tc) in map.targets.iter().enumerate() {
                let Some(c) = *tc else { continue };
                let v = &vals[k];
                k += 1;
                for i in (0..n).filter(|&i| keep[i]) {
                    tb[i * nt + j] = match v.number(i) {
                        Err(()) => {
                            return Err(Error::format(
                                path,
                                format!("column {}", names[c]),
                                "a text target column",
                            ))
                        }
                        Ok(None) => f32::NAN,
                        Ok(Some(Num::Int(x))) => x as f32,
                        Ok(Some(Num::Float(x))) => target_value(x, path, || at(i, c))?,
                    };
                }
            }
            for i in 0..n {
                sink.rows_read += 1;
                if !keep[i] {
                    continue;
                }
                let id = text(id_v, i, false)
                    .map_err(|m| Error::format(path, at(i, map.id), m))?
                    .ok_or_else(|| Error::format(path, at(i, map.id), "missing id"))?;
                let era = text(era_v, i, true)
                    .map_err(|m| Error::format(path, at(i, map.era), m))?
                    .filter(|e| !e.is_empty())
                    .ok_or_else(|| Error::format(path, at(i, map.era), "missing era"))?;
                let row = first + i as u64;
                sink.push_row(
                    path,
                    || format!("row {row}"),
                    &id,
                    &era,
                    &fb[i * nf..(i + 1) * nf],
                    &tb[i * nt..(i + 1) * nt],
                )?;
            }
            done += n;
        }
        file_row += rows as u64;
    }
    Ok(())
}

/// The id column and one numeric column of a parquet file (e.g. `numerai_meta_model` in
/// `meta_model.parquet`, for `eval --meta-model`): ids and values in file order, null → NaN.
pub fn read_ids_and_values(path: &Path, column: &str) -> Result<(Vec<String>, Vec<f64>)> {
    guarded(path, || {
        let reader = open(path)?;
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let names: Vec<String> = (0..schema.num_columns())
            .map(|i| schema.column(i).name().to_string())
            .collect();
        let id = names
            .iter()
            .position(|c| c == "id")
            .or_else(|| names.iter().position(|c| c == "__index_level_0__"))
            .ok_or_else(|| Error::format(path, "columns", "no id column"))?;
        let vc = names
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| Error::format(path, format!("column {column}"), "column not found"))?;
        let (mut ids, mut vals) = (Vec::new(), Vec::new());
        let mut file_row = 0u64;
        for g in 0..reader.num_row_groups() {
            let rg = reader
                .get_row_group(g)
                .map_err(|e| pq_err(path, format!("row group {g}"), e))?;
            let rows = rg.metadata().num_rows().max(0) as usize;
            let read = |c: usize| -> Result<Vals> {
                let r = rg
                    .get_column_reader(c)
                    .map_err(|e| pq_err(path, format!("row group {g}, column {}", names[c]), e))?;
                let mut col = Col::new(r).ok_or_else(|| {
                    Error::format(path, format!("column {}", names[c]), "unsupported type")
                })?;
                let v = col
                    .read(rows, schema.column(c).max_def_level())
                    .map_err(|e| pq_err(path, format!("row group {g}, column {}", names[c]), e))?;
                if v.len() != rows {
                    return Err(Error::format(
                        path,
                        format!("row group {g}, column {}", names[c]),
                        format!("{} values for {rows} rows", v.len()),
                    ));
                }
                Ok(v)
            };
            let (iv, vv) = (read(id)?, read(vc)?);
            for i in 0..rows {
                let at = || format!("row {}, column {}", file_row + i as u64, names[id]);
                ids.push(
                    text(&iv, i, false)
                        .map_err(|m| Error::format(path, at(), m))?
                        .ok_or_else(|| Error::format(path, at(), "missing id"))?,
                );
                vals.push(match vv.number(i) {
                    Ok(Some(Num::Int(x))) => x as f64,
                    Ok(Some(Num::Float(x))) => x,
                    Ok(None) => f64::NAN,
                    Err(()) => {
                        return Err(Error::format(
                            path,
                            format!("column {column}"),
                            "a text column where numbers were expected",
                        ))
                    }
                });
            }
            file_row += rows as u64;
        }
        Ok((ids, vals))
    })
}
