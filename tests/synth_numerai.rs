//! The realistic generator: its Bayes file is the conditional expectation of the target (checked
//! by redrawing the target noise), its difficulty is in Numerai's range across seeds, it is
//! deterministic by seed, and its auxiliary targets have NaNs.

mod common;

use common::TempDir;
use eraengine::data::store::Store;
use eraengine::data::synth::numerai::{self, World};
use eraengine::data::synth::reference::{bayes_corr, ridge_baseline};
use eraengine::data::synth::{write_dataset, Kind, SynthConfig};

fn small(seed: u64) -> SynthConfig {
    SynthConfig {
        eras: 60,
        valid_eras: 15,
        test_eras: 15,
        rows: 600,
        features: 32,
        seed,
        ..SynthConfig::default()
    }
}

#[test]
fn bayes_is_the_mean_of_redrawn_targets() {
    // same rows and era latents, fresh target noise: the average target per row converges to the
    // Bayes prediction (standard error ≤ 0.5 / √draws per row)
    let cfg = SynthConfig {
        rows: 40,
        ..small(3)
    };
    let w = World::new(&cfg);
    let draws = 4000;
    for g in [0usize, 7, 61] {
        let base = numerai::generate_era(&cfg, &w, g, cfg.seed);
        let n = base.ids.len();
        let mut sum = vec![0.0f64; n];
        for d in 0..draws {
            let e = numerai::generate_era(&cfg, &w, g, 10_000 + d as u64);
            assert_eq!(
                e.features, base.features,
                "features do not depend on the noise"
            );
            assert_eq!(e.bayes, base.bayes);
            for (s, t) in sum.iter_mut().zip(e.targets.chunks(3)) {
                *s += t[0] as f64;
            }
        }
        let worst = sum
            .iter()
            .zip(&base.bayes)
            .map(|(s, b)| (s / draws as f64 - b).abs())
            .fold(0.0f64, f64::max);
        // 40 rows, sd per row ≤ 0.5/√4000 ≈ 0.0079: 5 sd
        assert!(worst < 0.04, "era {g}: worst |mean - bayes| = {worst}");
        // and the rows differ: the check is not trivially passed by a constant
        let spread = base.bayes.iter().cloned().fold(f64::MIN, f64::max)
            - base.bayes.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread > 0.05, "era {g}: bayes spread {spread}");
    }
}

#[test]
fn expected_target_matches_a_direct_simulation() {
    // the formula 0.25 Σ Φ((μ − t)/σ) against sampling ε directly
    let mu: Vec<f64> = (0..50).map(|i| (i as f64 - 25.0) / 10.0).collect();
    let sigma = 2.0;
    let t = numerai::thresholds(&mu, sigma);
    // thresholds solve the mixture quantiles
    for (ti, q) in t.iter().zip(numerai::TARGET_QUANTILES) {
        let p = mu
            .iter()
            .map(|m| numerai::norm_cdf((ti - m) / sigma))
            .sum::<f64>()
            / mu.len() as f64;
        assert!((p - q).abs() < 1e-9, "{p} vs {q}");
    }
    let mut rng = eraengine::data::synth::Rng::new(9, 9);
    for &m in &[mu[0], mu[20], mu[49]] {
        let k = 200_000;
        let s: f64 = (0..k)
            .map(|_| numerai::bin_target(m + sigma * rng.normal(), &t) as f64)
            .sum::<f64>()
            / k as f64;
        let e = numerai::expected_target(m, &t, sigma);
        assert!((s - e).abs() < 0.004, "mu {m}: simulated {s} vs {e}");
    }
    assert!((numerai::norm_cdf(1.959_964) - 0.975).abs() < 1e-6);
    assert!((numerai::norm_cdf(-1.0) - 0.158_655_25).abs() < 1e-6);
}

#[test]
fn difficulty_is_numerai_like_across_seeds() {
    let mut bayes_all = Vec::new();
    let mut ridge_all = Vec::new();
    for seed in 1..=4 {
        let d = TempDir::new("synthn");
        let files = write_dataset(&d, &small(seed), false).unwrap();
        let train = Store::open(&files.train).unwrap();
        let valid = Store::open(&files.validation).unwrap();
        let b = bayes_corr(&valid, files.bayes_csv.as_ref().unwrap())
            .unwrap()
            .unwrap();
        let r = ridge_baseline(&train, &valid).unwrap().unwrap();
        eprintln!("seed {seed}: Bayes {b:.4}, ridge {r:.4}");
        // one seed: wide bounds (20 eras of 600 rows are noisy)
        assert!((0.08..0.3).contains(&b), "seed {seed}: Bayes {b}");
        assert!(r < b, "seed {seed}: ridge {r} ≥ Bayes {b}");
        // bayes.json agrees with bayes_corr
        let j: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(files.bayes_json.as_ref().unwrap()).unwrap(),
        )
        .unwrap();
        let jb = j["bayes_mean_corr"]["validation"].as_f64().unwrap();
        assert!((jb - b).abs() < 1e-6, "{jb} vs {b}");
        let jr = j["ridge_mean_corr"]["validation"].as_f64().unwrap();
        assert!((jr - r).abs() < 1e-12, "{jr} vs {r}");
        bayes_all.push(b);
        ridge_all.push(r);
        std::fs::remove_dir_all(d).unwrap();
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (b, r) = (mean(&bayes_all), mean(&ridge_all));
    assert!((0.1..0.25).contains(&b), "mean Bayes {b}");
    // (this small shape leaves the ridge more of the regime signal than the built-in shape does:
    // docs/synthetic-data.md has both)
    assert!((0.0..0.12).contains(&r), "mean ridge {r}");
    assert!(b > 1.5 * r, "Bayes {b} is not well above ridge {r}");
}

#[test]
fn same_seed_same_bytes_other_seed_other_data() {
    let (a, b, c) = (
        TempDir::new("synthn"),
        TempDir::new("synthn"),
        TempDir::new("synthn"),
    );
    let cfg = SynthConfig {
        eras: 12,
        rows: 100,
        ..small(5)
    };
    write_dataset(&a, &cfg, false).unwrap();
    write_dataset(&b, &cfg, false).unwrap();
    write_dataset(&c, &SynthConfig { seed: 6, ..cfg }, false).unwrap();
    for f in [
        "train.store",
        "validation.store",
        "test.store",
        "live.store",
        "features.json",
        "bayes.csv",
        "bayes.json",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    for f in ["train.store", "bayes.csv"] {
        assert_ne!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(c.join(f)).unwrap(),
            "{f}"
        );
    }
    for d in [a, b, c] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn shape_targets_and_aux_nans() {
    let d = TempDir::new("synthn");
    let cfg = SynthConfig {
        eras: 20,
        rows: 400,
        ..small(2)
    };
    assert_eq!(cfg.kind, Kind::Numerai);
    let files = write_dataset(&d, &cfg, false).unwrap();
    let train = Store::open(&files.train).unwrap();
    let test = Store::open(files.test.as_ref().unwrap()).unwrap();
    assert_eq!((train.n_eras(), train.n_features()), (20, 32));
    assert_eq!(test.era(0).name, format!("{:04}", 20 + 15 + 1));
    let mut counts = [0usize; 5];
    let mut aux1_nan = 0;
    let mut rows = 0;
    for e in train.eras() {
        for r in 0..e.n_rows {
            let t = e.target(r, 0);
            assert!(!t.is_nan());
            let k = (t * 4.0).round() as usize;
            assert_eq!(k as f32 / 4.0, t, "five bins");
            counts[k] += 1;
            aux1_nan += usize::from(e.target(r, 1).is_nan());
            rows += 1;
            for &v in e.row(r) {
                assert!((-1..=4).contains(&v));
            }
        }
    }
    // 5/20/50/20/5 % in expectation
    for (c, want) in counts.iter().zip([0.05, 0.2, 0.5, 0.2, 0.05]) {
        let share = *c as f64 / rows as f64;
        assert!((share - want).abs() < 0.02, "{counts:?}");
    }
    let aux1 = aux1_nan as f64 / rows as f64;
    assert!((0.01..0.06).contains(&aux1), "aux1 NaN share {aux1}");
    let aux2_nan_eras = train
        .eras()
        .filter(|e| e.missing_targets[2] as usize == e.n_rows)
        .count();
    assert!(aux2_nan_eras > 0 && aux2_nan_eras < train.n_eras());
    // the Bayes file covers every row of every split, in [0, 1]
    let preds = eraengine::metrics::read_predictions(files.bayes_csv.as_ref().unwrap()).unwrap();
    let total: usize = [&files.train, &files.validation, &files.live]
        .iter()
        .map(|p| Store::open(p).unwrap().n_rows())
        .sum::<usize>()
        + test.n_rows();
    assert_eq!(preds.len(), total);
    assert!(preds.iter().all(|(_, p)| (0.0..=1.0).contains(p)));
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn regime_persists_and_shows_in_the_era_rows() {
    let cfg = small(4);
    let w = World::new(&cfg);
    let changes = w.regimes.windows(2).filter(|p| p[0] != p[1]).count();
    let n = w.regimes.len();
    // an independent draw per era would change 3 times in 4
    assert!(
        changes > 0 && changes < n / 3,
        "{changes} changes in {n} eras"
    );
    // a nearest-centroid rule on the era's feature means recovers the regime of most eras
    let eras: Vec<_> = (0..cfg.eras)
        .map(|g| numerai::generate_era(&cfg, &w, g, cfg.seed))
        .collect();
    let f = cfg.features;
    let means = |e: &eraengine::data::synth::SynthEra| -> Vec<f64> {
        let n = e.ids.len() as f64;
        (0..f)
            .map(|j| {
                e.features
                    .chunks(f)
                    .map(|r| r[j].max(0) as f64)
                    .sum::<f64>()
                    / n
            })
            .collect()
    };
    let ms: Vec<Vec<f64>> = eras.iter().map(means).collect();
    let mut cent = vec![vec![0.0; f]; numerai::REGIMES];
    let mut cnt = [0usize; numerai::REGIMES];
    for (m, e) in ms.iter().zip(&eras) {
        cnt[e.regime] += 1;
        for (c, v) in cent[e.regime].iter_mut().zip(m) {
            *c += v;
        }
    }
    for (c, &k) in cent.iter_mut().zip(&cnt) {
        c.iter_mut().for_each(|v| *v /= k.max(1) as f64);
    }
    let right = ms
        .iter()
        .zip(&eras)
        .filter(|(m, e)| {
            let d = |c: &Vec<f64>| {
                c.iter()
                    .zip(*m)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
            };
            let best = (0..numerai::REGIMES)
                .filter(|&k| cnt[k] > 0)
                .min_by(|&a, &b| d(&cent[a]).total_cmp(&d(&cent[b])))
                .unwrap();
            best == e.regime
        })
        .count();
    assert!(right * 10 >= cfg.eras * 9, "{right}/{} eras", cfg.eras);
}

/// The ridge yardstick's weights (XᵀX summed by per-era GEMMs) against the plain f64 normal
/// equations built row by row, on a store with missing features, NaN targets and an era without
/// labels.
#[test]
fn ridge_fit_equals_the_plain_f64_normal_equations() {
    use eraengine::data::batch::preprocess_features;
    use eraengine::data::store::{StoreWriter, MISSING};
    use eraengine::data::synth::reference::{ridge_fit, RIDGE_LAMBDA};
    let dir = TempDir::new("ridge-oracle");
    let path = dir.join("r.store");
    let f = 37;
    let fnames: Vec<String> = (0..f).map(|i| format!("feature_{i}")).collect();
    let mut w = StoreWriter::create(&path, &fnames, &["target".to_string()]).unwrap();
    let mut s = 0x1234_5678u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for (e, rows) in [300usize, 1, 250, 40].into_iter().enumerate() {
        let ids: Vec<String> = (0..rows).map(|r| format!("{e}-{r}")).collect();
        let feats: Vec<i8> = (0..rows * f)
            .map(|_| match next() % 23 {
                0 => MISSING,
                v => (v % 5) as i8,
            })
            .collect();
        let targs: Vec<f32> = (0..rows)
            .map(|_| match next() % 9 {
                _ if e == 1 => f32::NAN,
                0 => f32::NAN,
                v => (v % 5) as f32 / 4.0,
            })
            .collect();
        w.push_era(&format!("{:04}", e + 1), &ids, &feats, &targs)
            .unwrap();
    }
    w.finish().unwrap();
    let store = Store::open(&path).unwrap();
    let got = ridge_fit(&store).unwrap();

    let k = f + 1;
    let mut a = vec![0f64; k * k];
    let mut b = vec![0f64; k];
    let mut rows = 0usize;
    let mut x = Vec::new();
    for era in store.eras() {
        preprocess_features(&era, &mut x);
        for r in 0..era.n_rows {
            let y = era.target(r, 0) as f64;
            if y.is_nan() {
                continue;
            }
            rows += 1;
            let mut row: Vec<f64> = x[r * f..(r + 1) * f].iter().map(|&v| v as f64).collect();
            row.push(1.0);
            for i in 0..k {
                b[i] += row[i] * y;
                for j in 0..k {
                    a[i * k + j] += row[i] * row[j];
                }
            }
        }
    }
    for i in 0..f {
        a[i * k + i] += RIDGE_LAMBDA * rows as f64;
    }
    // Gauss-Jordan with partial pivoting
    for c in 0..k {
        let p = (c..k)
            .max_by(|&i, &j| a[i * k + c].abs().total_cmp(&a[j * k + c].abs()))
            .unwrap();
        for j in 0..k {
            a.swap(c * k + j, p * k + j);
        }
        b.swap(c, p);
        for i in 0..k {
            if i != c {
                let m = a[i * k + c] / a[c * k + c];
                for j in 0..k {
                    a[i * k + j] -= m * a[c * k + j];
                }
                b[i] -= m * b[c];
            }
        }
    }
    for i in 0..k {
        let want = b[i] / a[i * k + i];
        assert!(
            (got[i] - want).abs() <= 1e-9 * (1.0 + want.abs()),
            "weight {i}: {} vs {want}",
            got[i]
        );
    }
}
