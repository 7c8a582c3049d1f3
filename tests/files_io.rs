//! Issue 12, item 1: outputs never overwrite inputs, `-` is standard output, symlinks and special
//! files are written through (never replaced), stale temp files are removed, broken pipes are quiet.

mod common;

use common::TempDir;
use eraengine::data::store::Store;
use eraengine::io::{check_outputs, remove_stale_temps, temp_owner, write_atomic};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_eraengine");

/// A small synthetic store and a predictions CSV for all of its rows.
fn store_and_preds(dir: &Path) -> (PathBuf, PathBuf) {
    let st = Command::new(BIN)
        .args([
            "synth",
            "--kind",
            "easy",
            "--eras",
            "3",
            "--rows",
            "40",
            "--features",
            "8",
            "--quiet",
            "--out",
        ])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    let store = dir.join("train.store");
    let s = Store::open(&store).unwrap();
    let mut csv = String::from("id,prediction\n");
    let mut k = 0u64;
    for e in 0..s.n_eras() {
        let era = s.era(e);
        for r in 0..era.n_rows {
            k = k
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            csv += &format!("{},{}\n", era.id(r), (k >> 11) as f64 / (1u64 << 53) as f64);
        }
    }
    let preds = dir.join("p.csv");
    std::fs::write(&preds, csv).unwrap();
    (store, preds)
}

/// Names in `dir` that look like temporary files.
fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

fn eval(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(BIN)
        .arg("eval")
        .arg("--quiet")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn eval_refuses_an_output_that_is_an_input() {
    let d = TempDir::new("files-same");
    let (store, preds) = store_and_preds(&d);
    let pbytes = std::fs::read(&preds).unwrap();
    let sbytes = std::fs::read(&store).unwrap();
    std::os::unix::fs::symlink(&preds, d.join("link.csv")).unwrap();
    std::fs::hard_link(&store, d.join("hard.store")).unwrap();
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        ("--json", preds.clone(), "--predictions"),
        ("--svg", store.clone(), "--data"),
        ("--json", d.join("link.csv"), "--predictions"),
        ("--svg", d.join("hard.store"), "--data"),
        ("--json", d.join(".").join("p.csv"), "--predictions"),
    ];
    for (flag, out, input) in cases {
        let o = eval(&[
            "--predictions".as_ref(),
            preds.as_os_str(),
            "--data".as_ref(),
            store.as_os_str(),
            flag.as_ref(),
            out.as_os_str(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flag} {}: {err}", out.display());
        assert!(err.contains("same file") && err.contains(input), "{err}");
        assert!(o.stdout.is_empty(), "refused before any work");
        assert_eq!(std::fs::read(&preds).unwrap(), pbytes);
        assert_eq!(std::fs::read(&store).unwrap(), sbytes);
        assert!(std::fs::symlink_metadata(d.join("link.csv"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(temps(&d).is_empty(), "{:?}", temps(&d));
    }
    // two outputs on one path
    let o = eval(&[
        "--predictions".as_ref(),
        preds.as_os_str(),
        "--data".as_ref(),
        store.as_os_str(),
        "--json".as_ref(),
        d.join("r.out").as_os_str(),
        "--svg".as_ref(),
        d.join("r.out").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("same file"));
    assert!(!d.join("r.out").exists());
}

#[test]
fn eval_json_dash_and_dev_stdout_write_to_standard_output() {
    let d = TempDir::new("files-stdout");
    let (store, preds) = store_and_preds(&d);
    for out in ["-", "/dev/stdout"] {
        let o = eval(&[
            "--predictions".as_ref(),
            preds.as_os_str(),
            "--data".as_ref(),
            store.as_os_str(),
            "--no-fnc".as_ref(),
            "--json".as_ref(),
            out.as_ref(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(s.contains("\"corr\""), "{out}: {s}");
        assert!(!Path::new("-").exists());
    }
    let m = std::fs::symlink_metadata("/dev/stdout").unwrap();
    assert!(m.file_type().is_symlink(), "/dev/stdout was replaced");
}

#[test]
fn write_atomic_writes_through_a_symlink_and_keeps_it() {
    let d = TempDir::new("files-symlink");
    std::fs::create_dir_all(d.join("real")).unwrap();
    let target = d.join("real/out.json");
    std::fs::write(&target, "old").unwrap();
    let link = d.join("out.json");
    std::os::unix::fs::symlink("real/out.json", &link).unwrap();
    write_atomic(&link, b"new").unwrap();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
    assert!(temps(&d).is_empty() && temps(&d.join("real")).is_empty());
    // a dangling link: its target is created, the link stays
    let dangling = d.join("dangling.json");
    std::os::unix::fs::symlink("real/later.json", &dangling).unwrap();
    write_atomic(&dangling, b"x").unwrap();
    assert!(std::fs::symlink_metadata(&dangling)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(d.join("real/later.json")).unwrap(),
        "x"
    );
}

#[test]
fn write_atomic_writes_into_a_fifo_and_a_device_without_replacing_them() {
    use std::os::unix::fs::FileTypeExt;
    let d = TempDir::new("files-fifo");
    let fifo = d.join("pipe");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let f2 = fifo.clone();
    let reader = std::thread::spawn(move || std::fs::read(&f2).unwrap());
    write_atomic(&fifo, b"through the pipe").unwrap();
    assert_eq!(reader.join().unwrap(), b"through the pipe");
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(temps(&d).is_empty());
    write_atomic(Path::new("/dev/null"), b"gone").unwrap();
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    // a directory is an error, and stays a directory
    let e = write_atomic(&d, b"x").unwrap_err().to_string();
    assert!(e.contains("directory"), "{e}");
}

#[test]
fn stale_temp_files_of_dead_processes_are_removed() {
    let d = TempDir::new("files-stale");
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let out = d.join("train.store");
    let stale = [
        format!(".train.store.part-{dead}.tmp"),
        format!(".train.store.{dead}.tmp"),
    ];
    let keep = [
        ".train.store.part-1.tmp".to_string(),       // pid 1 is alive
        format!(".other.store.part-{dead}.tmp"),     // another output's
        format!(".train.store.part-{dead}.tmp.bak"), // not our pattern
        "train.store.part-x.tmp".to_string(),
    ];
    for n in stale.iter().chain(&keep) {
        std::fs::write(d.join(n), vec![7u8; 1000]).unwrap();
    }
    assert_eq!(temp_owner("train.store", &stale[0]), Some(dead));
    assert_eq!(temp_owner("train.store", &keep[3]), None);
    let removed = remove_stale_temps(&out).unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    for n in &stale {
        assert!(!d.join(n).exists(), "{n} left");
    }
    for n in &keep {
        assert!(d.join(n).exists(), "{n} removed");
    }
    // write_atomic cleans up beside its output too
    std::fs::write(d.join(&stale[1]), b"x").unwrap();
    write_atomic(&out, b"data").unwrap();
    assert!(!d.join(&stale[1]).exists());
}

#[test]
fn check_outputs_ignores_stdout_and_devices() {
    let d = TempDir::new("files-check");
    let a = d.join("a");
    std::fs::write(&a, "x").unwrap();
    check_outputs(&[("--out", Path::new("-"))], &[("--data", Path::new("-"))]).unwrap();
    check_outputs(
        &[("--out", Path::new("/dev/null"))],
        &[("--data", Path::new("/dev/null"))],
    )
    .unwrap();
    check_outputs(&[("--out", &d.join("b"))], &[("--data", &a)]).unwrap();
    let e = check_outputs(&[("--out", &a)], &[("--data", &a)]).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let e = check_outputs(&[("--out", &d)], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("directory"), "{e}");
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let d = TempDir::new("files-pipe");
    let (store, _) = store_and_preds(&d);
    for _ in 0..3 {
        let mut child = Command::new(BIN)
            .arg("info")
            .arg(&store)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is written
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert_ne!(o.status.code(), Some(101), "{err}");
        use std::os::unix::process::ExitStatusExt;
        assert!(
            o.status.success() || o.status.signal() == Some(13),
            "{:?}: {err}",
            o.status
        );
    }
}
