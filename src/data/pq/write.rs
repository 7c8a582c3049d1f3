//! Writing a Numerai-schema parquet file (`synth --parquet`, and tests): `id`, `era`,
//! `data_type`, the features as nullable int8, the targets as float.

use crate::data::store::MISSING;
use crate::{Error, Result};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, FloatType, Int32Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// Rows for a Numerai-schema parquet file.
pub struct NumeraiRows<'a> {
    pub ids: &'a [String],
    pub eras: &'a [String],
    pub data_type: &'a str,
    pub feature_names: &'a [String],
    /// [rows, F], `MISSING` written as null.
    pub features: &'a [i8],
    pub target_names: &'a [String],
    /// [rows, T], NaN written as NaN (as pandas does).
    pub targets: &'a [f32],
}

/// Write a Numerai-schema parquet file (temp file + rename): `id`, `era`, `data_type`,
/// `feature_*` as nullable int8, targets as float.
pub fn write_numerai(path: &Path, rows: &NumeraiRows) -> Result<()> {
    let tmp = crate::data::store::temp_path(path, "part");
    let r = write_inner(&tmp, rows)
        .and_then(|_| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn write_inner(path: &Path, rows: &NumeraiRows) -> Result<()> {
    let perr = |e: parquet::errors::ParquetError| Error::format(path, "", format!("parquet: {e}"));
    let n = rows.ids.len();
    let (nf, nt) = (rows.feature_names.len(), rows.target_names.len());
    let mut msg = String::from("message schema {\n  required binary id (STRING);\n  required binary era (STRING);\n  required binary data_type (STRING);\n");
    for f in rows.feature_names {
        msg.push_str(&format!("  optional int32 {f} (INTEGER(8,true));\n"));
    }
    for t in rows.target_names {
        msg.push_str(&format!("  optional float {t};\n"));
    }
    msg.push_str("}\n");
    let schema = Arc::new(parquet::schema::parser::parse_message_type(&msg).map_err(perr)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = SerializedFileWriter::new(file, schema, props).map_err(perr)?;
    // row groups of whole eras, about 50k rows each
    let mut start = 0;
    while start < n {
        let mut end = (start + 50_000).min(n);
        while end < n && rows.eras[end] == rows.eras[end - 1] {
            end += 1;
        }
        let mut rg = w.next_row_group().map_err(perr)?;
        let mut col_i = 0usize;
        while let Some(mut col) = rg.next_column().map_err(perr)? {
            match col_i {
                0..=2 => {
                    let v: Vec<ByteArray> = (start..end)
                        .map(|r| {
                            let s: &str = match col_i {
                                0 => &rows.ids[r],
                                1 => &rows.eras[r],
                                _ => rows.data_type,
                            };
                            ByteArray::from(s.as_bytes().to_vec())
                        })
                        .collect();
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, None, None)
                        .map_err(perr)?;
                }
                c if c < 3 + nf => {
                    let j = c - 3;
                    let mut vals = Vec::with_capacity(end - start);
                    let mut def = Vec::with_capacity(end - start);
                    for r in start..end {
                        let x = rows.features[r * nf + j];
                        if x == MISSING {
                            def.push(0i16);
                        } else {
                            def.push(1);
                            vals.push(i32::from(x));
                        }
                    }
                    col.typed::<Int32Type>()
                        .write_batch(&vals, Some(&def), None)
                        .map_err(perr)?;
                }
                c => {
                    let j = c - 3 - nf;
                    let vals: Vec<f32> = (start..end).map(|r| rows.targets[r * nt + j]).collect();
                    let def = vec![1i16; vals.len()];
                    col.typed::<FloatType>()
                        .write_batch(&vals, Some(&def), None)
                        .map_err(perr)?;
                }
            }
            col.close().map_err(perr)?;
            col_i += 1;
        }
        rg.close().map_err(perr)?;
        start = end;
    }
    // an empty file (n = 0) still has its schema
    w.close().map_err(perr)?;
    Ok(())
}
