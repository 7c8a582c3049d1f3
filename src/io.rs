//! File output that never loses or clobbers a file.
//!
//! - [`write_atomic`]: write to a temporary file beside the target, fsync, rename into place; `-`
//!   means standard output; an existing symlink is written through (its target is replaced, the
//!   link stays), and a special file (FIFO, character device such as `/dev/stdout`) is opened and
//!   written, never replaced by a rename.
//! - [`check_outputs`]: refuses, before any work, an output that is the same file as an input of
//!   the same command (same device and inode, so hard links and symlinks count) or as another output.
//! - [`remove_stale_temps`]: removes the temporary files (`.NAME.PID.tmp`, `.NAME.TAG-PID.tmp`)
//!   that killed processes left beside an output.

use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// True for the path `-`, which means standard output (or input).
pub fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// The temporary path used while `path` is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// The process id in a temporary name written for `name` by this crate: `.NAME.PID.tmp` (here) or
/// `.NAME.TAG-PID.tmp` (the store writer). None when `file` is not such a name.
pub fn temp_owner(name: &str, file: &str) -> Option<u32> {
    let rest = file
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix('.')?;
    let mid = rest.strip_suffix(".tmp")?;
    let pid = match mid.rsplit_once('-') {
        Some((tag, pid)) if !tag.is_empty() && !tag.contains('.') => pid,
        Some(_) => return None,
        None => mid,
    };
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` is alive (Linux: `/proc/PID` exists). Elsewhere every process counts as
/// alive, so nothing is removed.
fn process_alive(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the temporary files beside `path` that a process no longer running left behind (e.g.
/// after kill -9 during `import`). Returns the paths removed. Files of live processes, of this
/// process, and anything that is not a regular file are left alone.
pub fn remove_stale_temps(path: &Path) -> Result<Vec<PathBuf>> {
    let Some(name) = path.file_name().map(|s| s.to_string_lossy().into_owned()) else {
        return Ok(Vec::new());
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(_) => return Ok(Vec::new()),
    };
    let me = std::process::id();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_owner(&name, &file) else {
            continue;
        };
        if pid == me || process_alive(pid) {
            continue;
        }
        let p = entry.path();
        let is_file = std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_file());
        if is_file && std::fs::remove_file(&p).is_ok() {
            removed.push(p);
        }
    }
    Ok(removed)
}

/// Identity of an existing file: (device, inode) after following symlinks.
#[cfg(unix)]
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_path: &Path) -> Option<(u64, u64)> {
    None
}

/// The absolute path `path` names, with symlinks of its directory resolved; for a file that does
/// not exist yet, the canonical directory joined with the name.
fn canonical_target(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = std::fs::canonicalize(path) {
        return Some(p);
    }
    let name = path.file_name()?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(dir).ok()?.join(name))
}

fn same_file(a: &Path, b: &Path) -> bool {
    if let (Some(x), Some(y)) = (file_id(a), file_id(b)) {
        return x == y;
    }
    match (canonical_target(a), canonical_target(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// True for paths that write to a device rather than a file on disk (`/dev/...`, `/proc/...`).
fn is_device_path(path: &Path) -> bool {
    path.starts_with("/dev") || path.starts_with("/proc")
}

/// Refuses outputs that would overwrite an input of the same command, or each other. `outputs` and
/// `inputs` are (flag, path) pairs, e.g. `("--json", p)`, `("--predictions", q)`. `-` (standard
/// output) and special files (`/dev/null`, a FIFO) never count as the same as anything. Call it
/// before any work; the error is a usage error (exit code 2) naming both flags.
pub fn check_outputs(outputs: &[(&str, &Path)], inputs: &[(&str, &Path)]) -> Result<()> {
    let special = |p: &Path| {
        is_stdio(p)
            || std::fs::metadata(p).is_ok_and(|m| !m.is_file() && !m.is_dir())
            || (is_device_path(p) && !std::fs::metadata(p).is_ok_and(|m| m.is_file()))
    };
    for (i, (oflag, out)) in outputs.iter().enumerate() {
        if special(out) {
            continue;
        }
        if std::fs::metadata(out).is_ok_and(|m| m.is_dir()) {
            return Err(Error::usage(format!(
                "{oflag} {}: is a directory; give a file name",
                out.display()
            )));
        }
        for (iflag, inp) in inputs {
            if !is_stdio(inp) && same_file(out, inp) {
                return Err(Error::usage(format!(
                    "{oflag} {} is the same file as {iflag} {}: refusing to overwrite an input; write the output elsewhere",
                    out.display(),
                    inp.display()
                )));
            }
        }
        for (oflag2, out2) in &outputs[..i] {
            if !special(out2) && same_file(out, out2) {
                return Err(Error::usage(format!(
                    "{oflag} {} and {oflag2} {} are the same file: give each output its own path",
                    out.display(),
                    out2.display()
                )));
            }
        }
    }
    Ok(())
}

/// Maps a write error on standard output: a closed pipe (`... | head`) is not an error, the
/// reader simply wanted no more.
pub fn stdout_result(res: std::io::Result<()>) -> Result<()> {
    match res {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("<stdout>", e)),
        Ok(()) => Ok(()),
    }
}

/// Writes `bytes` to standard output; a closed pipe ends quietly.
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    stdout_result(out.write_all(bytes).and_then(|_| out.flush()))
}

/// Writes `bytes` to `path` so that a reader never sees a half-written file.
///
/// `-` writes to standard output. An existing symlink is followed: the file it points to is
/// replaced atomically and the link stays a link. An existing FIFO, character device or socket (and
/// any `/dev` or `/proc` path that is not a regular file) is opened and written in place. A
/// directory is an error. Stale temporary files of dead processes beside the target are removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if is_stdio(path) {
        return write_stdout(bytes);
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"),
            ));
        }
        let through_device =
            is_device_path(path) || std::fs::read_link(path).is_ok_and(|t| is_device_path(&t));
        if !meta.is_file() || through_device {
            // FIFO, device, /dev/stdout...: write into it, never replace it
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(meta.is_file())
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            return f
                .write_all(bytes)
                .and_then(|_| f.flush())
                .map_err(|e| Error::io(path, e));
        }
    }
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let target = if is_link {
        // replace what the link points to, not the link (a dangling link: create its target)
        match std::fs::canonicalize(path) {
            Ok(t) => t,
            Err(_) => {
                let t = std::fs::read_link(path).map_err(|e| Error::io(path, e))?;
                match path.parent() {
                    Some(d) if t.is_relative() => d.join(t),
                    _ => t,
                }
            }
        }
    } else {
        path.to_path_buf()
    };
    write_file_atomic(&target, bytes)
}

fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
    }
    let _ = remove_stale_temps(path);
    let tmp = temp_path(path);
    let res = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}
