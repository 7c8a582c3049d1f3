//! The search space: draws are a function of (seed, trial) alone, stay inside their ranges, cover
//! every choice, and the default space parses back from its own JSON; successive halving's
//! bookkeeping (promotion, the table's order, resume) with a stand-in trainer.

mod common;

use common::TempDir;
use eraengine::cli::train::CONFIG_KEYS;
use eraengine::train::tune::space::{trial_seed, Dist, Space};
use eraengine::train::tune::{self, Outcome, Trial, TuneOptions};
use eraengine::train::ValidScore;
use serde_json::{json, Value};
use std::path::Path;

fn space(v: Value) -> Space {
    Space::from_json(&v, Path::new("s.json"), CONFIG_KEYS).unwrap()
}

#[test]
fn draws_depend_only_on_seed_and_trial_and_stay_in_range() {
    let s = space(json!({
        "lr": {"log_uniform": [1e-4, 1e-2]},
        "dropout": {"uniform": [0.0, 0.3]},
        "layers": {"int": [1, 3]},
        "heads": {"choice": [2, 4, 8]},
        "top_k": {"choice": [null, 4]},
        "schedule": "cosine",
    }));
    let mut seen_layers = [0usize; 4];
    let mut seen_heads = std::collections::BTreeSet::new();
    let mut log_lr = Vec::new();
    for i in 0..300 {
        let a = s.sample(5, i);
        assert_eq!(a, s.sample(5, i), "trial {i} is not reproducible");
        assert_ne!(a, s.sample(6, i), "another seed draws the same trial {i}");
        let lr = a["lr"].as_f64().unwrap();
        assert!((1e-4..=1e-2).contains(&lr), "lr {lr}");
        log_lr.push(lr.log10());
        let p = a["dropout"].as_f64().unwrap();
        assert!((0.0..=0.3).contains(&p), "dropout {p}");
        let l = a["layers"].as_u64().unwrap() as usize;
        assert!((1..=3).contains(&l));
        seen_layers[l] += 1;
        seen_heads.insert(a["heads"].to_string());
        assert_eq!(a["schedule"], "cosine");
    }
    assert!(seen_layers[1..].iter().all(|&c| c > 60), "{seen_layers:?}");
    assert_eq!(seen_heads.len(), 3);
    // log-uniform: about half the draws below the geometric middle 1e-3
    let below = log_lr.iter().filter(|&&x| x < -3.0).count();
    assert!((100..200).contains(&below), "{below} of 300 below 1e-3");
    let seeds: std::collections::BTreeSet<u64> = (0..1000).map(|i| trial_seed(1, i)).collect();
    assert_eq!(seeds.len(), 1000);
}

#[test]
fn default_space_round_trips_and_uses_known_keys() {
    let d = Space::default_space();
    assert!(d.params.len() >= 10);
    assert_eq!(space(d.to_json()), d);
    assert!(matches!(d.params["lr"], Dist::LogUniform(..)));
}

/// A stand-in trainer: the score is a fixed function of the trial and the epochs.
fn fake(t: &Trial) -> eraengine::Result<Outcome> {
    if t.index == 3 {
        return Ok(Outcome::Failed("loss is NaN".into()));
    }
    let base = ((t.index * 7919) % 13) as f64 / 100.0;
    Ok(Outcome::Scored {
        valid: ValidScore {
            mean: base + t.epochs as f64 / 1000.0,
            std: 0.1,
            sharpe: 1.0,
            eras: 4,
        },
        best_epoch: t.epochs,
    })
}

#[test]
fn successive_halving_promotes_the_best_and_resumes() {
    let tmp = TempDir::new("tune-sh");
    let dir = tmp.join("tune");
    let s = space(json!({"lr": {"log_uniform": [1e-4, 1e-2]}}));
    let o = TuneOptions {
        trials: 10,
        seed: 3,
        rungs: vec![1, 3, 9],
        eta: 3,
    };
    let mut calls = Vec::new();
    let table = tune::tune(
        &dir,
        &s,
        &o,
        &json!({}),
        &mut |t| {
            calls.push((t.index, t.epochs));
            fake(t)
        },
        &mut |_| {},
    )
    .unwrap();
    // 10 at 1 epoch, the best 3 at 3 epochs, the best 1 at 9.
    assert_eq!(calls.iter().filter(|c| c.1 == 1).count(), 10);
    assert_eq!(calls.iter().filter(|c| c.1 == 3).count(), 3);
    assert_eq!(calls.iter().filter(|c| c.1 == 9).count(), 1);
    let base = |i: usize| ((i * 7919) % 13) as f64;
    let mut order: Vec<usize> = (0..10).filter(|&i| i != 3).collect();
    order.sort_by(|&a, &b| base(b).total_cmp(&base(a)).then(a.cmp(&b)));
    assert_eq!(table[0].trial, order[0]);
    assert_eq!(table[0].epochs, 9);
    assert_eq!(
        table.last().unwrap().trial,
        3,
        "the failed trial ranks last"
    );
    let epochs: Vec<usize> = table.iter().map(|r| r.epochs).collect();
    assert_eq!(epochs, [9, 3, 3, 1, 1, 1, 1, 1, 1, 1]);
    let best: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("best.json")).unwrap()).unwrap();
    assert_eq!(best["epochs"], 9);
    assert_eq!(best["seed"], trial_seed(3, order[0]));
    // Rerun: nothing trains, the same table comes back.
    let again = tune::tune(
        &dir,
        &s,
        &o,
        &json!({}),
        &mut |_| panic!("retrained"),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(again, table);
    // Another space into the same directory is refused.
    let other = space(json!({"lr": 0.001}));
    assert!(tune::tune(&dir, &other, &o, &json!({}), &mut fake, &mut |_| {}).is_err());
}
