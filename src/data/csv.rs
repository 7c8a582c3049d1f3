//! CSV input with Numerai's columns, streamed line by line.
//!
//! A header line, then one row per line, comma-separated; fields may be double-quoted (`""` is a
//! quote inside a quoted field; a quoted field cannot span lines). An unnamed first column (pandas'
//! `to_csv` of an unnamed index) is taken as `id` when there is no `id` column.
//! Feature values: an integer literal is a code 0..4; a value with a decimal point or exponent is a
//! legacy float (0, 0.25, ..., 1 → round(4v)); empty, `nan`, `NaN`, `NA`, `null` are missing.
//! Targets: floats; empty / `nan` is NaN.

use super::columns::{feature_from_float, feature_from_int, map_columns, target_value, EraSink};
use super::store::MISSING;
use crate::{Error, Result};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Split one line into fields (appending into `out` as byte ranges of `scratch`).
fn split_line(line: &str, out: &mut Vec<String>) -> std::result::Result<(), String> {
    out.clear();
    let b = line.as_bytes();
    let mut i = 0;
    loop {
        let mut field = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            loop {
                match line[i..].find('"') {
                    None => return Err("unterminated quoted field".into()),
                    Some(k) => {
                        field.push_str(&line[i..i + k]);
                        i += k + 1;
                        if i < b.len() && b[i] == b'"' {
                            field.push('"');
                            i += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            if i < b.len() && b[i] != b',' {
                return Err(format!("text after a closing quote at byte {i}"));
            }
        } else {
            let k = line[i..].find(',').map(|k| i + k).unwrap_or(b.len());
            field.push_str(&line[i..k]);
            i = k;
        }
        out.push(field);
        if i >= b.len() {
            return Ok(());
        }
        i += 1; // the comma
        if i == b.len() {
            out.push(String::new());
            return Ok(());
        }
    }
}

fn open(path: &Path) -> Result<BufReader<File>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(BufReader::with_capacity(1 << 20, f))
}

fn read_line(r: &mut impl BufRead, path: &Path, lineno: u64, buf: &mut String) -> Result<bool> {
    buf.clear();
    let n = r.read_line(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => {
            Error::format(path, format!("line {lineno}"), "not valid UTF-8 text")
        }
        _ => Error::io(path, e),
    })?;
    while buf.ends_with('\n') || buf.ends_with('\r') {
        buf.pop();
    }
    Ok(n > 0)
}

fn parse_header(path: &Path, line: &str) -> Result<Vec<String>> {
    let line = line.strip_prefix('\u{feff}').unwrap_or(line);
    let mut cols = Vec::new();
    split_line(line, &mut cols).map_err(|m| Error::format(path, "line 1 (header)", m))?;
    if cols.len() > 1 && cols[0].is_empty() && !cols.iter().any(|c| c == "id") {
        cols[0] = "id".to_string();
    }
    Ok(cols)
}

/// The header's column names.
pub fn header(path: &Path) -> Result<Vec<String>> {
    let mut r = open(path)?;
    let mut line = String::new();
    if !read_line(&mut r, path, 1, &mut line)? {
        return Err(Error::format(path, "line 1", "empty file (no header line)"));
    }
    parse_header(path, &line)
}

fn is_missing(s: &str) -> bool {
    matches!(
        s,
        "" | "nan" | "NaN" | "NAN" | "NA" | "N/A" | "null" | "NULL" | "None"
    )
}

/// Parse a feature field.
fn feature(s: &str, path: &Path, place: impl FnOnce() -> String) -> Result<i8> {
    let s = s.trim();
    if is_missing(s) {
        return Ok(MISSING);
    }
    if let Ok(v) = s.parse::<i64>() {
        return feature_from_int(v, path, place);
    }
    match s.parse::<f64>() {
        Ok(v) => feature_from_float(v, path, place),
        Err(_) => Err(Error::format(
            path,
            place(),
            format!("feature value {s:?} is not a number"),
        )),
    }
}

fn target(s: &str, path: &Path, place: impl FnOnce() -> String) -> Result<f32> {
    let s = s.trim();
    if is_missing(s) {
        return Ok(f32::NAN);
    }
    match s.parse::<f64>() {
        Ok(v) => target_value(v, path, place),
        Err(_) => Err(Error::format(
            path,
            place(),
            format!("target value {s:?} is not a number"),
        )),
    }
}

/// Stream the rows of a CSV file into `sink`.
pub fn read(
    path: &Path,
    features: &[String],
    targets: &[String],
    data_type: Option<&str>,
    sink: &mut EraSink,
) -> Result<()> {
    let mut r = open(path)?;
    let mut line = String::new();
    if !read_line(&mut r, path, 1, &mut line)? {
        return Err(Error::format(path, "line 1", "empty file (no header line)"));
    }
    let cols = parse_header(path, &line)?;
    let map = map_columns(path, &cols, features, targets, data_type.is_some())?;
    let mut fields = Vec::with_capacity(cols.len());
    let mut fv = vec![0i8; features.len()];
    let mut tv = vec![0f32; targets.len()];
    let mut lineno = 1u64;
    loop {
        lineno += 1;
        if !read_line(&mut r, path, lineno, &mut line)? {
            break;
        }
        if line.is_empty() {
            continue;
        }
        let at = |c: usize| format!("line {lineno}, column {}", cols[c]);
        split_line(&line, &mut fields)
            .map_err(|m| Error::format(path, format!("line {lineno}"), m))?;
        if fields.len() != cols.len() {
            return Err(Error::format(
                path,
                format!("line {lineno}"),
                format!(
                    "{} fields, but the header has {} columns",
                    fields.len(),
                    cols.len()
                ),
            ));
        }
        sink.rows_read += 1;
        if let (Some(want), Some(c)) = (data_type, map.data_type) {
            if fields[c] != want {
                continue;
            }
        }
        for (v, &c) in fv.iter_mut().zip(&map.features) {
            *v = feature(&fields[c], path, || at(c))?;
        }
        for (v, c) in tv.iter_mut().zip(&map.targets) {
            *v = match c {
                Some(c) => target(&fields[*c], path, || at(*c))?,
                None => f32::NAN,
            };
        }
        let era = &fields[map.era];
        if era.is_empty() {
            return Err(Error::format(path, at(map.era), "empty era"));
        }
        sink.push_row(
            path,
            || format!("line {lineno}"),
            &fields[map.id],
            era,
            &fv,
            &tv,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_line;

    #[test]
    fn splits_quoted_fields() {
        let mut v = Vec::new();
        split_line(r#"a,"b,c","d""e",,"#, &mut v).unwrap();
        assert_eq!(v, vec!["a", "b,c", "d\"e", "", ""]);
        assert!(split_line(r#"a,"b"#, &mut v).is_err());
    }
}
