//! The SIMD paths of the CPU kernels: which one this CPU runs ([`Simd::detect`]), forcing one in
//! tests, and [`Simd::run`], which compiles a closure's loops at a path's width.

use std::sync::OnceLock;

/// Which microkernel family runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    /// AVX-512F: 12 × 32 tile, 512-bit FMA.
    Avx512,
    /// AVX2 + FMA: 6 × 16 tile, 256-bit FMA.
    Avx2,
    /// Plain Rust, whatever the compiler makes of it.
    Portable,
}

impl Simd {
    /// Every path, fastest first.
    pub const ALL: [Simd; 3] = [Simd::Avx512, Simd::Avx2, Simd::Portable];

    /// The fastest path this CPU supports (probed once).
    pub fn detect() -> Simd {
        static BEST: OnceLock<Simd> = OnceLock::new();
        *BEST.get_or_init(|| {
            Simd::ALL
                .into_iter()
                .find(|s| s.available())
                .unwrap_or(Simd::Portable)
        })
    }

    /// `simd` when this CPU can run it, else the detected path (the `_on` functions' choice).
    pub fn or_detected(simd: Option<Simd>) -> Simd {
        match simd {
            Some(s) if s.available() => s,
            _ => Simd::detect(),
        }
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            Simd::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => std::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Runs `f` inside a function compiled for this path, so the loops `f` inlines vectorise at
    /// its width (a path the CPU lacks runs `f` as it is). Only code inlined into that function
    /// gets its width: pass a closure marked `#[inline(always)] || ...` (a large closure is
    /// otherwise compiled once, out of line, for the baseline: SSE2).
    #[inline(always)]
    pub fn run<R>(self, f: impl FnOnce() -> R) -> R {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn v512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn v256<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            match self {
                // SAFETY: checked just now: this CPU has AVX-512F (and AVX2, FMA).
                Simd::Avx512 if self.available() => return unsafe { v512(f) },
                // SAFETY: checked just now: AVX2 and FMA.
                Simd::Avx2 if self.available() => return unsafe { v256(f) },
                _ => {}
            }
        }
        f()
    }

    pub fn name(self) -> &'static str {
        match self {
            Simd::Avx512 => "avx512",
            Simd::Avx2 => "avx2",
            Simd::Portable => "portable",
        }
    }
}
