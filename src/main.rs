use clap::Parser;
use std::io::Write;

/// Restores the default action of SIGPIPE (end the process quietly), which the Rust runtime sets
/// to "ignore": otherwise `eraengine info STORE | head -1` makes every later `println!` panic on
/// the closed pipe. With the default action the process ends as `cat` or `ls` do there.
#[cfg(unix)]
fn reset_sigpipe() {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    // SAFETY: `signal` is the C library's; SIGPIPE and SIG_DFL are its Linux/BSD/macOS values
    // (13 and 0). It runs first in main, before any thread exists, and SIG_DFL installs no handler
    // code of ours.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}

#[cfg(not(unix))]
fn reset_sigpipe() {}

fn main() {
    reset_sigpipe();
    let cli = eraengine::cli::Cli::parse();
    if let Err(e) = eraengine::cli::run(cli) {
        let _ = writeln!(std::io::stderr(), "error: {e}");
        std::process::exit(e.exit_code());
    }
}
