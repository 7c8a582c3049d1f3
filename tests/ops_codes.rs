//! Era codes to model inputs (src/ops/codes): an era crosses to a device as its imputed codes, one
//! byte each, and is decoded there. Checked on every device (cpu, emu in every thread order, cuda
//! when present) against the definition x = (c − 2) / 2 bit for bit, at lengths that are not a
//! multiple of 4; `EraBatch::to_tape` gives the same input tensor from the codes as from x; wrong
//! lengths are shape errors; feature noise changes the codes exactly as it changes x, and row
//! sampling keeps the same rows of both.

#[macro_use]
mod gpu_common;
mod oracle;

use eraengine::device::Backend;
use eraengine::ops::codes;
use eraengine::tape::Tape;
use eraengine::train::era::EraBatch;
use eraengine::train::noise::{self, Noise};
use eraengine::train::rows;
use eraengine::Error;
use oracle::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

/// Codes 0..4 from a seed.
fn random_codes(n: usize, seed: u64) -> Vec<u8> {
    let mut gen = Gen::new(seed);
    (0..n).map(|_| gen.below(5) as u8).collect()
}

fn decode_is_exact<B: Backend>(dev: &B, c: &(usize, u64)) -> TestCaseResult {
    let &(n, seed) = c;
    let cs = random_codes(n, seed);
    let packed = codes::pack(&cs);
    prop_assert_eq!(packed.len(), n.div_ceil(4));
    prop_assert_eq!(&codes::bytes(&packed)[..n], &cs[..]);
    let x = dev.download(&dev.codes_fwd(&dev.upload(&packed)?, n)?)?;
    prop_assert_eq!(x.len(), n);
    for (e, (&got, &c)) in x.iter().zip(&cs).enumerate() {
        // the definition in f64, then f32: exact for codes 0..4
        let want = ((c as f64 - 2.0) / 2.0) as f32;
        prop_assert!(
            got.to_bits() == want.to_bits(),
            "x[{}] = {} for code {}",
            e,
            got,
            c
        );
    }
    Ok(())
}
device_proptest!(
    32,
    decode_is_exact,
    (0usize..5000, proptest::prelude::any::<u64>())
);

/// The era's input tensor is the same from its codes (what training uploads to a GPU) as from its
/// x (what the CPU takes).
fn era_input_from_codes_equals_from_x<B: Backend>(
    dev: &B,
    c: &(usize, usize, u64),
) -> TestCaseResult {
    let &(n, f, seed) = c;
    let cs = random_codes(n * f, seed);
    let with = EraBatch::from_codes("e".into(), n, f, 1, &cs, vec![0.5; n]);
    prop_assert!(with.codes.is_some());
    // x itself is (c − 2) / 2, every element written (a pooled buffer may be reused)
    prop_assert_eq!(with.x.len(), n * f);
    for (e, (&v, &c)) in with.x.iter().zip(&cs).enumerate() {
        let want = (f32::from(c) - 2.0) * 0.5;
        prop_assert!(
            v.to_bits() == want.to_bits(),
            "x[{}] = {} for code {}",
            e,
            v,
            c
        );
    }
    let without = EraBatch {
        codes: None,
        name: with.name.clone(),
        x: with.x.clone(),
        y: with.y.clone(),
        mask: with.mask.clone(),
        col_sums: with.col_sums.clone(),
        stats: None,
        ..with
    };
    // and from its codes alone, x not made (the training loop's era on a device that takes
    // codes; any other device decodes it)
    let codes_only = EraBatch {
        x: Vec::new(),
        name: with.name.clone(),
        codes: with.codes.clone(),
        y: with.y.clone(),
        mask: with.mask.clone(),
        col_sums: None,
        stats: None,
        ..with
    };
    let x = |b: &EraBatch| -> TestCaseResult {
        let mut tape = Tape::new();
        let inputs = b.to_tape(dev, &mut tape)?;
        let got = tape.download(dev, inputs.x)?;
        tape.release(dev);
        prop_assert_eq!(got.len(), n * f);
        for (e, (&g, &w)) in got.iter().zip(&with.x).enumerate() {
            prop_assert!(g.to_bits() == w.to_bits(), "x[{}]: {} vs {}", e, g, w);
        }
        Ok(())
    };
    x(&with)?;
    x(&without)?;
    x(&codes_only)?;
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    prop_assert_eq!(bits(codes_only.context_stats()), bits(with.context_stats()));
    Ok(())
}
device_proptest!(
    16,
    era_input_from_codes_equals_from_x,
    (0usize..300, 1usize..40, proptest::prelude::any::<u64>())
);

fn wrong_lengths_are_shape_errors<B: Backend>(dev: &B) -> TestCaseResult {
    for (words, n) in [(2usize, 9usize), (3, 8), (1, 0)] {
        let r = dev.codes_fwd(&dev.upload(&vec![0.0; words])?, n);
        prop_assert!(
            matches!(r, Err(Error::Shape(_))),
            "{} words for {} codes: {:?}",
            words,
            n,
            r.err()
        );
    }
    Ok(())
}
device_test!(wrong_lengths_are_shape_errors);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Dropped is code 2 (x = 0), reversed is 4 − c (x = −x): after the noise, x is still the
    /// decode of the codes.
    #[test]
    fn noise_keeps_codes_and_x_together(n in 1usize..50, f in 1usize..30, seed: u64, p in 0.0f32..1.0) {
        let cs = random_codes(n * f, seed);
        let mut b = EraBatch::from_codes("e".into(), n, f, 1, &cs, vec![0.5; n]);
        let before = b.x.clone();
        noise::apply(&mut b, seed, 3, 7, p);
        let packed = b.codes.as_ref().unwrap();
        let mut decoded = vec![0.0; n * f];
        codes::codes_fwd(&mut decoded, packed);
        prop_assert_eq!(&decoded, &b.x);
        // and x is what each feature's drawn fate makes of it
        let want: Vec<f32> = before
            .iter()
            .enumerate()
            .map(|(e, &v)| match noise::draw(seed, 3, 7, e % f, p) {
                Noise::Keep => v,
                Noise::Drop => 0.0,
                Noise::Reverse => -v,
            })
            .collect();
        prop_assert_eq!(&b.x, &want);
    }

    /// The era statistics read the codes behind x where the era has them, exactly (integer
    /// sums): the mean has the bits of an f64 two-pass oracle over x (exact there too), the
    /// standard deviation is within half an f32 ulp of the oracle's (the correctly rounded
    /// value), after feature noise (a negated zero in x, code 2) and with masked rows too. From x
    /// alone they are the oracle's bits.
    #[test]
    fn era_statistics_from_the_codes_equal_those_from_x(
        n in 1usize..60, f in 1usize..24, seed: u64, p in 0.0f32..1.0, masked in 0usize..4
    ) {
        let cs = random_codes(n * f, seed);
        let mut b = EraBatch::from_codes("e".into(), n, f, 1, &cs, vec![0.5; n]);
        noise::apply(&mut b, seed, 3, 7, p);
        for i in (0..n).step_by(masked + 2).skip(1) {
            b.mask[i] = 0.0;
        }
        b.col_sums = None;
        let x_only = EraBatch {
            name: b.name.clone(),
            x: b.x.clone(),
            codes: None,
            y: b.y.clone(),
            mask: b.mask.clone(),
            col_sums: None,
            stats: None,
            ..b
        };
        let got = b.context_stats();
        let from_x = x_only.context_stats();
        // the oracle: two passes over the real rows of x in f64, row order
        let real: Vec<usize> = (0..n).filter(|&i| b.mask[i] != 0.0).collect();
        let rows = real.len() as f64;
        for j in 0..f {
            // sums from +0 (`Sum` starts at −0, which a column of one negated zero keeps)
            let sum = |t: &dyn Fn(f64) -> f64| {
                real.iter().fold(0.0f64, |s, &i| s + t(b.x[i * f + j] as f64))
            };
            let mean = sum(&|v| v) / rows;
            let var = sum(&|v| (v - mean) * (v - mean));
            prop_assert_eq!(got[j].to_bits(), (mean as f32).to_bits(), "mean {}", j);
            prop_assert_eq!(from_x[j].to_bits(), (mean as f32).to_bits(), "x mean {}", j);
            let std = (var / rows).sqrt();
            let half_ulp = 0.5 * f32::EPSILON as f64 * std * (1.0 + 1e-9);
            prop_assert!(
                (got[f + j] as f64 - std).abs() <= half_ulp,
                "std {}: {} vs {}", j, got[f + j], std
            );
            prop_assert_eq!(from_x[f + j].to_bits(), (std as f32).to_bits(), "x std {}", j);
        }
    }

    /// Row sampling keeps the same rows, in order, of x, the codes and the targets: x is still
    /// the decode of the codes, whatever the era's length (not a multiple of 4 included).
    #[test]
    fn row_sampling_keeps_codes_and_x_together(
        n in 1usize..120, f in 1usize..30, seed: u64, p in 0.05f32..1.0
    ) {
        let cs = random_codes(n * f, seed);
        let y: Vec<f32> = (0..n).map(|r| r as f32).collect();
        let mut b = EraBatch::from_codes("e".into(), n, f, 1, &cs, y);
        let before = b.x.clone();
        rows::apply(&mut b, seed, 3, 7, p);
        let keep = rows::kept(seed, 3, 7, n, p);
        prop_assert_eq!(b.n, keep.len());
        prop_assert!(keep.len() == n || keep.len() >= rows::MIN_ROWS);
        let want_y: Vec<f32> = keep.iter().map(|&r| r as f32).collect();
        prop_assert_eq!(&b.y, &want_y);
        let want_x: Vec<f32> =
            keep.iter().flat_map(|&r| before[r * f..(r + 1) * f].to_vec()).collect();
        prop_assert_eq!(&b.x, &want_x);
        prop_assert_eq!(b.mask.len(), keep.len());
        let packed = b.codes.as_ref().unwrap();
        prop_assert_eq!(packed.len(), (keep.len() * f).div_ceil(4));
        let mut decoded = vec![0.0; keep.len() * f];
        codes::codes_fwd(&mut decoded, packed);
        prop_assert_eq!(&decoded, &b.x);
    }
}

proptest! {
    /// `codes::col_moments` (split over threads by columns, u32 sums per block of rows) against
    /// plain u64 loops over the unmasked rows, for any byte (not only 0..4) and shapes on both
    /// sides of the threading cut (n · f ≥ 65,536).
    #[test]
    fn column_moments_are_the_plain_sums_over_unmasked_rows(
        n in 0usize..400, f in 1usize..300, seed: u64, every in 1usize..6
    ) {
        let mut rng = eraengine::rng::Rng::new(seed, 3);
        let cs: Vec<u8> = (0..n * f).map(|_| (rng.next_u32() >> 24) as u8).collect();
        let mask: Vec<f32> = (0..n).map(|i| if i % every == 1 { 0.0 } else { 1.0 }).collect();
        let (s1, s2) = codes::col_moments(&cs, &mask, n, f);
        prop_assert_eq!((s1.len(), s2.len()), (f, f));
        for j in 0..f {
            let real = (0..n).filter(|&i| mask[i] != 0.0);
            let (mut a, mut b) = (0u64, 0u64);
            for i in real {
                let c = u64::from(cs[i * f + j]);
                a += c;
                b += c * c;
            }
            prop_assert_eq!((s1[j], s2[j]), (a, b), "column {}", j);
        }
    }
}

/// Σ c² of 70,000 rows of 255 passes 2³² (65,025 · 70,000): the u32 block sums must be carried
/// into the u64 totals before they wrap.
#[test]
fn column_moments_do_not_wrap_on_long_eras() {
    let n = 70_000;
    let cs = vec![255u8; n * 2];
    let (s1, s2) = codes::col_moments(&cs, &vec![1.0; n], n, 2);
    assert_eq!(s1, vec![255 * n as u64; 2]);
    assert_eq!(s2, vec![65_025 * n as u64; 2]);
}
