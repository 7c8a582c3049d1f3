//! `eraengine tune` and `train --config` end to end on tiny data: a killed and rerun search ends
//! with the same table as an uninterrupted one, best.json trains the best trial again through
//! `train --config`, and bad space or config files are clear errors naming the file and key.

mod common;

use common::{bin, text, TempDir};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

/// Tiny easy data shared by the tests of this file.
fn data() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = TempDir::new("tune-data");
        let o = bin()
            .args([
                "synth",
                "--kind",
                "easy",
                "--eras",
                "12",
                "--valid-eras",
                "4",
            ])
            .args(["--rows", "60", "--features", "8", "--quiet", "--out"])
            .arg(&d)
            .output()
            .unwrap();
        assert!(o.status.success(), "synth failed: {}", text(&o));
        d.until_exit()
    })
}

fn tune(out: &Path, extra: &[&str]) -> Output {
    let d = data();
    bin()
        .arg("tune")
        .arg("--data")
        .arg(d.join("train.store"))
        .arg("--valid")
        .arg(d.join("validation.store"))
        .args(["--device", "cpu", "--rungs", "1,2", "--seed", "7", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// trials.json without the timings (which differ between runs).
fn table_json(dir: &Path) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&read(&dir.join("trials.json"))).unwrap();
    for row in v.as_array_mut().unwrap() {
        row.as_object_mut().unwrap().remove("secs");
    }
    v
}

#[test]
fn resumed_search_gives_the_same_table_as_an_uninterrupted_one() {
    let full = TempDir::new("tune-full");
    let o = tune(&full, &["--trials", "7"]);
    assert!(o.status.success(), "{}", text(&o));
    // "Killed" after 3 trials, and one finished result lost: rerun the full command twice over.
    let cut = TempDir::new("tune-cut");
    let o = tune(&cut, &["--trials", "3"]);
    assert!(o.status.success(), "{}", text(&o));
    let lost = cut.join("trials").join("trial-0001-epochs-1.json");
    std::fs::remove_file(&lost).unwrap();
    let o = tune(&cut, &["--trials", "7"]);
    assert!(o.status.success(), "{}", text(&o));
    let log = text(&o);
    assert!(log.contains("(done before)"), "nothing was reused:\n{log}");
    // rung 1: trials 0 and 2 survived the cut (1 was lost); rung 2 may also reuse the cut run's
    // promoted trial when the full run promotes it too
    let rung1 = log.split("rung 2/").next().unwrap_or("");
    assert_eq!(
        rung1.matches("(done before)").count(),
        2,
        "trials 0 and 2 of rung 1 are reused:\n{log}"
    );
    assert_eq!(
        read(&full.join("trials.csv")),
        read(&cut.join("trials.csv"))
    );
    assert_eq!(table_json(&full), table_json(&cut));
    assert_eq!(read(&full.join("best.json")), read(&cut.join("best.json")));
    // 7 trials, sorted best first: the 2 promoted ones (2 epochs) lead, corr falls within a rung.
    let csv = read(&full.join("trials.csv"));
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 7);
    let epochs: Vec<&str> = rows.iter().map(|r| r[3]).collect();
    assert_eq!(epochs, ["2", "2", "1", "1", "1", "1", "1"]);
    for w in rows[2..].windows(2) {
        let (a, b): (f64, f64) = (w[0][4].parse().unwrap(), w[1][4].parse().unwrap());
        assert!(a >= b, "not sorted: {a} before {b}");
    }
    // A rerun of a finished search trains nothing and rewrites the same table.
    let o = tune(&full, &["--trials", "7"]);
    assert!(o.status.success());
    assert_eq!(text(&o).matches("(done before)").count(), 7 + 2);
    assert_eq!(
        read(&full.join("trials.csv")),
        read(&cut.join("trials.csv"))
    );
}

#[test]
fn best_json_round_trips_through_train_config() {
    let dir = TempDir::new("tune-best");
    let o = tune(&dir, &["--trials", "4", "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "--quiet printed: {}",
        text(&o)
    );
    let csv = read(&dir.join("trials.csv"));
    let best: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let corr: f64 = best[4].parse().unwrap();
    let d = data();
    let o = bin()
        .arg("train")
        .arg("--data")
        .arg(d.join("train.store"))
        .arg("--valid")
        .arg(d.join("validation.store"))
        .args(["--device", "cpu", "--quiet", "--config"])
        .arg(dir.join("best.json"))
        .arg("--out")
        .arg(dir.join("m.safetensors"))
        .output()
        .unwrap();
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    let want = format!("best epoch {}: validation mean corr {corr:+.4}", best[6]);
    assert!(log.contains(&want), "expected '{want}' in:\n{log}");
    // The checkpoint has the tuned architecture.
    let cfg: serde_json::Value = serde_json::from_str(&read(&dir.join("best.json"))).unwrap();
    let o = bin()
        .arg("info")
        .arg(dir.join("m.safetensors"))
        .arg("--json")
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = info.to_string();
    for k in ["d_model", "layers", "heads"] {
        let pat = format!("\"{k}\":{}", cfg[k]);
        assert!(s.contains(&pat), "{pat} not in {s}");
    }
}

#[test]
fn command_line_flags_override_the_config_file() {
    let dir = TempDir::new("tune-override");
    let cfg = dir.join("c.json");
    std::fs::write(
        &cfg,
        r#"{"epochs": 40, "d-model": 16, "heads": 2, "top_k": null}"#,
    )
    .unwrap();
    let d = data();
    let o = bin()
        .arg("train")
        .arg("--data")
        .arg(d.join("train.store"))
        .args(["--device", "cpu", "--epochs", "1", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.join("m.safetensors"))
        .output()
        .unwrap();
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains("epoch   1/1"),
        "--epochs 1 did not win:\n{log}"
    );
    assert!(
        log.contains("d_model 16 heads 2"),
        "config not applied:\n{log}"
    );
}

fn train_with_config(body: &str) -> String {
    let dir = TempDir::new("tune-badcfg");
    let cfg = dir.join("bad.json");
    std::fs::write(&cfg, body).unwrap();
    let d = data();
    let o = bin()
        .arg("train")
        .arg("--data")
        .arg(d.join("train.store"))
        .args(["--device", "cpu", "--epochs", "1", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.join("m.safetensors"))
        .output()
        .unwrap();
    assert!(!o.status.success(), "accepted {body}");
    let log = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(log.contains("bad.json"), "the file is not named: {log}");
    assert!(!log.contains("panicked"), "{log}");
    log
}

#[test]
fn bad_config_files_name_the_file_and_key() {
    assert!(train_with_config(r#"{"learning_rate": 0.01}"#).contains("learning_rate: unknown key"));
    assert!(train_with_config(r#"{"lr": "fast"}"#).contains("lr: expected a number"));
    assert!(train_with_config(r#"{"d_model": 64.5}"#).contains("d_model: expected a whole number"));
    assert!(train_with_config(r#"{"pos_enc": 1}"#).contains("pos_enc: expected true or false"));
    assert!(train_with_config(r#"{"data": "x.store"}"#).contains("data: unknown key"));
    assert!(train_with_config("[1, 2]").contains("expected a JSON object"));
    assert!(train_with_config("{").contains("not JSON"));
}

fn tune_with_space(body: &str) -> String {
    let dir = TempDir::new("tune-badspace");
    let space = dir.join("space.json");
    std::fs::write(&space, body).unwrap();
    let o = tune(
        &dir.join("out"),
        &["--trials", "3", "--space", space.to_str().unwrap()],
    );
    assert!(!o.status.success(), "accepted {body}");
    let log = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(log.contains("space.json"), "the file is not named: {log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(!dir.join("out").join("trials.csv").exists());
    log
}

#[test]
fn bad_space_files_are_clear_errors() {
    assert!(tune_with_space(r#"{"lrate": 0.1}"#).contains("lrate: unknown key"));
    assert!(tune_with_space(r#"{"lr": {"log_uniform": [0, 1]}}"#).contains("lo > 0"));
    assert!(tune_with_space(r#"{"lr": {"uniform": [0.1, 0.01]}}"#).contains("lo <= hi"));
    assert!(tune_with_space(r#"{"layers": {"int": [1.5, 3]}}"#).contains("two whole numbers"));
    assert!(tune_with_space(r#"{"heads": {"choice": []}}"#).contains("non-empty list"));
    assert!(tune_with_space(r#"{"lr": {"gauss": [1, 2]}}"#).contains("unknown distribution"));
    assert!(tune_with_space(r#"{"epochs": 3}"#).contains("--rungs"));
    assert!(tune_with_space(r#"{"refit": "on"}"#).contains("refit: trials are scored"));
    assert!(tune_with_space(r#"{"head_blend": "auto"}"#).contains("head_blend: trials are scored"));
    assert!(tune_with_space("not json").contains("not JSON"));
    // Well formed, but a draw cannot train: 3 heads do not divide d_model 16.
    let log = tune_with_space(r#"{"d_model": 16, "heads": {"choice": [3]}}"#);
    assert!(log.contains("trial 0") && log.contains("heads"), "{log}");
}

#[test]
fn another_seed_into_the_same_directory_is_refused() {
    let dir = TempDir::new("tune-seed");
    let o = tune(&dir, &["--trials", "2", "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let d = data();
    let o = bin()
        .arg("tune")
        .arg("--data")
        .arg(d.join("train.store"))
        .arg("--valid")
        .arg(d.join("validation.store"))
        .args(["--device", "cpu", "--trials", "2", "--seed", "8", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("seed differs"), "{}", text(&o));
}
