//! `eraengine pretrain` end to end through the binary on a tiny synthetic store: it writes a
//! pretrained checkpoint whose reconstruction MSE falls, `train --init` fine-tunes from it with a
//! fresh head and without the pretrain.* tensors, bad inputs fail clearly; and the checkpoint
//! round-trips `ortho_weight`.

mod common;

use common::{bin, text, TempDir};
use eraengine::checkpoint::{Checkpoint, PRETRAINED, PRETRAINED_KEY};
use std::path::Path;

fn synth(dir: &Path) {
    let o = bin()
        .args([
            "synth",
            "--kind",
            "easy",
            "--eras",
            "16",
            "--rows",
            "80",
            "--features",
            "12",
            "--quiet",
            "--out",
        ])
        .arg(dir.join("d"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

const MODEL: [&str; 8] = [
    "--d-model",
    "16",
    "--heads",
    "2",
    "--layers",
    "1",
    "--d-ff",
    "32",
];

/// The "epoch k/E  reconstruction mse X  valid Y" lines: (train, valid).
fn mses(log: &str) -> Vec<(f64, f64)> {
    log.lines()
        .filter(|l| l.contains("reconstruction mse") && l.starts_with("epoch"))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[4].parse().unwrap(), w[6].parse().unwrap())
        })
        .collect()
}

fn header(p: &Path) -> serde_json::Value {
    let b = std::fs::read(p).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    serde_json::from_slice(&b[8..8 + n]).unwrap()
}

#[test]
fn pretrain_then_finetune_end_to_end() {
    let dir = TempDir::new("pt-e2e");
    synth(&dir);
    let ck = dir.join("pre.safetensors");
    let o = bin()
        .args([
            "pretrain",
            "--device",
            "cpu",
            "--epochs",
            "8",
            "--patience",
            "0",
            "--lr",
            "3e-3",
            "--seed",
            "3",
            "--data",
        ])
        .arg(dir.join("d/train.store"))
        .arg("--out")
        .arg(&ck)
        .args(MODEL)
        .output()
        .unwrap();
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    let m = mses(&log);
    assert_eq!(m.len(), 8, "{log}");
    let (first, last) = (m[0], m[m.len() - 1]);
    assert!(
        last.0 < first.0 && last.1 < first.1,
        "reconstruction MSE does not fall: {m:?}"
    );
    // a loadable model checkpoint with its pretraining tensors, marked in the metadata
    let h = header(&ck);
    assert_eq!(h["__metadata__"][PRETRAINED_KEY], PRETRAINED);
    let c = Checkpoint::load(&ck).unwrap();
    assert!(c.is_pretrained());
    for t in [
        "pretrain.mask_value",
        "pretrain.head.0.weight",
        "pretrain.head.1.bias",
        "head.0.weight",
        "mapper.0.weight",
    ] {
        assert!(c.tensors.iter().any(|(n, _, _)| n == t), "{t} missing");
    }
    let mv = &c
        .tensors
        .iter()
        .find(|(n, _, _)| n == "pretrain.mask_value")
        .unwrap()
        .2;
    assert!(mv.iter().any(|&v| v != 0.0), "the mask value never learnt");
    // fine-tune: encoder kept, head fresh, pretrain.* dropped
    let ft = dir.join("ft.safetensors");
    let o = bin()
        .args([
            "train",
            "--device",
            "cpu",
            "--epochs",
            "1",
            "--max-steps",
            "1",
            "--lr",
            "1e-9",
            "--seed",
            "4",
            "--head-blend",
            "off",
            "--data",
        ])
        .arg(dir.join("d/train.store"))
        .arg("--valid")
        .arg(dir.join("d/validation.store"))
        .arg("--init")
        .arg(&ck)
        .arg("--out")
        .arg(&ft)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let f = Checkpoint::load(&ft).unwrap();
    assert!(!f.is_pretrained());
    assert!(header(&ft)["__metadata__"].get(PRETRAINED_KEY).is_none());
    let get = |c: &Checkpoint, n: &str| c.tensors.iter().find(|t| t.0 == n).unwrap().2.clone();
    let fresh = eraengine::model::init_params(&f.config, 4);
    let fresh_head = &fresh.iter().find(|t| t.0 == "head.1.weight").unwrap().2;
    // lr 1e-9, one step: weights move by about 1e-9
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
    assert!(
        close(&get(&f, "mapper.0.weight"), &get(&c, "mapper.0.weight")),
        "encoder not kept"
    );
    assert!(
        close(&get(&f, "head.1.weight"), fresh_head),
        "head not fresh from the seed"
    );
    assert!(!close(&get(&c, "head.1.weight"), fresh_head));
    // walk-forward fine-tunes from a pretrained checkpoint too (pretrain.* dropped, fresh head)
    let o = bin()
        .args([
            "train",
            "--walk-forward",
            "--window",
            "4",
            "--embargo",
            "0",
            "--epochs",
            "1",
            "--quiet",
            "--device",
            "cpu",
            "--data",
        ])
        .arg(dir.join("d/train.store"))
        .arg("--init")
        .arg(&ck)
        .arg("--predictions-out")
        .arg(dir.join("walk.csv"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        std::fs::read_to_string(dir.join("walk.csv"))
            .unwrap()
            .lines()
            .count()
            > 1
    );
    // pretraining on a store without targets (live) works too
    let o = bin()
        .args([
            "pretrain", "--device", "cpu", "--epochs", "1", "--quiet", "--data",
        ])
        .arg(dir.join("d/live.store"))
        .arg("--out")
        .arg(dir.join("live.safetensors"))
        .args(MODEL)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(o.stderr.is_empty(), "--quiet printed: {}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pretrain_on_the_emulator_runs() {
    let dir = TempDir::new("pt-emu");
    synth(&dir);
    let o = bin()
        .args([
            "pretrain",
            "--device",
            "emu",
            "--epochs",
            "1",
            "--max-steps",
            "2",
            "--data",
        ])
        .arg(dir.join("d/train.store"))
        .arg("--out")
        .arg(dir.join("p.safetensors"))
        .args([
            "--d-model",
            "8",
            "--heads",
            "2",
            "--layers",
            "1",
            "--d-ff",
            "16",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(Checkpoint::load(&dir.join("p.safetensors"))
        .unwrap()
        .is_pretrained());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_pretrain_inputs_fail_clearly() {
    let dir = TempDir::new("pt-bad");
    synth(&dir);
    let data = dir.join("d/train.store");
    let before = std::fs::read(&data).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--out".into(), data.display().to_string()],
            "refusing to overwrite an input",
        ),
        (
            vec![
                "--out".into(),
                "x.st".into(),
                "--mask-rate".into(),
                "1.5".into(),
            ],
            "--mask-rate must be in (0, 1)",
        ),
        (
            vec![
                "--out".into(),
                "x.st".into(),
                "--mask-rate".into(),
                "-0.1".into(),
            ],
            "--mask-rate must be in (0, 1)",
        ),
        (
            vec![
                "--out".into(),
                "x.st".into(),
                "--seeds".into(),
                "1,2".into(),
            ],
            "--seeds applies to train",
        ),
        (vec![], "pretrain needs --out"),
    ];
    for (extra, want) in cases {
        let o = bin()
            .current_dir(&dir)
            .args(["pretrain", "--device", "cpu", "--data"])
            .arg(&data)
            .args(&extra)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{extra:?} succeeded");
        assert!(text(&o).contains(want), "{extra:?}: {}", text(&o));
        assert!(!dir.join("x.st").exists());
    }
    let o = bin()
        .args(["pretrain", "--out", "x.st", "--data"])
        .arg(dir.join("none.store"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("none.store"), "{}", text(&o));
    assert_eq!(std::fs::read(&data).unwrap(), before, "input changed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn checkpoints_round_trip_ortho_weight_and_refuse_an_unknown_pretraining() {
    let dir = TempDir::new("pt-rt");
    let mut cfg = eraengine::model::Config::new(4, 1);
    cfg.d_model = 8;
    cfg.heads = 2;
    cfg.layers = 1;
    cfg.d_ff = 8;
    cfg.ortho_weight = 0.25;
    let mut tensors = eraengine::model::init_params(&cfg, 1);
    tensors.extend(eraengine::train::pretrain::init_pretrain(&cfg, 1));
    let ck = Checkpoint {
        config: cfg.clone(),
        features: (0..4).map(|i| format!("f{i}")).collect(),
        targets: vec!["target".into()],
        tensors,
        head_blend: None,
    };
    let p = dir.join("c.safetensors");
    ck.save(&p).unwrap();
    let back = Checkpoint::load(&p).unwrap();
    assert_eq!(back.config.ortho_weight, 0.25);
    assert_eq!(back.config, cfg);
    assert!(back.is_pretrained());
    let ft = eraengine::train::pretrain::for_finetune(back, 9);
    assert!(!ft.is_pretrained());
    // an unmarked checkpoint with pretrain.* tensors is refused, as any extra tensor
    let mut meta = ck.metadata();
    meta.remove(PRETRAINED_KEY);
    std::fs::write(&p, eraengine::checkpoint::to_bytes(&ck.tensors, &meta)).unwrap();
    let e = Checkpoint::load(&p).unwrap_err().to_string();
    assert!(e.contains("pretrain.mask_value"), "{e}");
    meta.insert(
        PRETRAINED_KEY.into(),
        serde_json::Value::String("contrastive".into()),
    );
    std::fs::write(&p, eraengine::checkpoint::to_bytes(&ck.tensors, &meta)).unwrap();
    let e = Checkpoint::load(&p).unwrap_err().to_string();
    assert!(e.contains("contrastive"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `train --pretrain-epochs N` is `pretrain --epochs N` then `train --init`, bit for bit; it
/// refuses `--init` and `--walk-forward`, and `pretrain` refuses it.
#[test]
fn train_pretrain_epochs_equals_pretrain_then_init() {
    let dir = TempDir::new("pt-pretrain-epochs");
    synth(&dir);
    let train_store = dir.join("d/train.store");
    let valid_store = dir.join("d/validation.store");
    let common = |out: &Path| -> Vec<std::ffi::OsString> {
        vec![
            "--data".into(),
            train_store.clone().into(),
            "--valid".into(),
            valid_store.clone().into(),
            "--out".into(),
            out.into(),
        ]
    };
    let knobs = ["--device", "cpu", "--quiet", "--seed", "5", "--epochs", "2"];
    // one command
    let one = dir.join("one.safetensors");
    let mut a = vec!["train", "--pretrain-epochs", "3"];
    a.extend(knobs);
    let o = bin()
        .args(&a)
        .args(common(&one))
        .args(MODEL)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // two commands, the pretraining with three era loaders (one above): the same bits
    let pre = dir.join("pre.safetensors");
    let o = bin()
        .env("ERAENGINE_LOADERS", "3")
        .args([
            "pretrain", "--device", "cpu", "--quiet", "--seed", "5", "--epochs", "3", "--data",
        ])
        .arg(&train_store)
        .arg("--out")
        .arg(&pre)
        .args(MODEL)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let two = dir.join("two.safetensors");
    let mut a = vec!["train"];
    a.extend(knobs);
    let mut extra = common(&two);
    extra.push("--init".into());
    extra.push(pre.clone().into());
    let o = bin().args(&a).args(&extra).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let (c1, c2) = (
        Checkpoint::load(&one).unwrap(),
        Checkpoint::load(&two).unwrap(),
    );
    assert_eq!(c1.tensors.len(), c2.tensors.len());
    for (x, y) in c1.tensors.iter().zip(&c2.tensors) {
        assert_eq!(x.0, y.0);
        assert!(
            x.2.iter()
                .zip(&y.2)
                .all(|(p, q)| p.to_bits() == q.to_bits()),
            "{} differs",
            x.0
        );
    }
    assert!(c1.tensors.iter().all(|t| !t.0.starts_with("pretrain.")));
    // refusals, named
    let mut a = vec!["train", "--pretrain-epochs", "2"];
    a.extend(knobs);
    let mut extra = common(&dir.join("x.safetensors"));
    extra.push("--init".into());
    extra.push(pre.clone().into());
    let o = bin().args(&a).args(&extra).output().unwrap();
    assert!(
        !o.status.success() && text(&o).contains("--pretrain-epochs"),
        "{}",
        text(&o)
    );
    let o = bin()
        .args([
            "train",
            "--walk-forward",
            "--pretrain-epochs",
            "2",
            "--data",
        ])
        .arg(&train_store)
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("--pretrain-epochs"),
        "{}",
        text(&o)
    );
    let o = bin()
        .args(["pretrain", "--pretrain-epochs", "2", "--data"])
        .arg(&train_store)
        .arg("--out")
        .arg(dir.join("y.safetensors"))
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("--pretrain-epochs"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
