//! `eraengine import INPUT... --out STORE [--features-json FILE --feature-set NAME]
//! [--features a,b] [--targets a,b,...] [--data-type T] [--verify]`

use crate::data::import::{self, input_kind, FeatureChoice, ImportOptions, InputKind};
use crate::data::Store;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

fn verify(path: &Path, quiet: bool) -> Result<()> {
    let s = Store::open(path)?;
    s.verify()?;
    if !quiet {
        eprintln!(
            "{}: ok ({} rows, {} eras, {} features, {} targets; data checksum {:016x})",
            path.display(),
            s.n_rows(),
            s.n_eras(),
            s.n_features(),
            s.n_targets(),
            s.data_checksum()
        );
    }
    Ok(())
}

pub fn run(args: &super::ImportArgs) -> Result<()> {
    // --verify with one store as input: check it, write nothing
    if args.verify && args.inputs.len() == 1 && input_kind(&args.inputs[0])? == InputKind::Store {
        if args.out.is_some() {
            return Err(Error::usage(
                "--verify of an existing store writes nothing: drop --out",
            ));
        }
        return verify(&args.inputs[0], args.quiet);
    }
    let out: &PathBuf = args.out.as_ref().ok_or_else(|| {
        Error::usage("--out STORE is required (or give one store with --verify to check it)")
    })?;
    let features = match (&args.features, &args.feature_set, &args.features_json) {
        (Some(_), Some(_), _) => {
            return Err(Error::usage(
                "give either --features or --feature-set, not both",
            ))
        }
        (Some(list), None, _) => {
            let list: Vec<String> = list
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if list.is_empty() {
                return Err(Error::usage("--features needs at least one name"));
            }
            FeatureChoice::List(list)
        }
        (None, Some(set), json) => {
            let json = match json {
                Some(j) => j.clone(),
                None => {
                    // Numerai ships features.json beside the parquet files
                    let dir = args.inputs[0].parent().unwrap_or(Path::new("."));
                    let guess = dir.join("features.json");
                    if !guess.exists() {
                        return Err(Error::usage(format!(
                            "--feature-set needs --features-json FILE (no {} found)",
                            guess.display()
                        )));
                    }
                    guess
                }
            };
            FeatureChoice::List(import::feature_set(&json, set)?)
        }
        (None, None, Some(_)) => {
            return Err(Error::usage(
                "--features-json needs --feature-set NAME (small, medium, all, ...)",
            ))
        }
        (None, None, None) => FeatureChoice::AllPrefixed,
    };
    let targets = match &args.targets {
        Some(t) => {
            let t: Vec<String> = t
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            let mut seen = std::collections::HashSet::new();
            for name in &t {
                if !seen.insert(name) {
                    return Err(Error::usage(format!("--targets lists {name} twice")));
                }
            }
            Some(t)
        }
        None => None,
    };
    let opts = ImportOptions {
        features,
        targets,
        data_type: args.data_type.clone(),
    };
    let inputs: Vec<(&str, &Path)> = args.inputs.iter().map(|p| ("input", p.as_path())).collect();
    crate::io::check_outputs(&[("--out", out)], &inputs)?;
    let mut meter = super::progress::Meter::new(args.quiet);
    let s = import::import_with_progress(&args.inputs, out, &opts, &mut |p| meter.show(p))?;
    if args.verify {
        verify(out, true)?;
    }
    if !args.quiet {
        eprintln!(
            "{}: {} rows ({} read), {} eras, {} features, {} targets{}",
            out.display(),
            s.rows,
            s.rows_read,
            s.eras,
            s.features,
            s.targets,
            if args.verify { "; verified" } else { "" }
        );
    }
    Ok(())
}
