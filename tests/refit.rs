//! The refit after early stopping (`train --refit on`, the default of `--preset recommended`): the
//! model is trained again on the training and then the validation eras, for the epoch count early
//! stopping chose. Checked against an independent route to the same eras: `synth` generates era g
//! of a seed the same way whatever the split, so `--eras 20 --valid-eras 0` holds exactly the
//! eras of `--eras 16 --valid-eras 4`'s training and validation stores, one after the other.
//! Also the era source that reads several stores as one (column mapping by name, learnable eras).

mod common;

use common::{bin, text, TempDir};
use eraengine::checkpoint::Checkpoint;
use eraengine::data::store::{Store, StoreWriter};
use eraengine::train::era::{ColumnMap, EraBatch, EraSource};
use std::path::Path;
use std::process::Output;

fn synth(out: &Path, eras: &str, valid: &str) {
    let o = bin()
        .args(["synth", "--seed", "5", "--rows", "50", "--features", "12"])
        .args([
            "--eras",
            eras,
            "--valid-eras",
            valid,
            "--test-eras",
            "2",
            "--quiet",
        ])
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

// the head blend (tests/head_blend.rs) off: these compare the refit's weights with other routes
const SMALL: [&str; 8] = [
    "--d-model",
    "8",
    "--heads",
    "2",
    "--layers",
    "1",
    "--head-blend",
    "off",
];

/// What a refit prints (stderr, then the summary on stdout).
fn refitted(o: &Output) -> bool {
    let t = text(o);
    t.contains("refit: training again") || t.contains("(refit on the training")
}

fn train(args: &[&str], data: &Path, valid: Option<&Path>, out: &Path) -> Output {
    let mut c = bin();
    c.arg("train").arg("--data").arg(data);
    if let Some(v) = valid {
        c.arg("--valid").arg(v);
    }
    c.args(SMALL)
        .args(["--seed", "3", "--device", "cpu"])
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn tensors(p: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    Checkpoint::load(p).unwrap().tensors
}

#[test]
fn refit_equals_training_on_the_joined_eras_for_the_best_epoch_count() {
    let dir = TempDir::new("refit");
    let (split, joined) = (dir.join("split"), dir.join("joined"));
    synth(&split, "16", "4");
    synth(&joined, "20", "0");
    let (tr, va) = (split.join("train.store"), split.join("validation.store"));

    // --refit joint: the joint retraining alone
    let refit = dir.join("refit.safetensors");
    let o = train(
        &["--epochs", "4", "--refit", "joint"],
        &tr,
        Some(&va),
        &refit,
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    // "best epoch E: ... (refit on the training and validation eras for E epoch(s))"
    let best: usize = out
        .split("best epoch ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no best epoch in: {out}"));
    assert!(
        out.contains(&format!("for {best} epoch")),
        "the default (recommended) did not refit: {out}"
    );

    let plain = dir.join("plain.safetensors");
    let o = train(
        &["--epochs", &best.to_string(), "--patience", "0"],
        &joined.join("train.store"),
        None,
        &plain,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        tensors(&refit) == tensors(&plain),
        "the refit is not the joined run"
    );

    // the default (recommended: --refit on) adds one pass over the validation eras at a tenth of
    // the learning rate: `train --init` of the joined model on them, as a user would run it
    let full = dir.join("full.safetensors");
    let o = train(&["--epochs", "4"], &tr, Some(&va), &full);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("then once over the 4 validation eras"),
        "{}",
        text(&o)
    );
    let lr = format!("{:e}", 1e-3f32 * 0.1f32);
    let tuned = dir.join("tuned.safetensors");
    let args = [
        "--epochs",
        "1",
        "--patience",
        "0",
        "--lr",
        &lr,
        "--refit",
        "off",
        "--ema",
        "0",
    ];
    let mut c = bin();
    c.arg("train").arg("--data").arg(&va).args(SMALL);
    c.args(["--seed", "3", "--device", "cpu"]).args(args);
    let o = c
        .arg("--init")
        .arg(&plain)
        .arg("--out")
        .arg(&tuned)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        tensors(&full) == tensors(&tuned),
        "the last pass is not `train --init`"
    );
    assert!(tensors(&full) != tensors(&refit));

    // --refit off keeps the early-stopped model, which is another one
    let early = dir.join("early.safetensors");
    let o = train(&["--epochs", "4", "--refit", "off"], &tr, Some(&va), &early);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!refitted(&o), "{}", text(&o));
    assert!(tensors(&refit) != tensors(&early));
    // and --preset spec does not refit unless asked
    let spec = dir.join("spec.safetensors");
    let o = train(
        &["--epochs", "4", "--preset", "spec"],
        &tr,
        Some(&va),
        &spec,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(!refitted(&o), "{}", text(&o));
}

#[test]
fn resuming_a_finished_run_refits_the_same_model_without_training_on() {
    let dir = TempDir::new("refit-resume");
    let d = dir.join("d");
    synth(&d, "12", "3");
    let (tr, va) = (d.join("train.store"), d.join("validation.store"));
    let out = dir.join("m.safetensors");
    // patience 1 over 8 epochs: early stopping ends the first run before its last epoch
    let args = ["--epochs", "8", "--patience", "1"];
    let o = train(&args, &tr, Some(&va), &out);
    assert!(o.status.success(), "{}", text(&o));
    let first = text(&o);
    assert!(first.contains("early stop:"), "{first}");
    let done = tensors(&out);
    let o = train(&[&args[..], &["--resume"]].concat(), &tr, Some(&va), &out);
    assert!(o.status.success(), "{}", text(&o));
    let again = text(&o);
    // the same best epoch and the same refit model; no epoch trained in between
    let best = |t: &str| t.split("best epoch ").nth(1).map(|s| s[..2].to_string());
    assert_eq!(best(&first), best(&again), "{first}\n---\n{again}");
    assert!(again.contains("resuming after epoch"), "{again}");
    assert!(
        !again.contains("valid corr"),
        "an epoch was validated: {again}"
    );
    assert!(tensors(&out) == done, "the resumed run wrote another model");
}

#[test]
fn refit_flag_and_config_values_are_checked() {
    let dir = TempDir::new("refit-flags");
    let d = dir.join("d");
    synth(&d, "6", "2");
    let (tr, va) = (d.join("train.store"), d.join("validation.store"));
    let o = train(
        &["--refit", "maybe"],
        &tr,
        Some(&va),
        &dir.join("m.safetensors"),
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--refit must be 'on', 'joint' or 'off'"),
        "{}",
        text(&o)
    );
    assert!(!dir.join("m.safetensors").exists());
    // refused before any data is opened
    assert!(!text(&o).contains("training on"), "{}", text(&o));

    let cfg = dir.join("c.json");
    std::fs::write(&cfg, r#"{"refit": 3}"#).unwrap();
    let o = train(
        &["--config", cfg.to_str().unwrap()],
        &tr,
        Some(&va),
        &dir.join("m.safetensors"),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("refit"), "{}", text(&o));

    std::fs::write(&cfg, r#"{"refit": false}"#).unwrap();
    let o = train(
        &["--config", cfg.to_str().unwrap()],
        &tr,
        Some(&va),
        &dir.join("m.safetensors"),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(!refitted(&o), "{}", text(&o));
}

#[test]
fn ensemble_members_are_refit_and_say_so() {
    let dir = TempDir::new("refit-ens");
    let d = dir.join("d");
    synth(&d, "6", "2");
    let ens = dir.join("ens");
    let mut c = bin();
    let o = c
        .arg("train")
        .arg("--data")
        .arg(d.join("train.store"))
        .arg("--valid")
        .arg(d.join("validation.store"))
        .args(SMALL)
        .args([
            "--epochs", "2", "--seeds", "1,2", "--device", "cpu", "--quiet", "--out",
        ])
        .arg(&ens)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ens.join("ensemble.json")).unwrap()).unwrap();
    for member in m["members"].as_array().unwrap() {
        assert_eq!(member["refit_epochs"], member["best_epoch"], "{m}");
        assert!(member["refit_epochs"].as_u64().is_some(), "{m}");
    }
}

/// A store of `eras` eras with the features named in `names` (values from `code(era, row, name)`).
fn store(path: &Path, names: &[&str], eras: &[&str], targets: bool) -> Store {
    let f: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut w = StoreWriter::create(path, &f, &["target".to_string()]).unwrap();
    for (e, era) in eras.iter().enumerate() {
        let rows = 3 + e;
        let ids: Vec<String> = (0..rows).map(|r| format!("{era}-{r}")).collect();
        let mut x = Vec::new();
        for r in 0..rows {
            for n in names {
                let k = n.trim_start_matches('f').parse::<usize>().unwrap();
                x.push(((k + 2 * r + e) % 5) as i8);
            }
        }
        let y: Vec<f32> = (0..rows)
            .map(|r| {
                if targets {
                    (r % 5) as f32 / 4.0
                } else {
                    f32::NAN
                }
            })
            .collect();
        w.push_era(era, &ids, &x, &y).unwrap();
    }
    w.finish().unwrap();
    Store::open(path).unwrap()
}

#[test]
fn an_era_source_reads_its_stores_in_order_with_columns_mapped_by_name() {
    let dir = TempDir::new("era-source");
    let a = store(
        &dir.join("a.store"),
        &["f0", "f1", "f2"],
        &["0001", "0002"],
        true,
    );
    // the same features in another order, plus one the first store lacks
    let b = store(
        &dir.join("b.store"),
        &["f2", "f3", "f0", "f1"],
        &["0003"],
        true,
    );
    let c = store(&dir.join("c.store"), &["f0", "f1", "f2"], &["0004"], false);
    let src = EraSource::one(&a).then(&b).unwrap().then(&c).unwrap();
    assert_eq!(src.n_eras(), 4);
    let names: Vec<String> = (0..4).map(|i| src.load(i).unwrap().name).collect();
    assert_eq!(names, ["0001", "0002", "0003", "0004"]);
    // era 2 is b's era 0 read in a's column order: f0, f1, f2
    let got = src.load(2).unwrap();
    let map = ColumnMap::for_model(&b, a.feature_names(), a.target_names()).unwrap();
    let want = EraBatch::load(&b, 0, &map).unwrap();
    assert_eq!(got.x, want.x);
    assert_eq!(got.f, 3);
    // feature f0 of row 1 of era 0003 (era index 0 of b): code (0 + 2) % 5 = 2 → x = 0
    assert_eq!(got.x[3], 0.0);
    // f2 of the same row: code (2 + 2) % 5 = 4 → x = 1
    assert_eq!(got.x[3 + 2], 1.0);
    // c's era has no target value: nothing to learn
    let learn: Vec<bool> = (0..4).map(|i| src.learnable(i)).collect();
    assert_eq!(learn, [true, true, true, false]);
    assert!(src.load(4).is_err());
    // a store without one of the run's features cannot join
    let d = store(&dir.join("d.store"), &["f0", "f1"], &["0005"], true);
    let err = EraSource::one(&a).then(&d).err().unwrap().to_string();
    assert!(err.contains("d.store") && err.contains("f2"), "{err}");
    // the joined checksum is neither part's
    assert_ne!(src.data_checksum(), a.data_checksum());
    assert_eq!(EraSource::one(&a).data_checksum(), a.data_checksum());
}
