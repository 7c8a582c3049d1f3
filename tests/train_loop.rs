//! The training loop's knobs against hand-computed values and against the plain one-era-a-step loop:
//! learning-rate schedule, EMA, eras-per-step, feature noise, row sampling, the epoch floor of early
//! stopping, nothing-to-learn errors, ensembles.

mod common;

use common::TempDir;
use eraengine::checkpoint::Checkpoint;
use eraengine::data::store::Store;
use eraengine::data::synth::{write_dataset, SynthConfig};
use eraengine::device::Cpu;
use eraengine::model::Config;
use eraengine::params::Adam;
use eraengine::rng::Rng;
use eraengine::train::ema::update_slice;
use eraengine::train::ensemble::{combine, rank_unit};
use eraengine::train::era::{self, ColumnMap, EraBatch, EraSource};
use eraengine::train::noise::{self, Noise};
use eraengine::train::rows;
use eraengine::train::{build, train, train_step, Event, Schedule, TrainOptions, Trained};
use std::path::PathBuf;

/// A tiny synthetic dataset in a fresh temp dir: (dir, train, validation, live); keep `dir` alive
/// while the stores are used.
fn dataset(tag: &str, valid_eras: usize, nan_valid: usize) -> (TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = TempDir::new(&format!("trainloop-{tag}"));
    let cfg = SynthConfig {
        eras: 8,
        valid_eras,
        rows: 40,
        features: 12,
        seed: 3,
        nan_valid_eras: nan_valid,
        ..SynthConfig::default()
    };
    let f = write_dataset(&dir, &cfg, false).unwrap();
    (dir, f.train, f.validation, f.live)
}

/// [`dataset`] with 3 validation eras, its training and validation stores opened.
fn opened(tag: &str) -> (TempDir, Store, Store) {
    let (dir, t, v, _) = dataset(tag, 3, 0);
    (dir, Store::open(&t).unwrap(), Store::open(&v).unwrap())
}

fn tiny(store: &Store) -> Config {
    let mut c = Config::new(store.n_features(), store.n_targets());
    c.d_model = 8;
    c.heads = 2;
    c.layers = 1;
    c.d_ff = 16;
    c.gate_rank = 2;
    c
}

fn opts(epochs: usize) -> TrainOptions {
    TrainOptions {
        epochs,
        seed: 11,
        quiet: true,
        ..TrainOptions::default()
    }
}

#[test]
fn warmup_and_cosine_match_hand_computed_values() {
    let o = TrainOptions {
        lr: 1e-2,
        warmup: 4,
        schedule: Schedule::Cosine,
        min_lr: 1e-3,
        ..TrainOptions::default()
    };
    // warm-up: lr · step / 4
    assert_eq!(o.lr_at(1, 14), 2.5e-3);
    assert_eq!(o.lr_at(2, 14), 5e-3);
    assert_eq!(o.lr_at(4, 14), 1e-2);
    // cosine over steps 5..=14 (span 10): min + (lr − min)·(1 + cos(π·(s − 4)/10))/2
    let hand = |s: f64| {
        (1e-3 + 9e-3 * 0.5 * (1.0 + (std::f64::consts::PI * (s - 4.0) / 10.0).cos())) as f32
    };
    assert_eq!(o.lr_at(9, 14), hand(9.0));
    assert!(
        (o.lr_at(9, 14) - 5.5e-3).abs() < 1e-9,
        "half way is the midpoint"
    );
    assert!(
        (o.lr_at(14, 14) - 1e-3).abs() < 1e-9,
        "the last step is at min_lr"
    );
    assert!(
        (o.lr_at(20, 14) - 1e-3).abs() < 1e-9,
        "past the end stays at min_lr"
    );
    // constant without warm-up is lr itself, bit for bit
    let c = TrainOptions::default();
    for s in [1, 7, 1000] {
        assert_eq!(c.lr_at(s, 10), c.lr);
    }
    // a constant schedule after a warm-up
    let w = TrainOptions {
        warmup: 10,
        ..TrainOptions::default()
    };
    assert_eq!(w.lr_at(5, 100), 5e-4);
    assert_eq!(w.lr_at(11, 100), 1e-3);
}

#[test]
fn ema_matches_hand_computed_values() {
    let mut e = vec![1.0f32, 2.0];
    let w = [3.0f32, 4.0];
    update_slice(&mut e, &w, 0.5);
    assert_eq!(e, vec![2.0, 3.0]);
    update_slice(&mut e, &w, 0.5);
    assert_eq!(e, vec![2.5, 3.5]);
    let mut e = vec![0.0f32];
    for _ in 0..3 {
        update_slice(&mut e, &[1.0], 0.9);
    }
    // 1 − 0.9³
    assert!((e[0] - 0.271).abs() < 1e-6, "{}", e[0]);
}

/// Today's loop, written out: one era per Adam step in the per-epoch shuffled order.
fn plain_loop(
    store: &Store,
    cfg: &Config,
    o: &TrainOptions,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    plain_loop_rows(store, cfg, o, 1.0)
}

/// The plain loop, each era cut to the rows `rows::kept` gives for (seed, epoch, era index, p),
/// cut here by hand from the loaded era.
fn plain_loop_rows(
    store: &Store,
    cfg: &Config,
    o: &TrainOptions,
    p: f32,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let dev = Cpu;
    let mut m: Trained<Cpu> = build(&dev, cfg, None, store, o.seed).unwrap();
    let mut adam = Adam::new(&dev, &m.params, o.lr, o.weight_decay).unwrap();
    let map = ColumnMap::identity(store);
    let mut step = 0u64;
    for epoch in 1..=o.epochs {
        let mut rng = Rng::new(
            o.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            0x5EED,
        );
        let mut order: Vec<usize> = (0..store.n_eras()).collect();
        era::shuffle(&mut order, &mut rng);
        for &e in &order {
            let whole = EraBatch::load(store, e, &map).unwrap();
            if whole.n == 0 || whole.present_targets() == 0 {
                continue;
            }
            let keep = rows::kept(o.seed, epoch as u64, e as u64, whole.n, p);
            let batch = if keep.len() == whole.n {
                whole
            } else {
                cut(&whole, &keep)
            };
            step += 1;
            train_step(&dev, &mut m, &mut adam, &batch, o, step).unwrap();
        }
    }
    m.params.to_host(&dev).unwrap()
}

#[test]
fn one_era_per_step_is_the_plain_loop_bit_for_bit_and_two_differ() {
    let (_dir, t, _, _) = dataset("k1", 2, 0);
    let store = Store::open(&t).unwrap();
    let cfg = tiny(&store);
    let o = opts(2);
    let want = plain_loop(&store, &cfg, &o);
    let got = train(&Cpu, cfg.clone(), None, &store, None, &o, &mut |_| {}).unwrap();
    assert_eq!(got.checkpoint.tensors, want, "K = 1 is not the plain loop");
    let o2 = TrainOptions {
        eras_per_step: 2,
        ..o.clone()
    };
    let two = train(&Cpu, cfg, None, &store, None, &o2, &mut |_| {}).unwrap();
    assert_ne!(
        two.checkpoint.tensors, want,
        "K = 2 took the same steps as K = 1"
    );
    // 8 eras in groups of 2 = 4 Adam steps per epoch
    assert_eq!(two.epochs.last().unwrap().steps, 16);
}

#[test]
fn max_steps_counts_optimizer_steps_with_accumulation() {
    let (_dir, t, _, _) = dataset("ms", 2, 0);
    let store = Store::open(&t).unwrap();
    let o = TrainOptions {
        eras_per_step: 3,
        max_steps: Some(2),
        ..opts(3)
    };
    let r = train(&Cpu, tiny(&store), None, &store, None, &o, &mut |_| {}).unwrap();
    // two Adam steps of three eras each
    assert_eq!(r.epochs.last().unwrap().steps, 6);
}

#[test]
fn ema_weights_are_what_is_saved_and_validated() {
    let (_dir, store, valid) = opened("ema");
    let o = TrainOptions {
        ema: 0.5,
        patience: 0,
        ..opts(1)
    };
    let mut seen = Vec::new();
    let r = train(
        &Cpu,
        tiny(&store),
        None,
        &store,
        Some(&valid),
        &o,
        &mut |e| {
            if let Event::Validation { score, ema, .. } = e {
                seen.push((*score, *ema));
            }
        },
    )
    .unwrap();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].1, "validation did not use the EMA weights");
    let raw = plain_loop(&store, &tiny(&store), &o);
    assert_ne!(
        r.checkpoint.tensors, raw,
        "the checkpoint holds the raw weights"
    );
    let m = Trained::from_checkpoint(&Cpu, &r.checkpoint).unwrap();
    let map = ColumnMap::for_model(&valid, &m.features, &m.targets).unwrap();
    assert_eq!(m.validate(&Cpu, &valid, &map).unwrap(), seen[0].0);
}

#[test]
fn feature_noise_is_deterministic_per_seed_epoch_era_and_has_its_rate() {
    let p = 0.4;
    let mut counts = [0usize; 3];
    for j in 0..20_000 {
        let a = noise::draw(7, 2, 5, j, p);
        assert_eq!(a, noise::draw(7, 2, 5, j, p));
        counts[a as usize] += 1;
    }
    let n = 20_000.0;
    assert!(
        (counts[Noise::Drop as usize] as f64 / n - 0.2).abs() < 0.015,
        "{counts:?}"
    );
    assert!(
        (counts[Noise::Reverse as usize] as f64 / n - 0.2).abs() < 0.015,
        "{counts:?}"
    );
    let fates = |round, era| {
        (0..64)
            .map(|j| noise::draw(7, round, era, j, p))
            .collect::<Vec<_>>()
    };
    assert_ne!(
        fates(2, 5),
        fates(3, 5),
        "the epoch does not change the draw"
    );
    assert_ne!(fates(2, 5), fates(2, 6), "the era does not change the draw");
    assert!((0..64).all(|j| noise::draw(7, 2, 5, j, 0.0) == Noise::Keep));

    let (_dir, t, _, _) = dataset("noise", 2, 0);
    let store = Store::open(&t).unwrap();
    let map = ColumnMap::identity(&store);
    let clean = EraBatch::load(&store, 1, &map).unwrap();
    let mut noisy = EraBatch::load(&store, 1, &map).unwrap();
    noise::apply(&mut noisy, 7, 2, 1, 1.0);
    let f = clean.f;
    for j in 0..f {
        let col = |b: &EraBatch| (0..b.n).map(|r| b.x[r * f + j]).collect::<Vec<_>>();
        let (c, x) = (col(&clean), col(&noisy));
        match noise::draw(7, 2, 1, j, 1.0) {
            Noise::Drop => assert!(x.iter().all(|&v| v == 0.0)),
            Noise::Reverse => assert_eq!(x, c.iter().map(|v| -v).collect::<Vec<_>>()),
            Noise::Keep => panic!("p = 1 kept feature {j}"),
        }
    }
    // bit patterns: the auxiliary targets hold NaNs, which never compare equal
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&noisy.y), bits(&clean.y), "noise touched the targets");
}

#[test]
fn feature_noise_changes_training_but_never_validation() {
    let (_dir, store, valid) = opened("noisev");
    let o = TrainOptions {
        feature_noise: 1.0,
        ..opts(1)
    };
    let ckpt = train_validated(&store, &valid, &tiny(&store), &o);
    assert_ne!(ckpt.tensors, plain_loop(&store, &tiny(&store), &o));
}

/// Trains with validation and checks that the score the loop reported is the clean validation
/// (every row, no noise) of the weights it kept; returns those weights.
fn train_validated(store: &Store, valid: &Store, cfg: &Config, o: &TrainOptions) -> Checkpoint {
    let mut score = None;
    let r = train(&Cpu, cfg.clone(), None, store, Some(valid), o, &mut |e| {
        if let Event::Validation { score: s, .. } = e {
            score = Some(*s);
        }
    })
    .unwrap();
    let m = Trained::from_checkpoint(&Cpu, &r.checkpoint).unwrap();
    let map = ColumnMap::for_model(valid, &m.features, &m.targets).unwrap();
    assert_eq!(Some(m.validate(&Cpu, valid, &map).unwrap()), score);
    r.checkpoint
}

/// The era of `b`'s rows `keep`, in that order, rebuilt from its codes (x = (c − 2) / 2) the
/// slow way.
fn cut(b: &EraBatch, keep: &[usize]) -> EraBatch {
    let (f, t) = (b.f, b.t);
    let mut codes = Vec::new();
    let mut y = Vec::new();
    for &r in keep {
        codes.extend(
            b.x[r * f..(r + 1) * f]
                .iter()
                .map(|&v| (v * 2.0 + 2.0) as u8),
        );
        y.extend_from_slice(&b.y[r * t..(r + 1) * t]);
    }
    EraBatch::from_codes(b.name.clone(), keep.len(), f, t, &codes, y)
}

/// The training loop's loader reads only the rows that row sampling keeps
/// (`EraSource::with_prefetch` with `rows::plan`): each era the same, bit for bit, as loading all
/// its rows and sampling them after (`rows::apply`), for the store's own columns and for a
/// reordered subset of them; an era without a target value comes back as None, unread.
#[test]
fn sampled_loads_read_only_the_kept_rows_and_match_sampling_after_loading() {
    let (_dir, t, v, _) = dataset("rows_ahead", 4, 2);
    let (train, valid) = (Store::open(&t).unwrap(), Store::open(&v).unwrap());
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let f64bits = |v: &Option<Vec<f64>>| {
        v.as_ref()
            .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
    };
    let subset: Vec<String> = train
        .feature_names()
        .iter()
        .rev()
        .step_by(2)
        .cloned()
        .collect();
    let sources = [
        EraSource::one(&train),
        EraSource::mapped(&train, &subset, train.target_names()).unwrap(),
        EraSource::one(&valid),
    ];
    let mut skipped = 0;
    for src in &sources {
        let order: Vec<usize> = (0..src.n_eras()).collect();
        for (p, round, seed) in [(0.5f32, 2u64, 7u64), (0.3, 3, 1), (0.9, 1, 2), (1.0, 1, 1)] {
            let plan = |ei: usize, n: usize| rows::plan(seed, round, ei as u64, n, p);
            let make_x = |_: usize, mut b: EraBatch| {
                b.make_x();
                b
            };
            let got = src.with_prefetch(&order, 2, plan, make_x, |eras| {
                eras.map(|(_, b)| b.unwrap()).collect::<Vec<_>>()
            });
            for (ei, got) in got.into_iter().enumerate() {
                let mut want = src.load_codes(ei).unwrap();
                let Some(got) = got else {
                    assert_eq!(want.present_targets(), 0, "era {ei} skipped with targets");
                    skipped += 1;
                    continue;
                };
                assert!(want.present_targets() > 0);
                rows::apply(&mut want, seed, round, ei as u64, p);
                want.make_x();
                assert_eq!(
                    (got.n, &got.codes, &got.mask),
                    (want.n, &want.codes, &want.mask)
                );
                assert_eq!(bits(&got.x), bits(&want.x), "era {ei}, p {p}: x");
                assert_eq!(bits(&got.y), bits(&want.y), "era {ei}, p {p}: targets");
                assert_eq!(f64bits(&got.col_sums), f64bits(&want.col_sums));
            }
        }
    }
    // the validation store's eras without targets, once per draw
    assert_eq!(skipped, 2 * 4, "eras without targets skipped");
}

#[test]
fn row_sampling_keeps_rows_in_order_with_their_codes_targets_and_mask() {
    let (_dir, t, _, _) = dataset("rows", 2, 0);
    let store = Store::open(&t).unwrap();
    let map = ColumnMap::identity(&store);
    let whole = EraBatch::load(&store, 1, &map).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (p, round) in [(0.5f32, 2u64), (0.3, 3), (0.9, 1)] {
        let mut b = EraBatch::load(&store, 1, &map).unwrap();
        rows::apply(&mut b, 7, round, 1, p);
        let keep = rows::kept(7, round, 1, whole.n, p);
        assert_eq!(
            keep,
            rows::kept(7, round, 1, whole.n, p),
            "not deterministic"
        );
        assert!(keep.windows(2).all(|w| w[0] < w[1]), "rows out of order");
        assert!(
            keep.len() < whole.n && keep.len() >= rows::MIN_ROWS,
            "{p}: {}",
            keep.len()
        );
        assert_eq!(b.n, keep.len());
        let want = cut(&whole, &keep);
        assert_eq!(bits(&b.x), bits(&want.x), "{p}: x");
        assert_eq!(bits(&b.y), bits(&want.y), "{p}: targets");
        assert_eq!(b.mask, vec![1.0; keep.len()]);
        // the packed codes a device uploads decode to the same x
        let packed = b.codes.as_ref().expect("codes dropped");
        let decoded = eraengine::ops::codes::fwd_checked(packed, b.x.len()).unwrap();
        assert_eq!(bits(&decoded), bits(&b.x), "{p}: codes and x disagree");
        // the training loop's way: the rows kept before x is made, x made for them alone
        let mut c = EraBatch::load_codes(&store, 1, &map).unwrap();
        assert!(
            c.x.is_empty() && c.col_sums.is_none(),
            "x made before it was asked for"
        );
        rows::apply(&mut c, 7, round, 1, p);
        assert!(c.x.is_empty());
        c.make_x();
        assert_eq!(
            (c.n, bits(&c.x), bits(&c.y)),
            (b.n, bits(&b.x), bits(&b.y)),
            "{p}"
        );
        assert_eq!((&c.codes, &c.mask), (&b.codes, &b.mask), "{p}");
        let f64bits = |v: &Option<Vec<f64>>| {
            v.as_ref()
                .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        };
        assert_eq!(
            f64bits(&c.col_sums),
            f64bits(&b.col_sums),
            "{p}: column sums"
        );
        assert!(c.col_sums.is_some());
    }
    // p = 1 touches nothing
    let mut b = EraBatch::load(&store, 1, &map).unwrap();
    rows::apply(&mut b, 7, 2, 1, 1.0);
    assert_eq!(
        (b.n, bits(&b.x), bits(&b.y)),
        (whole.n, bits(&whole.x), bits(&whole.y))
    );
    assert_eq!(b.codes, whole.codes);
    // another era, epoch or seed draws other rows
    let k = |seed, round, era| rows::kept(seed, round, era, 1000, 0.5);
    assert_ne!(k(7, 2, 1), k(7, 3, 1));
    assert_ne!(k(7, 2, 1), k(7, 2, 2));
    assert_ne!(k(7, 2, 1), k(8, 2, 1));
}

#[test]
fn row_sampling_trains_the_plain_loop_on_the_kept_rows_and_never_touches_validation() {
    let (_dir, store, valid) = opened("rowsloop");
    let cfg = tiny(&store);
    let o = TrainOptions {
        row_sample: 0.5,
        ..opts(2)
    };
    let ckpt = train_validated(&store, &valid, &cfg, &o);
    assert_eq!(
        ckpt.tensors,
        plain_loop_rows(&store, &cfg, &o, 0.5),
        "the loop did not train the sampled rows of each era"
    );
    assert_ne!(ckpt.tensors, plain_loop(&store, &cfg, &o));
}

#[test]
fn row_sample_outside_zero_to_one_is_refused_naming_the_flag() {
    for p in [0.0f32, -0.5, 1.5, f32::NAN] {
        let o = TrainOptions {
            row_sample: p,
            ..opts(1)
        };
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("--row-sample"), "{p}: {e}");
    }
    for p in [1e-3f32, 0.5, 1.0] {
        let o = TrainOptions {
            row_sample: p,
            ..opts(1)
        };
        assert!(o.validate().is_ok(), "{p}");
    }
}

#[test]
fn nothing_to_learn_is_an_error_and_a_store_without_targets_is_no_validation() {
    let (_dir, t, v, live) = dataset("empty", 2, 2);
    let (store, valid, live) = (
        Store::open(&t).unwrap(),
        Store::open(&v).unwrap(),
        Store::open(&live).unwrap(),
    );
    let err = train(&Cpu, tiny(&live), None, &live, None, &opts(1), &mut |_| {})
        .err()
        .expect("training on a store without targets succeeded");
    assert!(err.to_string().contains("nothing to learn"), "{err}");
    let mut said = Vec::new();
    let r = train(
        &Cpu,
        tiny(&store),
        None,
        &store,
        Some(&valid),
        &opts(2),
        &mut |e| {
            if let Event::NoValidation { reason } = e {
                said.push(reason.clone());
            }
        },
    )
    .unwrap();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(r.best.is_none() && r.epochs.iter().all(|e| e.valid.is_none()));
}

#[test]
fn an_ensemble_of_identical_members_is_that_member_and_order_does_not_matter() {
    let mut rng = Rng::new(5, 1);
    for n in [1usize, 2, 7, 50] {
        let a: Vec<f64> = (0..n).map(|_| (rng.next_u32() % 9) as f64).collect();
        let b: Vec<f64> = (0..n).map(|_| rng.next_u32() as f64 / 7.0).collect();
        let c: Vec<f64> = (0..n).map(|_| -(rng.next_u32() as f64).sqrt()).collect();
        let one = rank_unit(&a);
        assert_eq!(rank_unit(&combine(&[&a, &a, &a], false)), one);
        assert_eq!(combine(&[&a], false), one);
        assert_eq!(combine(&[&a, &a], true), a);
        let abc = combine(&[&a, &b, &c], false);
        assert_eq!(abc, combine(&[&c, &a, &b], false));
        assert_eq!(abc, combine(&[&b, &c, &a], false));
        assert_eq!(combine(&[&a, &b, &c], true), combine(&[&c, &b, &a], true));
    }
}

#[test]
fn init_must_match_the_store() {
    let (_dir, t, _, _) = dataset("init", 2, 0);
    let store = Store::open(&t).unwrap();
    let cfg = tiny(&store);
    let r = train(&Cpu, cfg.clone(), None, &store, None, &opts(1), &mut |_| {}).unwrap();
    let mut other: Checkpoint = r.checkpoint.clone();
    other.features.reverse();
    assert!(build::<Cpu>(&Cpu, &cfg, Some(&other), &store, 0).is_err());
    let mut wider = cfg.clone();
    wider.d_model = 16;
    assert!(build::<Cpu>(&Cpu, &wider, Some(&r.checkpoint), &store, 0).is_err());
}

#[test]
fn prefetch_yields_the_order_with_the_batches_a_direct_load_gives_and_can_stop_early() {
    let (_dir, t, _, _) = dataset("prefetch", 2, 0);
    let store = Store::open(&t).unwrap();
    let map = ColumnMap::identity(&store);
    let order = vec![3, 0, 5, 5, 1, 7, 2, 6, 4, 0, 7];
    // one loader, and several (whose batches finish in any order but come back in order's)
    for workers in [1, 2, 3, 8, 40] {
        let seen = era::with_prefetch(&store, &map, &order, workers, false, |eras| {
            eras.map(|(ei, b)| (ei, b.unwrap())).collect::<Vec<_>>()
        });
        assert_eq!(
            seen.iter().map(|(ei, _)| *ei).collect::<Vec<_>>(),
            order,
            "{workers} workers"
        );
        for (ei, b) in &seen {
            let direct = EraBatch::load(&store, *ei, &map).unwrap();
            assert_eq!(b.name, direct.name);
            assert_eq!(b.x, direct.x);
            assert_eq!(b.codes, direct.codes);
            assert_eq!(
                b.y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                direct.y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
        // stopping after two eras returns (the loaders, blocked on their next send, stop)
        let first_two = era::with_prefetch(&store, &map, &order, workers, false, |eras| {
            eras.take(2).map(|(ei, _)| ei).collect::<Vec<_>>()
        });
        assert_eq!(first_two, vec![3, 0], "{workers} workers");
    }
    // the loader count: one on the CPU, 1..=4 on a GPU, ERAENGINE_LOADERS's value when set, and
    // an error naming the variable for anything but a whole number ≥ 1
    assert_eq!(era::loaders_from(None, false).unwrap(), 1);
    assert!((1..=4).contains(&era::loaders_from(None, true).unwrap()));
    assert_eq!(era::loaders_from(Some("7"), false).unwrap(), 7);
    for bad in ["0", "-1", "two", "", "1.5"] {
        let e = era::loaders_from(Some(bad), true).unwrap_err().to_string();
        assert!(e.contains("ERAENGINE_LOADERS"), "{bad:?}: {e}");
    }
    // an empty order yields nothing
    let none = era::with_prefetch(&store, &map, &[], 4, false, |eras| eras.count());
    assert_eq!(none, 0);
}

/// Era statistics found on the loader thread (`stats`, for a model with an era context) are the
/// ones the step would find, and nothing that changes the era after them (row sampling, feature
/// noise) lets the kept ones through.
#[test]
fn era_statistics_found_ahead_are_the_steps_own_and_drop_when_the_era_changes() {
    let (_dir, t, _, _) = dataset("prefetch_stats", 2, 0);
    let store = Store::open(&t).unwrap();
    let map = ColumnMap::identity(&store);
    let order: Vec<usize> = (0..store.n_eras()).collect();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let seen = era::with_prefetch(&store, &map, &order, 2, true, |eras| {
        eras.map(|(_, b)| b.unwrap()).collect::<Vec<_>>()
    });
    let plain = era::with_prefetch(&store, &map, &order, 2, false, |eras| {
        eras.map(|(_, b)| b.unwrap()).collect::<Vec<_>>()
    });
    for (mut b, p) in seen.into_iter().zip(plain) {
        assert!(p.stats.is_none());
        let kept = b.stats.clone().expect("statistics found by the loader");
        assert_eq!(bits(&kept), bits(&p.context_stats()), "era {}", b.name);
        assert_eq!(bits(&b.context_stats()), bits(&kept));
        // half the rows: the kept statistics go, and the step finds those of the rows left
        rows::apply(&mut b, 1, 1, 0, 0.5);
        assert!(b.stats.is_none(), "row sampling kept stale statistics");
        let sampled = b.context_stats();
        assert_ne!(bits(&sampled), bits(&kept));
        b.keep_context_stats();
        assert_eq!(bits(b.stats.as_deref().unwrap()), bits(&sampled));
        noise::apply(&mut b, 1, 1, 0, 0.9);
        assert!(b.stats.is_none(), "feature noise kept stale statistics");
    }
}

/// The validation mean corr of every epoch of a run, with its result.
fn scored_run(
    store: &Store,
    valid: &Store,
    o: &TrainOptions,
) -> (eraengine::train::TrainResult, Vec<f64>) {
    let mut scores = Vec::new();
    let r = train(&Cpu, tiny(store), None, store, Some(valid), o, &mut |e| {
        if let Event::Validation { score, .. } = e {
            scores.push(score.mean);
        }
    })
    .unwrap();
    (r, scores)
}

/// `--min-epochs N`: the kept epoch is the best of epochs N.. (the training itself is the same, so
/// the scores of every epoch are too), and it is never before N.
#[test]
fn min_epochs_keeps_the_best_epoch_from_n_on() {
    let (_dir, store, valid) = opened("minep");
    let all = TrainOptions {
        patience: 0,
        ..opts(6)
    };
    let (r1, s1) = scored_run(&store, &valid, &all);
    assert_eq!(s1.len(), 6);
    let argmax_from = |n: usize| (n..=6).fold(n, |b, e| if s1[e - 1] > s1[b - 1] { e } else { b });
    assert_eq!(r1.best_epoch, Some(argmax_from(1)));
    assert!(
        (2..=6).any(|n| argmax_from(n) != argmax_from(1)),
        "no floor moves the kept epoch on these scores: {s1:?}"
    );
    for n in 2..=6 {
        let o = TrainOptions {
            min_epochs: n,
            ..all.clone()
        };
        let (r, s) = scored_run(&store, &valid, &o);
        assert_eq!(s, s1, "min_epochs {n} changed the training");
        let want = argmax_from(n);
        assert_eq!(r.best_epoch, Some(want), "min_epochs {n}: scores {s1:?}");
        assert_eq!(r.best.unwrap().mean, s1[want - 1]);
        if n == 6 {
            // With N = 6 = --epochs the kept weights are the last epoch's.
            assert_eq!(r.checkpoint.tensors, plain_loop(&store, &tiny(&store), &o));
        }
    }
}

/// Patience counts from N: no run stops before epoch N + patience; and a floor at or below the
/// unrestricted run's best epoch changes nothing, bit for bit (the epochs it skips could only have
/// been kept if they beat that best).
#[test]
fn min_epochs_at_or_below_the_best_epoch_is_a_no_op_and_patience_counts_from_it() {
    let (_dir, store, valid) = opened("minep2");
    for patience in [1usize, 2] {
        let o = TrainOptions {
            patience,
            ..opts(10)
        };
        let (r1, s1) = scored_run(&store, &valid, &o);
        let best = r1.best_epoch.unwrap();
        assert!(
            best >= 2,
            "patience {patience}: best epoch {best} tests no floor"
        );
        for n in 1..=best {
            let (r, s) = scored_run(
                &store,
                &valid,
                &TrainOptions {
                    min_epochs: n,
                    ..o.clone()
                },
            );
            assert_eq!((r.best_epoch, &s), (r1.best_epoch, &s1), "n {n}");
            assert_eq!(r.checkpoint.tensors, r1.checkpoint.tensors, "n {n}");
        }
        for n in [3usize, 5] {
            let (r, s) = scored_run(
                &store,
                &valid,
                &TrainOptions {
                    min_epochs: n,
                    ..o.clone()
                },
            );
            assert!(
                s.len() >= (n + patience).min(10),
                "stopped after {} epochs with min_epochs {n} patience {patience}",
                s.len()
            );
            assert!(r.best_epoch.unwrap() >= n);
        }
    }
    assert!(TrainOptions {
        min_epochs: 0,
        ..opts(2)
    }
    .validate()
    .unwrap_err()
    .to_string()
    .contains("--min-epochs"));
}

/// `EraBatch::context_stats` (split over threads by columns, at SIMD width) against the plain
/// two-pass f64 loops it replaced, bit for bit, with padding rows and shapes on both sides of the
/// threading cut (n · f ≥ 65,536).
#[test]
fn context_stats_are_the_plain_two_pass_sums() {
    let mut rng = Rng::new(5, 9);
    for &(n, f) in &[(1, 1), (7, 3), (500, 300), (300, 1000), (64, 17)] {
        let x: Vec<f32> = (0..n * f).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let mask: Vec<f32> = (0..n).map(|i| if i % 5 == 3 { 0.0 } else { 1.0 }).collect();
        let b = EraBatch {
            name: "e".into(),
            n,
            f,
            t: 1,
            x: x.clone(),
            codes: None,
            y: vec![0.0; n],
            mask: mask.clone(),
            col_sums: None,
            stats: None,
        };
        let rows = mask.iter().filter(|&&m| m != 0.0).count() as f64;
        let mut want = vec![0f32; 2 * f];
        if rows > 0.0 {
            for j in 0..f {
                let mut s = 0f64;
                for i in (0..n).filter(|&i| mask[i] != 0.0) {
                    s += x[i * f + j] as f64;
                }
                let mean = s / rows;
                let mut v = 0f64;
                for i in (0..n).filter(|&i| mask[i] != 0.0) {
                    let c = x[i * f + j] as f64 - mean;
                    v += c * c;
                }
                want[j] = mean as f32;
                want[f + j] = (v / rows).sqrt() as f32;
            }
        }
        assert_eq!(b.context_stats(), want, "n {n}, f {f}");
    }
}

/// The column sums an era is loaded with (`EraBatch::col_sums`, found while x is written, and
/// again by row sampling) are the plain f64 sums of x in row order, and give the gate and the era
/// statistics the very bits they compute from x without them: a training step with and without
/// them ends with the same weights.
#[test]
fn loaded_column_sums_are_the_plain_sums_and_change_no_bit() {
    let (_dir, t, _, _) = dataset("sums", 2, 0);
    let store = Store::open(&t).unwrap();
    let map = ColumnMap::identity(&store);
    let mut cfg = tiny(&store);
    cfg.context_dim = 4;
    let o = opts(1);
    for sampled in [false, true] {
        let mut with = EraBatch::load(&store, 1, &map).unwrap();
        if sampled {
            rows::apply(&mut with, 3, 1, 1, 0.5);
        }
        let (n, f) = (with.n, with.f);
        let sums = with
            .col_sums
            .clone()
            .expect("a loaded era has its column sums");
        let mut plain = vec![0f64; f];
        for row in with.x[..n * f].chunks_exact(f) {
            for (s, &v) in plain.iter_mut().zip(row) {
                *s += v as f64;
            }
        }
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&sums), bits(&plain), "sampled {sampled}");
        let without = EraBatch {
            name: with.name.clone(),
            x: with.x.clone(),
            codes: with.codes.clone(),
            y: with.y.clone(),
            mask: with.mask.clone(),
            col_sums: None,
            stats: None,
            ..with
        };
        assert_eq!(with.context_stats(), without.context_stats());
        let dev = Cpu;
        let weights = |b: &EraBatch| {
            let mut m: Trained<Cpu> = build(&dev, &cfg, None, &store, 0).unwrap();
            let mut adam = Adam::new(&dev, &m.params, o.lr, o.weight_decay).unwrap();
            train_step(&dev, &mut m, &mut adam, b, &o, 1).unwrap();
            m.params.to_host(&dev).unwrap()
        };
        assert_eq!(weights(&with), weights(&without), "sampled {sampled}");
    }
}
