//! What the GPU backend did: launches, host syncs, device allocations and frees, host↔device
//! bytes, and per kernel the FLOPs and DRAM bytes of each launch (from its parameter struct and
//! launch shape) with an estimated H100 time from a roofline. Plus the hardware limits every
//! launch is checked against before it reaches a launcher.
//!
//! The counters are per thread (the backend's calls run on the calling thread; the emulator runs a
//! launch's fibers on it too), so tests running in parallel do not see each other's counts. Read
//! them with [`snapshot`] before and after the steps to measure and take [`Counters::since`].

use super::params::*;
use super::LaunchCfg;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::cell::RefCell;

/// H100 SXM5 peaks used by the estimate: FP32 (non-tensor-core) FLOP/s.
pub const H100_FP32_FLOPS: f64 = 67.0e12;
/// H100 SXM5 FP64 (non-tensor-core) FLOP/s (the f64 reductions).
pub const H100_FP64_FLOPS: f64 = 34.0e12;
/// H100 SXM5 HBM3 bandwidth, bytes/s.
pub const H100_DRAM_BPS: f64 = 3.35e12;
/// Floor of one kernel's time on the stream (launch + ramp-up + tail), seconds.
pub const H100_KERNEL_FLOOR_S: f64 = 2.5e-6;
/// H100 SXM5 streaming multiprocessors: a launch of fewer blocks than this leaves SMs idle.
pub const H100_SMS: f64 = 132.0;
/// Host↔device copy bandwidth (PCIe 5 x16, pinned, realistic), bytes/s.
pub const PCIE_BPS: f64 = 25.0e9;
/// One host synchronisation round trip, seconds.
pub const SYNC_S: f64 = 10.0e-6;

/// Most threads per block on every CUDA device eraengine supports.
pub const MAX_BLOCK_THREADS: u32 = 1024;
/// Largest grid y and z.
pub const MAX_GRID_YZ: u32 = 65535;
/// Largest grid x.
pub const MAX_GRID_X: u32 = i32::MAX as u32;
/// Dynamic shared memory without the opt-in attribute.
pub const MAX_DYN_SHARED: u32 = 48 << 10;
/// Kernel parameter bytes (cuLaunchKernel's classic limit).
pub const MAX_PARAM_BYTES: usize = 4096;

/// Checks one launch against the hardware limits: grid x ≤ 2³¹−1, y and z ≤ 65535, block
/// x, y ≤ 1024, z ≤ 64, threads per block ≤ `max_threads` (the kernel's `.maxntid`), dynamic
/// shared memory ≤ 48 KiB, parameters ≤ 4 KiB and, when known, exactly the kernel's struct size.
pub fn validate(
    kernel: &str,
    max_threads: u32,
    expect_param_bytes: Option<usize>,
    cfg: LaunchCfg,
    params: usize,
) -> Result<()> {
    let bad = |why: String| Err(Error::device(format!("launch of {kernel} {cfg:?}: {why}")));
    if cfg.grid.contains(&0) || cfg.block.contains(&0) {
        return bad("a zero grid or block dimension".into());
    }
    if cfg.grid[0] > MAX_GRID_X || cfg.grid[1] > MAX_GRID_YZ || cfg.grid[2] > MAX_GRID_YZ {
        return bad("grid over the hardware limit (x < 2^31, y, z ≤ 65535)".into());
    }
    if cfg.block[0] > 1024 || cfg.block[1] > 1024 || cfg.block[2] > 64 {
        return bad("block dimension over the limit (x, y ≤ 1024, z ≤ 64)".into());
    }
    let threads = cfg.block.iter().map(|&b| b as u64).product::<u64>();
    let limit = max_threads.min(MAX_BLOCK_THREADS);
    if threads > limit as u64 {
        return bad(format!(
            "{threads} threads per block, over its limit {limit} (.maxntid)"
        ));
    }
    if cfg.shmem > MAX_DYN_SHARED {
        return bad(format!(
            "{} bytes of dynamic shared memory, over 48 KiB",
            cfg.shmem
        ));
    }
    if params > MAX_PARAM_BYTES {
        return bad(format!("{params} parameter bytes, over 4 KiB"));
    }
    if let Some(want) = expect_param_bytes {
        if want != params {
            return bad(format!("{params} parameter bytes, the kernel takes {want}"));
        }
    }
    Ok(())
}

/// One kernel's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KernelCount {
    pub launches: u64,
    pub flops: f64,
    pub bytes: f64,
    pub est_s: f64,
    /// device seconds measured with CUDA events (`ERAENGINE_CUDA_PROFILE=1`); 0 otherwise
    pub measured_s: f64,
}

/// Counts since the thread started (take differences with [`Counters::since`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    pub launches: u64,
    pub syncs: u64,
    /// device allocations that reached the launcher (cache misses)
    pub allocs: u64,
    /// device frees that reached the launcher
    pub frees: u64,
    /// allocations served by the backend's free-list cache
    pub cache_hits: u64,
    pub h2d_bytes: u64,
    pub d2h_bytes: u64,
    /// per kernel, indexed by `Kernel as usize`
    pub kernels: Vec<KernelCount>,
}

thread_local! {
    static COUNTERS: RefCell<Counters> = RefCell::new(Counters::default());
}

fn with(f: impl FnOnce(&mut Counters)) {
    COUNTERS.with(|c| f(&mut c.borrow_mut()));
}

/// The counters of this thread now.
pub fn snapshot() -> Counters {
    COUNTERS.with(|c| c.borrow().clone())
}

pub(crate) fn count_sync() {
    with(|c| c.syncs += 1);
}
pub(crate) fn count_alloc() {
    with(|c| c.allocs += 1);
}
pub(crate) fn count_free() {
    with(|c| c.frees += 1);
}
pub(crate) fn count_cache_hit() {
    with(|c| c.cache_hits += 1);
}
pub(crate) fn count_h2d(bytes: usize) {
    with(|c| c.h2d_bytes += bytes as u64);
}
pub(crate) fn count_d2h(bytes: usize) {
    with(|c| c.d2h_bytes += bytes as u64);
}
/// Kernel `k`'s totals in `c` (the table grows to every kernel on first use).
fn kernel_entry(c: &mut Counters, k: Kernel) -> &mut KernelCount {
    if c.kernels.len() < Kernel::ALL.len() {
        c.kernels.resize(Kernel::ALL.len(), KernelCount::default());
    }
    &mut c.kernels[k as usize]
}
pub(crate) fn count_measured(k: Kernel, seconds: f64) {
    with(|c| kernel_entry(c, k).measured_s += seconds);
}
pub(crate) fn count_launch(k: Kernel, cfg: LaunchCfg, params: &[u8]) {
    let (flops, f64_flops, bytes) = cost(k, cfg, params);
    let blocks = cfg.grid.iter().map(|&g| g as f64).product::<f64>();
    let est = roofline_s(flops, f64_flops, bytes, blocks);
    with(|c| {
        c.launches += 1;
        let e = kernel_entry(c, k);
        e.launches += 1;
        e.flops += flops + f64_flops;
        e.bytes += bytes;
        e.est_s += est;
    });
}

/// Estimated H100 seconds of one launch of `blocks` blocks: max(FP32 time + FP64 time, DRAM
/// time, the floor), where a grid of fewer blocks than SMs gets only their share of the peaks (a
/// block runs on one SM: a 2-block column sum cannot use the whole chip, however few its bytes).
pub fn roofline_s(flops: f64, f64_flops: f64, bytes: f64, blocks: f64) -> f64 {
    let share = (blocks / H100_SMS).clamp(1.0 / H100_SMS, 1.0);
    let compute = flops / H100_FP32_FLOPS + f64_flops / H100_FP64_FLOPS;
    (compute.max(bytes / H100_DRAM_BPS) / share).max(H100_KERNEL_FLOOR_S)
}

impl Counters {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        let kernels = self
            .kernels
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let e = earlier.kernels.get(i).copied().unwrap_or_default();
                KernelCount {
                    launches: k.launches - e.launches,
                    flops: k.flops - e.flops,
                    bytes: k.bytes - e.bytes,
                    est_s: k.est_s - e.est_s,
                    measured_s: k.measured_s - e.measured_s,
                }
            })
            .collect();
        Counters {
            launches: self.launches - earlier.launches,
            syncs: self.syncs - earlier.syncs,
            allocs: self.allocs - earlier.allocs,
            frees: self.frees - earlier.frees,
            cache_hits: self.cache_hits - earlier.cache_hits,
            h2d_bytes: self.h2d_bytes - earlier.h2d_bytes,
            d2h_bytes: self.d2h_bytes - earlier.d2h_bytes,
            kernels,
        }
    }

    /// Estimated H100 seconds: every kernel's roofline time, the copies at PCIe speed and a round
    /// trip per sync (kernels and copies are serial on one stream).
    pub fn est_h100_s(&self) -> f64 {
        let kernels: f64 = self.kernels.iter().map(|k| k.est_s).sum();
        kernels + (self.h2d_bytes + self.d2h_bytes) as f64 / PCIE_BPS + self.syncs as f64 * SYNC_S
    }

    /// The SPEC §2 keys per step (`steps` steps counted), plus the per-kernel table.
    pub fn per_step_json(&self, steps: u64) -> Value {
        let s = steps.max(1) as f64;
        let per = |v: u64| v as f64 / s;
        let mut kernels: Vec<(Kernel, KernelCount)> = self
            .kernels
            .iter()
            .enumerate()
            .filter(|(_, k)| k.launches > 0)
            .map(|(i, k)| (Kernel::ALL[i], *k))
            .collect();
        let measured: f64 = kernels.iter().map(|(_, k)| k.measured_s).sum();
        if measured > 0.0 {
            kernels.sort_by(|a, b| b.1.measured_s.total_cmp(&a.1.measured_s));
        } else {
            kernels.sort_by(|a, b| b.1.est_s.total_cmp(&a.1.est_s));
        }
        let table: Vec<Value> = kernels
            .iter()
            .map(|(k, c)| {
                let mut row = json!({
                    "name": k.name(),
                    "launches": per(c.launches),
                    "gflop": c.flops / s / 1e9,
                    "dram_mb": c.bytes / s / 1e6,
                    "est_h100_us": c.est_s / s * 1e6,
                });
                if measured > 0.0 {
                    row["measured_us"] = json!(c.measured_s / s * 1e6);
                }
                row
            })
            .collect();
        let mut v = json!({
            "launches_per_step": per(self.launches),
            "syncs_per_step": per(self.syncs),
            "allocs_per_step": per(self.allocs),
            "frees_per_step": per(self.frees),
            "h2d_bytes_per_step": per(self.h2d_bytes),
            "d2h_bytes_per_step": per(self.d2h_bytes),
            "est_h100_step_ms": self.est_h100_s() / s * 1e3,
            "h100_peaks": {
                "fp32_tflops": H100_FP32_FLOPS / 1e12,
                "fp64_tflops": H100_FP64_FLOPS / 1e12,
                "dram_gb_s": H100_DRAM_BPS / 1e9,
                "kernel_floor_us": H100_KERNEL_FLOOR_S * 1e6,
                "pcie_gb_s": PCIE_BPS / 1e9,
                "sync_us": SYNC_S * 1e6,
            },
            "kernels": table,
        });
        if measured > 0.0 {
            // the kernels' own device time per step (events around each launch), against the
            // step's wall time: the rest is copies, host work and launch gaps
            v["measured_kernels_ms"] = json!(measured / s * 1e3);
        }
        v
    }
}

/// For `eraengine bench`: the per-step counts of the `steps` steps run on this thread since
/// `before` (taken after the first step), when `device` is a GPU backend; None on the CPU.
/// `own_waits` host waits were the caller's own (the bench's clock, not the step's): not counted.
pub fn steady_json(device: &str, before: &Counters, steps: u64, own_waits: u64) -> Option<Value> {
    device.starts_with("gpu/").then(|| {
        let mut c = snapshot().since(before);
        c.syncs = c.syncs.saturating_sub(own_waits);
        c.per_step_json(steps)
    })
}

/// Adds the keys of `extra` (an object) to `v` (an object).
pub fn merge_json(v: &mut Value, extra: Option<&Value>) {
    if let (Some(obj), Some(Value::Object(more))) = (v.as_object_mut(), extra) {
        for (k, x) in more {
            obj.insert(k.clone(), x.clone());
        }
    }
}

fn read<P: bytemuck::Pod>(params: &[u8]) -> Option<P> {
    (params.len() == std::mem::size_of::<P>()).then(|| bytemuck::pod_read_unaligned(params))
}

/// (FP32 FLOPs, FP64 FLOPs, DRAM bytes) of one launch, from its parameters and shape. Compulsory
/// traffic only (each operand read once, each output written once): tiles re-read through L2 are
/// not counted, so the estimate is a lower bound on time.
fn cost(k: Kernel, cfg: LaunchCfg, params: &[u8]) -> (f64, f64, f64) {
    use Kernel::*;
    let f = |v: u32| v as f64;
    let threads = cfg
        .grid
        .iter()
        .chain(&cfg.block)
        .map(|&v| v as f64)
        .product::<f64>();
    let fallback = (threads * 4.0, 0.0, threads * 8.0);
    let c = match k {
        GeluFwdF32 | SigmoidFwdF32 | EluFwdF32 => {
            read::<EltParams>(params).map(|p| (20.0 * f(p.n), 0.0, 8.0 * f(p.n)))
        }
        GeluBwdF32 | SigmoidBwdF32 | EluBwdF32 => {
            read::<EltParams>(params).map(|p| (25.0 * f(p.n), 0.0, 16.0 * f(p.n)))
        }
        AddFwdF32 | AccumulateFwdF32 => {
            read::<EltParams>(params).map(|p| (f(p.n), 0.0, 12.0 * f(p.n)))
        }
        EmaFwdF32 => read::<EmaParams>(params).map(|p| (3.0 * f(p.n), 0.0, 12.0 * f(p.n))),
        DropoutFwdF32 | DropoutBwdF32 => {
            read::<DropoutParams>(params).map(|p| (40.0 * f(p.n), 0.0, 8.0 * f(p.n)))
        }
        GateFwdF32 => read::<GateParams>(params).map(|p| {
            let (ff, r) = (f(p.f), f(p.r));
            (
                0.0,
                2.0 * ff * r + f(p.n),
                4.0 * (ff * r + ff + f(p.n)) + 16.0 * ff,
            )
        }),
        GateLogitFwdF32 => read::<GateParams>(params).map(|p| {
            let (ff, r) = (f(p.f), f(p.r));
            (0.0, 2.0 * ff * r + 20.0 * ff, 4.0 * (ff * r + 3.0 * ff))
        }),
        GateRankFwdF32 => read::<GateParams>(params).map(|p| {
            let ff = f(p.f);
            (2.0 * ff * ff, 0.0, 8.0 * ff)
        }),
        GateApplyFwdF32 => read::<GateApplyParams>(params)
            .map(|p| (2.0 * f(p.n) * f(p.f), 0.0, 8.0 * f(p.n) * f(p.f))),
        GateBwdF32 => read::<GateBwdParams>(params).map(|p| {
            let (ff, r) = (f(p.f), f(p.r));
            (
                0.0,
                2.0 * ff * r + 8.0 * ff,
                4.0 * ff * (r + 5.0) + 16.0 * ff,
            )
        }),
        GateParamsBwdF32 => read::<GateBwdParams>(params).map(|p| {
            let (ff, r) = (f(p.f), f(p.r));
            (
                0.0,
                ff * r * (f(p.parts) + 4.0),
                4.0 * ff * (4.0 * r + 2.0) + 8.0 * ff,
            )
        }),
        LayerNormFwdF32 => read::<LayerNormFwdParams>(params).map(|p| {
            (
                8.0 * f(p.n) * f(p.d),
                0.0,
                4.0 * (2.0 * f(p.n) * f(p.d) + 2.0 * f(p.n)),
            )
        }),
        LayerNormBwdF32 => read::<LayerNormBwdParams>(params).map(|p| {
            let nd = f(p.n) * f(p.d);
            (4.0 * nd, 8.0 * nd, 4.0 * 3.0 * nd)
        }),
        LayerNormParamsBwdF32 => read::<LayerNormParamsBwdParams>(params).map(|p| {
            let v = 2.0 * f(p.blocks) * f(p.d);
            (v, 0.0, 4.0 * v)
        }),
        LinearFwdF32 | LinearBwdF32 => read::<GemmParams>(params).map(|p| {
            let (r, c, i) = (f(p.rows), f(p.cols), f(p.inner));
            let splits = f(cfg.grid[2]);
            // mode 2 with colsum: the db row sums of A (r·i adds, r floats per split)
            let sums = if p.mode == 2 && p.colsum != 0 {
                1.0
            } else {
                0.0
            };
            (
                2.0 * r * c * i + sums * r * i,
                0.0,
                4.0 * (r * i + c * i + 2.0 * r * c * splits + sums * r * splits),
            )
        }),
        LinearReduceBwdF32 => read::<SplitReduceParams>(params).map(|p| {
            let len = f(p.len) + f(p.db_len);
            let v = f(p.splits) * len;
            (0.0, v, 4.0 * (v + 2.0 * len))
        }),
        ColumnSumBwdF32 => read::<ColumnSplitParams>(params).map(|p| {
            let v = f(p.n) * f(p.cols);
            let operands = if p.b != 0 { 2.0 } else { 1.0 };
            (0.0, 2.0 * v, 4.0 * operands * v)
        }),
        ColumnSumReduceBwdF32 => read::<ColumnSplitParams>(params).map(|p| {
            let v = f(p.splits) * f(p.cols);
            (0.0, v, 8.0 * (v + f(p.cols)))
        }),
        LinearAttentionStateFwdF32 | LinearAttentionStateBwdF32 => {
            read::<LinAttnStateParams>(params).map(|p| {
                let nd = f(p.n) * f(p.d);
                (
                    2.0 * nd * f(p.dh),
                    0.0,
                    4.0 * (2.0 * nd + f(cfg.grid[0]) * f(p.d) * (f(p.dh) + 1.0)),
                )
            })
        }
        LinearAttentionReduceFwdF32 => read::<LinAttnReduceParams>(params).map(|p| {
            let v = f(p.chunks) * f(p.h) * f(p.dh) * (f(p.dh) + 1.0);
            (0.0, v, 4.0 * v)
        }),
        LinearAttentionOutFwdF32 | LinearAttentionDqBwdF32 | LinearAttentionDkvBwdF32 => {
            read::<LinAttnRowsParams>(params).map(|p| {
                let nd = f(p.n) * f(p.d);
                (4.0 * nd * f(p.dh), 0.0, 4.0 * 4.0 * nd)
            })
        }
        MseSparsityFwdF32 => read::<LossFwdParams>(params).map(|p| {
            (
                0.0,
                4.0 * f(p.n) * f(p.t) + 2.0 * f(p.f),
                4.0 * (2.0 * f(p.n) * f(p.t) + f(p.n) + f(p.f)),
            )
        }),
        MseSparsityReduceFwdF32 => {
            read::<LossReduceParams>(params).map(|p| (0.0, 3.0 * f(p.blocks), 12.0 * f(p.blocks)))
        }
        MseSparsityBwdF32 => read::<LossBwdParams>(params).map(|p| {
            (
                4.0 * f(p.n) * f(p.t),
                0.0,
                4.0 * (3.0 * f(p.n) * f(p.t) + f(p.n) + 2.0 * f(p.f)),
            )
        }),
        AdamFwdF32 => read::<AdamParams>(params).map(|p| (16.0 * f(p.n), 0.0, 4.0 * 7.0 * f(p.n))),
        SumSquaresFwdF32 => read::<SumSqParams>(params).map(|p| (0.0, 2.0 * f(p.n), 4.0 * f(p.n))),
        SumSquaresReduceFwdF32 => {
            read::<SumSqReduceParams>(params).map(|p| (0.0, f(p.blocks), 8.0 * f(p.blocks)))
        }
        ClipScaleFwdF32 => read::<ClipScaleParams>(params).map(|p| (0.0, f(p.n), 8.0 * f(p.n))),
        AdamMultiFwdF32 => read::<AdamMultiParams>(params)
            .map(|p| (16.0 * p.total as f64, 0.0, 28.0 * p.total as f64)),
        // the element count is in the device table: estimate from the launch (one element per
        // thread of the grid, every thread of a block busy)
        SumSquaresMultiFwdF32 => Some((0.0, 2.0 * threads, 4.0 * threads)),
        SumSquaresMultiReduceFwdF32 => read::<SumSqMultiParams>(params).map(|p| {
            (
                0.0,
                f(p.blocks) * f(p.count),
                8.0 * f(p.blocks) * f(p.count),
            )
        }),
        PosEncAddFwdF32 => read::<PosEncParams>(params)
            .map(|p| (0.0, 30.0 * f(p.n) * f(p.d), 8.0 * f(p.n) * f(p.d))),
        SoftmaxAttentionFwdF32 | SoftmaxAttentionDqBwdF32 | SoftmaxAttentionDkvBwdF32 => {
            read::<SoftmaxAttnParams>(params).map(|p| {
                let (n, nk, d) = (f(p.n), f(p.nk), f(p.d));
                // n queries × nk keys: fwd: q·k and p·v (4·n·nk·d); dq: s, dp, dq (6·n·nk·d);
                // dkv: s, dp, dk, dv (8·n·nk·d); the query side is read once, the key side once
                let per = match k {
                    SoftmaxAttentionFwdF32 => 4.0,
                    SoftmaxAttentionDqBwdF32 => 6.0,
                    _ => 8.0,
                };
                (
                    per * n * nk * d + 10.0 * n * nk * f(p.h),
                    0.0,
                    4.0 * (3.0 * n * d + 2.0 * nk * d),
                )
            })
        }
        SoftmaxAttentionDBwdF32 => read::<SoftmaxAttnParams>(params)
            .map(|p| (2.0 * f(p.n) * f(p.d), 0.0, 4.0 * 2.0 * f(p.n) * f(p.d))),
        // the correlation loss: each pass reads ŷ, y [n, t] and the mask; the reductions are tiny
        CorrLossSumsFwdF32 | CorrLossMomentsFwdF32 => read::<CorrLossParams>(params).map(|p| {
            let nt = f(p.n) * f(p.t);
            (6.0 * nt, 0.0, 4.0 * (2.0 * nt + f(p.n)))
        }),
        CorrLossMeansFwdF32 | CorrLossReduceFwdF32 => read::<CorrLossParams>(params)
            .map(|p| (0.0, 8.0 * f(p.blocks) * f(p.t), 12.0 * f(p.blocks) * f(p.t))),
        CorrLossBwdF32 => read::<CorrLossParams>(params).map(|p| {
            let nt = f(p.n) * f(p.t);
            (6.0 * nt, 0.0, 4.0 * (3.0 * nt + f(p.n)))
        }),
        // orthogonal-embedding loss: statistics read h twice, the Gram matrix n per entry of C
        // (d² blocks), dZ d per element; reduces are tiny
        OrthoLossStatsFwdF32 | OrthoLossColsBwdF32 => read::<OrthoLossParams>(params).map(|p| {
            let nd = f(p.n) * f(p.d);
            (4.0 * nd, 0.0, 4.0 * (2.0 * nd + f(p.n) * f(p.d)))
        }),
        OrthoLossGramFwdF32 => read::<OrthoLossParams>(params).map(|p| {
            let (n, d) = (f(p.n), f(p.d));
            (0.0, 6.0 * n * d * d, 4.0 * (2.0 * n * d * d + n * d))
        }),
        OrthoLossReduceFwdF32 => read::<OrthoLossParams>(params)
            .map(|p| (0.0, 2.0 * f(p.d) * f(p.d), 4.0 * f(p.d) * f(p.d))),
        OrthoLossDzBwdF32 => read::<OrthoLossParams>(params).map(|p| {
            let (n, d) = (f(p.n), f(p.d));
            (0.0, 4.0 * n * d * d, 4.0 * (2.0 * n * d * d + n * d))
        }),
        OrthoLossBwdF32 => read::<OrthoLossParams>(params).map(|p| {
            let nd = f(p.n) * f(p.d);
            (0.0, 8.0 * nd, 4.0 * 4.0 * nd)
        }),
        // mask fill: one blend per element over x, fill, out
        MaskFillFwdF32 | MaskFillBwdF32 => read::<MaskFillParams>(params).map(|p| {
            let nf = f(p.n) * f(p.f);
            (3.0 * nf, 0.0, 4.0 * 3.0 * nf)
        }),
        // FiLM: one multiply-add per element, inp/out [n, d] plus γ, β
        FilmFwdF32 | FilmBwdF32 => read::<FilmParams>(params).map(|p| {
            let nd = f(p.n) * f(p.d);
            (2.0 * nd, 0.0, 4.0 * (2.0 * nd + 2.0 * f(p.d)))
        }),
        // column scale: out = w ⊙ s over [m, k]; the backward reads dout, w, dw and writes dw (an
        // FP32 multiply-add and an FP64 multiply-add per element)
        ColScaleFwdF32 => read::<ColScaleParams>(params).map(|p| {
            let mk = f(p.m) * f(p.k);
            (2.0 * mk, 0.0, 4.0 * (2.0 * mk + 2.0 * f(p.k)))
        }),
        ColScaleBwdF32 => read::<ColScaleParams>(params).map(|p| {
            let mk = f(p.m) * f(p.k);
            (2.0 * mk, 2.0 * mk, 4.0 * (4.0 * mk + 3.0 * f(p.k)))
        }),
        // codes: a byte in, a float out per element
        CodesFwdF32 => {
            read::<CodesParams>(params).map(|p| (2.0 * p.n as f64, 0.0, 5.0 * p.n as f64))
        }
        // GLU: a sigmoid and a product per element; the backward reads dout, a, b, da, db
        GluFwdF32 => read::<GluParams>(params).map(|p| (15.0 * f(p.n), 0.0, 12.0 * f(p.n))),
        GluBwdF32 => read::<GluParams>(params).map(|p| (20.0 * f(p.n), 0.0, 28.0 * f(p.n))),
        RowAddFwdF32 => read::<RowAddParams>(params).map(|p| {
            let nm = f(p.n) * f(p.m);
            (nm, 0.0, 4.0 * (2.0 * nm + f(p.m)))
        }),
        // VSN: softmax rows (exp, 2 passes), one block for m/s/keep (top-k ranks F²), xt, backward rows
        VsnSoftmaxFwdF32 => read::<VsnParams>(params).map(|p| {
            let nf = f(p.n) * f(p.f);
            (12.0 * nf, nf, 4.0 * 3.0 * nf)
        }),
        VsnSelectFwdF32 => read::<VsnParams>(params).map(|p| {
            let ff = f(p.f);
            (
                ff * ff * f(p.mode),
                20.0 * ff + f(p.n),
                4.0 * (4.0 * ff + f(p.n)) + 8.0 * ff,
            )
        }),
        VsnApplyFwdF32 => read::<VsnParams>(params).map(|p| {
            let nf = f(p.n) * f(p.f);
            (3.0 * nf, 0.0, 4.0 * 3.0 * nf)
        }),
        VsnDmBwdF32 => read::<VsnBwdParams>(params).map(|p| (0.0, 40.0 * f(p.f), 20.0 * f(p.f))),
        VsnRowsBwdF32 => read::<VsnBwdParams>(params).map(|p| {
            let nf = f(p.n) * f(p.f);
            (0.0, 14.0 * nf, 4.0 * 7.0 * nf)
        }),
    };
    c.unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_reject_what_hardware_rejects() {
        let ok = LaunchCfg::linear(10, 256, 0);
        assert!(validate("k", 1024, Some(16), ok, 16).is_ok());
        assert!(validate("k", 128, None, ok, 16).is_err(), ".maxntid");
        assert!(validate("k", 1024, Some(24), ok, 16).is_err(), "param size");
        assert!(validate("k", 1024, None, ok, 4097).is_err(), "4 KiB params");
        assert!(validate("k", 1024, None, LaunchCfg::linear(1, 32, 49 << 10), 8).is_err());
        let tall = LaunchCfg {
            grid: [1, 65536, 1],
            block: [32, 1, 1],
            shmem: 0,
        };
        assert!(validate("k", 1024, None, tall, 8).is_err(), "grid y");
        let fat = LaunchCfg {
            grid: [1, 1, 1],
            block: [32, 32, 2],
            shmem: 0,
        };
        assert!(validate("k", 1024, None, fat, 8).is_err(), "2048 threads");
        assert!(validate("k", 1024, None, LaunchCfg::linear(0, 32, 0), 8).is_err());
    }

    #[test]
    fn roofline_is_the_slowest_bound() {
        assert_eq!(roofline_s(0.0, 0.0, 0.0, 1.0), H100_KERNEL_FLOOR_S);
        let t = roofline_s(67.0e12, 0.0, 1.0, 1000.0);
        assert!((t - 1.0).abs() < 1e-12);
        let t = roofline_s(1.0, 0.0, 3.35e12, 132.0);
        assert!((t - 1.0).abs() < 1e-12);
        // a grid of 2 blocks gets 2 of the 132 SMs
        let t = roofline_s(1.0, 0.0, 3.35e12, 2.0);
        assert!((t - 66.0).abs() < 1e-9);
    }
}
