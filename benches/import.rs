//! Parquet import: throughput (MB/s of parquet, rows/s) and peak resident memory, for two file
//! sizes side by side in one run — peak memory should not grow with the file (import streams one
//! era at a time). Each import runs in a child process so its peak RSS (VmHWM) is its own.
//!
//!     cargo bench --bench import
//!
//! Env: ERAENGINE_BENCH_IMPORT_ERAS (default "10,40"), ERAENGINE_BENCH_IMPORT_ROWS (rows per era,
//! default 2000), ERAENGINE_BENCH_IMPORT_FEATURES (default 300), ERAENGINE_BENCH_DIR.

use eraengine::data::import::{import, ImportOptions};
use eraengine::data::synth::{write_dataset, SynthConfig};
use std::time::Instant;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set of this process in kB (Linux).
fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    // Child: import one file, print "rows seconds peak_kb".
    if let Ok(input) = std::env::var("ERAENGINE_BENCH_IMPORT_CHILD") {
        let out = std::path::PathBuf::from(format!("{input}.store"));
        let t = Instant::now();
        match import(&[input.clone().into()], &out, &ImportOptions::default()) {
            Ok(s) => println!("{} {} {}", s.rows, t.elapsed().as_secs_f64(), vm_hwm_kb()),
            Err(e) => {
                eprintln!("import failed: {e}");
                std::process::exit(1);
            }
        }
        let _ = std::fs::remove_file(out);
        return;
    }
    let rows = env("ERAENGINE_BENCH_IMPORT_ROWS", 2000);
    let features = env("ERAENGINE_BENCH_IMPORT_FEATURES", 300);
    let eras: Vec<usize> = std::env::var("ERAENGINE_BENCH_IMPORT_ERAS")
        .unwrap_or_else(|_| "10,40".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let base = std::env::var("ERAENGINE_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    println!(
        "{:>6} {:>9} {:>9} {:>11} {:>10} {:>11} {:>12}",
        "eras", "rows", "features", "parquet MB", "MB/s", "rows/s", "peak RSS MB"
    );
    for e in eras {
        let dir = base.join(format!("eraengine-bench-import-{e}-{}", std::process::id()));
        let cfg = SynthConfig {
            eras: e,
            valid_eras: 1,
            rows,
            features,
            seed: 1,
            ..SynthConfig::easy()
        };
        let files = match write_dataset(&dir, &cfg, true) {
            Ok(f) => f,
            Err(err) => {
                eprintln!("synth failed: {err}");
                std::process::exit(1);
            }
        };
        let pq = files.parquet[0].clone();
        let mb = std::fs::metadata(&pq).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
        let exe = std::env::current_exe().expect("bench binary path");
        let out = std::process::Command::new(exe)
            .env("ERAENGINE_BENCH_IMPORT_CHILD", &pq)
            .output()
            .expect("child import");
        let line = String::from_utf8_lossy(&out.stdout);
        let v: Vec<f64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if !out.status.success() || v.len() != 3 {
            eprintln!("child failed: {}", String::from_utf8_lossy(&out.stderr));
            std::process::exit(1);
        }
        println!(
            "{:>6} {:>9} {:>9} {:>11.1} {:>10.1} {:>11.0} {:>12.1}",
            e,
            v[0] as u64,
            features,
            mb,
            mb / v[1],
            v[0] / v[1],
            v[2] / 1024.0
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
