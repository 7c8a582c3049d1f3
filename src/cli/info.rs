//! `eraengine info [STORE | CKPT] [--json]`: an era store's contents, a checkpoint's config, or
//! (with no path) the build and the devices.

use crate::data::store::{is_store, Store};
use crate::{Error, Result};
use std::path::Path;

pub fn run(args: &super::InfoArgs) -> Result<()> {
    match &args.path {
        None => build_info(args.json),
        Some(p) if is_store(p) => store_info(p, args.json),
        Some(p) => {
            if !p.exists() {
                return Err(Error::io(
                    p,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                ));
            }
            use crate::data::import::{input_kind, InputKind};
            let looks_like_data = p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"))
                || matches!(input_kind(p), Ok(InputKind::Parquet));
            if looks_like_data {
                return Err(Error::usage(format!(
                    "{}: a parquet/CSV file, not an era store or a checkpoint (import it with `eraengine import`)",
                    p.display()
                )));
            }
            let ck = crate::checkpoint::Checkpoint::load(p)?;
            if args.json {
                println!("{}", ck.info_json());
            } else {
                print!("{}", ck.info_text());
            }
            Ok(())
        }
    }
}

fn features_built() -> Vec<&'static str> {
    let mut f = Vec::new();
    if cfg!(feature = "parquet") {
        f.push("parquet");
    }
    f
}

fn build_info(json: bool) -> Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    let devices = ["cpu"];
    let cuda = crate::gpu::cuda_info();
    let archs: Vec<String> = crate::gpu::generated::IMAGES
        .iter()
        .map(|(_, arch, _)| arch.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let training = if crate::gpu::cuda_available() {
        "available (--device cuda or auto)".to_string()
    } else {
        "unavailable: --device auto trains on the CPU".to_string()
    };
    if json {
        let v = serde_json::json!({
            "version": version,
            "features": features_built(),
            "devices": devices,
            "cuda": cuda,
            "cuda_training": training,
            "nvrtc_build_version": crate::gpu::generated::NVRTC_BUILD_VERSION,
            "kernel_architectures": archs,
            "kernel_files": crate::gpu::generated::SOURCES.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            "store_format_version": crate::data::store::FORMAT_VERSION,
        });
        println!("{v:#}");
    } else {
        println!("eraengine {version}");
        println!("build features: {}", features_built().join(", "));
        println!("devices: {}", devices.join(", "));
        println!("{cuda}");
        println!("cuda training: {training}");
        println!(
            "kernels: {} files, embedded images: {}",
            crate::gpu::generated::SOURCES.len(),
            if archs.is_empty() {
                "none (built without NVRTC; compiled from source at start-up)".to_string()
            } else {
                archs.join(", ")
            }
        );
        println!(
            "era store format version: {}",
            crate::data::store::FORMAT_VERSION
        );
    }
    Ok(())
}

fn store_info(path: &Path, json: bool) -> Result<()> {
    let s = Store::open(path)?;
    if json {
        println!("{:#}", store_json(&s));
        return Ok(());
    }
    println!("{}", path.display());
    println!("  format version  {}", s.format_version());
    println!("  rows            {}", s.n_rows());
    println!("  eras            {}", s.n_eras());
    if s.n_eras() > 0 {
        let (a, b) = (s.era(0), s.era(s.n_eras() - 1));
        println!("    first         {} ({} rows)", a.name, a.n_rows);
        println!("    last          {} ({} rows)", b.name, b.n_rows);
        let (mn, mx) = s.eras().fold((usize::MAX, 0), |(mn, mx), e| {
            (mn.min(e.n_rows), mx.max(e.n_rows))
        });
        println!("    rows per era  {mn}..{mx}");
    }
    let names = |v: &[String]| {
        if v.len() <= 8 {
            v.join(", ")
        } else {
            format!("{}, ... {}", v[..4].join(", "), v[v.len() - 2..].join(", "))
        }
    };
    println!(
        "  features        {} ({})",
        s.n_features(),
        names(s.feature_names())
    );
    println!(
        "  targets         {} ({})",
        s.n_targets(),
        names(s.target_names())
    );
    let cells = s.n_rows() as f64 * s.n_features() as f64;
    let mf = s.missing_features();
    println!(
        "  missing features {mf} ({:.3}% of values)",
        if cells > 0.0 {
            100.0 * mf as f64 / cells
        } else {
            0.0
        }
    );
    for (t, m) in s.target_names().iter().zip(s.missing_targets()) {
        println!("  missing {t:<16} {m}");
    }
    let all: Vec<String> = s
        .eras()
        .filter(|e| e.all_targets_missing())
        .map(|e| e.name.to_string())
        .collect();
    if !all.is_empty() {
        println!("  eras with all targets missing: {}", all.join(", "));
    }
    println!(
        "  data checksum   {:016x} (check with `eraengine import {} --verify`)",
        s.data_checksum(),
        path.display()
    );
    Ok(())
}

/// SPEC §2 `info STORE --json`, plus `eras_all_targets_missing` and `data_checksum`.
pub fn store_json(s: &Store) -> serde_json::Value {
    use serde_json::json;
    let era_table: Vec<_> = s
        .eras()
        .map(|e| json!({"era": e.name, "first_row": e.first_row, "rows": e.n_rows}))
        .collect();
    let mut missing_targets = serde_json::Map::new();
    for (name, m) in s.target_names().iter().zip(s.missing_targets()) {
        missing_targets.insert(name.clone(), json!(m));
    }
    let all_missing: Vec<_> = s
        .eras()
        .filter(|e| e.all_targets_missing())
        .map(|e| e.name.to_string())
        .collect();
    json!({
        "format_version": s.format_version(),
        "rows": s.n_rows(),
        "eras": s.n_eras(),
        "features": s.n_features(),
        "targets": s.n_targets(),
        "feature_names": s.feature_names(),
        "target_names": s.target_names(),
        "era_table": era_table,
        "missing_features": s.missing_features(),
        "missing_targets": missing_targets,
        "eras_all_targets_missing": all_missing,
        "data_checksum": format!("{:016x}", s.data_checksum()),
    })
}
