//! Forward + backward + Adam for one era at the SPEC defaults (d 64, 4 heads, 2 layers), n = 5,000,
//! F = 42, 705 and 2,376: rows/s on the CPU. `cargo bench --bench train_step`
//! (ERAENGINE_BENCH_ROWS overrides n).

use eraengine::device::Cpu;
use eraengine::model::Config;

fn main() {
    let n: usize = std::env::var("ERAENGINE_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    println!(
        "{:>8} {:>8} {:>12} {:>12} {:>10}",
        "rows", "features", "step ms", "rows/s", "GFLOP/s"
    );
    for f in [42usize, 705, 2376] {
        let cfg = Config::new(f, 1);
        match eraengine::bench::run(&Cpu, cfg, n, 3) {
            Ok(r) => println!(
                "{:>8} {:>8} {:>12.1} {:>12.0} {:>10.2}",
                n,
                f,
                r.step_ms,
                r.rows_per_s(),
                r.gflops()
            ),
            Err(e) => {
                eprintln!("bench failed: {e}");
                std::process::exit(1);
            }
        }
    }
}
