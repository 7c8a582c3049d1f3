//! `ERAENGINE_CUDA_PROFILE=1`: the CUDA launcher records events around every launch and adds their
//! device times to the per-kernel counters at the next sync (what `bench --device cuda --json`
//! reports as `measured_us`). A binary of its own: the switch is read from the environment when the
//! launcher opens, so it is set here before any test opens one. Without a GPU the test prints
//! "skipped: no GPU" and passes, unless `ERAENGINE_REQUIRE_GPU=1` (tests/gpu_common).

mod gpu_common;

use eraengine::device::Backend;
use eraengine::gpu::params::Kernel;
use eraengine::gpu::stats;

#[test]
fn cuda_profile_measures_each_launch_at_the_next_sync() {
    std::env::set_var("ERAENGINE_CUDA_PROFILE", "1");
    let Some(dev) = gpu_common::cuda("cuda_profile_measures_each_launch_at_the_next_sync") else {
        return;
    };
    let (n, d) = (4096usize, 256usize);
    let x = dev.upload(&vec![0.25; n * d]).unwrap();
    let gamma = dev.upload(&vec![1.0; d]).unwrap();
    let beta = dev.zeros(d).unwrap();
    let (mut y, mut mean, mut rstd) = (
        dev.zeros(n * d).unwrap(),
        dev.zeros(n).unwrap(),
        dev.zeros(n).unwrap(),
    );
    let before = stats::snapshot();
    for _ in 0..3 {
        dev.layer_norm_fwd(&mut y, &mut mean, &mut rstd, &x, &gamma, &beta, n, d)
            .unwrap();
    }
    let queued = stats::snapshot().since(&before);
    let ln = Kernel::LayerNormFwdF32 as usize;
    assert_eq!(queued.kernels[ln].launches, 3);
    // (ERAENGINE_CUDA_SYNC=1 waits after every launch: the first two are read by then)
    if std::env::var("ERAENGINE_CUDA_SYNC").as_deref() != Ok("1") {
        assert_eq!(queued.kernels[ln].measured_s, 0.0, "read only at a sync");
    }
    dev.download(&y).unwrap();
    let done = stats::snapshot().since(&before);
    let t = done.kernels[ln].measured_s;
    // 3 launches over 4 MB each: more than nothing, less than a second
    assert!(t > 0.0 && t < 1.0, "measured {t} s");
    let others: f64 = done
        .kernels
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != ln)
        .map(|(_, k)| k.measured_s)
        .sum();
    assert_eq!(others, 0.0, "only the launched kernel has a time");
}
