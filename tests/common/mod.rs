//! Helpers shared by the integration tests: scratch directories that remove themselves, the
//! binary under test and its output as text.
#![allow(dead_code)]

pub mod simd;

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The `eraengine` binary of this build.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_eraengine"))
}

/// A finished command's stdout then stderr, as text (for assertions and their messages).
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh, empty directory `eraengine-<tag>-<pid>-<n>` under the system temp dir, removed with
/// everything in it when the guard is dropped. Keep the guard alive while the directory is used.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("eraengine-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }

    /// For a directory shared through a `static` (statics are never dropped): keeps it until the
    /// test process exits, then removes it.
    pub fn until_exit(self) -> PathBuf {
        static REGISTER: Once = Once::new();
        // SAFETY: `atexit` from the C runtime, given a handler that cannot unwind.
        REGISTER.call_once(|| unsafe {
            atexit(remove_at_exit);
        });
        let d = self.0.clone();
        AT_EXIT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(d.clone());
        std::mem::forget(self);
        d
    }
}

static AT_EXIT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" {
    fn atexit(f: extern "C" fn()) -> std::os::raw::c_int;
}

extern "C" fn remove_at_exit() {
    for d in AT_EXIT.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = std::fs::remove_dir_all(d);
    }
}

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<OsStr> for TempDir {
    fn as_ref(&self) -> &OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
