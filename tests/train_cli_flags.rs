//! `train`/`predict` flags through the binary: help lines with defaults, negative numbers, --init and
//! --resume refusing changed settings by name, the resumed summary, ensembles, row sampling's
//! default per preset.

mod common;

use common::{bin, text, TempDir};
use std::path::{Path, PathBuf};
use std::process::Output;

/// A small synthetic dataset: (train, validation) stores.
fn data(dir: &Path) -> (PathBuf, PathBuf) {
    let o = bin()
        .args([
            "synth",
            "--eras",
            "10",
            "--rows",
            "40",
            "--features",
            "12",
            "--seed",
            "2",
            "--out",
        ])
        .arg(dir.join("d"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let find = |stem: &str| {
        std::fs::read_dir(dir.join("d"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(stem))
            .unwrap()
    };
    (find("train"), find("validation"))
}

const SMALL: [&str; 7] = ["--d-model", "8", "--heads", "2", "--layers", "1", "--quiet"];

fn train(train: &Path, valid: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("train")
        .arg("--data")
        .arg(train)
        .arg("--valid")
        .arg(valid)
        .args(SMALL)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn every_flag_of_every_command_has_a_help_line_with_its_default_once() {
    for (cmd, no_default) in [
        ("train", &["--resume", "--help"][..]),
        ("predict", &["--model", "--data", "--out", "--help"][..]),
        // required flags have no default
        ("pretrain", &["--data", "--out", "--help"][..]),
        ("import", &["--out", "--help"][..]),
        ("synth", &["--out", "--help"][..]),
        ("eval", &["--predictions", "--data", "--help"][..]),
        ("tune", &["--out", "--help"][..]),
        ("bench", &["--help"][..]),
        ("info", &["--help"][..]),
    ] {
        let o = bin().args([cmd, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&o.stdout).to_string();
        let lines: Vec<&str> = help.lines().collect();
        let mut flags = 0;
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            if !t.starts_with("--") && !t.starts_with("-h") {
                continue;
            }
            let flag = t
                .split([' ', ','])
                .find(|w| w.starts_with("--"))
                .unwrap()
                .to_string();
            // The description: the rest of the line (short help) and the following lines up to
            // the next flag (long help).
            let rest: Vec<&str> = t
                .split_whitespace()
                .skip_while(|w| w.starts_with('-') || w.starts_with('<'))
                .collect();
            let desc: String = std::iter::once(rest.join(" "))
                .chain(
                    lines[i + 1..]
                        .iter()
                        .take_while(|l| !l.trim_start().starts_with('-'))
                        .map(|l| l.to_string()),
                )
                .collect::<Vec<_>>()
                .join(" ");
            assert!(!desc.trim().is_empty(), "{cmd} {flag} has no help line");
            if !no_default.contains(&flag.as_str()) {
                assert!(
                    desc.contains("[default:"),
                    "{cmd} {flag} shows no default: {desc}"
                );
            }
            assert!(
                desc.matches("[default:").count() <= 1,
                "{cmd} {flag} shows its default twice: {desc}"
            );
            flags += 1;
        }
        assert!(flags >= 2, "{cmd}: {help}");
    }
}

#[test]
fn negative_numbers_parse_and_get_range_errors() {
    for (flag, words) in [
        ("--lr", "--lr must be a positive number"),
        ("--ema", "--ema must be in"),
        ("--feature-noise", "--feature-noise must be in"),
        ("--row-sample", "--row-sample must be in"),
        ("--clip", "--clip must be >= 0"),
    ] {
        let o = bin()
            .args(["train", flag, "-1", "--data", "/nonexistent"])
            .output()
            .unwrap();
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{flag}: {t}");
        assert!(!t.contains("unexpected argument"), "{flag}: {t}");
        assert!(t.contains(words), "{flag}: {t}");
    }
    let o = bin().args(["train", "--epochs", "-3"]).output().unwrap();
    assert!(!text(&o).contains("unexpected argument"), "{}", text(&o));
}

#[test]
fn init_and_resume_refuse_changed_settings_naming_the_flag() {
    let dir = TempDir::new("flags-resume");
    let (t, v) = data(&dir);
    let out = dir.join("m.safetensors");
    let o = train(
        &t,
        &v,
        &[
            "--epochs",
            "1",
            "--ema",
            "0.5",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let resume = |extra: &[&str]| {
        let mut args = vec!["--epochs", "2", "--resume", "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        train(&t, &v, &args)
    };
    for (extra, flag) in [
        (&["--lr", "0.01"][..], "--lr"),
        (&["--seed", "9"][..], "--seed"),
        (&["--ema", "0.9"][..], "--ema"),
        (&["--row-sample", "0.7"][..], "--row-sample"),
        (&["--schedule", "cosine"][..], "--schedule"),
        (&["--dropout", "0.2"][..], "--dropout"),
        (&["--layers", "2"][..], "--layers"),
    ] {
        let o = resume(extra);
        assert!(
            !o.status.success() && text(&o).contains(flag),
            "{flag}: {}",
            text(&o)
        );
    }
    // Other data is refused too.
    let o = bin()
        .arg("train")
        .arg("--data")
        .arg(&v)
        .arg("--valid")
        .arg(&v)
        .args(SMALL)
        .args(["--epochs", "2", "--resume", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("--data"),
        "{}",
        text(&o)
    );
    // The same settings resume, and the summary is the whole run's.
    let o = resume(&[]);
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains("best epoch") && !log.contains("over 0 eras"),
        "{log}"
    );
    // --init with a model flag that disagrees names it.
    let o = train(
        &t,
        &v,
        &[
            "--epochs",
            "1",
            "--init",
            out.to_str().unwrap(),
            "--gate-rank",
            "3",
        ],
    );
    assert!(
        !o.status.success() && text(&o).contains("--gate-rank 3"),
        "{}",
        text(&o)
    );
}

#[test]
fn an_ensemble_trains_per_seed_and_predicts_the_rank_average() {
    let dir = TempDir::new("flags-ens");
    let (t, v) = data(&dir);
    let ens = dir.join("ens");
    let o = train(
        &t,
        &v,
        &[
            "--epochs",
            "1",
            "--seeds",
            "1,2",
            "--out",
            ens.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ens.join("ensemble.json")).unwrap()).unwrap();
    assert_eq!(manifest["members"].as_array().unwrap().len(), 2);
    let (a, b) = (
        ens.join("seed-1.safetensors"),
        ens.join("seed-2.safetensors"),
    );
    let predict = |models: &[&Path], name: &str| -> String {
        let out = dir.join(name);
        let mut c = bin();
        c.arg("predict");
        for m in models {
            c.arg("--model").arg(m);
        }
        let o = c
            .arg("--data")
            .arg(&v)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        std::fs::read_to_string(out).unwrap()
    };
    let one = predict(&[&a], "a.csv");
    assert_eq!(
        predict(&[&a, &a], "aa.csv"),
        one,
        "identical members differ from one"
    );
    let ab = predict(&[&a, &b], "ab.csv");
    assert_eq!(
        predict(&[&b, &a], "ba.csv"),
        ab,
        "the order of --model matters"
    );
    assert_eq!(
        predict(&[&ens], "dir.csv"),
        ab,
        "--model DIR is not its members"
    );
    assert_ne!(ab, one);
    // Members with other features are refused.
    let o = bin()
        .args([
            "synth",
            "--eras",
            "4",
            "--rows",
            "30",
            "--features",
            "9",
            "--out",
        ])
        .arg(dir.join("other"))
        .output()
        .unwrap();
    assert!(o.status.success());
    let other_train = std::fs::read_dir(dir.join("other"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("train")
        })
        .unwrap();
    let c = dir.join("c.safetensors");
    let o = bin()
        .arg("train")
        .arg("--data")
        .arg(&other_train)
        .args(SMALL)
        .args(["--epochs", "1", "--out"])
        .arg(&c)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = bin()
        .args(["predict", "--model"])
        .arg(&a)
        .arg("--model")
        .arg(&c)
        .arg("--data")
        .arg(&v)
        .arg("--out")
        .arg(dir.join("x.csv"))
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("disagree on features"),
        "{}",
        text(&o)
    );
}

/// `recommended` averages the weights over time (`--ema 0.995`) in a single run, not in ensemble
/// members (docs/defaults.md round 9): member seed-1 of `--seeds 1,2` is `train --seed 1 --ema 0`
/// bit for bit, and a plain `train --seed 1` differs from it; `--ema` given reaches the members.
#[test]
fn ensemble_members_average_no_weights_unless_asked() {
    let dir = TempDir::new("flags-ens-ema");
    let (t, v) = data(&dir);
    let weights = |p: &Path| eraengine::checkpoint::Checkpoint::load(p).unwrap().tensors;
    let run = |extra: &[&str], out: &Path| {
        let o = train(
            &t,
            &v,
            &[&["--epochs", "2", "--out", out.to_str().unwrap()], extra].concat(),
        );
        assert!(o.status.success(), "{}", text(&o));
    };
    let ens = dir.join("ens");
    run(&["--seeds", "1,2"], &ens);
    let (plain, off) = (dir.join("plain.safetensors"), dir.join("off.safetensors"));
    run(&["--seed", "1"], &plain);
    run(&["--seed", "1", "--ema", "0"], &off);
    let member = weights(&ens.join("seed-1.safetensors"));
    assert!(member == weights(&off), "the member is not --ema 0");
    assert!(member != weights(&plain), "the single run did not average");
    let ens2 = dir.join("ens2");
    run(&["--seeds", "1", "--ema", "0.995"], &ens2);
    assert!(weights(&ens2.join("seed-1.safetensors")) == weights(&plain));
}

/// The weights `train` writes to DIR/NAME on (t, v) with `base` then `extra` flags; panics with
/// the output when it fails.
fn trained(dir: &Path, t: &Path, v: &Path, base: &[&str], extra: &[&str], name: &str) -> Tensors {
    let out = dir.join(name);
    let o = train(
        t,
        v,
        &[base, extra, &["--out", out.to_str().unwrap()]].concat(),
    );
    assert!(o.status.success(), "{name}: {}", text(&o));
    eraengine::checkpoint::Checkpoint::load(&out)
        .unwrap()
        .tensors
}

type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// `train --walk-forward FLAG VALUE` and `pretrain FLAG VALUE` exit 2 naming the flag, and
/// pretrain writes nothing.
fn refused_by_walk_forward_and_pretrain(dir: &Path, t: &Path, flag: &str, value: &str) {
    let o = bin()
        .args(["train", "--walk-forward", flag, value, "--data"])
        .arg(t)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains(flag), "{}", text(&o));
    let pre = dir.join("pre.safetensors");
    let o = bin()
        .args(["pretrain", flag, value, "--data"])
        .arg(t)
        .arg("--out")
        .arg(&pre)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{flag} applies to train")),
        "{}",
        text(&o)
    );
    assert!(!pre.exists());
}

/// `recommended` trains each era on a random half of its rows (`--row-sample 0.5`, docs/defaults.md
/// round 12), `spec` on every row; a `--config` key is the flag; walk-forward and pretrain refuse
/// the flag rather than ignore it.
#[test]
fn row_sample_defaults_per_preset_and_is_refused_where_it_means_nothing() {
    let dir = TempDir::new("flags-rows");
    let (t, v) = data(&dir);
    let run = |extra: &[&str], name: &str| {
        trained(&dir, &t, &v, &["--epochs", "2", "--seed", "1"], extra, name)
    };
    let plain = run(&[], "plain.safetensors");
    assert!(plain == run(&["--row-sample", "0.5"], "half.safetensors"));
    assert!(plain != run(&["--row-sample", "1"], "all.safetensors"));
    let config = dir.join("c.json");
    std::fs::write(&config, r#"{"row_sample": 1}"#).unwrap();
    assert!(
        run(
            &["--config", config.to_str().unwrap()],
            "config.safetensors"
        ) == run(&["--row-sample", "1"], "all2.safetensors")
    );
    let spec = run(&["--preset", "spec"], "spec.safetensors");
    assert!(
        spec == run(
            &["--preset", "spec", "--row-sample", "1"],
            "spec1.safetensors"
        )
    );
    assert!(
        spec != run(
            &["--preset", "spec", "--row-sample", "0.5"],
            "spec5.safetensors"
        )
    );
    refused_by_walk_forward_and_pretrain(&dir, &t, "--row-sample", "0.5");
}

/// `recommended` keeps no epoch before the 7th (`--min-epochs 7`, docs/defaults.md round 13),
/// `spec` any epoch; a `--config` key is the flag; with N = --epochs the kept model is the last
/// epoch's (no moving average, so the kept weights are the raw ones); 0 is refused by name;
/// walk-forward and pretrain refuse the flag rather than ignore it.
#[test]
fn min_epochs_defaults_per_preset_and_is_refused_where_it_means_nothing() {
    let dir = TempDir::new("flags-minep");
    let (t, v) = data(&dir);
    let base = [
        "--epochs",
        "8",
        "--patience",
        "0",
        "--seed",
        "1",
        "--refit",
        "off",
        "--head-blend",
        "off",
        "--ema",
        "0",
    ];
    let run = |extra: &[&str], name: &str| trained(&dir, &t, &v, &base, extra, name);
    let last = |name: &str| {
        eraengine::checkpoint::Checkpoint::load(&dir.join(name))
            .unwrap()
            .tensors
    };
    let plain = run(&[], "plain.safetensors");
    assert!(plain == run(&["--min-epochs", "7"], "seven.safetensors"));
    let at8 = run(&["--min-epochs", "8"], "eight.safetensors");
    assert!(
        at8 == last("eight.last.safetensors") && at8 == last("plain.last.safetensors"),
        "--min-epochs 8 of 8 kept another epoch"
    );
    let config = dir.join("c.json");
    std::fs::write(&config, r#"{"min_epochs": 8}"#).unwrap();
    assert!(
        run(
            &["--config", config.to_str().unwrap()],
            "config.safetensors"
        ) == at8
    );
    let spec = run(&["--preset", "spec"], "spec.safetensors");
    assert!(
        spec == run(
            &["--preset", "spec", "--min-epochs", "1"],
            "spec1.safetensors"
        )
    );

    let o = bin()
        .args(["train", "--min-epochs", "0", "--data", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--min-epochs must be at least 1"),
        "{}",
        text(&o)
    );
    refused_by_walk_forward_and_pretrain(&dir, &t, "--min-epochs", "2");
}
