//! Tests written once, run on every device (candle's `test_device!`).
//!
//! A check is written once, generic over the backend:
//! `fn name<B: Backend>(dev: &B, ...) -> TestCaseResult`, and one of the macros below expands it
//! into a module `name` holding one `#[test]` per device:
//! - `cpu`: `device::Cpu`;
//! - `emu`: the GPU backend with the C++ emulator as its launcher, once per thread order (forward,
//!   reverse, seeded shuffle unless the call names fewer), so a missing barrier shows;
//! - `cuda`: the GPU backend on a real GPU. Without one (the probe says no device) it prints
//!   "skipped: no GPU" to stderr (visible with `--nocapture`) and passes, unless
//!   `ERAENGINE_REQUIRE_GPU=1`, which turns the skip into a failure (for GPU machines). When the
//!   probe finds a GPU the test runs for real and a failure to open it fails the test.
//!
//! Filter by device with `cargo test -- ::emu` (or `::cpu`, `::cuda`).
//!
//! - [`device_test!`]: a fixed check `fn name<B: Backend>(dev: &B) -> TestCaseResult`;
//! - [`device_proptest!`]: a property `fn name<B: Backend>(dev: &B, case: &Case) -> TestCaseResult`
//!   over a proptest strategy of `Case`s;
//! - [`gpu_proptest!`] / [`gpu_test!`]: as above, for checks of the GPU backend itself: agreement
//!   with the CPU reference (the CPU would compare with itself) and the backend's own limits (shared
//!   memory, launch shapes); these have only `emu` and `cuda` variants.
#![allow(dead_code, unused_macros)]

pub mod attention;
pub mod gate;

use eraengine::device::Backend;
use eraengine::gpu::{cuda_available, cuda_info, CudaLauncher, EmuLauncher, GpuBackend, Order};
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;
use proptest::test_runner::{Config, TestRunner};

/// The GPU backend with the CPU emulator as its launcher.
pub type Emu = GpuBackend<EmuLauncher>;
/// The GPU backend on a real GPU.
pub type Cuda = GpuBackend<CudaLauncher>;

/// The three thread orders every kernel runs under.
pub fn orders(seed: u64) -> [Order; 3] {
    [Order::Forward, Order::Reverse, Order::Shuffle(seed)]
}

/// The CUDA backend, or None after printing "skipped: no GPU" when the probe finds no device.
/// Panics when `ERAENGINE_REQUIRE_GPU=1` and there is no GPU, or when the probe finds one that then
/// does not open.
pub fn cuda(test: &str) -> Option<Cuda> {
    if !cuda_available() {
        let info = cuda_info();
        assert!(
            std::env::var("ERAENGINE_REQUIRE_GPU").as_deref() != Ok("1"),
            "{test}: ERAENGINE_REQUIRE_GPU=1 but {info}"
        );
        eprintln!("{test}: skipped: no GPU ({info})");
        return None;
    }
    match Cuda::new() {
        Ok(dev) => Some(dev),
        Err(e) => panic!("{test}: the probe found a GPU but opening it failed: {e}"),
    }
}

/// Prefixes a failure with the device (and thread order) it happened on.
pub fn on<B: Backend>(dev: &B, r: TestCaseResult) -> TestCaseResult {
    r.map_err(|e| match e {
        TestCaseError::Fail(m) => TestCaseError::fail(format!("[{}] {m}", dev.name())),
        TestCaseError::Reject(m) => TestCaseError::reject(format!("[{}] {m}", dev.name())),
    })
}

/// Panics with the failure of a fixed check.
pub fn expect_ok(r: TestCaseResult) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// Runs a property over `cases` cases of `strategy` (regressions saved next to `source_file`, as the
/// `proptest!` macro does; `PROPTEST_CASES` etc. apply). `ERAENGINE_MAX_CASES=n` caps the count at
/// n (at least 1): for runs under compute-sanitizer, where every case is tens of times slower.
pub fn prop<S: Strategy>(
    source_file: &'static str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) {
    let cap = std::env::var("ERAENGINE_MAX_CASES")
        .ok()
        .map(|v| match v.parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => panic!("ERAENGINE_MAX_CASES={v:?}: expected a whole number ≥ 1"),
        });
    let config = Config {
        source_file: Some(source_file),
        ..Config::with_cases(cap.map_or(cases, |c| cases.min(c)))
    };
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}\n{runner}");
    }
}

/// Runs `check` on the emulator under every order in `orders`.
pub fn on_emu(orders: &[Order], check: impl Fn(&Emu) -> TestCaseResult) -> TestCaseResult {
    for &order in orders {
        let dev = Emu::new(order);
        on(&dev, check(&dev))?;
    }
    Ok(())
}

/// |got − want| ≤ atol + rtol·|want| element by element (NaN matches NaN): a device against the
/// CPU reference (f32 against f32; tolerances stated per op by the callers).
pub fn matches_ref(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) -> TestCaseResult {
    prop_assert_eq!(got.len(), want.len(), "{}: lengths", what);
    for (i, (&g, &c)) in got.iter().zip(want).enumerate() {
        let ok = (g - c).abs() <= atol + rtol * c.abs() || (g.is_nan() && c.is_nan());
        prop_assert!(
            ok,
            "{}[{}]: got {} vs cpu {} (atol {}, rtol {})",
            what,
            i,
            g,
            c,
            atol,
            rtol
        );
    }
    Ok(())
}

/// Runs `f`; on the CPU backend also asserts that it handed work to more than one thread at least
/// `min` times (counted on this test's thread only, so tests running beside it cannot make it pass).
/// The GPU backends run `f` unchanged. On a single-core machine nothing can split: said on stderr.
pub fn threaded<B: Backend, R>(dev: &B, what: &str, min: u64, f: impl FnOnce() -> R) -> R {
    use eraengine::ops::par;
    let before = par::parallel_dispatches_on_this_thread();
    let global_before = par::parallel_dispatches();
    let r = f();
    if dev.name() == "cpu" {
        if par::threads() > 1 {
            let split = par::parallel_dispatches_on_this_thread() - before;
            assert!(
                split >= min,
                "{what}: expected at least {min} threaded dispatch(es) on the CPU, saw {split}"
            );
            assert!(par::parallel_dispatches() - global_before >= split);
        } else {
            eprintln!("{what}: one core, so the CPU ops ran single-threaded (nothing to assert)");
        }
    }
    r
}

/// One `#[test]` per device for `fn $check<B: Backend>(dev: &B) -> TestCaseResult`; the emulator
/// runs every order in the list (default: forward, reverse, shuffle).
macro_rules! device_test {
    ($check:ident) => {
        device_test!(
            $check,
            [
                eraengine::gpu::Order::Forward,
                eraengine::gpu::Order::Reverse,
                eraengine::gpu::Order::Shuffle(0x5EED)
            ]
        );
    };
    ($check:ident, [$($order:expr),+ $(,)?]) => {
        mod $check {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn cpu() {
                $crate::gpu_common::expect_ok(super::$check(&eraengine::device::Cpu));
            }
            #[test]
            fn emu() {
                $crate::gpu_common::expect_ok($crate::gpu_common::on_emu(&[$($order),+], |dev| {
                    super::$check(dev)
                }));
            }
            #[test]
            fn cuda() {
                if let Some(dev) = $crate::gpu_common::cuda(concat!(stringify!($check), "::cuda")) {
                    $crate::gpu_common::expect_ok($crate::gpu_common::on(&dev, super::$check(&dev)));
                }
            }
        }
    };
}

/// One `#[test]` per device for the property `fn $check<B: Backend>(dev: &B, case: &Case)`, over
/// `$cases` cases of `$strategy` (an expression evaluated in the calling module); the emulator runs
/// each case under forward, reverse and a shuffle seeded per case.
macro_rules! device_proptest {
    ($cases:expr, $check:ident, $strategy:expr) => {
        mod $check {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn cpu() {
                $crate::gpu_common::prop(file!(), $cases, $strategy, |case| {
                    super::$check(&eraengine::device::Cpu, &case)
                });
            }
            #[test]
            fn emu() {
                $crate::gpu_common::prop(
                    file!(),
                    $cases,
                    ($strategy, proptest::prelude::any::<u64>()),
                    |(case, seed)| {
                        $crate::gpu_common::on_emu(&$crate::gpu_common::orders(seed), |dev| {
                            super::$check(dev, &case)
                        })
                    },
                );
            }
            #[test]
            fn cuda() {
                if let Some(dev) = $crate::gpu_common::cuda(concat!(stringify!($check), "::cuda")) {
                    $crate::gpu_common::prop(file!(), $cases, $strategy, |case| {
                        $crate::gpu_common::on(&dev, super::$check(&dev, &case))
                    });
                }
            }
        }
    };
}

/// Like [`device_proptest!`] for a check of the GPU backend (e.g. against the CPU reference): `emu`
/// and `cuda` only.
macro_rules! gpu_proptest {
    ($cases:expr, $check:ident, $strategy:expr) => {
        mod $check {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn emu() {
                $crate::gpu_common::prop(
                    file!(),
                    $cases,
                    ($strategy, proptest::prelude::any::<u64>()),
                    |(case, seed)| {
                        $crate::gpu_common::on_emu(&$crate::gpu_common::orders(seed), |dev| {
                            super::$check(dev, &case)
                        })
                    },
                );
            }
            #[test]
            fn cuda() {
                if let Some(dev) = $crate::gpu_common::cuda(concat!(stringify!($check), "::cuda")) {
                    $crate::gpu_common::prop(file!(), $cases, $strategy, |case| {
                        $crate::gpu_common::on(&dev, super::$check(&dev, &case))
                    });
                }
            }
        }
    };
}

/// Like [`device_test!`] for a check of the GPU backend: `emu` and `cuda` only.
macro_rules! gpu_test {
    ($check:ident, [$($order:expr),+ $(,)?]) => {
        mod $check {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn emu() {
                $crate::gpu_common::expect_ok($crate::gpu_common::on_emu(&[$($order),+], |dev| {
                    super::$check(dev)
                }));
            }
            #[test]
            fn cuda() {
                if let Some(dev) = $crate::gpu_common::cuda(concat!(stringify!($check), "::cuda")) {
                    $crate::gpu_common::expect_ok($crate::gpu_common::on(&dev, super::$check(&dev)));
                }
            }
        }
    };
}
