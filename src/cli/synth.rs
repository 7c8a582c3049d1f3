//! `eraengine synth --out DIR [--eras N --rows N --features N --seed N] [--parquet]`

use crate::data::synth::{write_dataset, SynthConfig};
use crate::Result;

pub fn run(args: &super::SynthArgs) -> Result<()> {
    let d = SynthConfig::default();
    let eras = args.eras.unwrap_or(d.eras);
    let cfg = SynthConfig {
        eras,
        // validation: about a quarter of the training eras, at least 3 (the newest 2 unlabelled)
        valid_eras: if args.eras.is_some() {
            (eras / 4).max(3)
        } else {
            d.valid_eras
        },
        rows: args.rows.unwrap_or(d.rows),
        features: args.features.unwrap_or(d.features),
        seed: args.seed.unwrap_or(d.seed),
        ..d
    };
    let files = write_dataset(&args.out, &cfg, args.parquet)?;
    if !args.quiet {
        eprintln!(
            "wrote {}, {}, {}, {}{}",
            files.train.display(),
            files.validation.display(),
            files.live.display(),
            files.features_json.display(),
            files
                .parquet
                .iter()
                .map(|p| format!(", {}", p.display()))
                .collect::<String>()
        );
        eprintln!(
            "{} train eras, {} validation eras (newest {} without targets), live era X; ~{} rows/era, {} features, seed {}",
            cfg.eras, cfg.valid_eras, cfg.nan_valid_eras, cfg.rows, cfg.features, cfg.seed
        );
    }
    Ok(())
}
