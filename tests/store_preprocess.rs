//! SPEC §3 preprocessing of an era: lower-median imputation, all-missing → 2, x = (X − 2)/2.

mod common;

use common::TempDir;
use eraengine::data::batch::{feature_medians, impute_rows_into, targets_and_mask};
use eraengine::data::store::{Store, StoreWriter, MISSING};
use eraengine::data::{imputed_features, preprocess_features};
use proptest::prelude::*;

/// Write a one-era store with `features` [rows, F] and open it.
fn one_era(f: usize, features: &[i8]) -> (Store, TempDir) {
    let d = TempDir::new("pre");
    let p = d.join("e.store");
    let n = features.len() / f;
    let fnames: Vec<String> = (0..f).map(|i| format!("feature_{i}")).collect();
    let ids: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
    let targets: Vec<f32> = (0..n)
        .map(|i| if i % 2 == 0 { 0.5 } else { f32::NAN })
        .collect();
    let mut w = StoreWriter::create(&p, &fnames, &["target".to_string()]).unwrap();
    w.push_era("0001", &ids, features, &targets).unwrap();
    w.finish().unwrap();
    (Store::open(&p).unwrap(), d)
}

const M: i8 = MISSING;

#[test]
fn lower_median_examples() {
    // columns: [1,3,M,4] → present 1,3,4 → median 3;  [0,1,M,M] → even count → lower of 0,1 = 0;
    // [4,4,0,0] → lower of 0,4 = 0;  [M,M,M,M] → 2;  [2,M,3,1] → 1,2,3 → 2
    let rows: Vec<i8> = vec![
        1, 0, 4, M, 2, //
        3, 1, 4, M, M, //
        M, M, 0, M, 3, //
        4, M, 0, M, 1, //
    ];
    let (s, _d) = one_era(5, &rows);
    let era = s.era(0);
    assert_eq!(feature_medians(&era), vec![3, 0, 0, 2, 2]);
    let mut imp = Vec::new();
    imputed_features(&era, &mut imp);
    assert_eq!(
        imp,
        vec![1, 0, 4, 2, 2, 3, 1, 4, 2, 2, 3, 0, 0, 2, 3, 4, 0, 0, 2, 1]
    );
    let mut x = Vec::new();
    preprocess_features(&era, &mut x);
    let want: Vec<f32> = imp.iter().map(|&v| (v as f32 - 2.0) / 2.0).collect();
    assert_eq!(x, want);
    assert_eq!(x[0], -0.5);
    assert_eq!(x[2], 1.0);
    let (mut y, mut m) = (Vec::new(), Vec::new());
    targets_and_mask(&era, &mut y, &mut m);
    assert_eq!(y, vec![0.5, 0.0, 0.5, 0.0]);
    assert_eq!(m, vec![1.0, 0.0, 1.0, 0.0]);
}

#[test]
fn all_missing_column_becomes_two_and_scales_to_zero() {
    let (s, _d) = one_era(2, &[M, 4, M, 0, M, 1]);
    let mut x = Vec::new();
    preprocess_features(&s.era(0), &mut x);
    assert_eq!(x, vec![0.0, 1.0, 0.0, -1.0, 0.0, -0.5]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The imputed value is the sorted present values' element (c − 1)/2, computed here by sorting.
    #[test]
    fn imputation_matches_sorting(col in prop::collection::vec(-1i8..5, 1..40)) {
        let (s, _d) = one_era(1, &col);
        let mut present: Vec<i8> = col.iter().copied().filter(|&v| v != M).collect();
        present.sort();
        let med = if present.is_empty() { 2 } else { present[(present.len() - 1) / 2] };
        let mut imp = Vec::new();
        imputed_features(&s.era(0), &mut imp);
        for (a, &b) in imp.iter().zip(&col) {
            prop_assert_eq!(*a as i8, if b == M { med } else { b });
        }
        let mut x = Vec::new();
        preprocess_features(&s.era(0), &mut x);
        prop_assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    /// Many features at once (the counting and the select run over whole rows, vectorised; more
    /// than 255 rows cross the byte counters' flush):
    /// every column's imputation is the sorting oracle's, and x is (imputed − 2) / 2 exactly.
    #[test]
    fn wide_eras_impute_every_column_like_sorting(
        f in 1usize..90,
        rows in 1usize..700,
        seed: u64,
        missing in 0u32..100,
        skew in prop_oneof![0u32..100, 95u32..101],
    ) {
        let missing = missing.min(100 - skew.min(100));
        let mut state = seed | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let data: Vec<i8> = (0..f * rows)
            .map(|_| {
                let r = next();
                // `skew` % of the values are one code: columns of hundreds of equal values, which
                // the byte counters must hand on before they wrap
                if (r % 100) < u64::from(missing) {
                    M
                } else if ((r >> 8) % 100) < u64::from(skew) {
                    3
                } else {
                    ((r >> 16) % 5) as i8
                }
            })
            .collect();
        let (s, _d) = one_era(f, &data);
        let mut imp = Vec::new();
        imputed_features(&s.era(0), &mut imp);
        prop_assert_eq!(imp.len(), f * rows);
        for j in 0..f {
            let col: Vec<i8> = (0..rows).map(|r| data[r * f + j]).collect();
            let mut present: Vec<i8> = col.iter().copied().filter(|&v| v != M).collect();
            present.sort();
            let med = if present.is_empty() { 2 } else { present[(present.len() - 1) / 2] };
            for r in 0..rows {
                prop_assert_eq!(imp[r * f + j] as i8, if col[r] == M { med } else { col[r] });
            }
        }
        let mut x = Vec::new();
        preprocess_features(&s.era(0), &mut x);
        let want: Vec<f32> = imp.iter().map(|&c| (c as f32 - 2.0) / 2.0).collect();
        prop_assert_eq!(x, want);
        // the store kept the medians its first imputation found (an era with a missing value),
        // and a later imputation, from them, is the same
        let kept = s.era(0).medians.and_then(|m| m.get().cloned());
        let has_missing = data.contains(&M);
        prop_assert_eq!(kept.is_some(), has_missing);
        if let Some(k) = kept {
            prop_assert_eq!(&k, &feature_medians(&s.era(0)));
        }
        let mut again = Vec::new();
        imputed_features(&s.era(0), &mut again);
        prop_assert_eq!(&again, &imp);
        // some rows alone, in order (what row sampling reads): those rows of the whole imputation
        let some: Vec<usize> = (0..rows).filter(|r| !(r * 7 + seed as usize).is_multiple_of(3)).collect();
        let mut part = vec![9u8; some.len() * f];
        impute_rows_into(&s.era(0), Some(&some), &mut part);
        let want: Vec<u8> = some.iter().flat_map(|&r| imp[r * f..(r + 1) * f].to_vec()).collect();
        prop_assert_eq!(part, want);
    }
}

/// An era with every value present comes back byte for byte (imputation skipped); the same era
/// with one value missing changes in that value only, to its column's lower median.
#[test]
fn an_era_without_missing_values_is_copied_and_one_missing_value_is_imputed() {
    let (n, f) = (300, 37);
    let rows: Vec<i8> = (0..n * f).map(|i| ((i * 7 + i / f) % 5) as i8).collect();
    let (s, _d) = one_era(f, &rows);
    let mut imp = Vec::new();
    imputed_features(&s.era(0), &mut imp);
    assert!(imp.iter().zip(&rows).all(|(&a, &b)| a == b as u8));
    let mut holed = rows.clone();
    let at = 123 * f + 5;
    holed[at] = M;
    let (s, _d2) = one_era(f, &holed);
    let era = s.era(0);
    let med = feature_medians(&era)[5];
    assert_eq!(era.missing_features, 1);
    imputed_features(&era, &mut imp);
    for (i, (&a, &b)) in imp.iter().zip(&rows).enumerate() {
        let want = if i == at { med } else { b as u8 };
        assert_eq!(a, want, "value {i}");
    }
    // stats that count no missing value (a corrupt store) do not let one through
    let lying = eraengine::data::store::EraView {
        missing_features: 0,
        ..era
    };
    let mut imp2 = Vec::new();
    imputed_features(&lying, &mut imp2);
    assert_eq!(imp2, imp);
}
