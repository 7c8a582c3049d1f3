//! Shared by the GPU-vs-CPU property tests (`gpu_ops.rs`, `gpu_ops2.rs`).

use eraengine::gpu::{GpuBackend, Order};
use proptest::prelude::*;

/// The GPU backend with the CPU emulator as its launcher.
pub type Emu = GpuBackend<eraengine::gpu::EmuLauncher>;

/// The three thread orders every kernel runs under.
pub fn orders(seed: u64) -> [Order; 3] {
    [Order::Forward, Order::Reverse, Order::Shuffle(seed)]
}

/// |gpu − cpu| ≤ atol + rtol·|cpu| element by element (NaN matches NaN).
pub fn close(
    what: &str,
    gpu: &[f32],
    cpu: &[f32],
    atol: f32,
    rtol: f32,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(gpu.len(), cpu.len(), "{}: lengths", what);
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        let ok = (g - c).abs() <= atol + rtol * c.abs() || (g.is_nan() && c.is_nan());
        prop_assert!(
            ok,
            "{}[{}]: gpu {} vs cpu {} (atol {}, rtol {})",
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
