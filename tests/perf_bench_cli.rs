//! `eraengine bench --json` with the shape flags: the SPEC §2 keys, the config echoed back, a FLOP
//! count that grows with the shape, and a usage error for heads that do not divide d_model.

use std::process::Command;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eraengine"))
        .arg("bench")
        .args(["--device", "cpu", "--json", "--reps", "1"])
        .args(args)
        .output()
        .expect("the binary runs")
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = bench(args);
    assert!(
        out.status.success(),
        "bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bench --json prints one JSON object")
}

#[test]
fn bench_json_has_the_spec_keys_and_echoes_the_shape() {
    for attention in ["linear", "softmax"] {
        let args = [
            "--rows",
            "37",
            "--features",
            "11",
            "--d-model",
            "12",
            "--heads",
            "3",
            "--layers",
            "1",
            "--attention",
            attention,
        ];
        let v = json(&args);
        assert_eq!(v["device"], "cpu");
        let c = &v["config"];
        assert_eq!(c["rows"], 37);
        assert_eq!(c["features"], 11);
        assert_eq!(c["d_model"], 12);
        assert_eq!(c["heads"], 3);
        assert_eq!(c["layers"], 1);
        assert_eq!(c["dropout"], 0.1);
        assert_eq!(c["attention"], attention);
        for key in ["step_ms", "rows_per_s", "gflops"] {
            let x = v[key].as_f64().unwrap_or(-1.0);
            assert!(x.is_finite() && x > 0.0, "{key} = {}", v[key]);
        }
        let ops = v["ops"].as_array().expect("ops is an array");
        assert!(ops.len() >= 5);
        for op in ops {
            assert!(op["name"].is_string());
            assert!(op["ms"].as_f64().is_some_and(|x| x >= 0.0));
        }
        let names: Vec<&str> = ops.iter().filter_map(|o| o["name"].as_str()).collect();
        assert!(
            names.iter().any(|n| n.starts_with(attention)),
            "{attention} attention is timed: {names:?}"
        );
    }
}

#[test]
fn bench_flops_grow_with_the_shape() {
    let small = json(&[
        "--rows",
        "20",
        "--features",
        "5",
        "--d-model",
        "8",
        "--heads",
        "2",
        "--layers",
        "1",
    ]);
    let big = json(&[
        "--rows",
        "40",
        "--features",
        "5",
        "--d-model",
        "8",
        "--heads",
        "2",
        "--layers",
        "2",
    ]);
    let f = |v: &serde_json::Value| v["flops_per_step"].as_f64().unwrap_or(0.0);
    assert!(f(&small) > 0.0);
    // twice the rows and twice the layers: more than twice the work
    assert!(f(&big) > 2.0 * f(&small), "{} vs {}", f(&big), f(&small));
}

#[test]
fn bench_rejects_heads_that_do_not_divide_d_model() {
    let out = bench(&["--rows", "10", "--d-model", "10", "--heads", "3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("heads"));
}

#[test]
fn gpu_bench_counts_the_steps_own_sync_not_its_clocks_wait() {
    // The bench waits for the device at the end of every timed step (a GPU step returns with its
    // backward queued); that wait is the clock's, so the step still reports its one loss read.
    let out = Command::new(env!("CARGO_BIN_EXE_eraengine"))
        .args([
            "bench",
            "--device",
            "emu",
            "--dry-run",
            "--json",
            "--reps",
            "3",
        ])
        .args([
            "--rows",
            "40",
            "--features",
            "7",
            "--d-model",
            "8",
            "--heads",
            "2",
        ])
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["syncs_per_step"], 1.0, "{v}");
    assert!(v["launches_per_step"].as_f64().is_some_and(|l| l > 10.0));
}

#[test]
fn bench_times_either_preset_and_refuses_another() {
    let shape = [
        "--rows",
        "30",
        "--features",
        "6",
        "--d-model",
        "8",
        "--heads",
        "2",
    ];
    let spec = json(&shape);
    assert_eq!(spec["config"]["dropout"], 0.1);
    assert_eq!(spec["config"]["context_dim"], 0);
    assert_eq!(spec["config"]["corr_weight"], 0.0);
    // what `train` trains by default: no dropout, the correlation loss, an era context of 8
    let mut args = shape.to_vec();
    args.extend(["--preset", "recommended"]);
    let rec = json(&args);
    assert_eq!(rec["config"]["dropout"], 0.0);
    assert_eq!(rec["config"]["context_dim"], 8);
    assert_eq!(rec["config"]["corr_weight"], 1.0);
    assert!(rec["step_ms"].as_f64().is_some_and(|t| t > 0.0));
    // a flag still overrides the preset
    args.extend(["--dropout", "0.2"]);
    assert_eq!(json(&args)["config"]["dropout"], 0.2);
    let out = bench(&["--preset", "fast"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--preset") && err.contains("fast"), "{err}");
}
