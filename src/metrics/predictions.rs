//! Reading what `eval` scores: a predictions CSV and a meta-model file (parquet or CSV).

use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// Splits one CSV line into fields: commas separate, double quotes may wrap a field (`""` inside is
/// a quote), whitespace around fields is trimmed. Errors on an unterminated quote.
fn split_csv(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    let mut quoted = false;
    while let Some(ch) = chars.next() {
        if in_quotes {
            if ch == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    in_quotes = false;
                }
            } else {
                cur.push(ch);
            }
        } else if ch == '"' && cur.trim().is_empty() && !quoted {
            cur.clear();
            in_quotes = true;
            quoted = true;
        } else if ch == ',' {
            fields.push(if quoted {
                std::mem::take(&mut cur)
            } else {
                cur.trim().to_string()
            });
            cur.clear();
            quoted = false;
        } else if !(quoted && ch.is_whitespace()) {
            cur.push(ch);
        }
    }
    if in_quotes {
        return Err("unterminated double quote".into());
    }
    fields.push(if quoted { cur } else { cur.trim().to_string() });
    Ok(fields)
}

/// A CSV file read as (line number, fields) rows after its header; blank lines are skipped.
struct Csv {
    header: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
}

fn read_csv(path: &Path) -> Result<Csv> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::format(
            path,
            format!("byte {}", e.utf8_error().valid_up_to()),
            "not UTF-8 text; expected a CSV file",
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut header: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields =
            split_csv(line).map_err(|m| Error::format(path, format!("line {lineno}"), m))?;
        match &header {
            None => header = Some(fields),
            Some(h) => {
                if fields.len() != h.len() {
                    return Err(Error::format(
                        path,
                        format!("line {lineno}"),
                        format!(
                            "{} fields, but the header has {} columns",
                            fields.len(),
                            h.len()
                        ),
                    ));
                }
                rows.push((lineno, fields));
            }
        }
    }
    let header = header.ok_or_else(|| {
        Error::format(
            path,
            "line 1",
            "empty file: expected a header line naming the columns",
        )
    })?;
    Ok(Csv { header, rows })
}

fn column(path: &Path, header: &[String], name: &str) -> Result<usize> {
    header.iter().position(|h| h == name).ok_or_else(|| {
        Error::format(
            path,
            "line 1 (header)",
            format!(
                "no column '{name}' (header has: {}); expected a header such as 'id,{}'",
                header.join(","),
                if name == "id" { "prediction" } else { name }
            ),
        )
    })
}

/// Reads a predictions CSV: a header naming at least `id` and `prediction` (other columns, e.g.
/// `era`, are allowed), then one row per id. Errors name the file and line: no header, a missing
/// column, a wrong field count, an empty id, a non-numeric or non-finite prediction, a duplicate id,
/// no rows. Returns the rows in file order.
pub fn read_predictions(path: &Path) -> Result<Vec<(String, f64)>> {
    let csv = read_csv(path)?;
    let id_col = column(path, &csv.header, "id")?;
    let pred_col = column(path, &csv.header, "prediction")?;
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(csv.rows.len());
    let mut out = Vec::with_capacity(csv.rows.len());
    for (lineno, fields) in csv.rows {
        let place = format!("line {lineno}");
        let id = fields[id_col].clone();
        if id.is_empty() {
            return Err(Error::format(path, place, "empty id"));
        }
        let raw = &fields[pred_col];
        let value: f64 = raw.parse().map_err(|_| {
            Error::format(
                path,
                format!("line {lineno}, column prediction"),
                format!("'{raw}' is not a number"),
            )
        })?;
        if !value.is_finite() {
            return Err(Error::format(
                path,
                format!("line {lineno}, column prediction"),
                format!("'{raw}': predictions must be finite numbers"),
            ));
        }
        if let Some(first) = seen.insert(id.clone(), lineno) {
            return Err(Error::format(
                path,
                place,
                format!("duplicate id '{id}' (first seen on line {first})"),
            ));
        }
        out.push((id, value));
    }
    if out.is_empty() {
        return Err(Error::format(
            path,
            "",
            "no prediction rows after the header",
        ));
    }
    Ok(out)
}

/// Column holding the meta model's predictions.
pub const META_MODEL_COLUMN: &str = "numerai_meta_model";

/// Reads Numerai's meta model: a parquet file (column `numerai_meta_model`, ids in the `id` index
/// or column) or a CSV with columns `id,numerai_meta_model`. Missing values (null / empty) are left
/// out; a duplicate id or a non-numeric value is an error naming the file and row.
pub fn read_meta_model(path: &Path) -> Result<HashMap<String, f64>> {
    let mut magic = [0u8; 4];
    let is_parquet = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        f.read_exact(&mut magic).is_ok() && &magic == b"PAR1"
    };
    if is_parquet {
        read_meta_parquet(path)
    } else {
        read_meta_csv(path)
    }
}

fn insert_meta(
    path: &Path,
    place: String,
    map: &mut HashMap<String, f64>,
    id: String,
    v: f64,
) -> Result<()> {
    if id.is_empty() {
        return Err(Error::format(path, place, "empty id"));
    }
    if !v.is_finite() {
        return Ok(());
    }
    if map.insert(id.clone(), v).is_some() {
        return Err(Error::format(path, place, format!("duplicate id '{id}'")));
    }
    Ok(())
}

fn read_meta_csv(path: &Path) -> Result<HashMap<String, f64>> {
    let csv = read_csv(path)?;
    let id_col = column(path, &csv.header, "id")?;
    let col = column(path, &csv.header, META_MODEL_COLUMN)?;
    let mut map = HashMap::with_capacity(csv.rows.len());
    for (lineno, fields) in csv.rows {
        let raw = &fields[col];
        let v = if raw.is_empty() || raw.eq_ignore_ascii_case("nan") {
            f64::NAN
        } else {
            raw.parse::<f64>().map_err(|_| {
                Error::format(
                    path,
                    format!("line {lineno}, column {META_MODEL_COLUMN}"),
                    format!("'{raw}' is not a number"),
                )
            })?
        };
        insert_meta(
            path,
            format!("line {lineno}"),
            &mut map,
            fields[id_col].clone(),
            v,
        )?;
    }
    Ok(map)
}

#[cfg(feature = "parquet")]
fn read_meta_parquet(path: &Path) -> Result<HashMap<String, f64>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    use parquet::schema::types::Type;

    let perr = |e: parquet::errors::ParquetError| Error::format(path, "", e.to_string());
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(perr)?;
    let schema = reader.metadata().file_metadata().schema();
    let fields = schema.get_fields();
    let find = |name: &str| fields.iter().find(|f| f.name() == name).cloned();
    let id_field = find("id")
        .or_else(|| find("__index_level_0__"))
        .ok_or_else(|| {
            Error::format(
                path,
                "schema",
                "no 'id' column or index; expected Numerai's meta_model.parquet",
            )
        })?;
    let value_field = find(META_MODEL_COLUMN)
        .ok_or_else(|| Error::format(path, "schema", format!("no column '{META_MODEL_COLUMN}'")))?;
    let id_name = id_field.name().to_string();
    let projection = Type::group_type_builder(schema.name())
        .with_fields(vec![id_field, value_field])
        .build()
        .map_err(perr)?;
    let mut map = HashMap::new();
    let rows = reader.get_row_iter(Some(projection)).map_err(perr)?;
    for (i, row) in rows.enumerate() {
        let row = row.map_err(perr)?;
        let place = format!("row {i}");
        let mut id: Option<String> = None;
        let mut value = f64::NAN;
        for (name, field) in row.get_column_iter() {
            if *name == id_name {
                id = Some(match field {
                    Field::Str(s) => s.clone(),
                    Field::Int(v) => v.to_string(),
                    Field::Long(v) => v.to_string(),
                    other => {
                        return Err(Error::format(
                            path,
                            format!("{place}, column {id_name}"),
                            format!("unsupported id value {other}"),
                        ))
                    }
                });
            } else {
                value = match field {
                    Field::Double(v) => *v,
                    Field::Float(v) => *v as f64,
                    Field::Float16(v) => v.to_f64(),
                    Field::Null => f64::NAN,
                    other => {
                        return Err(Error::format(
                            path,
                            format!("{place}, column {META_MODEL_COLUMN}"),
                            format!("expected a float, found {other}"),
                        ))
                    }
                };
            }
        }
        let id = id.ok_or_else(|| Error::format(path, place.clone(), "null id"))?;
        insert_meta(path, place, &mut map, id, value)?;
    }
    Ok(map)
}

#[cfg(not(feature = "parquet"))]
fn read_meta_parquet(path: &Path) -> Result<HashMap<String, f64>> {
    Err(Error::format(
        path,
        "",
        "this build has no parquet support (feature 'parquet'); give the meta model as CSV id,numerai_meta_model",
    ))
}
