//! Import of files written by another tool (pyarrow/pandas, `tests/fixtures/make_parquet.py`):
//! every value of the store is compared with the values the script recorded.
//!
//! The fixtures are checked in; `ERAENGINE_FIXTURES=DIR` points the tests at freshly generated ones.

mod common;

use common::TempDir;
use eraengine::data::store::{Store, MISSING};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    match std::env::var_os("ERAENGINE_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
    }
}

fn fixture(name: &str) -> PathBuf {
    let p = fixtures().join(name);
    assert!(
        p.exists(),
        "fixture {} missing: run python3 tests/fixtures/make_parquet.py",
        p.display()
    );
    p
}

fn eraengine(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eraengine"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(&format!("expected_{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Compare a store with the expected rows, keeping only `features` and `targets` (by name) and
/// rows whose index `keep` accepts.
fn assert_matches(
    s: &Store,
    exp: &Value,
    features: &[&str],
    targets: &[&str],
    keep: impl Fn(usize) -> bool,
) {
    let fnames: Vec<&str> = exp["feature_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let tnames: Vec<&str> = exp["target_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(s.feature_names(), features);
    assert_eq!(s.target_names(), targets);
    let ids = exp["ids"].as_array().unwrap();
    let rows: Vec<usize> = (0..ids.len()).filter(|&i| keep(i)).collect();
    assert_eq!(s.n_rows(), rows.len());
    let fsrc: Vec<Option<usize>> = features
        .iter()
        .map(|f| fnames.iter().position(|x| x == f))
        .collect();
    let tsrc: Vec<Option<usize>> = targets
        .iter()
        .map(|t| tnames.iter().position(|x| x == t))
        .collect();
    let mut eras_seen = Vec::new();
    for (r, &i) in rows.iter().enumerate() {
        let era_name = exp["eras"][i].as_str().unwrap();
        let e = s.era_index(era_name).expect("era missing from store");
        if eras_seen.last() != Some(&e) {
            eras_seen.push(e);
        }
        let era = s.era(e);
        let k = r - era.first_row;
        assert_eq!(era.id(k), ids[i].as_str().unwrap(), "row {r}");
        for (j, src) in fsrc.iter().enumerate() {
            let want = exp["features"][i][src.unwrap()].as_i64().unwrap() as i8;
            let want = if want == -1 { MISSING } else { want };
            assert_eq!(era.row(k)[j], want, "row {r} feature {}", features[j]);
        }
        for (j, src) in tsrc.iter().enumerate() {
            let got = era.target(k, j);
            match src.map(|c| &exp["targets"][i][c]) {
                Some(Value::Number(n)) => assert_eq!(
                    got,
                    n.as_f64().unwrap() as f32,
                    "row {r} target {}",
                    targets[j]
                ),
                _ => assert!(
                    got.is_nan(),
                    "row {r} target {} should be NaN, got {got}",
                    targets[j]
                ),
            }
        }
    }
    // eras appear once each and in file order
    let mut sorted = eras_seen.clone();
    sorted.sort();
    assert_eq!(eras_seen, sorted);
    assert_eq!(eras_seen.len(), s.n_eras());
    s.verify().unwrap();
}

#[cfg(feature = "parquet")]
const ALL: [&str; 6] = [
    "feature_alpha",
    "feature_bravo",
    "feature_charlie",
    "feature_delta",
    "feature_echo",
    "feature_foxtrot",
];

#[cfg(feature = "parquet")]
#[test]
fn pyarrow_parquet_imports_every_value() {
    let d = TempDir::new("impfx");
    let out = d.join("a.store");
    let (ok, msg) = eraengine(&[
        "import",
        fixture("numerai_v5.parquet").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--targets",
        "target,target_aux",
        "--quiet",
    ]);
    assert!(ok, "{msg}");
    let s = Store::open(&out).unwrap();
    assert_matches(
        &s,
        &expected("numerai_v5"),
        &ALL,
        &["target", "target_aux"],
        |_| true,
    );
    assert!(s.missing_features() > 0, "the fixture has null features");
    // era 0005 has all targets NaN, and info says so
    let info = eraengine::cli::info::store_json(&s);
    assert_eq!(
        info["eras_all_targets_missing"],
        serde_json::json!(["0005"])
    );
    assert_eq!(
        info["missing_targets"]["target"].as_u64().unwrap() as usize,
        s.era(4).n_rows
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[cfg(feature = "parquet")]
#[test]
fn pandas_csv_imports_to_the_same_store_bytes() {
    let d = TempDir::new("impfx");
    let (a, b) = (d.join("a.store"), d.join("b.store"));
    for (input, out) in [("numerai_v5.parquet", &a), ("numerai_v5.csv", &b)] {
        let (ok, msg) = eraengine(&[
            "import",
            fixture(input).to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        assert!(ok, "{msg}");
    }
    let s = Store::open(&b).unwrap();
    assert_matches(&s, &expected("numerai_v5"), &ALL, &["target"], |_| true);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    std::fs::remove_dir_all(d).unwrap();
}

#[cfg(feature = "parquet")]
#[test]
fn legacy_float_features_map_to_round_4v_and_nan_to_missing() {
    let d = TempDir::new("impfx");
    let out = d.join("l.store");
    let (ok, msg) = eraengine(&[
        "import",
        fixture("legacy_float.parquet").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{msg}");
    let s = Store::open(&out).unwrap();
    assert_matches(&s, &expected("legacy_float"), &ALL, &["target"], |_| true);
    assert!(s.missing_features() > 0);
    std::fs::remove_dir_all(d).unwrap();
}

#[cfg(feature = "parquet")]
#[test]
fn train_and_live_concatenate_with_a_feature_set() {
    let d = TempDir::new("impfx");
    let out = d.join("tl.store");
    let (ok, msg) = eraengine(&[
        "import",
        fixture("numerai_v5.parquet").to_str().unwrap(),
        fixture("live.parquet").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--features-json",
        fixture("features.json").to_str().unwrap(),
        "--feature-set",
        "small",
    ]);
    assert!(ok, "{msg}");
    let s = Store::open(&out).unwrap();
    assert_eq!(s.feature_names(), &["feature_alpha", "feature_bravo"]);
    assert_eq!(s.n_eras(), 6);
    let live = s.era(5);
    assert_eq!(live.name, "X");
    assert!(live.all_targets_missing());
    // live rows compared value by value
    let exp = expected("live");
    for k in 0..live.n_rows {
        assert_eq!(live.id(k), exp["ids"][k].as_str().unwrap());
        assert_eq!(
            live.row(k)[1] as i64,
            exp["features"][k][1].as_i64().unwrap()
        );
    }
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn data_type_keeps_only_matching_rows() {
    let d = TempDir::new("impfx");
    let out = d.join("v.store");
    let (ok, msg) = eraengine(&[
        "import",
        fixture("numerai_v5.csv").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--data-type",
        "validation",
        "--features",
        "feature_echo,feature_delta",
    ]);
    assert!(ok, "{msg}");
    let s = Store::open(&out).unwrap();
    let exp = expected("numerai_v5");
    let eras: Vec<String> = exp["eras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_matches(
        &s,
        &exp,
        &["feature_echo", "feature_delta"],
        &["target"],
        |i| eras[i].as_str() >= "0004",
    );
    assert_eq!(s.n_eras(), 2);
    std::fs::remove_dir_all(d).unwrap();
}

#[cfg(feature = "parquet")]
#[test]
fn verify_flag_checks_a_store_and_catches_damage() {
    let d = TempDir::new("impfx");
    let out = d.join("s.store");
    let (ok, msg) = eraengine(&[
        "import",
        fixture("numerai_v5.parquet").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--verify",
    ]);
    assert!(ok, "{msg}");
    let (ok, msg) = eraengine(&["import", out.to_str().unwrap(), "--verify"]);
    assert!(ok, "{msg}");
    assert!(msg.contains("ok"), "{msg}");
    let mut b = std::fs::read(&out).unwrap();
    let n = b.len();
    b[n - 70] ^= 0x10;
    std::fs::write(&out, &b).unwrap();
    let (ok, msg) = eraengine(&["import", out.to_str().unwrap(), "--verify"]);
    assert!(!ok);
    assert!(
        msg.contains("s.store") && (msg.contains("checksum") || msg.contains("section")),
        "{msg}"
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[cfg(feature = "parquet")]
#[test]
fn info_json_has_the_spec_keys() {
    let d = TempDir::new("impfx");
    let out = d.join("i.store");
    let (ok, msg) = eraengine(&[
        "import",
        fixture("numerai_v5.parquet").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{msg}");
    let (ok, text) = eraengine(&["info", out.to_str().unwrap(), "--json"]);
    assert!(ok, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    for k in [
        "format_version",
        "rows",
        "eras",
        "features",
        "targets",
        "feature_names",
        "target_names",
        "era_table",
        "missing_features",
        "missing_targets",
    ] {
        assert!(v.get(k).is_some(), "missing key {k}");
    }
    assert_eq!(v["rows"], 36);
    assert_eq!(
        v["era_table"][1],
        serde_json::json!({"era": "0002", "first_row": 9, "rows": 1})
    );
    let (ok, text) = eraengine(&["info", out.to_str().unwrap()]);
    assert!(ok && text.contains("0005"), "{text}");
    let (ok, text) = eraengine(&["info"]);
    assert!(ok && text.contains("cpu"), "{text}");
    std::fs::remove_dir_all(d).unwrap();
}

#[cfg(feature = "parquet")]
#[test]
fn one_numeric_column_with_ids_reads_like_pandas() {
    let exp = expected("numerai_v5");
    let (ids, vals) =
        eraengine::data::pq::read_ids_and_values(&fixture("numerai_v5.parquet"), "target_aux")
            .unwrap();
    assert_eq!(ids.len(), exp["ids"].as_array().unwrap().len());
    for (i, (id, v)) in ids.iter().zip(&vals).enumerate() {
        assert_eq!(id, exp["ids"][i].as_str().unwrap());
        match exp["targets"][i][1].as_f64() {
            Some(w) => assert_eq!(*v, w),
            None => assert!(v.is_nan()),
        }
    }
    let e = eraengine::data::pq::read_ids_and_values(&fixture("numerai_v5.parquet"), "nope")
        .unwrap_err();
    assert!(e.to_string().contains("column nope"), "{e}");
}
