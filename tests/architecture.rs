//! The module graph stays a ladder (docs/architecture.md): no file under `src/` names, through a
//! `crate::…` or `super::…` path, a file that names it back (directly or around a circle), and no
//! file is over the line budget.
//!
//! The graph is over files: a path resolves to the deepest module file it names
//! (`crate::ops::linear::gpu::column_sum` → `src/ops/linear/gpu.rs`, `crate::device::Backend` →
//! `src/device/mod.rs`). A parent declaring or re-exporting its own children (`mod cpu;`,
//! `pub use cpu::Cpu;`) is containment, not a use, and is not an edge. Code after `#[cfg(test)]`
//! is not scanned (unit tests may use anything).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Most lines a file under src/ may have.
const MAX_LINES: usize = 700;

/// Edges another branch removes (file → file it names, relative to the crate root); the
/// coordinator empties this list when it merges them.
const EDGES_ALLOWED: &[(&str, &str)] = &[];

/// Files another branch is splitting; the coordinator empties this list when it merges them.
const OVER_BUDGET_ALLOWED: &[&str] = &[];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Module path of a file: src/lib.rs → [], src/a.rs → [a], src/a/mod.rs → [a], src/a/b.rs → [a, b].
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("file name");
    let stem = last.trim_end_matches(".rs").to_string();
    if stem != "mod" && stem != "lib" {
        parts.push(stem);
    }
    parts
}

/// `src` without comments, string and char literals (newlines kept).
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'/' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'*' {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Every path a `use` tree names, braces expanded: `a::{b, c::{d}}` → a::b, a::c::d.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    match tree.find('{') {
        None => vec![tree.to_string()],
        Some(open) => {
            let prefix = &tree[..open];
            let close = tree.rfind('}').unwrap_or(tree.len());
            let inner = &tree[open + 1..close];
            let mut parts = Vec::new();
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        parts.push(&inner[start..i]);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            parts.push(&inner[start..]);
            parts
                .into_iter()
                .filter(|p| !p.trim().is_empty())
                .flat_map(|p| expand(p).into_iter().map(|q| format!("{prefix}{q}")))
                .collect()
        }
    }
}

/// `crate::`/`super::` paths of a file (as segment lists, first segment `crate` or `super`).
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    // use statements, with braces
    let mut rest = code;
    while let Some(pos) = rest.find("use ") {
        let before = rest[..pos].chars().last();
        let after = &rest[pos + 4..];
        if before.is_some_and(is_ident) {
            rest = after;
            continue;
        }
        let end = after.find(';').unwrap_or(after.len());
        for p in expand(&after[..end]) {
            let p: String = p.split(" as ").next().unwrap_or("").to_string();
            found.push(p.split("::").map(|s| s.trim().to_string()).collect());
        }
        rest = &after[end..];
    }
    // inline paths
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(pos) = code[from..].find(start) {
            let at = from + pos;
            from = at + start.len();
            if code[..at].chars().last().is_some_and(is_ident) {
                continue;
            }
            let tail: String = code[at..]
                .chars()
                .take_while(|&c| is_ident(c) || c == ':')
                .collect();
            found.push(
                tail.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            );
        }
    }
    found
        .into_iter()
        .filter(|p: &Vec<String>| p.first().is_some_and(|s| s == "crate" || s == "super"))
        .collect()
}

struct Graph {
    files: BTreeMap<Vec<String>, PathBuf>,
    edges: BTreeMap<PathBuf, BTreeSet<PathBuf>>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut list = Vec::new();
    rust_files(&src, &mut list);
    let files: BTreeMap<Vec<String>, PathBuf> = list
        .iter()
        .filter(|f| !f.starts_with(src.join("bin")) && !f.ends_with("main.rs"))
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let mut edges = BTreeMap::new();
    for (module, file) in &files {
        let text = fs::read_to_string(file).expect("read source");
        let code = strip(&text);
        let code = code.split("#[cfg(test)]").next().unwrap_or("");
        let mut to = BTreeSet::new();
        for path in paths_in(code) {
            let mut cur: Vec<String> = Vec::new();
            let mut segs = path.iter().peekable();
            if segs.peek().is_some_and(|s| *s == "crate") {
                segs.next();
            } else {
                cur = module.clone();
                while segs.peek().is_some_and(|s| *s == "super") {
                    segs.next();
                    cur.pop();
                }
            }
            for s in segs {
                let mut next = cur.clone();
                next.push(s.clone());
                if files.contains_key(&next) {
                    cur = next;
                } else {
                    break;
                }
            }
            if let Some(target) = files.get(&cur) {
                let rel = |p: &Path| {
                    p.strip_prefix(src.parent().unwrap_or(&src))
                        .unwrap_or(p)
                        .display()
                        .to_string()
                };
                let allowed = EDGES_ALLOWED
                    .iter()
                    .any(|&(a, b)| rel(file) == a && rel(target) == b);
                if target != file && !allowed {
                    to.insert(target.clone());
                }
            }
        }
        edges.insert(file.clone(), to);
    }
    Graph { files, edges }
}

/// A circle through the graph, if there is one (as the list of files around it).
fn find_cycle(g: &Graph) -> Option<Vec<PathBuf>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        g: &Graph,
        f: &PathBuf,
        mark: &mut BTreeMap<PathBuf, Mark>,
        stack: &mut Vec<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        mark.insert(f.clone(), Mark::Open);
        stack.push(f.clone());
        for t in g.edges.get(f).into_iter().flatten() {
            match mark.get(t).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let at = stack.iter().position(|x| x == t).unwrap_or(0);
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(t.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(g, t, mark, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark.insert(f.clone(), Mark::Done);
        None
    }
    let mut mark = BTreeMap::new();
    for f in g.files.values() {
        if mark.get(f).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(g, f, &mut mark, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn module_graph_has_no_circles() {
    let g = graph();
    let names = |c: &[PathBuf]| {
        c.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join("\n  → ")
    };
    // every circle, each found after cutting the last edge of the one before
    let mut g2 = Graph {
        files: g.files.clone(),
        edges: g.edges.clone(),
    };
    let mut circles = Vec::new();
    while let Some(c) = find_cycle(&g2) {
        circles.push(names(&c));
        let (a, b) = (&c[c.len() - 2], &c[c.len() - 1]);
        if let Some(e) = g2.edges.get_mut(a) {
            e.remove(b);
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n  {}",
        circles.join("\n\n  ")
    );
    // the graph is not trivially empty: the ops use the tape core, the tape uses the ops
    let tape = g.files[&vec!["tape".to_string()]].clone();
    let linear = g.files[&vec!["ops".to_string(), "linear".to_string()]].clone();
    assert!(
        g.edges[&tape].contains(&linear),
        "tape → ops::linear not seen"
    );
}

#[test]
fn the_scanner_sees_circles() {
    let code =
        "use crate::ops::{linear::gpu, shape::{expect_len, u32_of}};\nfn f() { super::x::y(); }";
    let paths = paths_in(&strip(code));
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert!(
        joined.contains(&"crate::ops::linear::gpu".to_string()),
        "{joined:?}"
    );
    assert!(
        joined.contains(&"crate::ops::shape::u32_of".to_string()),
        "{joined:?}"
    );
    assert!(joined.contains(&"super::x::y".to_string()), "{joined:?}");
    // a comment or a string names nothing
    assert!(paths_in(&strip("// crate::a::b\nlet s = \"crate::c\";")).is_empty());
}

#[test]
fn no_file_under_src_is_over_the_line_budget() {
    let g = graph();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut over = Vec::new();
    for f in g.files.values() {
        let lines = fs::read_to_string(f).expect("read source").lines().count();
        let rel = f.strip_prefix(root).unwrap_or(f).display().to_string();
        if lines > MAX_LINES && !OVER_BUDGET_ALLOWED.contains(&rel.as_str()) {
            over.push(format!("{rel}: {lines} lines"));
        }
    }
    assert!(over.is_empty(), "over {MAX_LINES} lines: {over:?}");
}
