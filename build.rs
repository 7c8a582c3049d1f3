//! Build script: kernels for both paths of the GPU backend.
//!
//! 1. Embeds every kernel source of `kernels/*.cu` (with `common.cuh` inlined behind `#line`
//!    directives) so the runtime can compile them with NVRTC when no PTX was embedded.
//! 2. When libnvrtc can be loaded (env `ERAENGINE_NVRTC_LIB` = path of the .so, else the loader path
//!    `libnvrtc.so.12` / `libnvrtc.so`), compiles each kernel file for compute_80 and compute_90 (PTX)
//!    and sm_80 / sm_90 (cubin) and embeds the images; a compile error fails the build with NVRTC's
//!    log. Without libnvrtc: a `cargo:warning`, and the runtime compiles from source.
//!    `ERAENGINE_REQUIRE_NVRTC=1` turns absence into a build failure; `ERAENGINE_PTX_DIR=dir` also
//!    writes the PTX there (the compile gate, `scripts/kernel_gate.sh`, runs ptxas on them).
//!    Never runs nvcc or nvidia-smi. libnvrtc is opened with dlopen through a ten-line FFI instead
//!    of cudarc as a build-dependency: that would compile a second copy of cudarc (and libloading)
//!    for the host on every clean build, for the same ten symbols.
//! 3. Generates the Rust side of every kernel parameter struct of `kernels/common.cuh`
//!    (`#[repr(C)]`, same field names, types and order, size asserted) and the kernel ids: an enum
//!    `Kernel` over every `extern "C" __global__` entry point of `kernels/*.cu`, and one typed
//!    constant per kernel (`kernel::LAYER_NORM_FWD_F32: Typed<LayerNormFwdParams>`), so a renamed
//!    field or kernel, or a kernel launched with another kernel's struct, is a compile error.
//! 4. Compiles the CPU emulator (`kernels/emu/emu.cpp`) and the same `kernels/*.cu` files — plus the
//!    emulator-only test kernels of `kernels/emu/tests/*.cu` — as C++ with `emu.h` force-included
//!    into a static library, with a kernel table generated from the `extern "C" __global__`
//!    declarations. `ERAENGINE_EMU_ASAN=1` adds `-fsanitize=address -fno-omit-frame-pointer`.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

type BuildResult<T> = std::result::Result<T, String>;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

struct KernelFile {
    stem: String,
    path: PathBuf,
    /// (kernel name, parameter struct type)
    kernels: Vec<(String, String)>,
}

fn run() -> BuildResult<()> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
    for var in [
        "ERAENGINE_NVRTC_LIB",
        "ERAENGINE_REQUIRE_NVRTC",
        "ERAENGINE_PTX_DIR",
        "ERAENGINE_EMU_ASAN",
        "ERAENGINE_EMU_FMA",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let kdir = root.join("kernels");
    let common_path = kdir.join("common.cuh");
    let common = read(&common_path)?;
    let product = scan(&kdir)?;
    let tests = scan(&kdir.join("emu").join("tests"))?;

    // Inlined sources, embedded for the runtime NVRTC path.
    let mut inlined = Vec::new();
    for kf in &product {
        let src = inline_common(&read(&kf.path)?, &common, &kf.stem);
        let p = out.join(format!("{}.inlined.cu", kf.stem));
        write(&p, src.as_bytes())?;
        inlined.push((kf, src, p));
    }

    // the kernel parameter structs (`...Params`) and the records of tables the host uploads
    // (`...Record`); helper structs of the kernels stay C-only
    let structs: Vec<CStruct> = parse_structs(&common)
        .map_err(|e| format!("{}: {e}", common_path.display()))?
        .into_iter()
        .filter(|s| s.name.ends_with("Params") || s.name.ends_with("Record"))
        .collect();
    write_params(&out, &structs, &product)?;
    let ptx = compile_nvrtc(&inlined, &out)?;
    write_rust_table(&out, &inlined, &ptx)?;
    build_emulator(&root, &out, &product, &tests)
}

fn read(p: &Path) -> BuildResult<String> {
    fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn write(p: &Path, bytes: &[u8]) -> BuildResult<()> {
    fs::write(p, bytes).map_err(|e| format!("{}: {e}", p.display()))
}

/// Every `*.cu` of `dir` (sorted), with its `extern "C" __global__` kernels.
fn scan(dir: &Path) -> BuildResult<Vec<KernelFile>> {
    let mut files = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(_) => return Ok(files),
    };
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    paths.sort();
    for path in paths {
        let src = read(&path)?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| format!("{}: bad file name", path.display()))?
            .to_string();
        let kernels =
            parse_kernels(&strip_comments(&src)).map_err(|e| format!("{}: {e}", path.display()))?;
        files.push(KernelFile {
            stem,
            path,
            kernels,
        });
    }
    Ok(files)
}

/// `src` with comments blanked out (newlines kept, so line numbers stay right).
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Finds `extern "C" __global__ [__launch_bounds__(..)] void NAME(TYPE p)` declarations.
fn parse_kernels(src: &str) -> BuildResult<Vec<(String, String)>> {
    let mut found = Vec::new();
    let mut rest = src;
    while let Some(pos) = rest.find("extern \"C\" __global__") {
        let after = &rest[pos..];
        let lineno = src[..src.len() - rest.len() + pos].lines().count() + 1;
        let open = after
            .find('(')
            .ok_or_else(|| format!("line {lineno}: kernel without parameter list"))?;
        let mut head = &after[..open];
        if let Some(lb) = head.find("__launch_bounds__") {
            // skip the launch bounds' own parentheses
            let close = after[lb..]
                .find(')')
                .ok_or_else(|| format!("line {lineno}: unclosed __launch_bounds__"))?;
            let open2 = after[lb + close..]
                .find('(')
                .ok_or_else(|| format!("line {lineno}: kernel without parameter list"))?;
            let open = lb + close + open2;
            head = &after[..open];
            let close_p = after[open..]
                .find(')')
                .ok_or_else(|| format!("line {lineno}: unclosed parameter list"))?;
            found.push(kernel_decl(head, &after[open + 1..open + close_p], lineno)?);
            rest = &after[open + close_p..];
            continue;
        }
        let close = after[open..]
            .find(')')
            .ok_or_else(|| format!("line {lineno}: unclosed parameter list"))?;
        found.push(kernel_decl(head, &after[open + 1..open + close], lineno)?);
        rest = &after[open + close..];
    }
    Ok(found)
}

/// N of `__launch_bounds__(N)` on kernel `name` in `src` (comments stripped), if any.
fn launch_bounds(src: &str, name: &str) -> Option<u32> {
    let at = src.find(&format!(" {name}("))?;
    let line_start = src[..at].rfind('\n').map_or(0, |i| i + 1);
    let head = &src[line_start..at];
    let lb = head.find("__launch_bounds__(")? + "__launch_bounds__(".len();
    let end = head[lb..].find([')', ','])?;
    head[lb..lb + end].trim().parse().ok()
}

fn kernel_decl(head: &str, params: &str, lineno: usize) -> BuildResult<(String, String)> {
    let name = head
        .split_whitespace()
        .last()
        .ok_or_else(|| format!("line {lineno}: kernel without a name"))?
        .to_string();
    if params.contains(',') {
        return Err(format!(
            "line {lineno}: kernel {name} must take ONE parameter struct (see kernels/common.cuh)"
        ));
    }
    let words: Vec<&str> = params.split_whitespace().collect();
    if words.len() != 2 {
        return Err(format!(
            "line {lineno}: kernel {name}: expected `<Struct> p`, found `{params}`"
        ));
    }
    Ok((name, words[0].to_string()))
}

/// One parameter struct of common.cuh: name, doc lines, (C type, field).
struct CStruct {
    name: String,
    doc: Vec<String>,
    fields: Vec<(String, String)>,
}

/// The `struct Name { type field; ... };` blocks of common.cuh with the `//` lines just above each.
fn parse_structs(src: &str) -> BuildResult<Vec<CStruct>> {
    let mut out = Vec::new();
    let mut doc: Vec<String> = Vec::new();
    let mut cur: Option<CStruct> = None;
    for (i, line) in src.lines().enumerate() {
        let t = line.trim();
        if let Some(st) = cur.as_mut() {
            if t.starts_with("};") {
                out.push(cur.take().ok_or("unreachable")?);
                continue;
            }
            let code = t.split("//").next().unwrap_or("").trim();
            if code.is_empty() {
                continue;
            }
            let code = code
                .strip_suffix(';')
                .ok_or_else(|| format!("line {}: field without `;`: {t}", i + 1))?;
            let (ty, name) = code
                .rsplit_once(char::is_whitespace)
                .ok_or_else(|| format!("line {}: cannot read field `{code}`", i + 1))?;
            let ty = ty.trim().to_string();
            let name = name.trim_start_matches('*').to_string();

            let ty = if code.contains('*') && !ty.ends_with('*') {
                format!("{ty}*")
            } else {
                ty
            };
            st.fields.push((ty, name));
        } else if let Some(rest) = t.strip_prefix("struct ") {
            let name = rest.trim_end_matches('{').trim().to_string();
            cur = Some(CStruct {
                name,
                doc: std::mem::take(&mut doc),
                fields: Vec::new(),
            });
        } else if let Some(c) = t.strip_prefix("//") {
            doc.push(c.trim().to_string());
        } else {
            doc.clear();
        }
    }
    Ok(out)
}

/// Rust type, size and alignment of a field's C type (pointers are 8-byte device addresses).
fn rust_type(c: &str) -> BuildResult<(&'static str, usize)> {
    if c.ends_with('*') {
        return Ok(("u64", 8));
    }
    match c {
        "unsigned int" => Ok(("u32", 4)),
        "unsigned long long" => Ok(("u64", 8)),
        "int" => Ok(("i32", 4)),
        "float" => Ok(("f32", 4)),
        "double" => Ok(("f64", 8)),
        _ => Err(format!(
            "kernel parameter type `{c}` has no Rust mirror (see build.rs)"
        )),
    }
}

/// `LayerNormFwdF32` from `layer_norm_fwd_f32`.
fn camel(name: &str) -> String {
    name.split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// OUT_DIR/params.rs: the param structs and the kernel ids.
fn write_params(out: &Path, structs: &[CStruct], product: &[KernelFile]) -> BuildResult<()> {
    let mut rs =
        String::from("// Generated by build.rs from kernels/common.cuh and kernels/*.cu.\n");
    for st in structs {
        let mut size = 0usize;
        let mut align = 1usize;
        let mut fields = String::new();
        for (cty, name) in &st.fields {
            if name.contains('[') {
                return Err(format!(
                    "{}: array field `{name}` has no Rust mirror",
                    st.name
                ));
            }
            let (ty, sz) = rust_type(cty).map_err(|e| format!("{}.{name}: {e}", st.name))?;
            size = size.div_ceil(sz) * sz + sz;
            align = align.max(sz);
            let _ = writeln!(fields, "    pub {name}: {ty},");
        }
        let size = size.div_ceil(align) * align;
        for d in &st.doc {
            let _ = writeln!(rs, "/// {d}");
        }
        let _ = writeln!(
            rs,
            "#[repr(C)]\n#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]\npub struct {} {{\n{fields}}}\nconst _: () = assert!(std::mem::size_of::<{}>() == {size});\n",
            st.name, st.name
        );
    }
    let mut variants = String::new();
    let mut names = String::new();
    let mut modules = String::new();
    let mut consts = String::new();
    let mut all = String::new();
    let mut bounds = String::new();
    let mut psizes = String::new();
    for kf in product {
        let src = strip_comments(&read(&kf.path)?);
        for (k, ty) in &kf.kernels {
            if !structs.iter().any(|s| &s.name == ty) {
                return Err(format!(
                    "kernels/{}.cu: kernel {k} takes `{ty}`, which kernels/common.cuh does not define",
                    kf.stem
                ));
            }
            let v = camel(k);
            let _ = writeln!(variants, "    {v},");
            let _ = write!(all, "Kernel::{v}, ");
            let _ = writeln!(names, "            Kernel::{v} => {k:?},");
            let _ = writeln!(modules, "            Kernel::{v} => {:?},", kf.stem);
            let _ = writeln!(
                bounds,
                "            Kernel::{v} => {},",
                launch_bounds(&src, k).unwrap_or(1024)
            );
            let _ = writeln!(
                psizes,
                "            Kernel::{v} => std::mem::size_of::<{ty}>(),"
            );
            let _ = writeln!(
                consts,
                "    /// `{k}` in kernels/{}.cu\n    pub const {}: Typed<{ty}> = Typed::new(Kernel::{v});",
                kf.stem,
                k.to_ascii_uppercase()
            );
        }
    }
    let _ = write!(
        rs,
        "/// Every kernel entry point of kernels/*.cu.\n#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]\npub enum Kernel {{\n{variants}}}\n\nimpl Kernel {{\n    /// Every kernel, in declaration order (`Kernel::ALL[k as usize] == k`).\n    pub const ALL: &'static [Kernel] = &[{all}];\n    /// The entry point's name.\n    pub const fn name(self) -> &'static str {{\n        match self {{\n{names}        }}\n    }}\n    /// The kernels/*.cu file (module) that defines it.\n    pub const fn module(self) -> &'static str {{\n        match self {{\n{modules}        }}\n    }}\n    /// Most threads per block: `__launch_bounds__` (the PTX `.maxntid`), else the hardware's 1024.\n    pub const fn max_threads(self) -> u32 {{\n        match self {{\n{bounds}        }}\n    }}\n    /// Bytes of its parameter struct (the PTX `.param` size).\n    pub const fn param_bytes(self) -> usize {{\n        match self {{\n{psizes}        }}\n    }}\n}}\n\n/// One typed constant per kernel: its id and its parameter struct.\npub mod kernel {{\n    use super::*;\n{consts}}}\n"
    );
    write(&out.join("params.rs"), rs.as_bytes())
}

/// Replaces `#include "common.cuh"` by its text, with `#line` directives so NVRTC's messages keep
/// naming the right file and line.
fn inline_common(src: &str, common: &str, stem: &str) -> String {
    let mut out = String::new();
    for (i, line) in src.lines().enumerate() {
        if line.trim() == "#include \"common.cuh\"" {
            let _ = writeln!(out, "#line 1 \"common.cuh\"");
            out.push_str(common);
            if !common.ends_with('\n') {
                out.push('\n');
            }
            let _ = writeln!(out, "#line {} \"{stem}.cu\"", i + 2);
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// (module stem, target, file name in OUT_DIR)
type Image = (String, &'static str, String);

const TARGETS: [(&str, &str, bool); 4] = [
    ("compute_80", "ptx", false),
    ("compute_90", "ptx", false),
    ("sm_80", "cubin", true),
    ("sm_90", "cubin", true),
];

fn compile_nvrtc(
    inlined: &[(&KernelFile, String, PathBuf)],
    out: &Path,
) -> BuildResult<Vec<Image>> {
    let require = env::var("ERAENGINE_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
    let explicit = env::var("ERAENGINE_NVRTC_LIB").ok();
    let lib = match nvrtc::Nvrtc::open(explicit.as_deref()) {
        Ok(lib) => lib,
        Err(why) => {
            if require {
                return Err(format!(
                    "ERAENGINE_REQUIRE_NVRTC=1 but libnvrtc cannot be loaded: {why}"
                ));
            }
            println!(
                "cargo:warning=libnvrtc not found ({why}); kernels will be compiled from source at run time (set ERAENGINE_NVRTC_LIB to embed PTX)"
            );
            return Ok(Vec::new());
        }
    };
    let (major, minor) = lib.version()?;
    let ptx_dir = env::var("ERAENGINE_PTX_DIR").ok().map(PathBuf::from);
    if let Some(d) = &ptx_dir {
        // A deleted PTX directory makes cargo run this script again (the gate deletes it first).
        println!("cargo:rerun-if-changed={}", d.display());
        fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        write(
            &d.join("nvrtc_version.txt"),
            format!("{major}.{minor}\n").as_bytes(),
        )?;
    }
    let mut images = Vec::new();
    for (kf, src, _) in inlined {
        for (arch, kind, cubin) in TARGETS {
            let bytes = lib
                .compile(src, &format!("{}.cu", kf.stem), arch, cubin)
                .map_err(|log| {
                    format!(
                        "NVRTC {major}.{minor} failed on kernels/{}.cu for {arch}:\n{log}",
                        kf.stem
                    )
                })?;
            let file = format!("{}.{arch}.{kind}", kf.stem);
            write(&out.join(&file), &bytes)?;
            if let (Some(d), false) = (&ptx_dir, cubin) {
                write(&d.join(&file), &bytes)?;
            }
            images.push((kf.stem.clone(), arch, file));
        }
    }
    write(
        &out.join("nvrtc_version.txt"),
        format!("{major}.{minor}").as_bytes(),
    )?;
    Ok(images)
}

fn write_rust_table(
    out: &Path,
    inlined: &[(&KernelFile, String, PathBuf)],
    images: &[Image],
) -> BuildResult<()> {
    let mut rs = String::from("// Generated by build.rs: kernel sources and NVRTC images.\n");
    rs.push_str("/// (module, kernel source with common.cuh inlined)\npub const SOURCES: &[(&str, &str)] = &[\n");
    for (kf, _, p) in inlined {
        let _ = writeln!(
            rs,
            "    ({:?}, include_str!({:?})),",
            kf.stem,
            p.display().to_string()
        );
    }
    rs.push_str("];\n/// (kernel, module)\npub const KERNELS: &[(&str, &str)] = &[\n");
    for (kf, _, _) in inlined {
        for (k, _) in &kf.kernels {
            let _ = writeln!(rs, "    ({k:?}, {:?}),", kf.stem);
        }
    }
    rs.push_str("];\n/// (module, target such as \"compute_80\" or \"sm_90\", PTX text (NUL-terminated) or cubin)\npub const IMAGES: &[(&str, &str, &[u8])] = &[\n");
    for (stem, arch, file) in images {
        let _ = writeln!(
            rs,
            "    ({stem:?}, {arch:?}, include_bytes!({:?})),",
            out.join(file).display().to_string()
        );
    }
    rs.push_str("];\n");
    let version = fs::read_to_string(out.join("nvrtc_version.txt")).ok();
    match (images.is_empty(), version) {
        (false, Some(v)) => {
            let _ = writeln!(
                rs,
                "/// NVRTC version that built IMAGES\npub const NVRTC_BUILD_VERSION: Option<&str> = Some({:?});",
                v.trim()
            );
        }
        _ => rs.push_str("/// NVRTC version that built IMAGES\npub const NVRTC_BUILD_VERSION: Option<&str> = None;\n"),
    }
    write(&out.join("kernels.rs"), rs.as_bytes())
}

fn build_emulator(
    root: &Path,
    out: &Path,
    product: &[KernelFile],
    tests: &[KernelFile],
) -> BuildResult<()> {
    let emu_dir = root.join("kernels").join("emu");
    let header = emu_dir.join("emu.h");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("gnu++17")
        .opt_level(2)
        .define("ERAENGINE_EMU", "1")
        .include(root.join("kernels"))
        .include(&emu_dir)
        .flag("-include")
        .flag(header.display().to_string())
        .flag_if_supported("-Wno-unknown-pragmas")
        .flag_if_supported("-Wno-unused-parameter")
        .file(emu_dir.join("emu.cpp"));
    println!("cargo:rustc-check-cfg=cfg(eraengine_emu_asan)");
    if env::var("ERAENGINE_EMU_ASAN").is_ok_and(|v| v == "1") {
        build
            .flag("-fsanitize=address")
            .flag("-fno-omit-frame-pointer");
        println!("cargo:rustc-link-lib=dylib=asan");
        // the emulator's buffers take their exact size, so ASan sees every byte past the end
        println!("cargo:rustc-cfg=eraengine_emu_asan");
    }
    if env::var("ERAENGINE_EMU_FMA").is_ok_and(|v| v == "1") {
        // what NVRTC does by default: a*b+c fused into one rounding; shows tolerances that hold
        // only without FMA (x86-64 with FMA3: every CPU of the last decade)
        build.flag("-mfma").flag("-ffp-contract=fast");
    }
    let mut table = String::from("// Generated by build.rs: the emulator's kernel table.\n");
    let mut entries = Vec::new();
    for kf in product.iter().chain(tests) {
        let mut w = format!(
            "// Generated by build.rs: emulator trampolines for {}\n#include {:?}\n",
            kf.path.display(),
            kf.path.display().to_string()
        );
        for (k, ty) in &kf.kernels {
            let _ = writeln!(
                w,
                "static void emu_tramp_{k}(const void* raw) {{ {ty} p; memcpy(&p, raw, sizeof p); {k}(p); }}\nextern \"C\" const EmuKernel emu_k_{k} = {{\"{k}\", emu_tramp_{k}, sizeof({ty})}};"
            );
            let _ = writeln!(table, "extern \"C\" const EmuKernel emu_k_{k};");
            entries.push(k.clone());
        }
        let p = out.join(format!("emu_wrap_{}.cpp", kf.stem));
        write(&p, w.as_bytes())?;
        build.file(p);
    }
    table.push_str("extern \"C\" const EmuKernel* const emu_table[] = {\n");
    for k in &entries {
        let _ = writeln!(table, "    &emu_k_{k},");
    }
    if entries.is_empty() {
        table.push_str("    nullptr,\n");
    }
    let _ = writeln!(
        table,
        "}};\nextern \"C\" const size_t emu_table_len = {};",
        entries.len()
    );
    let p = out.join("emu_table.cpp");
    write(&p, table.as_bytes())?;
    build.file(p);
    build
        .try_compile("eraengine_emu")
        .map_err(|e| format!("compiling the CUDA emulator: {e}"))
}

/// The ten NVRTC symbols build.rs needs, through dlopen.
mod nvrtc {
    use std::ffi::{c_char, c_int, c_void, CStr, CString};

    #[link(name = "dl")]
    extern "C" {
        fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
        fn dlerror() -> *const c_char;
    }
    const RTLD_NOW: c_int = 2;

    type Prog = *mut c_void;
    type Res = c_int;

    pub struct Nvrtc {
        version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> Res,
        create: unsafe extern "C" fn(
            *mut Prog,
            *const c_char,
            *const c_char,
            c_int,
            *const *const c_char,
            *const *const c_char,
        ) -> Res,
        compile: unsafe extern "C" fn(Prog, c_int, *const *const c_char) -> Res,
        log_size: unsafe extern "C" fn(Prog, *mut usize) -> Res,
        log: unsafe extern "C" fn(Prog, *mut c_char) -> Res,
        ptx_size: unsafe extern "C" fn(Prog, *mut usize) -> Res,
        ptx: unsafe extern "C" fn(Prog, *mut c_char) -> Res,
        cubin_size: unsafe extern "C" fn(Prog, *mut usize) -> Res,
        cubin: unsafe extern "C" fn(Prog, *mut c_char) -> Res,
        destroy: unsafe extern "C" fn(*mut Prog) -> Res,
    }

    fn last_dlerror() -> String {
        // SAFETY: dlerror returns NULL or a NUL-terminated string owned by libdl.
        unsafe {
            let e = dlerror();
            if e.is_null() {
                "unknown dlopen error".into()
            } else {
                CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        }
    }

    impl Nvrtc {
        pub fn open(explicit: Option<&str>) -> Result<Self, String> {
            let candidates: Vec<&str> = match explicit {
                Some(p) => vec![p],
                None => vec!["libnvrtc.so.12", "libnvrtc.so"],
            };
            let mut why = Vec::new();
            for c in candidates {
                let name = CString::new(c).map_err(|e| e.to_string())?;
                // SAFETY: plain dlopen of a path; the handle is never closed (lives for the build).
                let h = unsafe { dlopen(name.as_ptr(), RTLD_NOW) };
                if h.is_null() {
                    why.push(last_dlerror());
                    continue;
                }
                return Self::bind(h);
            }
            Err(why.join("; "))
        }

        // each transmute's target is the field's declared fn type
        #[allow(clippy::missing_transmute_annotations)]
        fn bind(h: *mut c_void) -> Result<Self, String> {
            macro_rules! sym {
                ($name:literal) => {{
                    let s = CString::new($name).map_err(|e| e.to_string())?;
                    // SAFETY: h is a live handle; the symbol's C signature is NVRTC's documented one.
                    let p = unsafe { dlsym(h, s.as_ptr()) };
                    if p.is_null() {
                        return Err(format!("libnvrtc has no symbol {}", $name));
                    }
                    // SAFETY: non-null function pointer of the documented type.
                    unsafe { std::mem::transmute::<*mut c_void, _>(p) }
                }};
            }
            Ok(Nvrtc {
                version: sym!("nvrtcVersion"),
                create: sym!("nvrtcCreateProgram"),
                compile: sym!("nvrtcCompileProgram"),
                log_size: sym!("nvrtcGetProgramLogSize"),
                log: sym!("nvrtcGetProgramLog"),
                ptx_size: sym!("nvrtcGetPTXSize"),
                ptx: sym!("nvrtcGetPTX"),
                cubin_size: sym!("nvrtcGetCUBINSize"),
                cubin: sym!("nvrtcGetCUBIN"),
                destroy: sym!("nvrtcDestroyProgram"),
            })
        }

        pub fn version(&self) -> Result<(i32, i32), String> {
            let (mut a, mut b) = (0, 0);
            // SAFETY: two out-pointers to live ints.
            let r = unsafe { (self.version)(&mut a, &mut b) };
            if r != 0 {
                return Err(format!("nvrtcVersion failed ({r})"));
            }
            Ok((a, b))
        }

        /// PTX (NUL-terminated text) or cubin of `src` for `arch`; Err is NVRTC's log.
        pub fn compile(
            &self,
            src: &str,
            name: &str,
            arch: &str,
            cubin: bool,
        ) -> Result<Vec<u8>, String> {
            let src_c = CString::new(src).map_err(|e| e.to_string())?;
            let name_c = CString::new(name).map_err(|e| e.to_string())?;
            let opts: Vec<CString> = [
                format!("--gpu-architecture={arch}"),
                "--std=c++17".to_string(),
                "-lineinfo".to_string(),
            ]
            .into_iter()
            .map(|o| CString::new(o).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
            let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
            let mut prog: Prog = std::ptr::null_mut();
            // SAFETY: valid C strings; no headers (common.cuh is inlined).
            let r = unsafe {
                (self.create)(
                    &mut prog,
                    src_c.as_ptr(),
                    name_c.as_ptr(),
                    0,
                    std::ptr::null(),
                    std::ptr::null(),
                )
            };
            if r != 0 {
                return Err(format!("nvrtcCreateProgram failed ({r})"));
            }
            // SAFETY: prog was created above; options outlive the call.
            let rc = unsafe { (self.compile)(prog, opt_ptrs.len() as c_int, opt_ptrs.as_ptr()) };
            let result = if rc != 0 {
                Err(self.program_log(prog))
            } else {
                let (size_fn, get_fn) = if cubin {
                    (self.cubin_size, self.cubin)
                } else {
                    (self.ptx_size, self.ptx)
                };
                let mut size = 0usize;
                // SAFETY: compiled program, out-pointer to a live usize.
                let r = unsafe { size_fn(prog, &mut size) };
                if r != 0 {
                    Err(format!("getting the image size failed ({r})"))
                } else {
                    let mut buf = vec![0u8; size];
                    // SAFETY: buf holds `size` bytes as NVRTC asked.
                    let r = unsafe { get_fn(prog, buf.as_mut_ptr() as *mut c_char) };
                    if r != 0 {
                        Err(format!("getting the image failed ({r})"))
                    } else {
                        Ok(buf)
                    }
                }
            };
            // SAFETY: destroys the program created above exactly once.
            unsafe { (self.destroy)(&mut prog) };
            result
        }

        fn program_log(&self, prog: Prog) -> String {
            let mut size = 0usize;
            // SAFETY: live program, out-pointer to a live usize.
            if unsafe { (self.log_size)(prog, &mut size) } != 0 || size == 0 {
                return "(no log)".into();
            }
            let mut buf = vec![0u8; size];
            // SAFETY: buf holds `size` bytes.
            if unsafe { (self.log)(prog, buf.as_mut_ptr() as *mut c_char) } != 0 {
                return "(no log)".into();
            }
            String::from_utf8_lossy(&buf)
                .trim_end_matches('\0')
                .to_string()
        }
    }
}
