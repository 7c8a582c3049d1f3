//! Reading what `eval` scores: a predictions CSV and a meta-model file (parquet or CSV).

use crate::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// A field as RFC 4180 writes it: wrapped in double quotes (inner quotes doubled) when it holds a
/// comma, a quote, a line break, or leading/trailing whitespace (which readers trim); else as is.
pub fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    let needs = s.contains([',', '"', '\n', '\r'])
        || s.starts_with(char::is_whitespace)
        || s.ends_with(char::is_whitespace);
    if needs {
        std::borrow::Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// The CSV `predict` writes: header `id,prediction`, one row per id, ids quoted by [`csv_field`],
/// values in Rust's shortest round-trip form.
pub fn predictions_csv<'a>(rows: impl IntoIterator<Item = (&'a str, f64)>) -> String {
    let mut out = String::from("id,prediction\n");
    for (id, v) in rows {
        out += &csv_field(id);
        out.push(',');
        out += &v.to_string();
        out.push('\n');
    }
    out
}

/// The CSV walk-forward writes: header `id,era,prediction`, fields quoted by [`csv_field`].
pub fn era_predictions_csv<'a>(rows: impl IntoIterator<Item = (&'a str, &'a str, f64)>) -> String {
    let mut out = String::from("id,era,prediction\n");
    for (id, era, v) in rows {
        out += &csv_field(id);
        out.push(',');
        out += &csv_field(era);
        out.push(',');
        out += &v.to_string();
        out.push('\n');
    }
    out
}

/// One CSV record: the line it starts on and its fields.
type Record = (usize, Vec<String>);

/// Splits CSV text into records of fields (RFC 4180): commas separate fields, records end at LF or
/// CRLF outside quotes, double quotes may wrap a field (`""` inside is a quote; commas and line
/// breaks inside are data), whitespace around unquoted fields and around a quoted field is trimmed.
/// Each record comes with the line number it starts on; blank lines are skipped. Errors on an
/// unterminated quote or text after a closing quote, naming the line.
fn split_records(text: &str) -> std::result::Result<Vec<Record>, (usize, String)> {
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut line = 1usize;
    let mut rec_line = 1usize;
    let mut in_quotes = false;
    let mut quoted = false;
    let mut quote_line = 0usize;
    let mut chars = text.chars().peekable();
    let end_field = |cur: &mut String, quoted: bool, fields: &mut Vec<String>| {
        let f = std::mem::take(cur);
        fields.push(if quoted { f } else { f.trim().to_string() });
    };
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
                if ch == '\n' {
                    line += 1;
                }
                cur.push(ch);
            }
            continue;
        }
        match ch {
            '"' if !quoted && cur.trim().is_empty() => {
                cur.clear();
                in_quotes = true;
                quoted = true;
                quote_line = line;
            }
            ',' => {
                end_field(&mut cur, quoted, &mut fields);
                quoted = false;
            }
            '\n' | '\r' => {
                if ch == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                end_field(&mut cur, quoted, &mut fields);
                let blank = fields.len() == 1 && fields[0].is_empty() && !quoted;
                if !blank {
                    records.push((rec_line, std::mem::take(&mut fields)));
                }
                fields.clear();
                quoted = false;
                line += 1;
                rec_line = line;
            }
            c if quoted => {
                if !c.is_whitespace() {
                    return Err((line, "text after a closing double quote".into()));
                }
            }
            c => cur.push(c),
        }
    }
    if in_quotes {
        return Err((quote_line, "unterminated double quote".into()));
    }
    if quoted || !cur.trim().is_empty() || !fields.is_empty() {
        end_field(&mut cur, quoted, &mut fields);
        records.push((rec_line, fields));
    }
    Ok(records)
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
    let records =
        split_records(text).map_err(|(l, m)| Error::format(path, format!("line {l}"), m))?;
    let mut it = records.into_iter();
    let header = it.next().map(|(_, h)| h).ok_or_else(|| {
        Error::format(
            path,
            "line 1",
            "empty file: expected a header line naming the columns",
        )
    })?;
    let mut rows = Vec::new();
    for (lineno, fields) in it {
        if fields.len() != header.len() {
            return Err(Error::format(
                path,
                format!("line {lineno}"),
                format!(
                    "{} fields, but the header has {} columns",
                    fields.len(),
                    header.len()
                ),
            ));
        }
        rows.push((lineno, fields));
    }
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
                format!("'{}' is not a number", cut(raw)),
            )
        })?;
        if !value.is_finite() {
            return Err(Error::format(
                path,
                format!("line {lineno}, column prediction"),
                format!("'{}': predictions must be finite numbers", cut(raw)),
            ));
        }
        if let Some(first) = seen.insert(id.clone(), lineno) {
            return Err(Error::format(
                path,
                place,
                format!("duplicate id '{}' (first seen on line {first})", cut(&id)),
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

/// Checks a submission as numerai-tools' `validate_submission_numerai` does, against the live ids:
/// every live id appears exactly once, no id outside the live ids, no NaN/infinite value, every
/// value strictly inside (0, 1). `submission` is (id, prediction) rows as [`read_predictions`]
/// returns them. The error (a usage error) says what is wrong and gives a few examples.
pub fn validate_submission(live_ids: &[&str], submission: &[(String, f64)]) -> Result<()> {
    let bad = |m: String| Err(Error::usage(format!("submission is not valid: {m}")));
    let examples = |v: &[&str]| -> String {
        let shown: Vec<String> = v.iter().take(3).map(|s| format!("'{}'", cut(s))).collect();
        format!(
            "{}{}",
            shown.join(", "),
            if v.len() > 3 { ", ..." } else { "" }
        )
    };
    if submission.is_empty() {
        return bad("no predictions".into());
    }
    let mut seen: HashSet<&str> = HashSet::with_capacity(submission.len());
    let dups: Vec<&str> = submission
        .iter()
        .filter(|(id, _)| !seen.insert(id.as_str()))
        .map(|(id, _)| id.as_str())
        .collect();
    if !dups.is_empty() {
        return bad(format!(
            "{} duplicate ids ({})",
            dups.len(),
            examples(&dups)
        ));
    }
    let live: HashSet<&str> = live_ids.iter().copied().collect();
    let missing: Vec<&str> = live_ids
        .iter()
        .copied()
        .filter(|id| !seen.contains(id))
        .collect();
    if !missing.is_empty() {
        return bad(format!(
            "{} of {} live ids have no prediction ({})",
            missing.len(),
            live_ids.len(),
            examples(&missing)
        ));
    }
    let extra: Vec<&str> = submission
        .iter()
        .map(|(id, _)| id.as_str())
        .filter(|id| !live.contains(id))
        .collect();
    if !extra.is_empty() {
        return bad(format!(
            "{} ids are not live ids ({})",
            extra.len(),
            examples(&extra)
        ));
    }
    if let Some((id, _)) = submission.iter().find(|(_, v)| !v.is_finite()) {
        return bad(format!(
            "prediction of id '{}' is not a finite number",
            cut(id)
        ));
    }
    if let Some((id, v)) = submission.iter().find(|(_, v)| !(*v > 0.0 && *v < 1.0)) {
        return bad(format!(
            "prediction {v} of id '{}' is not strictly between 0 and 1",
            cut(id)
        ));
    }
    let n = submission.len() as f64;
    let mean = submission.iter().map(|(_, v)| v).sum::<f64>() / n;
    let var = submission
        .iter()
        .map(|(_, v)| (v - mean) * (v - mean))
        .sum::<f64>()
        / n;
    if var.sqrt() <= 1e-8 {
        return bad("every prediction is the same value (zero standard deviation)".into());
    }
    Ok(())
}

/// At most 40 characters of `s` for a message, with an ellipsis when cut.
fn cut(s: &str) -> String {
    if s.chars().count() <= 40 {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(40).collect::<String>())
    }
}
