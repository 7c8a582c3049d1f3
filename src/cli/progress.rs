//! Renders library [`Progress`] events on stderr: on a terminal one line rewritten in place (at
//! most 5 times a second), otherwise one line per stage when it finishes; nothing under `--quiet`.

use crate::progress::Progress;
use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Meter {
    quiet: bool,
    tty: bool,
    last: Option<Instant>,
}

impl Meter {
    pub fn new(quiet: bool) -> Self {
        Meter {
            quiet,
            tty: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    pub fn show(&mut self, p: &Progress) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if !self.tty {
            if p.finished {
                let _ = writeln!(err, "{}", p.line());
            }
            return;
        }
        let due = self.last.is_none_or(|t| t.elapsed().as_secs_f64() >= 0.2);
        if p.finished {
            let _ = writeln!(err, "\r{}\x1b[K", p.line());
            self.last = None;
        } else if due {
            let _ = write!(err, "\r{}\x1b[K", p.line());
            let _ = err.flush();
            self.last = Some(Instant::now());
        }
    }
}
