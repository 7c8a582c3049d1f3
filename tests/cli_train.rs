//! End to end through the binary: train on the built-in synthetic data (it must learn, and beat a
//! linear model fitted on the same rows), predict a submission that passes Numerai's rules, eval,
//! info on a checkpoint, and the bad inputs of training and prediction.

mod common;

use common::TempDir;
use eraengine::data::batch::preprocess_features;
use eraengine::data::store::Store;
use eraengine::metrics::numerai_corr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eraengine"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Trained {
    dir: PathBuf,
    ckpt: PathBuf,
    log: String,
}

/// One training run on the built-in data, shared by the tests of this file.
fn trained() -> &'static Trained {
    static T: OnceLock<Trained> = OnceLock::new();
    T.get_or_init(|| {
        let dir = TempDir::new("e2e-train");
        let ckpt = dir.join("model.safetensors");
        let o = run(bin()
            .env("ERAENGINE_CACHE", dir.join("cache"))
            .args(["train", "--epochs", "8", "--out"])
            .arg(&ckpt));
        let log = text(&o);
        assert!(o.status.success(), "train failed:\n{log}");
        Trained {
            dir: dir.until_exit(),
            ckpt,
            log,
        }
    })
}

fn builtin_dir() -> PathBuf {
    trained().dir.join("cache").join("builtin-seed0")
}

fn find_store(dir: &Path, stem: &str) -> PathBuf {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with(stem) {
            return p;
        }
    }
    panic!("no {stem}* in {}", dir.display());
}

/// Ridge regression on the training rows (features → target 0), scored per validation era.
fn linear_baseline(train: &Store, valid: &Store) -> f64 {
    let f = train.n_features();
    let k = f + 1;
    let mut xtx = vec![0.0f64; k * k];
    let mut xty = vec![0.0f64; k];
    let mut x = Vec::new();
    for i in 0..train.n_eras() {
        let era = train.era(i);
        preprocess_features(&era, &mut x);
        for r in 0..era.n_rows {
            let y = era.targets[r * era.n_targets] as f64;
            if y.is_nan() {
                continue;
            }
            let row: Vec<f64> = x[r * f..(r + 1) * f]
                .iter()
                .map(|&v| v as f64)
                .chain([1.0])
                .collect();
            for a in 0..k {
                xty[a] += row[a] * y;
                for b in 0..k {
                    xtx[a * k + b] += row[a] * row[b];
                }
            }
        }
    }
    for a in 0..k {
        xtx[a * k + a] += 1e-3;
    }
    // Gaussian elimination.
    let mut m = xtx.clone();
    let mut w = xty.clone();
    for c in 0..k {
        let p = (c..k)
            .max_by(|&i, &j| m[i * k + c].abs().total_cmp(&m[j * k + c].abs()))
            .unwrap();
        for j in 0..k {
            m.swap(c * k + j, p * k + j);
        }
        w.swap(c, p);
        for r in 0..k {
            if r != c {
                let fct = m[r * k + c] / m[c * k + c];
                for j in 0..k {
                    m[r * k + j] -= fct * m[c * k + j];
                }
                w[r] -= fct * w[c];
            }
        }
    }
    let beta: Vec<f64> = (0..k).map(|i| w[i] / m[i * k + i]).collect();
    let mut corrs = Vec::new();
    for i in 0..valid.n_eras() {
        let era = valid.era(i);
        preprocess_features(&era, &mut x);
        let preds: Vec<f64> = (0..era.n_rows)
            .map(|r| beta[f] + (0..f).map(|j| beta[j] * x[r * f + j] as f64).sum::<f64>())
            .collect();
        let t: Vec<f64> = (0..era.n_rows)
            .map(|r| era.targets[r * era.n_targets] as f64)
            .collect();
        if let Some(c) = numerai_corr(&preds, &t) {
            corrs.push(c);
        }
    }
    corrs.iter().sum::<f64>() / corrs.len() as f64
}

#[test]
fn training_on_builtin_data_learns_and_beats_a_linear_model() {
    let t = trained();
    let line = t
        .log
        .lines()
        .find(|l| l.starts_with("best epoch"))
        .unwrap_or_else(|| panic!("no summary line:\n{}", t.log));
    let corr: f64 = line
        .split("validation mean corr ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        t.log.contains("epoch   1/8"),
        "per-epoch lines missing:\n{}",
        t.log
    );
    assert!(
        corr > 0.02,
        "validation corr {corr} is not clearly above zero:\n{}",
        t.log
    );
    let dir = builtin_dir();
    let train = Store::open(&find_store(&dir, "builtin-train")).unwrap();
    let valid = Store::open(&find_store(&dir, "builtin-validation")).unwrap();
    let lin = linear_baseline(&train, &valid);
    assert!(
        corr > lin + 0.01,
        "EraTransformer corr {corr} does not beat the linear model's {lin}"
    );
    assert!(t.ckpt.exists());
}

#[test]
fn predict_writes_a_valid_submission_and_eval_scores_it() {
    let t = trained();
    let dir = TempDir::new("e2e-predict");
    let valid = find_store(&builtin_dir(), "builtin-validation");
    // `predict [flags] --model … --data valid --out <out>`, with ERAENGINE_LOADERS when given
    let predict = |flags: &[&str], out: &Path, loaders: Option<&str>| {
        let mut cmd = bin();
        if let Some(n) = loaders {
            cmd.env("ERAENGINE_LOADERS", n);
        }
        let o = run(cmd
            .arg("predict")
            .args(flags)
            .arg("--model")
            .arg(&t.ckpt)
            .arg("--data")
            .arg(&valid)
            .arg("--out")
            .arg(out));
        assert!(o.status.success(), "{}", text(&o));
    };
    let out = dir.join("preds.csv");
    predict(&[], &out, None);
    let csv = std::fs::read_to_string(&out).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("id,prediction"));
    let store = Store::open(&valid).unwrap();
    let mut ids = std::collections::HashSet::new();
    let mut n = 0;
    for l in lines {
        let (id, v) = l.split_once(',').unwrap();
        let v: f64 = v.parse().unwrap();
        assert!(
            v > 0.0 && v < 1.0 && v.is_finite(),
            "prediction {v} outside (0,1)"
        );
        assert!(ids.insert(id.to_string()), "id {id} twice");
        n += 1;
    }
    assert_eq!(n, store.n_rows(), "every id exactly once");
    // three era loaders ahead of the model (one by default on the CPU): the same file
    let out3 = dir.join("preds3.csv");
    predict(&[], &out3, Some("3"));
    assert_eq!(std::fs::read_to_string(&out3).unwrap(), csv);
    // eval
    let js = dir.join("scores.json");
    let svg = dir.join("corr.svg");
    let o = run(bin()
        .args(["eval", "--predictions"])
        .arg(&out)
        .arg("--data")
        .arg(&valid)
        .arg("--json")
        .arg(&js)
        .arg("--svg")
        .arg(&svg));
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    for k in [
        "eras",
        "mean",
        "std",
        "sharpe",
        "max_drawdown",
        "hit_rate",
        "feature_exposure",
        "fnc_mean",
    ] {
        assert!(v.get(k).is_some(), "eval JSON lacks {k}");
    }
    assert!(v["mean"].as_f64().unwrap() > 0.0);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    // --no-fnc: the same scores without the feature-neutral corr.
    let js2 = dir.join("scores_nofnc.json");
    let o = run(bin()
        .args(["eval", "--quiet", "--no-fnc", "--predictions"])
        .arg(&out)
        .arg("--data")
        .arg(&valid)
        .arg("--json")
        .arg(&js2));
    assert!(o.status.success(), "{}", text(&o));
    let v2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js2).unwrap()).unwrap();
    assert_eq!(v2["mean"], v["mean"]);
    assert_eq!(v2["feature_exposure"], v["feature_exposure"]);
    assert!(v2["fnc_mean"].is_null() && v["fnc_mean"].is_f64());
    // raw output is the model output, not ranks
    let raw = dir.join("raw.csv");
    predict(&["--raw"], &raw, None);
    assert_ne!(std::fs::read_to_string(&raw).unwrap(), csv);
}

#[test]
fn info_describes_a_checkpoint() {
    let t = trained();
    let o = run(bin().arg("info").arg(&t.ckpt).arg("--json"));
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["config"]["d_model"], 64);
    assert_eq!(v["format"], "eraengine");
}

#[test]
fn fine_tuning_from_a_checkpoint_with_max_steps_and_grads_out() {
    let t = trained();
    let dir = TempDir::new("e2e-init");
    let out = dir.join("ft.safetensors");
    let grads = dir.join("grads.safetensors");
    let o = run(bin()
        .env("ERAENGINE_CACHE", t.dir.join("cache"))
        .args(["train", "--quiet", "--max-steps", "3", "--init"])
        .arg(&t.ckpt)
        .arg("--out")
        .arg(&out)
        .arg("--grads-out")
        .arg(&grads));
    assert!(o.status.success(), "{}", text(&o));
    let g = eraengine::checkpoint::from_bytes(&std::fs::read(&grads).unwrap(), &grads).unwrap();
    assert!(g.1.iter().any(|(n, _, _)| n == "layers.0.attn.q.weight"));
    assert!(
        g.1.iter().any(|(_, _, v)| v.iter().any(|&x| x != 0.0)),
        "gradients are all zero"
    );
}

#[test]
fn bad_inputs_are_clear_errors() {
    let t = trained();
    let dir = TempDir::new("e2e-bad");
    // A store with a different feature set than the checkpoint.
    let o = run(bin()
        .args([
            "synth",
            "--features",
            "9",
            "--eras",
            "3",
            "--rows",
            "40",
            "--out",
        ])
        .arg(dir.join("other")));
    assert!(o.status.success(), "{}", text(&o));
    let other = find_store(&dir.join("other"), "live");
    let o = run(bin()
        .args(["predict", "--model"])
        .arg(&t.ckpt)
        .arg("--data")
        .arg(&other)
        .arg("--out")
        .arg(dir.join("p.csv")));
    assert!(!o.status.success());
    assert!(text(&o).contains("features"), "{}", text(&o));
    assert!(!dir.join("p.csv").exists());
    // A corrupt checkpoint.
    let bad = dir.join("bad.safetensors");
    let mut bytes = std::fs::read(&t.ckpt).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&bad, &bytes).unwrap();
    let o = run(bin()
        .args(["predict", "--model"])
        .arg(&bad)
        .arg("--data")
        .arg(&other)
        .arg("--out")
        .arg(dir.join("p.csv")));
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("bad.safetensors"), "{}", text(&o));
    // Training that diverges stops with the step and tensor.
    let o = run(bin()
        .env("ERAENGINE_CACHE", t.dir.join("cache"))
        .args([
            "train", "--quiet", "--lr", "1e30", "--clip", "0", "--epochs", "1", "--out",
        ])
        .arg(dir.join("div.safetensors")));
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains("step") && (msg.contains("loss") || msg.contains("gradient")),
        "{msg}"
    );
    // Numerai parquet given where a store is expected: the error says how to convert it.
    let o = run(bin().args([
        "train",
        "--quiet",
        "--data",
        "tests/fixtures/numerai_v5.parquet",
    ]));
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("eraengine import"), "{}", text(&o));
    // Unknown flags and bad values.
    let o = run(bin().args(["train", "--no-such-flag"]));
    assert_eq!(o.status.code(), Some(2));
    let o = run(bin().args(["train", "--device", "tpu"]));
    assert!(!o.status.success() && text(&o).contains("--device"));
    let o = run(bin()
        .args(["train", "--d-model", "10", "--heads", "4"])
        .env("ERAENGINE_CACHE", t.dir.join("cache")));
    assert!(
        !o.status.success() && text(&o).contains("multiple of heads"),
        "{}",
        text(&o)
    );
    // No panics anywhere above.
    assert!(!msg.contains("panicked"));
}

#[test]
fn parquet_import_train_predict_and_walk_forward() {
    let dir = TempDir::new("e2e-pipeline");
    let o = run(bin()
        .args([
            "synth",
            "--eras",
            "14",
            "--rows",
            "80",
            "--features",
            "12",
            "--parquet",
            "--seed",
            "5",
            "--out",
        ])
        .arg(&dir));
    assert!(o.status.success(), "{}", text(&o));
    let all = dir.join("all.store");
    let o = run(bin()
        .arg("import")
        .arg(dir.join("train.parquet"))
        .arg(dir.join("validation.parquet"))
        .arg("--out")
        .arg(&all)
        .args(["--targets", "target,target_aux1", "--quiet"]));
    assert!(o.status.success(), "{}", text(&o));
    let store = Store::open(&all).unwrap();
    assert_eq!(store.target_names(), ["target", "target_aux1"]);
    // Walk-forward over the imported eras: out-of-sample predictions for every era after the window.
    let oos = dir.join("oos.csv");
    let report = dir.join("report");
    let o = run(bin()
        .args([
            "train",
            "--walk-forward",
            "--window",
            "10",
            "--epochs",
            "1",
            "--d-model",
            "16",
            "--heads",
            "2",
            "--quiet",
            "--data",
        ])
        .arg(&all)
        .arg("--predictions-out")
        .arg(&oos)
        .arg("--report-dir")
        .arg(&report));
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(&oos).unwrap();
    assert!(csv.starts_with("id,era,prediction\n"));
    let expect: usize = (10..store.n_eras()).map(|i| store.era(i).n_rows).sum();
    assert_eq!(
        csv.lines().count() - 1,
        expect,
        "one prediction per row of every era after the window"
    );
    let first_oos = store.era(10).name.to_string();
    assert!(csv
        .lines()
        .nth(1)
        .unwrap()
        .contains(&format!(",{first_oos},")));
    for f in ["corr.svg", "feature_weights.svg", "summary.json"] {
        assert!(report.join(f).exists(), "report lacks {f}");
    }
    // With an embargo of 2 eras the first predicted era moves 2 eras later.
    let oos2 = dir.join("oos2.csv");
    let o = run(bin()
        .args([
            "train",
            "--walk-forward",
            "--window",
            "10",
            "--embargo",
            "2",
            "--epochs",
            "1",
            "--d-model",
            "16",
            "--heads",
            "2",
            "--data",
        ])
        .arg(&all)
        .arg("--predictions-out")
        .arg(&oos2));
    assert!(o.status.success(), "{}", text(&o));
    let log = text(&o);
    assert!(
        log.contains(&format!(
            "trained on eras {}..{}, era {}",
            store.era(0).name,
            store.era(9).name,
            store.era(12).name
        )),
        "{log}"
    );
    let expect2: usize = (12..store.n_eras()).map(|i| store.era(i).n_rows).sum();
    assert_eq!(
        std::fs::read_to_string(&oos2).unwrap().lines().count() - 1,
        expect2
    );
    // Train on the imported store (2 steps), predict live parquet imported with the same features.
    let ck = dir.join("m.safetensors");
    let o = run(bin()
        .args([
            "train",
            "--quiet",
            "--max-steps",
            "2",
            "--d-model",
            "16",
            "--heads",
            "2",
            "--data",
        ])
        .arg(&all)
        .arg("--out")
        .arg(&ck));
    assert!(o.status.success(), "{}", text(&o));
    let live = dir.join("live_pq.store");
    let o = run(bin()
        .arg("import")
        .arg(dir.join("live.parquet"))
        .arg("--out")
        .arg(&live)
        .arg("--quiet"));
    assert!(o.status.success(), "{}", text(&o));
    let sub = dir.join("submission.csv");
    let o = run(bin()
        .args(["predict", "--model"])
        .arg(&ck)
        .arg("--data")
        .arg(&live)
        .arg("--out")
        .arg(&sub));
    assert!(o.status.success(), "{}", text(&o));
    let n = std::fs::read_to_string(&sub).unwrap().lines().count() - 1;
    assert_eq!(n, Store::open(&live).unwrap().n_rows());
}

#[test]
fn a_killed_run_resumes_exactly_where_it_stopped() {
    let t = trained();
    let dir = TempDir::new("e2e-resume");
    let small = [
        "--d-model",
        "16",
        "--heads",
        "2",
        "--layers",
        "1",
        "--quiet",
        "--patience",
        "0",
    ];
    let full = dir.join("full.safetensors");
    let o = run(bin()
        .env("ERAENGINE_CACHE", t.dir.join("cache"))
        .arg("train")
        .args(small)
        .args(["--epochs", "3", "--out"])
        .arg(&full));
    assert!(o.status.success(), "{}", text(&o));
    // The same run stopped after 2 epochs, then resumed to 3.
    let part = dir.join("part.safetensors");
    let o = run(bin()
        .env("ERAENGINE_CACHE", t.dir.join("cache"))
        .arg("train")
        .args(small)
        .args(["--epochs", "2", "--out"])
        .arg(&part));
    assert!(o.status.success(), "{}", text(&o));
    let o = run(bin()
        .env("ERAENGINE_CACHE", t.dir.join("cache"))
        .arg("train")
        .args(small)
        .args(["--epochs", "3", "--resume", "--out"])
        .arg(&part));
    assert!(o.status.success(), "{}", text(&o));
    let a = std::fs::read(dir.join("full.last.safetensors")).unwrap();
    let b = std::fs::read(dir.join("part.last.safetensors")).unwrap();
    assert!(a == b, "resumed weights differ from an uninterrupted run");
    let a = std::fs::read(dir.join("full.last.optim.safetensors")).unwrap();
    let b = std::fs::read(dir.join("part.last.optim.safetensors")).unwrap();
    assert!(
        a == b,
        "resumed optimizer state differs from an uninterrupted run"
    );
    // Nothing to resume is a clear error.
    let o = run(bin()
        .env("ERAENGINE_CACHE", t.dir.join("cache"))
        .args(["train", "--resume", "--out"])
        .arg(dir.join("none.safetensors")));
    assert!(
        !o.status.success() && text(&o).contains("none.last.safetensors"),
        "{}",
        text(&o)
    );
}

/// The whole GPU backend — every kernel, launch configuration and buffer — trains the model through
/// the CPU emulator and lands on the CPU path's weights; `--device cuda` without a GPU is an error.
#[test]
fn the_gpu_backend_on_the_emulator_trains_like_the_cpu() {
    let t = trained();
    let dir = TempDir::new("e2e-emu");
    let flags = [
        "--max-steps",
        "2",
        "--epochs",
        "1",
        "--quiet",
        "--d-model",
        "8",
        "--heads",
        "2",
        "--layers",
        "1",
    ];
    let mut weights = Vec::new();
    for dev in ["cpu", "emu"] {
        let out = dir.join(format!("{dev}.safetensors"));
        let o = run(bin()
            .env("ERAENGINE_CACHE", t.dir.join("cache"))
            .args(["train", "--device", dev])
            .args(flags)
            .arg("--out")
            .arg(&out));
        assert!(o.status.success(), "{dev}: {}", text(&o));
        weights.push(
            eraengine::checkpoint::Checkpoint::load(&out)
                .unwrap()
                .tensors,
        );
    }
    for ((name, _, a), (_, _, b)) in weights[0].iter().zip(&weights[1]) {
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + x.abs()),
                "{name}: cpu {x} vs emulated gpu {y}"
            );
        }
    }
    // Prediction through the emulated GPU backend matches the CPU's raw outputs.
    let valid = find_store(&builtin_dir(), "builtin-validation");
    let mut preds = Vec::new();
    for dev in ["cpu", "emu"] {
        let out = dir.join(format!("{dev}.csv"));
        let o = run(bin()
            .args(["predict", "--raw", "--device", dev, "--model"])
            .arg(dir.join("cpu.safetensors"))
            .arg("--data")
            .arg(&valid)
            .arg("--out")
            .arg(&out));
        assert!(o.status.success(), "{dev}: {}", text(&o));
        let v: Vec<f64> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        preds.push(v);
    }
    assert_eq!(preds[0].len(), preds[1].len());
    for (x, y) in preds[0].iter().zip(&preds[1]) {
        assert!(
            (x - y).abs() <= 1e-5 * (1.0 + x.abs()),
            "prediction cpu {x} vs emulated gpu {y}"
        );
    }
    if !eraengine::gpu::cuda_available() {
        let o = run(bin()
            .env("ERAENGINE_CACHE", t.dir.join("cache"))
            .args(["train", "--device", "cuda"])
            .args(flags)
            .arg("--out")
            .arg(dir.join("c.safetensors")));
        assert_eq!(o.status.code(), Some(1));
        assert!(text(&o).contains("--device cuda"), "{}", text(&o));
    }
}
