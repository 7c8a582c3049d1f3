//! The instrumented GPU backend on the emulator: a training step in steady state makes no device
//! allocation, waits on the host exactly as often as documented in docs/gpu.md, copies exactly the
//! era's inputs up and the loss parts, gate values and gradient norms down; the buffer cache hands
//! back zeroed memory; the counters are per thread.

use eraengine::device::Backend;
use eraengine::gpu::stats::{snapshot, Counters};
use eraengine::gpu::{EmuLauncher, GpuBackend, Order};
use eraengine::model::{Attention, Config};
use eraengine::params::Adam;
use eraengine::train::era::EraBatch;
use eraengine::train::{train_step, TrainOptions, Trained};

/// Host syncs of one training step: the loss read-back, which brings back in one wait the loss
/// parts, the gate values, the correlation loss's (corr, K) and the previous step's per-tensor
/// Σg² (the clip and the NaN skip were decided on the device).
const SYNCS_PER_STEP: u64 = 1;

fn batch(n: usize, f: usize, t: usize) -> EraBatch {
    // codes 0..4 (x = (c − 2) / 2): the era goes up as its packed codes, as in training
    let codes: Vec<u8> = (0..n * f).map(|i| ((i * 7 + 3) % 5) as u8).collect();
    let y = (0..n * t)
        .map(|i| ((i * 3 + 1) % 5) as f32 * 0.25)
        .collect();
    EraBatch::from_codes("era".into(), n, f, t, &codes, y)
}

/// Bytes up per step: the codes packed four to a word (⌈n·f / 4⌉ words), then y and mask in f32.
fn era_bytes(n: usize, f: usize, t: usize) -> usize {
    (n * f).div_ceil(4) * 4 + (n * t + n) * 4
}

fn config(attention: Attention, f: usize, t: usize) -> Config {
    let mut c = Config::new(f, t);
    c.d_model = 8;
    c.heads = 2;
    c.layers = 1;
    c.d_ff = 16;
    c.gate_rank = 2;
    c.attention = attention;
    c.dropout = 0.1;
    if attention == Attention::Softmax {
        c.pos_enc = true;
        c.top_k = Some(3);
    }
    c
}

/// Runs a step per batch and returns the counters of each step.
fn steps(dev: &GpuBackend<EmuLauncher>, cfg: &Config, eras: &[EraBatch]) -> (Vec<Counters>, usize) {
    let mut m = Trained::fresh(dev, cfg, 3).unwrap();
    let n_tensors = m.params.len();
    let opts = TrainOptions {
        clip: 1.0,
        quiet: true,
        ..TrainOptions::default()
    };
    let mut adam = Adam::new(dev, &m.params, 1e-3, 0.01).unwrap();
    let mut out = Vec::new();
    for (s, b) in eras.iter().enumerate() {
        let before = snapshot();
        train_step(dev, &mut m, &mut adam, b, &opts, s as u64).unwrap();
        out.push(snapshot().since(&before));
    }
    (out, n_tensors)
}

#[test]
fn steady_state_step_allocates_nothing_and_syncs_as_documented() {
    let (f, t) = (5, 2);
    // the correlation loss (the recommended preset's) adds its (corr, K) to the same read-back
    for (attention, corr_weight) in [
        (Attention::Linear, 0.0),
        (Attention::Softmax, 0.0),
        (Attention::Linear, 1.0),
    ] {
        let mut cfg = config(attention, f, t);
        cfg.corr_weight = corr_weight;
        let dev = GpuBackend::<EmuLauncher>::new(Order::Forward);
        let n = 9;
        let eras: Vec<EraBatch> = (0..4).map(|_| batch(n, f, t)).collect();
        let (counts, tensors) = steps(&dev, &cfg, &eras);
        let what = format!("{attention:?} corr {corr_weight}");
        assert!(counts[0].allocs > 0, "the first step fills the cache");
        // the first step has no earlier norms to read back
        let corr_bytes = if corr_weight > 0.0 { 2 * 4 } else { 0 };
        assert_eq!(counts[0].d2h_bytes, ((4 + f) * 4 + corr_bytes) as u64);
        for (s, c) in counts.iter().enumerate() {
            assert_eq!(c.syncs, SYNCS_PER_STEP, "{what} step {s}: syncs");
        }
        for (s, c) in counts.iter().enumerate().skip(1) {
            assert_eq!(c.allocs, 0, "{what} step {s}: allocations {c:?}");
            assert_eq!(c.frees, 0, "{what} step {s}: frees");
            assert!(c.cache_hits > 0);
            // up: the codes, y, mask; down: 4 loss parts + F gate values (+ corr, K), and one
            // f64 per parameter tensor (the previous step's Σg²)
            assert_eq!(c.h2d_bytes, era_bytes(n, f, t) as u64);
            assert_eq!(
                c.d2h_bytes,
                ((4 + f) * 4 + corr_bytes + tensors * 8) as u64,
                "{what} step {s}"
            );
            assert_eq!(c.launches, counts[1].launches, "same launches every step");
            let per_kernel: u64 = c.kernels.iter().map(|k| k.launches).sum();
            assert_eq!(per_kernel, c.launches);
            assert!(c.est_h100_s() > 0.0);
        }
    }
}

#[test]
fn eras_of_different_sizes_reuse_the_cache_once_each_size_was_seen() {
    let (f, t) = (5, 1);
    let cfg = config(Attention::Linear, f, t);
    let dev = GpuBackend::<EmuLauncher>::new(Order::Reverse);
    let eras: Vec<EraBatch> = [12, 9, 12, 9, 11].iter().map(|&n| batch(n, f, t)).collect();
    let (counts, _) = steps(&dev, &cfg, &eras);
    assert_eq!(counts[2].allocs, 0, "{:?}", counts[2]);
    assert_eq!(counts[3].allocs, 0);
    // 11 rows fall in the size classes of 12 rows (classes round up by at most 25%)
    assert_eq!(counts[4].allocs, 0, "{:?}", counts[4]);
}

#[test]
fn cached_buffers_come_back_zeroed_and_counters_are_per_thread() {
    let dev = GpuBackend::<EmuLauncher>::new(Order::Forward);
    let a = dev.upload(&[3.0f32; 300]).unwrap();
    drop(a);
    let before = snapshot();
    let b = dev.zeros(290).unwrap();
    let c = snapshot().since(&before);
    assert_eq!((c.allocs, c.cache_hits), (0, 1), "same size class: reused");
    assert!(dev.download(&b).unwrap().iter().all(|&v| v == 0.0));
    let other = std::thread::spawn(snapshot).join().unwrap();
    assert_eq!(other.allocs, 0, "another thread sees its own counters");
}

#[test]
fn a_launch_over_the_hardware_limits_is_an_error_not_a_launch() {
    use eraengine::gpu::{LaunchCfg, Launcher};
    let dev = GpuBackend::<EmuLauncher>::new(Order::Forward);
    let buf = dev.zeros(4).unwrap();
    let params = [buf.ptr(), 0, 0, 4u64];
    let cfg = LaunchCfg {
        grid: [1, 70000, 1],
        block: [32, 1, 1],
        shmem: 0,
    };
    // SAFETY: rejected before anything runs.
    let r = unsafe {
        dev.launcher()
            .launch("gelu_fwd_f32", cfg, bytemuck::cast_slice(&params))
    };
    let e = r.expect_err("grid y over 65535");
    assert!(e.to_string().contains("grid"), "{e}");
}

/// A dry run at a real Numerai shape (6,000 rows, 2,376 features, d 256, 8 heads, the correlation
/// loss on): every launch of a training step passes the hardware-limit checks, and the budgets
/// hold — one host sync per step, no allocation after the first step — without running a kernel.
#[test]
fn a_numerai_sized_step_passes_every_launch_check_in_a_dry_run() {
    let (n, f, t) = (6000, 2376, 1);
    let eras: Vec<EraBatch> = (0..3).map(|_| batch(n, f, t)).collect();
    for attention in [Attention::Linear, Attention::Softmax, Attention::Induced] {
        let mut cfg = Config::new(f, t);
        cfg.d_model = 256;
        cfg.d_ff = 512;
        cfg.heads = 8;
        cfg.corr_weight = 1.0;
        cfg.attention = attention;
        let dev = GpuBackend::<EmuLauncher>::dry_run();
        let (counts, tensors) = steps(&dev, &cfg, &eras);
        for (s, c) in counts.iter().enumerate() {
            assert_eq!(c.syncs, SYNCS_PER_STEP, "{attention:?} step {s}: syncs");
        }
        for (s, c) in counts.iter().enumerate().skip(1) {
            assert_eq!(c.allocs, 0, "{attention:?} step {s}: allocations");
            assert_eq!(c.launches, counts[1].launches);
            // induced attention also uploads its all-ones key mask over the M points (128 bytes)
            let extra = if attention == Attention::Induced {
                cfg.inducing * 4
            } else {
                0
            };
            assert_eq!(
                c.h2d_bytes,
                (era_bytes(n, f, t) + extra) as u64,
                "{attention:?} step {s}: bytes up"
            );
            assert_eq!(c.d2h_bytes, ((4 + f) * 4 + 2 * 4 + tensors * 8) as u64);
        }
    }
}
