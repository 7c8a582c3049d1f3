//! The CUDA launcher: without a GPU (every CI machine) it must fail cleanly with the reason; with
//! one, the same backend code must match the CPU reference (here one layer norm; every op and the
//! model run on the GPU through the `::cuda` variants of the device-generic tests, see
//! tests/gpu_common). Also checks that the kernel tables build.rs generates agree between the NVRTC
//! path and the emulator.

use eraengine::device::{Backend, Cpu};
use eraengine::gpu::generated::{IMAGES, KERNELS, NVRTC_BUILD_VERSION, SOURCES};
use eraengine::gpu::{cuda_available, cuda_info, CudaLauncher, EmuLauncher, GpuBackend};

#[test]
fn cuda_backend_errs_cleanly_without_a_gpu_or_matches_cpu_with_one() {
    let info = cuda_info();
    println!("{info}");
    match GpuBackend::<CudaLauncher>::new() {
        Err(e) => {
            println!("skipped: no GPU ({e}); checked that opening CUDA fails cleanly instead");
            assert!(
                !cuda_available(),
                "probe says available but opening failed: {e}"
            );
            let msg = e.to_string();
            assert!(msg.contains("no usable GPU"), "{msg}");
            assert!(info.starts_with("cuda unavailable"), "{info}");
        }
        Ok(gpu) => {
            assert!(cuda_available());
            let (n, d) = (37usize, 45usize);
            let x: Vec<f32> = (0..n * d)
                .map(|i| ((i * 7919) % 113) as f32 / 50.0 - 1.0)
                .collect();
            let gamma: Vec<f32> = (0..d).map(|j| 1.0 + j as f32 / 100.0).collect();
            let beta: Vec<f32> = (0..d).map(|j| j as f32 / 200.0).collect();
            let mut want = vec![0.0; n * d];
            let (mut wm, mut wr) = (vec![0.0; n], vec![0.0; n]);
            Cpu.layer_norm_fwd(&mut want, &mut wm, &mut wr, &x, &gamma, &beta, n, d)
                .unwrap();
            let (xb, gb, bb) = (
                gpu.upload(&x).unwrap(),
                gpu.upload(&gamma).unwrap(),
                gpu.upload(&beta).unwrap(),
            );
            let (mut out, mut m, mut r) = (
                gpu.zeros(n * d).unwrap(),
                gpu.zeros(n).unwrap(),
                gpu.zeros(n).unwrap(),
            );
            gpu.layer_norm_fwd(&mut out, &mut m, &mut r, &xb, &gb, &bb, n, d)
                .unwrap();
            let got = gpu.download(&out).unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 + 1e-4 * w.abs(), "{g} vs {w}");
            }
        }
    }
}

#[test]
fn every_product_kernel_is_in_the_emulator_and_in_the_embedded_sources() {
    let emu = EmuLauncher::kernels();
    assert!(KERNELS.len() >= 17, "{KERNELS:?}");
    for (k, module) in KERNELS {
        assert!(
            emu.iter().any(|e| e == k),
            "{k} missing from the emulator table"
        );
        let src = SOURCES
            .iter()
            .find(|(m, _)| m == module)
            .map(|(_, s)| *s)
            .unwrap();
        // `void name(` or `void __launch_bounds__(...) name(`
        assert!(
            src.lines()
                .any(|l| l.contains("__global__ void") && l.contains(&format!(" {k}("))),
            "{k} not in {module}.cu"
        );
        assert!(
            !src.contains("#include"),
            "{module}.cu: common.cuh must be inlined"
        );
        assert!(
            k.ends_with("_fwd_f32") || k.ends_with("_bwd_f32"),
            "{k}: naming convention"
        );
    }
    // test-only kernels never reach NVRTC
    assert!(emu.iter().any(|e| e.starts_with("emu_")));
    assert!(KERNELS.iter().all(|(k, _)| !k.starts_with("emu_")));
    // when build.rs found NVRTC, every module has PTX for compute_80/90 and cubins for sm_80/90
    if NVRTC_BUILD_VERSION.is_some() {
        for (m, _) in SOURCES {
            for arch in ["compute_80", "compute_90", "sm_80", "sm_90"] {
                assert!(
                    IMAGES
                        .iter()
                        .any(|(im, a, b)| im == m && *a == arch && !b.is_empty()),
                    "{m} {arch}"
                );
            }
        }
    } else {
        assert!(IMAGES.is_empty());
    }
}

/// The launcher's last resort on a device no embedded image fits: the installed NVRTC compiles a
/// cubin for the device's exact architecture (7.2 gets sm_72, not a compute_75 PTX that would not
/// load). Needs libnvrtc loadable at run time (`LD_LIBRARY_PATH`; `.ci/run` sets it and
/// `ERAENGINE_REQUIRE_NVRTC=1`, which turns its absence into a failure).
#[test]
fn the_runtime_fallback_compiles_a_cubin_for_the_exact_architecture() {
    let required = std::env::var("ERAENGINE_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
    let first = eraengine::gpu::runtime_cubin("optim", (8, 0));
    if let Err(e) = &first {
        let absent = e.to_string().contains("cannot be compiled now");
        assert!(absent && !required, "{e}");
        eprintln!("skipped: {e}");
        return;
    }
    // NVRTC 13 dropped sm_72, which 12.x compiles: an architecture the installed NVRTC lacks must
    // be refused by name, every other one compiled
    let archs = eraengine::gpu::nvrtc_supported_archs().unwrap();
    assert!(archs.contains(&80) && archs.contains(&90), "{archs:?}");
    let mut flags = Vec::new();
    for cc in [(7, 2), (8, 0), (8, 6), (9, 0)] {
        if !archs.contains(&(cc.0 * 10 + cc.1)) {
            let e = eraengine::gpu::runtime_cubin("optim", cc).unwrap_err();
            let want = format!("cannot compile for sm_{}{}", cc.0, cc.1);
            assert!(e.to_string().contains(&want), "{e}");
            continue;
        }
        let bin = eraengine::gpu::runtime_cubin("optim", cc).unwrap();
        assert!(bin.len() > 64, "{cc:?}: {} bytes", bin.len());
        assert_eq!(
            &bin[..4],
            b"\x7fELF",
            "{cc:?}: a cubin is an ELF image, not PTX text"
        );
        // ELF64, e_machine 190 = EM_CUDA
        assert_eq!(bin[4], 2, "{cc:?}: ELF64");
        assert_eq!(
            u16::from_le_bytes([bin[18], bin[19]]),
            190,
            "{cc:?}: EM_CUDA"
        );
        flags.push(u32::from_le_bytes([bin[48], bin[49], bin[50], bin[51]]));
    }
    let compiled = flags.len();
    assert!(compiled >= 3, "{archs:?}: sm_80, sm_86 and sm_90 compile");
    flags.dedup();
    assert_eq!(
        flags.len(),
        compiled,
        "one architecture per image: e_flags {flags:x?}"
    );
    let e = eraengine::gpu::runtime_cubin("no_such_module", (8, 0)).unwrap_err();
    assert!(e.to_string().contains("no_such_module"), "{e}");
    let e = eraengine::gpu::runtime_cubin("optim", (1, 0)).unwrap_err();
    assert!(e.to_string().contains("sm_10"), "{e}");
}
