//! Walk-forward rehearsal and resume: a walk killed after some eras and resumed from its state
//! file ends with bit-identical predictions (and CSV bytes) to an uninterrupted walk; rehearsal
//! replays older eras deterministically and changes what the model learns.

mod common;

use common::TempDir;
use eraengine::data::store::Store;
use eraengine::data::synth::{write_dataset, SynthConfig};
use eraengine::device::Cpu;
use eraengine::model::Config;
use eraengine::train::walk::{state_path, walk, WalkOptions, WalkResult};
use eraengine::train::{Event, TrainOptions};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// 14 tiny training eras.
fn store_path() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let cfg = SynthConfig {
            eras: 14,
            valid_eras: 3,
            rows: 50,
            features: 6,
            seed: 4,
            ..SynthConfig::easy()
        };
        let dir = TempDir::new("walk-data");
        let train = write_dataset(&dir, &cfg, false).unwrap().train;
        dir.until_exit();
        train
    })
}

fn opts() -> TrainOptions {
    TrainOptions {
        epochs: 2,
        seed: 11,
        lr: 3e-3,
        ..TrainOptions::default()
    }
}

fn small(store: &Store) -> Config {
    let mut c = Config::new(store.n_features(), store.n_targets());
    c.d_model = 16;
    c.heads = 2;
    c.d_ff = 32;
    c.layers = 1;
    c
}

/// Runs a walk; `kill_at`: the event sink panics when era `kill_at` is predicted (before its
/// state is written), as a kill would stop it.
fn run(w: &WalkOptions, kill_at: Option<usize>) -> Option<WalkResult> {
    let store = Store::open(store_path()).unwrap();
    let cfg = small(&store);
    let mut events = Vec::new();
    let r = catch_unwind(AssertUnwindSafe(|| {
        walk(&Cpu, &cfg, None, &store, w, &opts(), &mut |e| {
            if let Event::WalkEra { done, .. } = e {
                assert!(Some(*done) != kill_at, "killed");
            }
            events.push(e.line());
        })
        .unwrap()
    }));
    r.ok()
}

fn bits(r: &WalkResult) -> Vec<Vec<u64>> {
    r.eras
        .iter()
        .map(|p| p.preds.iter().map(|x| x.to_bits()).collect())
        .collect()
}

fn walk_opts(rehearsal: f32, state: Option<PathBuf>, resume: bool) -> WalkOptions {
    WalkOptions {
        window: 4,
        embargo: 1,
        rehearsal,
        rehearsal_size: 3,
        state,
        resume,
    }
}

#[test]
fn resumed_walk_predicts_bit_for_bit_what_an_uninterrupted_one_does() {
    let dir = TempDir::new("walk-lib");
    let full = run(&walk_opts(0.5, None, false), None).unwrap();
    assert_eq!(full.eras.len(), 14 - 5);
    for kill in [1, 4, 9] {
        let state = dir.join(format!("p{kill}.csv.walk-state.safetensors"));
        let killed = run(&walk_opts(0.5, Some(state.clone()), false), Some(kill));
        assert!(killed.is_none(), "the walk was not stopped");
        if kill == 1 {
            assert!(!state.exists(), "no era was finished, no state");
            continue;
        }
        assert!(state.exists());
        let resumed = run(&walk_opts(0.5, Some(state.clone()), true), None).unwrap();
        assert_eq!(bits(&resumed), bits(&full), "killed at era {kill}");
        let gates = |r: &WalkResult| -> Vec<Vec<u32>> {
            r.eras
                .iter()
                .map(|p| p.gates.iter().map(|g| g.to_bits()).collect())
                .collect()
        };
        assert_eq!(gates(&resumed), gates(&full));
        assert_eq!(resumed.checkpoint.tensors, full.checkpoint.tensors);
    }
}

#[test]
fn rehearsal_is_deterministic_and_changes_training() {
    let a = run(&walk_opts(0.7, None, false), None).unwrap();
    let b = run(&walk_opts(0.7, None, false), None).unwrap();
    assert_eq!(bits(&a), bits(&b));
    let off = run(&walk_opts(0.0, None, false), None).unwrap();
    // The first rounds have no older era to replay: identical until an era left the window.
    assert_eq!(bits(&a)[0], bits(&off)[0]);
    assert_ne!(bits(&a), bits(&off), "rehearsal replayed nothing");
}

#[test]
fn resume_refuses_a_state_of_other_settings() {
    let dir = TempDir::new("walk-other");
    let state = dir.join("p.csv.walk-state.safetensors");
    assert!(run(&walk_opts(0.5, Some(state.clone()), false), Some(3)).is_none());
    let store = Store::open(store_path()).unwrap();
    let mut w = walk_opts(0.5, Some(state), true);
    w.window = 5;
    let err = walk(&Cpu, &small(&store), None, &store, &w, &opts(), &mut |_| {})
        .err()
        .expect("resumed with another window");
    assert!(err.to_string().contains("window"), "{err}");
}

#[test]
fn cli_resume_writes_the_same_predictions_csv() {
    let dir = TempDir::new("walk-cli");
    let walk_cmd = |csv: &PathBuf, resume: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_eraengine"));
        c.args(["train", "--walk-forward", "--data"])
            .arg(store_path())
            .args(["--window", "4", "--epochs", "2", "--rehearsal", "0.5"])
            .args(["--rehearsal-size", "3", "--d-model", "16", "--heads", "2"])
            .args([
                "--layers",
                "1",
                "--device",
                "cpu",
                "--quiet",
                "--predictions-out",
            ])
            .arg(csv);
        if resume {
            c.arg("--resume");
        }
        c.output().unwrap()
    };
    let a = dir.join("a.csv");
    let o = walk_cmd(&a, false);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The library test kills mid-walk; here the state of a finished walk is resumed after the
    // predictions file is lost, and the state of a fresh walk is cut back by rerunning it.
    let b = dir.join("b.csv");
    let o = walk_cmd(&b, false);
    assert!(o.status.success());
    std::fs::remove_file(&b).unwrap();
    assert!(state_path(&b).exists());
    let o = walk_cmd(&b, true);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // --resume without a state file is a clear error.
    let c = dir.join("c.csv");
    let o = walk_cmd(&c, true);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
}
