//! `eraengine synth --out DIR [--kind numerai|easy] [--eras N --valid-eras N --test-eras N --rows N
//! --features N --seed N --noise S] [--parquet]`

use crate::data::synth::{write_dataset, Kind, SynthConfig};
use crate::Result;

pub fn run(args: &super::SynthArgs) -> Result<()> {
    let kind = Kind::parse(&args.kind)?;
    let d = SynthConfig::of_kind(kind);
    let eras = args.eras.unwrap_or(d.eras);
    // with --eras: validation (and, for numerai, test) about a sixth of the training eras, at
    // least 3; easy: a quarter, the newest 2 unlabelled
    let scaled = |default: usize, share: usize| {
        if args.eras.is_some() {
            (eras / share).max(3)
        } else {
            default
        }
    };
    let (valid_eras, test_eras) = match kind {
        Kind::Easy => (scaled(d.valid_eras, 4), 0),
        Kind::Numerai => (scaled(d.valid_eras, 6), scaled(d.test_eras, 6)),
    };
    let cfg = SynthConfig {
        eras,
        valid_eras: args.valid_eras.unwrap_or(valid_eras),
        test_eras: args.test_eras.unwrap_or(test_eras),
        rows: args.rows.unwrap_or(d.rows),
        features: args.features.unwrap_or(d.features),
        seed: args.seed.unwrap_or(d.seed),
        noise: args.noise.unwrap_or(d.noise),
        ..d
    };
    let files = write_dataset(&args.out, &cfg, args.parquet)?;
    if !args.quiet {
        let mut written = vec![files.train.clone(), files.validation.clone()];
        written.extend(files.test.iter().cloned());
        written.push(files.live.clone());
        written.push(files.features_json.clone());
        written.extend(files.bayes_csv.iter().cloned());
        written.extend(files.bayes_json.iter().cloned());
        written.extend(files.parquet.iter().cloned());
        let list: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        eprintln!("wrote {}", list.join(", "));
        eprintln!(
            "{} generator: {} train eras, {} validation eras ({} without targets), {} test eras, live era X; ~{} rows/era, {} features, seed {}",
            kind.name(), cfg.eras, cfg.valid_eras, cfg.nan_valid_eras, cfg.test_eras, cfg.rows, cfg.features, cfg.seed
        );
        if let Some(j) = &files.bayes_json {
            let v: serde_json::Value = std::fs::read_to_string(j)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            let show = |key: &str, split: &str| {
                v[key][split]
                    .as_f64()
                    .map_or("-".to_string(), |x| format!("{x:.4}"))
            };
            for split in ["validation", "test"] {
                eprintln!(
                    "{split}: Bayes-limit mean corr {}, row-wise ridge {}",
                    show("bayes_mean_corr", split),
                    show("ridge_mean_corr", split)
                );
            }
        }
    }
    Ok(())
}
