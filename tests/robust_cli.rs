//! Issue 12 through the CLI: outputs never clobber inputs (predict, train, walk-forward, import),
//! store checksums are checked on open, memory is refused before it is allocated, NaN outputs are
//! errors, `predict --neutralize` neutralizes as numerai-tools does, live submissions are checked,
//! progress goes to stderr (one line per stage when it is not a terminal, nothing under --quiet).

mod common;

use common::TempDir;
use eraengine::checkpoint::Checkpoint;
use eraengine::data::batch::imputed_features;
use eraengine::data::store::Store;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_eraengine");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Synthetic stores (train, validation, live) and a model trained for one epoch.
fn setup(tag: &str) -> (TempDir, PathBuf) {
    let d = TempDir::new(&format!("robust-{tag}"));
    let o = run(&[
        "synth",
        "--kind",
        "easy",
        "--eras",
        "6",
        "--rows",
        "60",
        "--features",
        "8",
        "--quiet",
        "--out",
        s(&d),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = d.join("m.safetensors");
    let o = run(&[
        "train",
        "--data",
        s(&d.join("train.store")),
        "--epochs",
        "1",
        "--d-model",
        "16",
        "--heads",
        "2",
        "--layers",
        "1",
        "--quiet",
        "--out",
        s(&m),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    (d, m)
}

fn read_csv(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .skip(1)
        .map(|l| {
            let (id, v) = l.rsplit_once(',').unwrap();
            (id.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn outputs_that_are_inputs_are_refused_and_left_unchanged() {
    let (d, m) = setup("clobber");
    let live = d.join("live.store");
    let train = d.join("train.store");
    let before_live = std::fs::read(&live).unwrap();
    let before_model = std::fs::read(&m).unwrap();
    let before_train = std::fs::read(&train).unwrap();
    let new_out = d.join("new.safetensors");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "predict",
                "--model",
                s(&m),
                "--data",
                s(&live),
                "--out",
                s(&live),
            ],
            "--data",
        ),
        (
            vec![
                "predict",
                "--model",
                s(&m),
                "--data",
                s(&live),
                "--out",
                s(&m),
            ],
            "--model",
        ),
        (
            vec![
                "train",
                "--data",
                s(&train),
                "--epochs",
                "1",
                "--out",
                s(&train),
            ],
            "--data",
        ),
        (
            vec![
                "train",
                "--data",
                s(&train),
                "--init",
                s(&m),
                "--out",
                s(&m),
            ],
            "--init",
        ),
        (
            vec![
                "train",
                "--data",
                s(&train),
                "--grads-out",
                s(&train),
                "--out",
                s(&new_out),
            ],
            "--data",
        ),
        (
            vec![
                "train",
                "--walk-forward",
                "--window",
                "2",
                "--data",
                s(&train),
                "--predictions-out",
                s(&train),
            ],
            "--data",
        ),
        (vec!["import", s(&live), "--out", s(&live)], "input"),
    ];
    for (args, flag) in cases {
        let o = run(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(
            e.contains("refusing to overwrite") || e.contains("same file"),
            "{e}"
        );
        assert!(e.contains(flag), "{args:?} should name {flag}: {e}");
    }
    // a symlink to the store counts as the store
    let link = d.join("link.csv");
    std::os::unix::fs::symlink(&live, &link).unwrap();
    let o = run(&[
        "predict",
        "--model",
        s(&m),
        "--data",
        s(&live),
        "--out",
        s(&link),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(std::fs::read(&live).unwrap(), before_live);
    assert_eq!(std::fs::read(&m).unwrap(), before_model);
    assert_eq!(std::fs::read(&train).unwrap(), before_train);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn predict_writes_what_eval_reads_and_stdout_on_dash() {
    let (d, m) = setup("roundtrip");
    let valid = d.join("validation.store");
    let o = run(&[
        "predict",
        "--model",
        s(&m),
        "--data",
        s(&valid),
        "--out",
        "-",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let rows = read_csv(&text);
    assert_eq!(rows.len(), Store::open(&valid).unwrap().n_rows());
    assert!(rows.iter().all(|(_, v)| *v > 0.0 && *v < 1.0));
    let p = d.join("p.csv");
    std::fs::write(&p, &text).unwrap();
    let o = run(&[
        "eval",
        "--predictions",
        s(&p),
        "--data",
        s(&valid),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_dir_all(&d).unwrap();
}

/// Flips one data byte of a store (not the header), as a bad disk would.
fn flip_data_byte(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let k = b.len() - 3;
    b[k] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_flipped_store_byte_is_found_on_open_unless_no_verify() {
    let (d, m) = setup("checksum");
    let valid = d.join("validation.store");
    let ok = run(&[
        "predict",
        "--model",
        s(&m),
        "--data",
        s(&valid),
        "--out",
        "-",
    ]);
    assert!(ok.status.success());
    let p = d.join("p.csv");
    std::fs::write(&p, &ok.stdout).unwrap();
    flip_data_byte(&valid);
    let out = d.join("out.csv");
    let t_out = d.join("t.st");
    let cmds: Vec<Vec<&str>> = vec![
        vec![
            "predict",
            "--model",
            s(&m),
            "--data",
            s(&valid),
            "--out",
            s(&out),
        ],
        vec!["eval", "--predictions", s(&p), "--data", s(&valid)],
        vec![
            "train",
            "--data",
            s(&valid),
            "--epochs",
            "1",
            "--out",
            s(&t_out),
        ],
    ];
    for c in cmds {
        let o = run(&c);
        let e = stderr(&o);
        assert!(!o.status.success(), "{c:?} accepted a corrupt store");
        assert!(e.contains("data checksum mismatch"), "{c:?}: {e}");
        assert!(e.contains("--no-verify"), "{e}");
    }
    assert!(!out.exists(), "nothing is written from a corrupt store");
    // --no-verify skips the check (the flipped byte is a target value, still in range)
    let o = run(&[
        "eval",
        "--predictions",
        s(&p),
        "--data",
        s(&valid),
        "--no-verify",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_dir_all(&d).unwrap();
}

/// Runs the binary with its address space limited to `mb` MiB (`prlimit --as`).
fn run_limited(mb: u64, args: &[&str]) -> Output {
    Command::new("prlimit")
        .arg(format!("--as={}", mb << 20))
        .arg(BIN)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn memory_is_refused_before_it_is_allocated() {
    let (d, _m) = setup("memory");
    let train = d.join("train.store");
    let out = d.join("x.safetensors");
    // 1 GiB of address space: far less than either model needs; an allocation attempt would abort
    // (exit 134) or be killed, a refusal is a usage error naming what was asked.
    for (flag, value) in [("--d-model", "65536"), ("--d-ff", "1000000000000")] {
        let o = run_limited(
            1024,
            &["train", "--data", s(&train), flag, value, "--out", s(&out)],
        );
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {e}");
        assert!(
            e.contains("needs about") && e.contains("is available"),
            "{e}"
        );
        assert!(e.contains(value), "the message names what was asked: {e}");
        assert!(
            !e.contains("panicked") && !e.contains("memory allocation"),
            "{e}"
        );
    }
    assert!(!out.exists());
    // /dev/zero as a store or checkpoint: refused without reading
    let o = run_limited(1024, &["info", "/dev/zero"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    // a checkpoint whose header claims more data than the file holds
    let fake = d.join("fake.safetensors");
    let header = br#"{"w":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}"#;
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header);
    b.extend_from_slice(&[0u8; 16]);
    std::fs::write(&fake, b).unwrap();
    let o = run_limited(256, &["info", s(&fake)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("holds only"), "{}", stderr(&o));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_nan_model_output_is_an_error_naming_the_era() {
    let (d, m) = setup("nan");
    let mut ck = Checkpoint::load(&m).unwrap();
    // finite weights whose products overflow to inf, then inf - inf = NaN
    for (name, _, data) in ck.tensors.iter_mut() {
        if name.ends_with(".weight") {
            for (i, x) in data.iter_mut().enumerate() {
                *x = if i % 2 == 0 { 3e38 } else { -3e38 };
            }
        }
    }
    let bad = d.join("bad.safetensors");
    ck.save(&bad).unwrap();
    let out = d.join("p.csv");
    let o = run(&[
        "predict",
        "--model",
        s(&bad),
        "--data",
        s(&d.join("validation.store")),
        "--out",
        s(&out),
    ]);
    let e = stderr(&o);
    assert!(!o.status.success(), "NaN predictions were written");
    assert!(
        e.contains("era ") && e.contains("no predictions written"),
        "{e}"
    );
    assert!(!out.exists());
    std::fs::remove_dir_all(&d).unwrap();
}

/// Solves the symmetric positive definite system `g x = b` (n×n) by Gaussian elimination in f64.
fn solve(mut g: Vec<f64>, mut b: Vec<f64>, n: usize) -> Vec<f64> {
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| g[i * n + c].abs().total_cmp(&g[j * n + c].abs()))
            .unwrap();
        for k in 0..n {
            g.swap(c * n + k, p * n + k);
        }
        b.swap(c, p);
        for r in c + 1..n {
            let f = g[r * n + c] / g[c * n + c];
            for k in c..n {
                g[r * n + k] -= f * g[c * n + k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for c in (0..n).rev() {
        let s: f64 = (c + 1..n).map(|k| g[c * n + k] * x[k]).sum();
        x[c] = (b[c] - s) / g[c * n + c];
    }
    x
}

#[test]
fn predict_neutralize_matches_a_least_squares_oracle() {
    let (d, m) = setup("neutralize");
    let valid = d.join("validation.store");
    let store = Store::open(&valid).unwrap();
    let raw = run(&[
        "predict",
        "--model",
        s(&m),
        "--data",
        s(&valid),
        "--out",
        "-",
        "--raw",
    ]);
    assert!(raw.status.success(), "{}", stderr(&raw));
    let raw = read_csv(&String::from_utf8(raw.stdout).unwrap());
    let cols = ["feature_0001", "feature_0004", "feature_0006"];
    let names = store.feature_names().to_vec();
    let chosen: Vec<&str> = cols
        .iter()
        .filter(|c| names.iter().any(|n| n == *c))
        .copied()
        .collect();
    let chosen: Vec<&str> = if chosen.len() == cols.len() {
        chosen
    } else {
        vec![names[0].as_str(), names[3].as_str(), names[5].as_str()]
    };
    let list = chosen.join(",");
    for prop in [1.0, 0.5] {
        let ps = prop.to_string();
        let o = run(&[
            "predict",
            "--model",
            s(&m),
            "--data",
            s(&valid),
            "--out",
            "-",
            "--raw",
            "--neutralize",
            &ps,
            "--neutralize-features",
            &list,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let got = read_csv(&String::from_utf8(o.stdout).unwrap());
        assert_eq!(got.len(), raw.len());
        let idx: Vec<usize> = chosen
            .iter()
            .map(|c| names.iter().position(|n| n == c).unwrap())
            .collect();
        let nf = store.n_features();
        let mut at = 0;
        for e in store.eras() {
            let mut f = Vec::new();
            imputed_features(&e, &mut f);
            let rows = e.n_rows;
            let k = idx.len() + 1;
            // A = [chosen features, 1]; the oracle solves AᵀA β = Aᵀy
            let a = |r: usize, c: usize| {
                if c < idx.len() {
                    f[r * nf + idx[c]] as f64
                } else {
                    1.0
                }
            };
            let y: Vec<f64> = raw[at..at + rows].iter().map(|x| x.1).collect();
            let mut g = vec![0.0; k * k];
            let mut b = vec![0.0; k];
            for (r, yr) in y.iter().enumerate() {
                for i in 0..k {
                    b[i] += a(r, i) * yr;
                    for j in 0..k {
                        g[i * k + j] += a(r, i) * a(r, j);
                    }
                }
            }
            let beta = solve(g, b, k);
            for r in 0..rows {
                let fit: f64 = (0..k).map(|c| a(r, c) * beta[c]).sum();
                let want = y[r] - prop * fit;
                let (id, v) = &got[at + r];
                assert_eq!(id, &raw[at + r].0);
                assert!(
                    (v - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{v} vs {want}"
                );
            }
            at += rows;
        }
    }
    // ranked by default: values in (0, 1)
    let o = run(&[
        "predict",
        "--model",
        s(&m),
        "--data",
        s(&valid),
        "--out",
        "-",
        "--neutralize",
        "0.5",
    ]);
    assert!(o.status.success());
    let ranked = read_csv(&String::from_utf8(o.stdout).unwrap());
    assert!(ranked.iter().all(|(_, v)| *v > 0.0 && *v < 1.0));
    // bad proportions and names are usage errors
    for (p, feats) in [
        ("1.5", None),
        ("-0.1", None),
        ("0.5", Some("no_such_feature")),
    ] {
        let mut args = vec![
            "predict",
            "--model",
            s(&m),
            "--data",
            s(&valid),
            "--out",
            "-",
            "--neutralize",
            p,
        ];
        if let Some(f) = feats {
            args.extend(["--neutralize-features", f]);
        }
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    // eval reports the exposure after neutralizing, lower than before at proportion 1
    let p = d.join("p.csv");
    let o = run(&[
        "predict",
        "--model",
        s(&m),
        "--data",
        s(&valid),
        "--out",
        s(&p),
    ]);
    assert!(o.status.success());
    let j = d.join("e.json");
    let o = run(&[
        "eval",
        "--predictions",
        s(&p),
        "--data",
        s(&valid),
        "--neutralize",
        "1",
        "--json",
        s(&j),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    let before = v["summary"]["feature_exposure"]
        .as_f64()
        .or_else(|| v["feature_exposure"].as_f64())
        .unwrap();
    let after = v["neutralized"]["feature_exposure"].as_f64().unwrap();
    // exposure is measured on ranks, so full neutralization of the raw values lowers it without
    // reaching 0
    assert!(after < 0.5 * before, "{before} -> {after}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn live_stores_are_checked_as_submissions() {
    let (d, m) = setup("live");
    let live = d.join("live.store");
    let o = run(&[
        "predict",
        "--model",
        s(&m),
        "--data",
        s(&live),
        "--out",
        "-",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("live submission check passed"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "predict",
        "--model",
        s(&m),
        "--data",
        s(&live),
        "--out",
        "-",
        "--raw",
        "--live-check",
    ]);
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn import_removes_stale_temps_and_reports_progress_by_stage() {
    let d = TempDir::new("robust-import");
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/numerai_v5.csv");
    let out = d.join("v5.store");
    // what a kill -9 during an earlier import left behind (pid far above pid_max: not running)
    let stale = d.join(".v5.store.part-4999999.tmp");
    std::fs::write(&stale, b"half a store").unwrap();
    let o = run(&["import", s(&csv), "--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stale.exists(), "the stale temp file is removed");
    let e = stderr(&o);
    // stderr is a pipe here: one line for the stage, with done count and rate
    let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("import: ")).collect();
    assert_eq!(lines.len(), 1, "{e}");
    assert!(
        lines[0].contains("rows/s") && lines[0].contains("done in"),
        "{e}"
    );
    let o = run(&["import", s(&csv), "--out", s(&d.join("q.store")), "--quiet"]);
    assert!(o.status.success());
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    // eval: one progress line for its stage, none under --quiet
    let store = Store::open(&out).unwrap();
    let mut p = String::from("id,prediction\n");
    for r in 0..store.n_rows() {
        p += &format!("{},{}\n", store.id(r), (r % 7) as f64 / 7.0 + 0.01);
    }
    let pf = d.join("p.csv");
    std::fs::write(&pf, p).unwrap();
    let o = run(&["eval", "--predictions", s(&pf), "--data", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    // eras without any target are not scored: the stage counts the scored ones
    let line = e
        .lines()
        .find(|l| l.starts_with("eval: "))
        .expect("a progress line");
    let (done, total) = line["eval: ".len()..]
        .split_once(' ')
        .unwrap()
        .0
        .split_once('/')
        .unwrap();
    assert_eq!(done, total, "{line}");
    assert!(total.parse::<usize>().unwrap() <= store.n_eras() && line.contains("done in"));
    assert_eq!(
        e.lines().filter(|l| l.starts_with("eval: ")).count(),
        1,
        "{e}"
    );
    let o = run(&[
        "eval",
        "--predictions",
        s(&pf),
        "--data",
        s(&out),
        "--quiet",
    ]);
    assert!(!stderr(&o).contains("eval: "));
    std::fs::remove_dir_all(&d).unwrap();
}
