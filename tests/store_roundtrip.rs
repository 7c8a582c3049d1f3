//! Era store: write → reopen → read back equal (proptest), CSV → store, and every kind of damaged
//! store is refused with an error naming the section (never a panic).

mod common;

use common::TempDir;
use eraengine::data::import::{import, ImportOptions};
use eraengine::data::store::{Store, StoreWriter, MISSING};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn dir_entries(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[derive(Clone, Debug)]
struct Era {
    name: String,
    ids: Vec<String>,
    features: Vec<i8>,
    targets: Vec<f32>,
}

/// Eras with 0..6 rows, features 0..4 or missing, targets on the Numerai grid or NaN.
fn eras_strategy(f: usize, t: usize) -> impl Strategy<Value = Vec<Era>> {
    prop::collection::vec(0usize..6, 0..6).prop_flat_map(move |sizes| {
        let total: usize = sizes.iter().sum();
        (
            Just(sizes),
            prop::collection::vec(-1i8..5, total * f),
            prop::collection::vec(prop::option::weighted(0.8, 0u8..5), total * t),
            prop::collection::vec("[a-z0-9é]{0,6}", total),
        )
            .prop_map(move |(sizes, feats, targs, tags)| {
                let mut out = Vec::new();
                let mut row = 0;
                for (e, &n) in sizes.iter().enumerate() {
                    let ids = (row..row + n).map(|r| format!("{}-{r}", tags[r])).collect();
                    out.push(Era {
                        name: format!("{:04}", e + 1),
                        ids,
                        features: feats[row * f..(row + n) * f].to_vec(),
                        targets: targs[row * t..(row + n) * t]
                            .iter()
                            .map(|v| v.map(|k| k as f32 / 4.0).unwrap_or(f32::NAN))
                            .collect(),
                    });
                    row += n;
                }
                out
            })
    })
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn write(path: &Path, f: usize, t: usize, eras: &[Era]) {
    let mut w = StoreWriter::create(path, &names("feature_", f), &names("target_", t)).unwrap();
    for e in eras {
        w.push_era(&e.name, &e.ids, &e.features, &e.targets)
            .unwrap();
    }
    w.finish().unwrap();
}

fn same_f32(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

fn assert_store_holds(s: &Store, f: usize, t: usize, eras: &[Era]) {
    assert_eq!(s.n_eras(), eras.len());
    assert_eq!(s.n_features(), f);
    assert_eq!(s.n_targets(), t);
    assert_eq!(s.n_rows(), eras.iter().map(|e| e.ids.len()).sum::<usize>());
    assert_eq!(s.feature_names(), &names("feature_", f)[..]);
    let mut first = 0;
    for (i, e) in eras.iter().enumerate() {
        let v = s.era(i);
        assert_eq!(v.name, e.name);
        assert_eq!(v.first_row, first);
        assert_eq!(v.n_rows, e.ids.len());
        assert_eq!(v.features, &e.features[..]);
        assert!(same_f32(v.targets, &e.targets));
        for (r, id) in e.ids.iter().enumerate() {
            assert_eq!(v.id(r), id);
        }
        let mf = e.features.iter().filter(|&&x| x == MISSING).count() as u64;
        assert_eq!(v.missing_features, mf);
        first += e.ids.len();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn written_eras_read_back_equal((f, t, eras) in (0usize..5, 1usize..4)
        .prop_flat_map(|(f, t)| (Just(f), Just(t), eras_strategy(f, t)))) {
        let d = TempDir::new("store-rt");
        let path = d.join("x.store");
        write(&path, f, t, &eras);
        let s = Store::open(&path).unwrap();
        assert_store_holds(&s, f, t, &eras);
        s.verify().unwrap();
        // info agrees with the data
        let info = eraengine::cli::info::store_json(&s);
        prop_assert_eq!(info["rows"].as_u64().unwrap() as usize, s.n_rows());
        prop_assert_eq!(info["era_table"].as_array().unwrap().len(), eras.len());
        // only the store is left in the directory
        prop_assert_eq!(dir_entries(&d), vec!["x.store".to_string()]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn csv_imports_to_the_same_values(eras in eras_strategy(3, 2)) {
        prop_assume!(eras.iter().any(|e| !e.ids.is_empty()));
        let d = TempDir::new("store-csv");
        let csv = d.join("in.csv");
        let mut text = String::from("id,era,feature_0,feature_1,feature_2,target_0,target_1\n");
        for e in &eras {
            for (r, id) in e.ids.iter().enumerate() {
                text.push_str(&format!("{id},{}", e.name));
                for &v in &e.features[r * 3..r * 3 + 3] {
                    if v == MISSING { text.push(','); } else { text.push_str(&format!(",{v}")); }
                }
                for &v in &e.targets[r * 2..r * 2 + 2] {
                    if v.is_nan() { text.push_str(",nan"); } else { text.push_str(&format!(",{v}")); }
                }
                text.push('\n');
            }
        }
        std::fs::write(&csv, text).unwrap();
        let out = d.join("out.store");
        let opts = ImportOptions {
            targets: Some(vec!["target_0".into(), "target_1".into()]),
            ..ImportOptions::default()
        };
        import(&[csv], &out, &opts).unwrap();
        let s = Store::open(&out).unwrap();
        // zero-row eras do not exist in a CSV
        let nonempty: Vec<Era> = eras.into_iter().filter(|e| !e.ids.is_empty()).collect();
        assert_store_holds(&s, 3, 2, &nonempty);
        s.verify().unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }
}

/// A valid store's bytes, for damaging.
fn sample_store(d: &Path) -> (PathBuf, Vec<u8>) {
    let eras = vec![
        Era {
            name: "0001".into(),
            ids: vec!["a".into(), "b".into(), "c".into()],
            features: vec![0, 1, 2, 3, 4, MISSING],
            targets: vec![0.5, f32::NAN, 1.0],
        },
        Era {
            name: "0002".into(),
            ids: vec![],
            features: vec![],
            targets: vec![],
        },
        Era {
            name: "0003".into(),
            ids: vec!["d".into(), "e".into()],
            features: vec![4, 4, 0, 0],
            targets: vec![0.25, 0.75],
        },
    ];
    let p = d.join("good.store");
    write(&p, 2, 1, &eras);
    let b = std::fs::read(&p).unwrap();
    (p, b)
}

/// Open a damaged copy: it must either fail with an error naming the file, or open with every
/// era's slices readable — and then `verify` must notice the damage.
fn open_damaged(d: &Path, bytes: &[u8], original: &[u8]) -> Result<(), String> {
    let p = d.join("bad.store");
    std::fs::write(&p, bytes).unwrap();
    match Store::open(&p) {
        Err(e) => {
            let m = e.to_string();
            assert!(m.contains("bad.store"), "error does not name the file: {m}");
            Err(m)
        }
        Ok(s) => {
            let mut sum = 0i64;
            for e in s.eras() {
                sum += e.features.iter().map(|&v| v as i64).sum::<i64>();
                for r in 0..e.n_rows {
                    sum += e.id(r).len() as i64;
                    sum += e.targets[r * e.n_targets..(r + 1) * e.n_targets].len() as i64;
                }
            }
            let _ = sum;
            if bytes != original {
                let v = s.verify();
                assert!(v.is_err(), "damaged store passed verify");
                return Err(v.unwrap_err().to_string());
            }
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn flipped_bytes_are_caught_without_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4)) {
        let d = TempDir::new("store-flip");
        let (_, good) = sample_store(&d);
        let mut b = good.clone();
        for (i, x) in &flips {
            let k = i.index(b.len());
            b[k] ^= x;
        }
        if b == good {
            // two flips of one byte cancelled out: nothing to test
            std::fs::remove_dir_all(&d).unwrap();
            return Ok(());
        }
        prop_assert!(open_damaged(&d, &b, &good).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn truncated_stores_are_refused(cut in any::<prop::sample::Index>()) {
        let d = TempDir::new("store-cut");
        let (_, good) = sample_store(&d);
        let k = cut.index(good.len());
        prop_assert!(open_damaged(&d, &good[..k], &good).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn every_header_field_is_checked() {
    let d = TempDir::new("store-hdr");
    let (_, good) = sample_store(&d);
    let p = d.join("bad.store");
    let check = |b: &[u8], want: &str| {
        std::fs::write(&p, b).unwrap();
        let e = Store::open(&p)
            .err()
            .expect("damaged store opened")
            .to_string();
        assert!(e.contains(want), "expected {want:?} in {e:?}");
        assert!(e.contains("bad.store"), "{e}");
    };
    let mut b = good.clone();
    b[0] = b'X';
    check(&b, "wrong magic");
    check(b"", "wrong magic");
    check(&good[..100], "truncated");
    // version: also breaks the header checksum, but the version is reported first
    let mut b = good.clone();
    b[8] = 2;
    check(&b, "format version 2");
    // any other header byte: header checksum
    let mut b = good.clone();
    b[17] ^= 1;
    check(&b, "header checksum");
    // a consistent header whose section runs past the end of the file
    check(&good[..good.len() - 64], "past the end");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn open_does_not_read_data_and_verify_does() {
    let d = TempDir::new("store-lazy");
    let (p, good) = sample_store(&d);
    // damage a feature byte: open succeeds (data not read), verify names the data checksum
    let feat_off = {
        // the feature bytes of era 0 are [0,1,2,3,4,-1]: find them in the file
        good.windows(6)
            .position(|w| w == [0u8, 1, 2, 3, 4, 0xff])
            .unwrap()
    };
    let mut b = good.clone();
    b[feat_off + 1] = 9;
    std::fs::write(&p, &b).unwrap();
    let s = Store::open(&p).unwrap();
    assert_eq!(s.era(0).features[1], 9);
    let e = s.verify().unwrap_err().to_string();
    assert!(e.contains("data checksum"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn writer_refuses_bad_eras_and_leaves_nothing() {
    let d = TempDir::new("store-wbad");
    let out = d.join("o.store");
    let fnames = names("feature_", 2);
    let tnames = names("target_", 1);
    type Case<'a> = (Vec<(&'a str, Vec<&'a str>, Vec<i8>, Vec<f32>)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("0001", vec!["a"], vec![0, 5], vec![0.5])],
            "feature value 5 outside 0..4",
        ),
        (
            vec![("0001", vec!["a"], vec![0, -3], vec![0.5])],
            "feature value -3",
        ),
        (
            vec![("0001", vec!["a"], vec![0, 1], vec![f32::INFINITY])],
            "target value inf",
        ),
        (
            vec![
                ("0001", vec!["a"], vec![0, 1], vec![0.5]),
                ("0002", vec!["a"], vec![1, 1], vec![0.5]),
            ],
            "duplicate id \"a\"",
        ),
        (
            vec![("0001", vec!["a", "a"], vec![0, 1, 2, 3], vec![0.5, 0.5])],
            "duplicate id",
        ),
        (
            vec![
                ("0001", vec!["a"], vec![0, 1], vec![0.5]),
                ("0002", vec!["b"], vec![1, 1], vec![0.5]),
                ("0001", vec!["c"], vec![1, 1], vec![0.5]),
            ],
            "contiguous",
        ),
    ];
    for (eras, want) in cases {
        let mut w = StoreWriter::create(&out, &fnames, &tnames).unwrap();
        let mut err = None;
        for (name, ids, f, t) in &eras {
            if let Err(e) = w.push_era(name, ids, f, t) {
                err = Some(e.to_string());
                break;
            }
        }
        let e = err.expect("bad era accepted");
        assert!(e.contains(want), "expected {want:?} in {e:?}");
        assert!(e.contains("o.store"), "{e}");
        assert!(w.finish().is_err(), "finish after a failed era must fail");
        assert!(
            dir_entries(&d).is_empty(),
            "left behind: {:?}",
            dir_entries(&d)
        );
    }
    // dropping an unfinished writer removes its temporary files
    let w = StoreWriter::create(&out, &fnames, &tnames).unwrap();
    assert!(!dir_entries(&d).is_empty());
    drop(w);
    assert!(dir_entries(&d).is_empty());
    std::fs::remove_dir_all(&d).unwrap();
}
