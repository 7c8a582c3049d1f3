//! SPEC §6 for import: every bad input fails with a message naming the file and the row/column or
//! section, a non-zero exit and no panic, and leaves nothing behind (no store, no temp file).

mod common;

use common::TempDir;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    let dir = match std::env::var_os("ERAENGINE_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
    };
    let p = dir.join(name);
    assert!(p.exists(), "fixture {} missing", p.display());
    p
}

fn entries(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Run `eraengine import INPUT --out DIR/out.store EXTRA...`; it must fail with every `want`
/// substring in its message, exit with a non-zero code and no panic, and leave only `input` files.
fn fails(input: &Path, extra: &[&str], want: &[&str]) {
    let d = TempDir::new("impbad");
    let out = d.join("out.store");
    let before = entries(&d);
    let o = Command::new(env!("CARGO_BIN_EXE_eraengine"))
        .arg("import")
        .arg(input)
        .arg("--out")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "import of {} succeeded",
        input.display()
    );
    assert!(
        matches!(o.status.code(), Some(1) | Some(2)),
        "exit {:?}: {err}",
        o.status
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    for w in want {
        assert!(err.contains(w), "expected {w:?} in: {err}");
    }
    assert_eq!(entries(&d), before, "files left behind");
    std::fs::remove_dir_all(d).unwrap();
}

/// A CSV input in its own directory (kept outside the output directory).
fn csv(text: &str) -> (PathBuf, TempDir) {
    let d = TempDir::new("impbad");
    let p = d.join("in.csv");
    std::fs::write(&p, text).unwrap();
    (p, d)
}

const HEAD: &str = "id,era,feature_a,feature_b,target\n";

#[test]
fn csv_feature_value_outside_0_to_4() {
    let (p, d) = csv(&format!("{HEAD}a,0001,1,2,0.5\nb,0001,7,2,0.5\n"));
    fails(
        &p,
        &[],
        &["in.csv", "line 3, column feature_a", "value 7 outside 0..4"],
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn csv_legacy_float_not_on_the_grid() {
    let (p, d) = csv(&format!("{HEAD}a,0001,0.25,0.3,0.5\n"));
    fails(&p, &[], &["in.csv", "line 2, column feature_b", "0.3"]);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn csv_non_numeric_feature() {
    let (p, d) = csv(&format!("{HEAD}a,0001,x,1,0.5\n"));
    fails(
        &p,
        &[],
        &["in.csv", "line 2, column feature_a", "not a number"],
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn csv_inf_target() {
    let (p, d) = csv(&format!("{HEAD}a,0001,1,1,0.5\nb,0001,1,1,inf\n"));
    fails(&p, &[], &["in.csv", "line 3, column target", "inf"]);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn csv_duplicate_ids() {
    let (p, d) = csv(&format!(
        "{HEAD}a,0001,1,1,0.5\nb,0002,1,1,0.5\na,0002,1,1,0.5\n"
    ));
    fails(
        &p,
        &[],
        &[
            "in.csv",
            "row 1 of era 0002",
            "line 3",
            "duplicate id \"a\"",
        ],
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn csv_era_split_into_two_runs() {
    let (p, d) = csv(&format!(
        "{HEAD}a,0001,1,1,0.5\nb,0002,1,1,0.5\nc,0001,1,1,0.5\n"
    ));
    fails(
        &p,
        &[],
        &[
            "in.csv",
            "line 4",
            "era \"0001\" appears again",
            "contiguous",
        ],
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn csv_ragged_row() {
    let (p, d) = csv(&format!("{HEAD}a,0001,1,1,0.5\nb,0001,1,0.5\n"));
    fails(&p, &[], &["in.csv", "line 3", "4 fields", "5 columns"]);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn csv_missing_era_and_id_columns() {
    let (p, d) = csv("id,Era,feature_a,target\na,0001,1,0.5\n");
    fails(&p, &[], &["in.csv", "no \"era\" column"]);
    std::fs::remove_dir_all(d).unwrap();
    let (p, d) = csv("row,era,feature_a,target\na,0001,1,0.5\n");
    fails(&p, &[], &["in.csv", "no id column"]);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn csv_misnamed_feature_and_target_columns() {
    let (p, d) = csv(&format!("{HEAD}a,0001,1,1,0.5\n"));
    fails(
        &p,
        &["--features", "feature_a,feature_zz"],
        &["in.csv", "column feature_zz", "not found"],
    );
    fails(
        &p,
        &["--targets", "target,target_nope"],
        &["in.csv", "column target_nope", "not found"],
    );
    std::fs::remove_dir_all(d).unwrap();
    let (p, d) = csv("id,era,feat_a,target\na,0001,1,0.5\n");
    fails(&p, &[], &["in.csv", "no feature_* columns"]);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn csv_data_type_filter_without_the_column() {
    let (p, d) = csv(&format!("{HEAD}a,0001,1,1,0.5\n"));
    fails(&p, &["--data-type", "validation"], &["in.csv", "data_type"]);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn feature_set_not_in_features_json() {
    let (p, d) = csv(&format!("{HEAD}a,0001,1,1,0.5\n"));
    let fj = fixture("features.json");
    fails(
        &p,
        &[
            "--features-json",
            fj.to_str().unwrap(),
            "--feature-set",
            "medium",
        ],
        &["features.json", "no feature set \"medium\"", "small"],
    );
    let bad = d.join("f.json");
    std::fs::write(&bad, "{not json").unwrap();
    fails(
        &p,
        &[
            "--features-json",
            bad.to_str().unwrap(),
            "--feature-set",
            "small",
        ],
        &["f.json", "not valid JSON"],
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[cfg(feature = "parquet")]
#[test]
fn parquet_bad_values_name_row_and_column() {
    fails(
        &fixture("bad_feature_value.parquet"),
        &[],
        &[
            "bad_feature_value.parquet",
            "row 2, column feature_a",
            "value 7 outside 0..4",
        ],
    );
    fails(
        &fixture("bad_legacy_float.parquet"),
        &[],
        &["bad_legacy_float.parquet", "row 2, column feature_a", "0.3"],
    );
    fails(
        &fixture("bad_inf_target.parquet"),
        &[],
        &["bad_inf_target.parquet", "row 1, column target", "inf"],
    );
}

#[cfg(feature = "parquet")]
#[test]
fn parquet_duplicate_ids_split_eras_missing_columns() {
    fails(
        &fixture("bad_duplicate_ids.parquet"),
        &[],
        &["bad_duplicate_ids.parquet", "duplicate id \"b0\""],
    );
    fails(
        &fixture("bad_split_era.parquet"),
        &[],
        &["bad_split_era.parquet", "row 2", "contiguous"],
    );
    fails(
        &fixture("bad_no_era.parquet"),
        &[],
        &["bad_no_era.parquet", "no \"era\" column"],
    );
}

#[cfg(feature = "parquet")]
#[test]
fn truncated_and_garbage_parquet() {
    let d = TempDir::new("impbad");
    let good = std::fs::read(fixture("numerai_v5.parquet")).unwrap();
    let cut = d.join("cut.parquet");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    fails(&cut, &[], &["cut.parquet", "parquet"]);
    // a valid footer, damaged pages in the middle
    let mut b = good.clone();
    for k in (50..3000).step_by(31) {
        b[k] ^= 0x5a;
    }
    let mid = d.join("mid.parquet");
    std::fs::write(&mid, &b).unwrap();
    fails(&mid, &[], &["mid.parquet"]);
    fails(&d.join("absent.parquet"), &[], &["absent.parquet"]);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn corrupt_store_is_refused_by_info_and_verify() {
    let d = TempDir::new("impbad");
    let p = d.join("x.store");
    let mut b = b"ERASTORE".to_vec();
    b.extend_from_slice(&[0u8; 40]);
    std::fs::write(&p, &b).unwrap();
    for args in [
        vec!["info", p.to_str().unwrap()],
        vec!["import", p.to_str().unwrap(), "--verify"],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_eraengine"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(
            err.contains("x.store") && err.contains("header") && !err.contains("panicked"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(d).unwrap();
}

#[cfg(not(feature = "parquet"))]
#[test]
fn parquet_without_the_feature_is_a_clear_error() {
    fails(
        &fixture("numerai_v5.parquet"),
        &[],
        &["numerai_v5.parquet", "\"parquet\" feature"],
    );
}
