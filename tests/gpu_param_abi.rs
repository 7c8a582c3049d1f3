//! The kernel parameter ABI against the PTX NVRTC produced: every kernel of `Kernel::ALL` has one
//! `.param .align A .b8 <name>_param_0[S]` whose size S is the Rust struct's size (what the
//! launchers pass) and whose alignment A is the struct's (8 with pointers), and `.maxntid` agrees
//! with the generated `max_threads()`. `scripts/kernel_gate.sh` writes the PTX to `target/ptx`
//! (or `$ERAENGINE_PTX_DIR`) and runs this test with `ERAENGINE_REQUIRE_NVRTC=1`; without PTX and
//! without that variable it says why it checks nothing (machines without NVRTC).

use eraengine::gpu::params::Kernel;
use std::collections::HashMap;
use std::path::PathBuf;

struct Entry {
    align: usize,
    size: usize,
    params: usize,
    maxntid: Option<u32>,
}

/// Every `.entry` of one PTX text.
fn entries(ptx: &str) -> HashMap<String, Entry> {
    let mut out = HashMap::new();
    let lines: Vec<&str> = ptx.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim().strip_prefix(".visible .entry ") else {
            continue;
        };
        let name = rest.trim_end_matches('(').trim().to_string();
        let mut e = Entry {
            align: 0,
            size: 0,
            params: 0,
            maxntid: None,
        };
        for l in &lines[i + 1..] {
            let l = l.trim();
            if l.starts_with('{') {
                break;
            }
            if let Some(p) = l.strip_prefix(".param .align ") {
                // "8 .b8 name_param_0[72]"
                let mut it = p.split_whitespace();
                e.align = it.next().and_then(|a| a.parse().ok()).unwrap_or(0);
                let decl = it.nth(1).unwrap_or("");
                e.size = decl
                    .split('[')
                    .nth(1)
                    .and_then(|s| s.trim_end_matches([']', ',']).parse().ok())
                    .unwrap_or(0);
                e.params += 1;
            } else if l.starts_with(".param") {
                e.params += 1;
            }
            if let Some(m) = l.strip_prefix(".maxntid ") {
                e.maxntid = m.split(',').next().and_then(|v| v.trim().parse().ok());
            }
        }
        out.insert(name, e);
    }
    out
}

#[test]
fn every_kernel_param_struct_matches_its_ptx() {
    let dir = std::env::var_os("ERAENGINE_PTX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ptx"));
    let required = std::env::var("ERAENGINE_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
    let mut found = HashMap::new();
    for arch in ["compute_80", "compute_90"] {
        for k in Kernel::ALL {
            let path = dir.join(format!("{}.{arch}.ptx", k.module()));
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            let text = text.trim_end_matches('\0');
            found.insert((k.module(), arch), entries(text));
        }
    }
    if found.is_empty() {
        assert!(
            !required,
            "ERAENGINE_REQUIRE_NVRTC=1 but no PTX in {}",
            dir.display()
        );
        eprintln!(
            "gpu_param_abi: no PTX in {} (run scripts/kernel_gate.sh): nothing to check",
            dir.display()
        );
        return;
    }
    let mut checked = 0;
    for ((module, arch), ents) in &found {
        for k in Kernel::ALL.iter().filter(|k| k.module() == *module) {
            let e = ents
                .get(k.name())
                .unwrap_or_else(|| panic!("{module}.{arch}.ptx has no entry {}", k.name()));
            assert_eq!(e.params, 1, "{}: one parameter struct", k.name());
            assert_eq!(
                e.size,
                k.param_bytes(),
                "{} ({arch}): .param size vs the Rust struct",
                k.name()
            );
            assert!(
                e.align == 8 && k.param_bytes() % 8 == 0,
                "{} ({arch}): .align {} (the structs hold pointers: 8)",
                k.name(),
                e.align
            );
            assert_eq!(
                e.maxntid.unwrap_or(1024),
                k.max_threads(),
                "{} ({arch}): .maxntid vs max_threads()",
                k.name()
            );
            checked += 1;
        }
    }
    assert!(checked >= Kernel::ALL.len(), "checked {checked} kernels");
}
