//! Parquet import decodes the feature columns on several threads, a run of columns each, sharing
//! one file through positioned reads. A wide file (more columns than one batch of rows holds, so
//! several batches per row group, and several row groups) imports every value; a file with bad
//! values in two columns that different threads decode names the first one in file order, as a
//! single thread reading the columns in order would.
#![cfg(feature = "parquet")]

mod common;

use common::TempDir;
use eraengine::data::import::{import, ImportOptions};
use eraengine::data::pq::{write_numerai, NumeraiRows};
use eraengine::data::store::{Store, MISSING};

/// The code written at (row r, feature j): (r·31 + j·7 + r·j) mod 6, 5 meaning null.
fn code(r: usize, j: usize) -> i8 {
    match (r * 31 + j * 7 + r * j) % 6 {
        5 => MISSING,
        v => v as i8,
    }
}

/// A file of `eras` eras × `per` rows × `nf` features (`code`), and two targets; `bad` puts a
/// value out of 0..=4 at (row, feature).
fn write(path: &std::path::Path, eras: usize, per: usize, nf: usize, bad: &[(usize, usize)]) {
    let n = eras * per;
    let ids: Vec<String> = (0..n).map(|r| format!("id{r}")).collect();
    let era_names: Vec<String> = (0..n).map(|r| format!("{:04}", r / per + 1)).collect();
    let fnames: Vec<String> = (0..nf).map(|j| format!("feature_{j:04}")).collect();
    let mut features: Vec<i8> = (0..n * nf).map(|e| code(e / nf, e % nf)).collect();
    for &(r, j) in bad {
        features[r * nf + j] = 9;
    }
    let tnames = vec!["target".to_string(), "target_aux".to_string()];
    let targets: Vec<f32> = (0..n * 2).map(|e| (e % 5) as f32 / 4.0).collect();
    let rows = NumeraiRows {
        ids: &ids,
        eras: &era_names,
        data_type: "train",
        feature_names: &fnames,
        features: &features,
        target_names: &tnames,
        targets: &targets,
    };
    write_numerai(path, &rows).unwrap();
}

fn opts() -> ImportOptions {
    ImportOptions {
        targets: Some(vec!["target".into(), "target_aux".into()]),
        ..ImportOptions::default()
    }
}

#[test]
fn a_wide_file_imports_every_value() {
    let d = TempDir::new("import_wide");
    // 1,501 features: batches of about 1,390 rows, so each row group of ~50,000 rows (whole eras)
    // is read in many batches; 37 eras of 1,400 rows make two row groups
    let (eras, per, nf) = (37, 1400, 1501);
    let src = d.join("wide.parquet");
    write(&src, eras, per, nf, &[]);
    let out = d.join("wide.store");
    let sum = import(&[src], &out, &opts()).unwrap();
    assert_eq!(sum.rows, (eras * per) as u64);
    let s = Store::open(&out).unwrap();
    assert_eq!(
        (s.n_rows(), s.n_features(), s.n_eras()),
        (eras * per, nf, eras)
    );
    for (e, &got) in s.features().iter().enumerate() {
        let (r, j) = (e / nf, e % nf);
        assert_eq!(got, code(r, j), "row {r}, feature {j}");
    }
    for (e, &got) in s.targets().iter().enumerate() {
        assert_eq!(got, (e % 5) as f32 / 4.0, "target value {e}");
    }
    assert_eq!(s.id(eras * per - 1), format!("id{}", eras * per - 1));
    s.verify().unwrap();
}

#[test]
fn the_first_bad_column_in_file_order_is_named() {
    let d = TempDir::new("import_wide_bad");
    // two threads get features 0..4 and 4..8: a bad value in each run, the later row first
    let src = d.join("bad.parquet");
    write(&src, 2, 10, 8, &[(3, 2), (0, 6)]);
    let out = d.join("bad.store");
    let e = import(&[src], &out, &opts()).unwrap_err().to_string();
    assert!(e.contains("bad.parquet"), "{e}");
    assert!(e.contains("row 3, column feature_0002"), "{e}");
    assert!(!e.contains("feature_0006"), "{e}");
    assert!(!out.exists(), "a failed import left {}", out.display());
}
