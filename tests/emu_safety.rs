//! The emulator's safety net: the bugs it exists to catch are caught. Kernels are in
//! `kernels/emu/tests/emu_checks.cu` (emulator only, never compiled by NVRTC).
//!
//! The out-of-bounds test needs AddressSanitizer and runs only in the ASan run (CI):
//! `ERAENGINE_EMU_ASAN=1 ERAENGINE_EMU_ASAN_TESTS=1 LD_PRELOAD=$(g++ -print-file-name=libasan.so)
//!  ASAN_OPTIONS=detect_leaks=0 cargo test --release --test emu_safety`
//! (see docs/gpu.md); otherwise it prints why it is skipped.

use bytemuck::{Pod, Zeroable};
use eraengine::device::Backend;
use eraengine::gpu::{LaunchCfg, Launcher, Order};

mod gpu_common;
use gpu_common::Emu;

/// Mirror of `EmuTestParams` in emu_checks.cu.
#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
struct TestParams {
    out: u64,
    inp: u64,
    n: u32,
    a: u32,
    b: u32,
    c: u32,
}

/// Runs `kernel` over `inp` with `out_len` outputs; Ok(outputs) or Err(emulator message).
fn run(
    kernel: &str,
    order: Order,
    block: u32,
    shmem: u32,
    inp: &[f32],
    out_len: usize,
    a: u32,
) -> Result<Vec<f32>, String> {
    let b = Emu::new(order);
    let x = b.upload(inp).unwrap();
    let out = b.zeros(out_len).unwrap();
    let p = TestParams {
        out: out.ptr(),
        inp: x.ptr(),
        n: out_len as u32,
        a,
        ..Default::default()
    };
    // SAFETY: the test kernels touch at most block threads' worth of inp/out (except the OOB one).
    unsafe {
        b.launcher().launch(
            kernel,
            LaunchCfg::linear(1, block, shmem),
            bytemuck::bytes_of(&p),
        )
    }
    .map_err(|e| e.to_string())?;
    Ok(b.download(&out).unwrap())
}

#[test]
fn missing_syncthreads_gives_a_wrong_answer_under_some_order() {
    let inp: Vec<f32> = (1..=64).map(|v| v as f32).collect();
    let want: f32 = inp.iter().sum();
    let mut wrong = 0;
    for order in [Order::Forward, Order::Reverse, Order::Shuffle(7)] {
        let with = run("emu_sum_barrier_fwd_f32", order, 64, 256, &inp, 1, 0).unwrap();
        assert_eq!(with[0], want, "the correct kernel is right under {order:?}");
        let without = run("emu_sum_nobarrier_fwd_f32", order, 64, 256, &inp, 1, 0).unwrap();
        if without[0] != want {
            wrong += 1;
        }
    }
    assert!(wrong > 0, "the missing barrier never showed");
}

#[test]
fn divergent_shuffle_is_an_error() {
    let inp = vec![1.0f32; 32];
    let e = run(
        "emu_divergent_shuffle_fwd_f32",
        Order::Forward,
        32,
        0,
        &inp,
        32,
        0,
    )
    .unwrap_err();
    assert!(e.contains("exited") && e.contains("lane"), "{e}");
}

#[test]
fn shuffle_outside_its_mask_is_an_error() {
    let inp = vec![1.0f32; 32];
    let e = run(
        "emu_shuffle_outside_mask_fwd_f32",
        Order::Reverse,
        32,
        0,
        &inp,
        32,
        0,
    )
    .unwrap_err();
    assert!(e.contains("outside the shuffle mask"), "{e}");
}

#[test]
fn full_mask_shuffle_in_a_partial_warp_is_an_error() {
    // 40 threads: the second warp has 8 lanes, warp_sum shuffles with a full mask
    let inp = vec![1.0f32; 40];
    let e = run("emu_warp_ops_fwd_f32", Order::Forward, 40, 0, &inp, 160, 0).unwrap_err();
    assert!(e.contains("partial warp"), "{e}");
}

#[test]
fn divergent_barriers_are_errors() {
    let inp = vec![1.0f32; 32];
    let e = run(
        "emu_divergent_barrier_fwd_f32",
        Order::Forward,
        32,
        0,
        &inp,
        32,
        0,
    )
    .unwrap_err();
    assert!(
        e.contains("divergent barrier") && e.contains("exited"),
        "{e}"
    );
    let e = run(
        "emu_divergent_barrier_fwd_f32",
        Order::Shuffle(3),
        32,
        0,
        &inp,
        32,
        1,
    )
    .unwrap_err();
    assert!(e.contains("divergent barrier") && e.contains("line"), "{e}");
}

#[test]
fn deadlock_is_an_error() {
    let inp = vec![1.0f32; 32];
    let e = run("emu_deadlock_fwd_f32", Order::Forward, 32, 0, &inp, 32, 0).unwrap_err();
    assert!(e.contains("deadlock"), "{e}");
}

#[test]
fn bad_launch_configurations_are_errors() {
    let inp = vec![1.0f32; 32];
    let e = run(
        "emu_sum_barrier_fwd_f32",
        Order::Forward,
        2048,
        0,
        &inp,
        1,
        0,
    )
    .unwrap_err();
    assert!(e.contains("1024"), "{e}");
    let e = run(
        "emu_sum_barrier_fwd_f32",
        Order::Forward,
        32,
        64 << 10,
        &inp,
        1,
        0,
    )
    .unwrap_err();
    assert!(e.contains("shared memory"), "{e}");
    let e = run("emu_sum_barrier_fwd_f32", Order::Forward, 0, 0, &inp, 1, 0).unwrap_err();
    assert!(e.contains("zero"), "{e}");
    let b = Emu::new(Order::Forward);
    // SAFETY: rejected before any memory is touched
    let e = unsafe {
        b.launcher()
            .launch("no_such_kernel", LaunchCfg::linear(1, 32, 0), &[0u8; 32])
    }
    .unwrap_err();
    assert!(e.to_string().contains("no such kernel"), "{e}");
    let e = unsafe {
        b.launcher().launch(
            "emu_sum_barrier_fwd_f32",
            LaunchCfg::linear(1, 32, 0),
            &[0u8; 8],
        )
    }
    .unwrap_err();
    assert!(e.to_string().contains("bytes"), "{e}");
}

#[test]
fn warp_intrinsics_follow_cuda_semantics() {
    let inp: Vec<f32> = (0..64).map(|v| ((v * 37) % 101) as f32).collect();
    for order in [Order::Forward, Order::Reverse, Order::Shuffle(11)] {
        let out = run("emu_warp_ops_fwd_f32", order, 64, 0, &inp, 256, 0).unwrap();
        for t in 0..64usize {
            let (w, lane) = (t / 32 * 32, t % 32);
            let v = |l: usize| inp[w + l];
            let down = if lane + 1 < 32 { v(lane + 1) } else { v(lane) };
            let ballot: u32 = (0..32)
                .filter(|&l| (v(l) as i32) & 1 == 1)
                .map(|l| 1u32 << l)
                .sum();
            assert_eq!(out[4 * t], down, "shfl_down lane {t}");
            assert_eq!(out[4 * t + 1], v(0), "shfl lane {t}");
            assert_eq!(out[4 * t + 2], ballot as f32, "ballot lane {t}");
            assert_eq!(out[4 * t + 3], v(lane ^ 3), "shfl_xor lane {t}");
        }
    }
}

#[test]
fn philox_kernel_matches_the_cpu_rng_and_random123_vectors() {
    // Random123 known-answer vectors for philox4x32_10, and the CPU implementation
    let cases: [([u32; 4], [u32; 2]); 2] = [
        ([0, 0, 0, 0], [0, 0]),
        (
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
        ),
    ];
    let kat = [
        [0x6627e8d5u32, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ];
    for ((ctr, key), want) in cases.iter().zip(kat) {
        let words: Vec<u32> = ctr.iter().chain(key.iter()).copied().collect();
        let inp: Vec<f32> = bytemuck::cast_slice(&words).to_vec();
        let out = run("emu_philox_fwd_f32", Order::Forward, 32, 0, &inp, 4, 0).unwrap();
        let got: Vec<u32> = bytemuck::cast_slice(&out).to_vec();
        assert_eq!(got, want.to_vec());
        assert_eq!(eraengine::rng::philox4x32_10(*ctr, *key), want);
    }
}

#[test]
fn out_of_bounds_write_is_caught_by_asan() {
    if std::env::var("ERAENGINE_EMU_ASAN_CHILD").as_deref() == Ok("1") {
        // the child: write one float past the end of an 8-float buffer; ASan aborts here
        let _ = run(
            "emu_oob_write_fwd_f32",
            Order::Forward,
            32,
            0,
            &[0.0; 32],
            8,
            0,
        );
        return;
    }
    if std::env::var("ERAENGINE_EMU_ASAN_TESTS").as_deref() != Ok("1") {
        println!("SKIPPED out_of_bounds_write_is_caught_by_asan: needs the ASan build (ERAENGINE_EMU_ASAN=1 at build time, ERAENGINE_EMU_ASAN_TESTS=1, LD_PRELOAD of libasan; see docs/gpu.md)");
        return;
    }
    // ASan aborts the process on the first error, so the write runs in a child process: this same
    // test binary, filtered to this test.
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "out_of_bounds_write_is_caught_by_asan",
            "--nocapture",
        ])
        .env("ERAENGINE_EMU_ASAN_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the out-of-bounds write went unnoticed:\n{stderr}"
    );
    assert!(
        stderr.contains("heap-buffer-overflow"),
        "ASan did not report it:\n{stderr}"
    );
}

#[test]
fn half_warps_may_run_different_collectives_on_their_own_masks() {
    let inp: Vec<f32> = (0..32).map(|v| (v * v % 17) as f32).collect();
    // the same computation on the host
    let mut v = inp.clone();
    let step = |v: &mut Vec<f32>, lanes: std::ops::Range<usize>, m: usize| {
        let old = v.clone();
        for l in lanes {
            v[l] += old[l ^ m];
        }
    };
    step(&mut v, 0..16, 1);
    step(&mut v, 0..16, 2);
    step(&mut v, 16..32, 4);
    step(&mut v, 0..32, 16);
    for order in [Order::Forward, Order::Reverse, Order::Shuffle(5)] {
        let out = run("emu_subwarp_fwd_f32", order, 32, 0, &inp, 32, 0).unwrap();
        assert_eq!(out, v, "{order:?}");
    }
}
