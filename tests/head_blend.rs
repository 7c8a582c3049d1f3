//! The head blend (`train --head-blend`, src/train/blend.rs): output 0 of the written model is
//! Σ_k w_k · output k, folded into the final layer; `auto` chooses w on the validation eras with
//! the early-stopped model.

mod common;

use common::{bin, text, TempDir};
use eraengine::checkpoint::{to_bytes, Checkpoint, HEAD_BLEND_KEY};
use eraengine::data::store::Store;
use eraengine::device::Cpu;
use eraengine::metrics::numerai_corr;
use eraengine::rng::Rng;
use eraengine::train::blend::{choose, outputs, score, EraOutputs};
use std::path::Path;
use std::process::Output;

fn synth(out: &Path) {
    let o = bin()
        .args(["synth", "--seed", "5", "--rows", "60", "--features", "12"])
        .args([
            "--eras",
            "12",
            "--valid-eras",
            "4",
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

fn train(d: &Path, args: &[&str], out: &Path) -> Output {
    bin()
        .arg("train")
        .arg("--data")
        .arg(d.join("train.store"))
        .arg("--valid")
        .arg(d.join("validation.store"))
        .args(["--d-model", "8", "--heads", "2", "--layers", "1"])
        .args(["--seed", "3", "--device", "cpu"])
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn fixed_weights_fold_into_output_0_and_nothing_else_changes() {
    let dir = TempDir::new("blend-fixed");
    let d = dir.join("d");
    synth(&d);
    let (off, fixed) = (dir.join("off.safetensors"), dir.join("fixed.safetensors"));
    let o = train(&d, &["--head-blend", "off", "--epochs", "3"], &off);
    assert!(o.status.success(), "{}", text(&o));
    let o = train(
        &d,
        &["--head-blend", "1,0.5,-0.25", "--epochs", "3"],
        &fixed,
    );
    assert!(o.status.success(), "{}", text(&o));
    let (a, b) = (
        Checkpoint::load(&off).unwrap(),
        Checkpoint::load(&fixed).unwrap(),
    );
    assert_eq!(a.head_blend, None);
    assert_eq!(b.head_blend, Some(vec![1.0, 0.5, -0.25]));
    let w = [1.0f32, 0.5, -0.25];
    for ((name, _, x), (_, _, y)) in a.tensors.iter().zip(&b.tensors) {
        match name.as_str() {
            "head.1.weight" | "head.1.bias" => {
                let cols = x.len() / 3;
                for j in 0..cols {
                    let want: f32 = (0..3).map(|k| w[k] * x[k * cols + j]).sum();
                    assert!(
                        (y[j] - want).abs() <= 1e-6 * (1.0 + want.abs()),
                        "{name}[0,{j}]"
                    );
                }
                assert_eq!(&x[cols..], &y[cols..], "{name}: rows 1.. changed");
            }
            _ => assert_eq!(x, y, "{name} changed"),
        }
    }
    // and the model's output 0 is the blend of the unblended model's outputs, row by row
    let store = Store::open(&d.join("validation.store")).unwrap();
    let (ya, yb) = (
        outputs(&Cpu, &a, &store).unwrap(),
        outputs(&Cpu, &b, &store).unwrap(),
    );
    assert_eq!(ya.len(), yb.len());
    for (ea, eb) in ya.iter().zip(&yb) {
        for r in 0..ea.target.len() {
            let want: f32 = (0..3).map(|k| w[k] * ea.yhat[r * 3 + k]).sum();
            assert!((eb.yhat[r * 3] - want).abs() < 1e-5, "row {r}");
            assert_eq!(eb.yhat[r * 3 + 1], ea.yhat[r * 3 + 1]);
        }
    }
}

/// `n` rows of a five-level target and heads that are `target · sign + noise · N(0,1)`.
fn era(rng: &mut Rng, n: usize, heads: &[(f32, f32)]) -> EraOutputs {
    let t = heads.len();
    let target: Vec<f64> = (0..n).map(|_| (rng.next_u32() % 5) as f64 / 4.0).collect();
    let mut yhat = vec![0f32; n * t];
    for r in 0..n {
        for (k, &(sign, noise)) in heads.iter().enumerate() {
            yhat[r * t + k] = sign * target[r] as f32 + noise * rng.normal();
        }
    }
    EraOutputs { yhat, target }
}

#[test]
fn choose_adds_an_informative_head_and_leaves_out_a_harmful_one() {
    let mut rng = Rng::new(11, 0);
    // heads 0 and 1: the target under independent noise; head 2: minus the target
    let eras: Vec<EraOutputs> = (0..12)
        .map(|_| era(&mut rng, 400, &[(1.0, 1.5), (1.0, 1.5), (-1.0, 0.1)]))
        .collect();
    let b = choose(&eras, 3);
    assert_eq!(b.weights[0], 1.0);
    assert!(b.weights[1] > 0.0, "{b:?}");
    assert_eq!(b.weights[2], 0.0, "{b:?}");
    assert!(b.blended > b.plain, "{b:?}");
    assert_eq!(score(&eras, &b.weights), b.blended);
    // every auxiliary head harmful: output 0 alone
    let eras: Vec<EraOutputs> = (0..6)
        .map(|_| era(&mut rng, 300, &[(1.0, 1.0), (-1.0, 0.5), (-1.0, 0.2)]))
        .collect();
    let b = choose(&eras, 3);
    assert_eq!(b.weights, vec![1.0, 0.0, 0.0]);
    assert_eq!(b.blended, b.plain);
    // one target: nothing to choose
    let one: Vec<EraOutputs> = (0..3).map(|_| era(&mut rng, 50, &[(1.0, 1.0)])).collect();
    assert_eq!(choose(&one, 1).weights, vec![1.0]);
}

#[test]
fn score_is_the_mean_per_era_numerai_corr_of_the_blend() {
    let mut rng = Rng::new(5, 0);
    let eras: Vec<EraOutputs> = (0..5)
        .map(|_| era(&mut rng, 80, &[(1.0, 1.0), (1.0, 2.0)]))
        .collect();
    let w = [1.0f32, 0.5];
    let oracle: f64 = eras
        .iter()
        .map(|e| {
            let p: Vec<f64> = (0..e.target.len())
                .map(|r| e.yhat[r * 2] as f64 + 0.5 * e.yhat[r * 2 + 1] as f64)
                .collect();
            numerai_corr(&p, &e.target).unwrap()
        })
        .sum::<f64>()
        / 5.0;
    assert!((score(&eras, &w) - oracle).abs() < 1e-12);
}

#[test]
fn auto_is_the_recommended_default_recorded_in_the_checkpoint_and_resumed() {
    let dir = TempDir::new("blend-auto");
    let d = dir.join("d");
    synth(&d);
    let out = dir.join("m.safetensors");
    let args = ["--epochs", "6", "--patience", "1"];
    let o = train(&d, &args, &out);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("head blend"), "{}", text(&o));
    let first = Checkpoint::load(&out).unwrap();
    let w = first.head_blend.clone().expect("no head_blend recorded");
    assert_eq!((w.len(), w[0]), (3, 1.0));
    let info = bin().arg("info").arg(&out).output().unwrap();
    assert!(text(&info).contains("head blend"), "{}", text(&info));
    // a finished run resumed writes the same model (the choice is not made again by the refit)
    let o = train(&d, &[&args[..], &["--resume"]].concat(), &out);
    assert!(o.status.success(), "{}", text(&o));
    let again = Checkpoint::load(&out).unwrap();
    assert_eq!(again.head_blend, first.head_blend);
    assert!(
        again.tensors == first.tensors,
        "the resumed run wrote another model"
    );
    // --preset spec: no blend
    let spec = dir.join("spec.safetensors");
    let o = train(&d, &["--preset", "spec", "--epochs", "2"], &spec);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(Checkpoint::load(&spec).unwrap().head_blend, None);
}

#[test]
fn bad_head_blend_values_are_usage_errors_and_write_nothing() {
    let dir = TempDir::new("blend-bad");
    let d = dir.join("d");
    synth(&d);
    let out = dir.join("m.safetensors");
    for (v, says) in [
        ("1,0.5", "3 targets"),
        ("often", "--head-blend must be"),
        ("1,nan,0", "--head-blend must be"),
        ("0,0,0", "every weight is 0"),
    ] {
        let o = train(&d, &["--head-blend", v, "--epochs", "1"], &out);
        assert_eq!(o.status.code(), Some(2), "{v}: {}", text(&o));
        assert!(text(&o).contains(says), "{v}: {}", text(&o));
        assert!(!out.exists(), "{v}: a model was written");
    }
    let o = bin()
        .args(["train", "--walk-forward", "--head-blend", "auto", "--data"])
        .arg(d.join("train.store"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn a_checkpoint_with_a_bad_head_blend_record_is_refused_by_name() {
    let dir = TempDir::new("blend-meta");
    let d = dir.join("d");
    synth(&d);
    let out = dir.join("m.safetensors");
    let o = train(&d, &["--head-blend", "1,0.25,0", "--epochs", "1"], &out);
    assert!(o.status.success(), "{}", text(&o));
    let ck = Checkpoint::load(&out).unwrap();
    for bad in ["[1, 0.5]", "\"x\"", "[1, 0, null]"] {
        let mut meta = ck.metadata();
        meta.insert(HEAD_BLEND_KEY.into(), serde_json::Value::String(bad.into()));
        let p = dir.join("bad.safetensors");
        std::fs::write(&p, to_bytes(&ck.tensors, &meta)).unwrap();
        let e = Checkpoint::load(&p).unwrap_err().to_string();
        assert!(e.contains("__metadata__.head_blend"), "{bad}: {e}");
    }
}
