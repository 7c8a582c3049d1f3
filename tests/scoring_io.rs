//! Reading predictions / meta model, JSON and table output, SVG charts, atomic writes.

mod common;

use common::TempDir;
use eraengine::metrics::{
    corr_chart, evaluate, line_chart, read_meta_model, read_predictions, write_atomic, EraInput,
};
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn reads_predictions_with_extra_columns_quotes_crlf_and_bom() {
    let d = TempDir::new("scoring-good");
    let p = write(
        &d,
        "p.csv",
        "\u{feff}era,id,prediction\r\n0001,n1,0.25\r\n0001,\"n2\", 0.75 \r\n\r\n0002,n3,1e-3\r\n",
    );
    let got = read_predictions(&p).unwrap();
    assert_eq!(
        got,
        vec![
            ("n1".to_string(), 0.25),
            ("n2".to_string(), 0.75),
            ("n3".to_string(), 0.001)
        ]
    );
}

#[test]
fn bad_prediction_files_name_the_file_and_line() {
    let d = TempDir::new("scoring-bad");
    let cases: &[(&str, &str, &str)] = &[
        ("empty.csv", "", "line 1"),
        ("noheader.csv", "n1,0.5\nn2,0.6\n", "line 1"),
        ("nopred.csv", "id,score\nn1,0.5\n", "line 1"),
        ("noid.csv", "row,prediction\nn1,0.5\n", "line 1"),
        ("text.csv", "id,prediction\nn1,0.5\nn2,high\n", "line 3"),
        (
            "nan.csv",
            "id,prediction\nn1,0.5\nn2,0.1\nn3,NaN\n",
            "line 4",
        ),
        ("inf.csv", "id,prediction\nn1,inf\n", "line 2"),
        (
            "dup.csv",
            "id,prediction\nn1,0.5\nn2,0.1\nn1,0.2\n",
            "line 4",
        ),
        ("short.csv", "id,prediction\nn1,0.5\nn2\n", "line 3"),
        ("long.csv", "id,prediction\nn1,0.5,7\n", "line 2"),
        ("emptyid.csv", "id,prediction\n,0.5\n", "line 2"),
        ("quote.csv", "id,prediction\n\"n1,0.5\n", "line 2"),
        ("headeronly.csv", "id,prediction\n", ""),
    ];
    for (name, text, place) in cases {
        let p = write(&d, name, text);
        let err = read_predictions(&p).expect_err(name).to_string();
        assert!(
            err.contains(name),
            "{name}: error does not name the file: {err}"
        );
        assert!(
            err.contains(place),
            "{name}: error does not say {place}: {err}"
        );
    }
    let dup = read_predictions(&d.join("dup.csv"))
        .unwrap_err()
        .to_string();
    assert!(dup.contains("n1") && dup.contains("line 2"), "{dup}");
    let missing = read_predictions(&d.join("nope.csv"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.csv"), "{missing}");
}

#[test]
fn meta_model_csv_errors_and_missing_values() {
    let d = TempDir::new("scoring-meta");
    let p = write(
        &d,
        "m.csv",
        "id,era,numerai_meta_model\na,1,0.5\nb,1,\nc,1,0.25\n",
    );
    let m = read_meta_model(&p).unwrap();
    assert_eq!(m.len(), 2, "empty value is missing, not zero");
    assert_eq!(m["c"], 0.25);
    let p = write(&d, "dup.csv", "id,numerai_meta_model\na,0.5\na,0.25\n");
    let e = read_meta_model(&p).unwrap_err().to_string();
    assert!(e.contains("dup.csv") && e.contains("line 3"), "{e}");
    let p = write(&d, "col.csv", "id,prediction\na,0.5\n");
    let e = read_meta_model(&p).unwrap_err().to_string();
    assert!(
        e.contains("col.csv") && e.contains("numerai_meta_model"),
        "{e}"
    );
    let p = write(&d, "fake.parquet", "PAR1 this is not parquet");
    let e = read_meta_model(&p).unwrap_err().to_string();
    assert!(e.contains("fake.parquet"), "{e}");
}

fn example_eval() -> eraengine::metrics::Evaluation {
    let p1 = [0.1, 0.4, 0.2, 0.9, 0.5, 0.3];
    let t1 = [0.0, 0.5, 0.25, 1.0, 0.75, 0.5];
    let p2 = [0.9, 0.4, 0.2, 0.1, 0.5, 0.3];
    let f: Vec<u8> = (0..12).map(|i| (i * 7 % 5) as u8).collect();
    let eras = [
        EraInput {
            era: "0575",
            preds: &p1,
            target: &t1,
            features: Some((&f, 2)),
            meta: Some(&p2),
        },
        EraInput {
            era: "<&\"x'>",
            preds: &p2,
            target: &t1,
            features: Some((&f, 2)),
            meta: None,
        },
        EraInput {
            era: "0577",
            preds: &[0.5; 6],
            target: &t1,
            features: None,
            meta: None,
        },
    ];
    evaluate(&eras).unwrap()
}

#[test]
fn json_has_the_spec_keys() {
    let ev = example_eval();
    let j = ev.to_json();
    for k in [
        "eras",
        "mean",
        "std",
        "sharpe",
        "max_drawdown",
        "hit_rate",
        "feature_exposure",
        "fnc_mean",
        "meta_corr_mean",
        "warnings",
    ] {
        assert!(j.get(k).is_some(), "missing key {k}");
    }
    let eras = j["eras"].as_array().unwrap();
    assert_eq!(eras.len(), 3);
    assert_eq!(eras[0]["era"], "0575");
    assert_eq!(eras[0]["rows"], 6);
    assert_eq!(eras[0]["corr"].as_f64(), ev.eras[0].corr);
    assert!(eras[2]["corr"].is_null(), "undefined corr is null");
    assert_eq!(j["mean"].as_f64(), ev.mean);
    assert_eq!(j["warnings"].as_array().unwrap().len(), 1);
    // serializes (no NaN reaches JSON)
    let s = serde_json::to_string(&j).unwrap();
    assert!(!s.contains("NaN"));
}

#[test]
fn table_lists_every_era_and_the_summary() {
    let ev = example_eval();
    let t = ev.table();
    for e in &ev.eras {
        assert!(t.contains(&e.era), "{t}");
    }
    assert!(t.contains("sharpe") && t.contains("max drawdown") && t.contains("warning: era 0577"));
    assert!(t.contains(&format!("{:.5}", ev.mean.unwrap())));
}

/// Minimal XML well-formedness check: balanced tags, quoted attributes, entities only from the
/// predefined five, no stray '<' or '&' in text.
fn assert_well_formed(svg: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    if let Some(r) = rest.strip_prefix("<?xml") {
        rest = &r[r.find("?>").expect("xml decl") + 2..];
    }
    while let Some(lt) = rest.find('<') {
        check_text(&rest[..lt]);
        let gt = rest[lt..].find('>').expect("unclosed tag") + lt;
        let tag = &rest[lt + 1..gt];
        assert!(!tag.contains('<'), "'<' inside tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "mismatched close"
            );
        } else {
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name = body
                .split_whitespace()
                .next()
                .expect("tag name")
                .to_string();
            let attrs = &body[name.len()..];
            assert_eq!(
                attrs.matches('"').count() % 2,
                0,
                "unbalanced quotes in {tag}"
            );
            check_text(&attrs.replace('"', ""));
            if !self_closing {
                stack.push(name);
            }
        }
        rest = &rest[gt + 1..];
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
}

fn check_text(t: &str) {
    let mut s = t;
    while let Some(i) = s.find('&') {
        let ent = &s[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| ent.starts_with(e)),
            "bad entity in {t}"
        );
        s = &s[i + 1..];
    }
    assert!(!t.contains('>') || !t.contains('<'));
}

#[test]
fn corr_chart_is_valid_svg_with_bars_line_and_labels() {
    let ev = example_eval();
    let svg = corr_chart(&ev);
    assert_well_formed(&svg);
    assert!(svg.starts_with("<?xml") && svg.contains("<svg"));
    let bars = svg.matches("<rect").count() - 1 /* background */ - 3 /* legend */;
    assert_eq!(bars, ev.scored_eras(), "one bar per era with a corr");
    assert!(svg.contains("<polyline"), "cumulative line");
    assert!(
        svg.contains("&lt;&amp;&quot;x&apos;&gt;"),
        "era label escaped"
    );
    assert!(svg.contains("cumulative corr") && svg.contains(">era<"));
    // many eras: labels thinned to about 20
    let p: Vec<f64> = (0..50).map(|i| i as f64).collect();
    let t: Vec<f64> = (0..50).map(|i| ((i * 7) % 5) as f64 / 4.0).collect();
    let names: Vec<String> = (0..300).map(|i| format!("e{i:04}")).collect();
    let eras: Vec<EraInput> = names
        .iter()
        .map(|n| EraInput {
            era: n,
            preds: &p,
            target: &t,
            features: None,
            meta: None,
        })
        .collect();
    let big = corr_chart(&evaluate(&eras).unwrap());
    assert_well_formed(&big);
    let shown = names
        .iter()
        .filter(|n| big.contains(&format!(">{n}</text>")))
        .count();
    assert!((10..=25).contains(&shown), "{shown} labels shown");
}

#[test]
fn line_chart_is_valid_svg_and_breaks_lines_at_nan() {
    let labels: Vec<String> = (1..=8).map(|i| format!("step {i}")).collect();
    let series = vec![
        (
            "train loss".to_string(),
            vec![1.0, 0.8, 0.6, 0.5, 0.45, 0.42, 0.4, 0.39],
        ),
        (
            "valid <corr>".to_string(),
            vec![0.0, 0.01, f64::NAN, 0.02, 0.025, 0.03, 0.031, 0.03],
        ),
    ];
    let svg = line_chart("Training & validation", &labels, &series);
    assert_well_formed(&svg);
    assert!(svg.contains("Training &amp; validation"));
    assert!(svg.contains("valid &lt;corr&gt;"));
    assert_eq!(
        svg.matches("<polyline").count(),
        3,
        "NaN splits the second series"
    );
    let empty = line_chart("nothing", &[], &[]);
    assert_well_formed(&empty);
}

#[test]
fn write_atomic_replaces_the_file_and_leaves_no_temp() {
    let d = TempDir::new("scoring-atomic");
    let p = d.join("out.json");
    write_atomic(&p, b"first").unwrap();
    write_atomic(&p, b"second").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"second");
    let names: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // Missing parent folders are created; nothing but the file is left there.
    write_atomic(&d.join("new/sub/x.svg"), b"x").unwrap();
    assert_eq!(std::fs::read(d.join("new/sub/x.svg")).unwrap(), b"x");
    assert_eq!(std::fs::read_dir(d.join("new/sub")).unwrap().count(), 1);
    // A parent that is a file is an error naming the path.
    let err = write_atomic(&p.join("x.svg"), b"x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("out.json"), "{err}");
}
