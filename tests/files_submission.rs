//! Issue 12, item 5: ids are quoted per RFC 4180 in every predictions CSV, `read_predictions`
//! reads back exactly what was written, and `validate_submission` checks a submission as
//! numerai-tools' `validate_submission_numerai` does.

mod common;

use common::TempDir;
use eraengine::metrics::{
    csv_field, era_predictions_csv, predictions_csv, read_predictions, validate_submission,
};
use proptest::prelude::*;

#[test]
fn ids_with_comma_quote_or_newline_are_quoted() {
    assert_eq!(csv_field("n1"), "n1");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    assert_eq!(csv_field("cr\r"), "\"cr\r\"");
    assert_eq!(csv_field(" padded "), "\" padded \"");
    let csv = predictions_csv([("a,b", 0.25), ("x\"y", 0.5), ("l1\nl2", 0.75)]);
    assert_eq!(
        csv,
        "id,prediction\n\"a,b\",0.25\n\"x\"\"y\",0.5\n\"l1\nl2\",0.75\n"
    );
    let csv = era_predictions_csv([("i,d", "era 1,", 0.5)]);
    assert_eq!(csv, "id,era,prediction\n\"i,d\",\"era 1,\",0.5\n");
}

#[test]
fn a_quoted_newline_keeps_line_numbers_right_in_errors() {
    let d = TempDir::new("subm-lines");
    let p = d.join("p.csv");
    std::fs::write(&p, "id,prediction\n\"a\nb\",0.5\nc,oops\n").unwrap();
    let e = read_predictions(&p).unwrap_err().to_string();
    assert!(e.contains("line 4") && e.contains("oops"), "{e}");
    std::fs::write(&p, "id,prediction\n\"a,0.5\nc,0.1\n").unwrap();
    let e = read_predictions(&p).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("unterminated"), "{e}");
    std::fs::write(&p, "id,prediction\n\"a\"x,0.5\n").unwrap();
    let e = read_predictions(&p).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("after a closing"), "{e}");
    // an 8 MB field is not echoed whole
    let long = "9".repeat(8_000_000) + "x";
    std::fs::write(&p, format!("id,prediction\na,{long}\n")).unwrap();
    let e = read_predictions(&p).unwrap_err().to_string();
    assert!(e.len() < 500, "message is {} bytes", e.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    /// Whatever the ids hold, eval reads exactly what predict writes.
    #[test]
    fn read_predictions_reads_what_predictions_csv_writes(
        ids in proptest::collection::hash_set("[a-z0-9,\" \\n\\r\\t.;é]{1,12}", 1..30),
        seed in any::<u64>(),
    ) {
        // ids that are blank after trimming cannot be told apart from an empty id: skip those
        let ids: Vec<String> = ids.into_iter().filter(|s| !s.trim().is_empty()).collect();
        prop_assume!(!ids.is_empty());
        let mut k = seed;
        let rows: Vec<(String, f64)> = ids
            .iter()
            .map(|id| {
                k = k.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (id.clone(), ((k >> 11) as f64 + 0.5) / (1u64 << 53) as f64)
            })
            .collect();
        let d = TempDir::new("subm-prop");
        let p = d.join("p.csv");
        std::fs::write(&p, predictions_csv(rows.iter().map(|(i, v)| (i.as_str(), *v)))).unwrap();
        let back = read_predictions(&p).unwrap();
        prop_assert_eq!(back, rows);
    }
}

#[test]
fn validate_submission_as_numerai_tools() {
    let live = ["a", "b", "c"];
    let sub = |v: &[(&str, f64)]| -> Vec<(String, f64)> {
        v.iter().map(|(i, x)| (i.to_string(), *x)).collect()
    };
    validate_submission(&live, &sub(&[("c", 0.1), ("a", 0.5), ("b", 0.9)])).unwrap();
    let cases: Vec<(Vec<(String, f64)>, &str)> = vec![
        (sub(&[("a", 0.1), ("b", 0.5)]), "have no prediction"),
        (
            sub(&[("a", 0.1), ("b", 0.5), ("c", 0.2), ("d", 0.3)]),
            "not live ids",
        ),
        (
            sub(&[("a", 0.1), ("b", 0.5), ("c", 0.2), ("a", 0.3)]),
            "duplicate",
        ),
        (
            sub(&[("a", 0.0), ("b", 0.5), ("c", 0.2)]),
            "strictly between 0 and 1",
        ),
        (
            sub(&[("a", 0.1), ("b", 1.0), ("c", 0.2)]),
            "strictly between 0 and 1",
        ),
        (
            sub(&[("a", 0.1), ("b", f64::NAN), ("c", 0.2)]),
            "not a finite number",
        ),
        (sub(&[]), "no predictions"),
        (
            sub(&[("a", 0.5), ("b", 0.5), ("c", 0.5)]),
            "zero standard deviation",
        ),
    ];
    for (s, words) in cases {
        let e = validate_submission(&live, &s).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let m = e.to_string();
        assert!(m.contains("not valid") && m.contains(words), "{m}");
    }
}
