//! Era store benchmark: write throughput, open time, full scan and verify speed, against a memcpy
//! of the same bytes measured in the same run.
//!
//!     cargo bench --bench store                                   # 64 MiB store
//!     ERAENGINE_BENCH_STORE_MB=2048 cargo bench --bench store     # the 2 GiB run in the README
//!
//! Env: ERAENGINE_BENCH_STORE_MB (size of the feature section, default 64),
//! ERAENGINE_BENCH_FEATURES (default 2748, Numerai v5 "all"), ERAENGINE_BENCH_ROWS_PER_ERA
//! (default 5000), ERAENGINE_BENCH_DIR (default the system temp dir).

use eraengine::data::batch::preprocess_features;
use eraengine::data::store::{Store, StoreWriter, MISSING};
use std::hint::black_box;
use std::time::Instant;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn gbs(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

/// Sum of all feature codes and of all non-NaN targets (a full read of both sections).
fn scan(s: &Store) -> (i64, f64) {
    let (mut fs, mut ts) = (0i64, 0f64);
    for e in s.eras() {
        for chunk in e.features.chunks(1 << 16) {
            fs += chunk.iter().map(|&v| v as i32).sum::<i32>() as i64;
        }
        ts += e
            .targets
            .iter()
            .filter(|v| !v.is_nan())
            .map(|&v| v as f64)
            .sum::<f64>();
    }
    (fs, ts)
}

fn main() {
    let mb = env("ERAENGINE_BENCH_STORE_MB", 64);
    let f = env("ERAENGINE_BENCH_FEATURES", 2748);
    let era_rows = env("ERAENGINE_BENCH_ROWS_PER_ERA", 5000);
    let t = 4;
    let dir = std::env::var_os("ERAENGINE_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("eraengine-bench-{}.store", std::process::id()));
    let rows = (mb << 20) / f.max(1);
    let n_eras = rows.div_ceil(era_rows).max(1);

    // one era of data, reused with fresh ids (generating data is not what we time)
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let features: Vec<i8> = (0..era_rows * f)
        .map(|_| {
            let r = next() % 1000;
            if r < 5 {
                MISSING
            } else {
                (r % 5) as i8
            }
        })
        .collect();
    let targets: Vec<f32> = (0..era_rows * t)
        .map(|_| (next() % 5) as f32 / 4.0)
        .collect();
    let fnames: Vec<String> = (0..f).map(|i| format!("feature_{i:04}")).collect();
    let tnames: Vec<String> = (0..t).map(|i| format!("target_{i}")).collect();

    let t0 = Instant::now();
    let mut w = match StoreWriter::create(&path, &fnames, &tnames) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    };
    let mut written_rows = 0;
    for e in 0..n_eras {
        let n = era_rows.min(rows - written_rows).max(1);
        let ids: Vec<String> = (0..n).map(|r| format!("n{e:05}{r:06}")).collect();
        if let Err(err) = w.push_era(
            &format!("{:04}", e + 1),
            &ids,
            &features[..n * f],
            &targets[..n * t],
        ) {
            eprintln!("bench: {err}");
            std::process::exit(1);
        }
        written_rows += n;
    }
    let push_s = t0.elapsed().as_secs_f64();
    if let Err(e) = w.finish() {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
    let write_s = t0.elapsed().as_secs_f64();
    let file_bytes = std::fs::metadata(&path)
        .map(|m| m.len() as usize)
        .unwrap_or(0);

    // open: header, names, era table, ids; never the data pages
    let reps = 20;
    let t0 = Instant::now();
    for _ in 0..reps {
        black_box(Store::open(&path).map(|s| s.n_rows()).unwrap_or(0));
    }
    let open_ms = t0.elapsed().as_secs_f64() * 1e3 / reps as f64;
    let s = match Store::open(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    };
    let data_bytes = s.features().len() + std::mem::size_of_val(s.targets());

    // warm the page cache once, then time
    black_box(scan(&s));
    let best = |mut f: Box<dyn FnMut() + '_>| {
        let mut b = f64::INFINITY;
        for _ in 0..3 {
            let t0 = Instant::now();
            f();
            b = b.min(t0.elapsed().as_secs_f64());
        }
        b
    };
    let scan_s = best(Box::new(|| {
        black_box(scan(&s));
    }));
    let mut dst = vec![0u8; data_bytes];
    let src_f: &[u8] = bytemuck::cast_slice(s.features());
    let src_t: &[u8] = bytemuck::cast_slice(s.targets());
    let memcpy_s = best(Box::new(|| {
        dst[..src_f.len()].copy_from_slice(src_f);
        dst[src_f.len()..].copy_from_slice(src_t);
        black_box(&dst);
    }));
    let mut xbuf = Vec::new();
    let prep_s = best(Box::new(|| {
        for e in s.eras() {
            preprocess_features(&e, &mut xbuf);
            black_box(&xbuf);
        }
    }));
    // what training does per era: impute, x in f32 and the packed codes a GPU receives
    let map = eraengine::train::era::ColumnMap::identity(&s);
    let load_s = best(Box::new(|| {
        for i in 0..s.n_eras() {
            black_box(eraengine::train::era::EraBatch::load(&s, i, &map).map(|b| b.n)).ok();
        }
    }));
    // what a device that takes the codes needs: x is never made
    let codes_s = best(Box::new(|| {
        for i in 0..s.n_eras() {
            black_box(eraengine::train::era::EraBatch::load_codes(&s, i, &map).map(|b| b.n)).ok();
        }
    }));
    let verify_s = best(Box::new(|| {
        if let Err(e) = s.verify() {
            eprintln!("bench: {e}");
        }
    }));

    println!(
        "era store benchmark: {} rows x {f} features x {t} targets, {n_eras} eras, file {:.1} MiB",
        s.n_rows(),
        file_bytes as f64 / (1 << 20) as f64
    );
    println!("{:<38} {:>12} {:>12}", "operation", "time", "throughput");
    println!(
        "{:<38} {:>10.3} s {:>9.2} GB/s",
        "write (push_era + finish, fsync)",
        write_s,
        gbs(file_bytes, write_s)
    );
    println!(
        "{:<38} {:>10.3} s {:>9.2} GB/s",
        "  of which push_era (no fsync yet)",
        push_s,
        gbs(file_bytes, push_s)
    );
    println!(
        "{:<38} {:>9.3} ms {:>12}",
        "open (mmap + validate, no data read)", open_ms, "-"
    );
    println!(
        "{:<38} {:>10.3} s {:>9.2} GB/s",
        "full scan (features + targets, warm)",
        scan_s,
        gbs(data_bytes, scan_s)
    );
    println!(
        "{:<38} {:>10.3} s {:>9.2} GB/s",
        "memcpy of the same bytes",
        memcpy_s,
        gbs(data_bytes, memcpy_s)
    );
    println!(
        "{:<38} {:>10.3} s {:>9.2} GB/s",
        "preprocess every era (impute + scale)",
        prep_s,
        gbs(s.features().len(), prep_s)
    );
    for (what, secs) in [
        ("load every era (EraBatch::load)", load_s),
        ("  codes only (EraBatch::load_codes)", codes_s),
    ] {
        println!(
            "{what:<38} {secs:>10.3} s {:>9.2} GB/s  ({:.2} ms per era of {era_rows} rows)",
            gbs(s.features().len(), secs),
            secs * 1e3 / s.n_eras().max(1) as f64
        );
    }
    println!(
        "{:<38} {:>10.3} s {:>9.2} GB/s",
        "verify (checksum + ranges)",
        verify_s,
        gbs(file_bytes, verify_s)
    );
    let ck_s = best(Box::new(|| {
        black_box(eraengine::data::checksum::hash(src_f));
    }));
    println!(
        "{:<38} {:>10.3} s {:>9.2} GB/s",
        "checksum of the feature bytes",
        ck_s,
        gbs(src_f.len(), ck_s)
    );
    println!("scan / memcpy = {:.2}", memcpy_s / scan_s);
    drop(s);
    let _ = std::fs::remove_file(&path);
}
