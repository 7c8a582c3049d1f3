//! Progress of long work as events: the library calls a callback with a [`Progress`]; the CLI
//! (`cli::progress`) decides how to show it (a line rewritten in place on a terminal, one line per
//! stage otherwise, nothing under `--quiet`). The library itself never prints.

/// "1 epoch", "2 epochs": a count of epochs as the messages print it.
pub fn epochs(n: usize) -> String {
    format!("{n} epoch{}", if n == 1 { "" } else { "s" })
}

/// Where one stage of long work stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// What is being done, e.g. "import", "eval".
    pub stage: String,
    /// Units done so far.
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
    /// What a unit is ("rows", "eras").
    pub unit: &'static str,
    /// Seconds since the stage began.
    pub elapsed_s: f64,
    /// True on the stage's last event.
    pub finished: bool,
}

impl Progress {
    /// Units per second so far (0 before any time has passed).
    pub fn rate(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.done as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    /// Seconds left at the rate so far, when the total is known and some work is done.
    pub fn eta_s(&self) -> Option<f64> {
        let total = self.total?;
        let rate = self.rate();
        (rate > 0.0 && total >= self.done).then(|| (total - self.done) as f64 / rate)
    }

    /// `import: 1200/5000 rows (24%), 3000 rows/s, 1.3 s left` (on the last event: `... in 2.1 s`).
    pub fn line(&self) -> String {
        let mut s = format!("{}: {}", self.stage, self.done);
        if let Some(t) = self.total {
            s += &format!("/{t} {}", self.unit);
            if t > 0 {
                s += &format!(" ({:.0}%)", 100.0 * self.done as f64 / t as f64);
            }
        } else {
            s += &format!(" {}", self.unit);
        }
        s += &format!(", {} {}/s", short(self.rate()), self.unit);
        if self.finished {
            s += &format!(", done in {}", duration(self.elapsed_s));
        } else if let Some(e) = self.eta_s() {
            s += &format!(", {} left", duration(e));
        }
        s
    }
}

/// A count for a rate: `12.3k`, `4.5M`, `850`.
fn short(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if x >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// `4.2 s`, `3 min 05 s`, `1 h 02 min`.
pub fn duration(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{} min {:02} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{} h {:02} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

/// Measures one stage and builds its events.
#[derive(Debug)]
pub struct Stage {
    stage: String,
    total: Option<u64>,
    unit: &'static str,
    started: std::time::Instant,
}

impl Stage {
    pub fn new(stage: impl Into<String>, total: Option<u64>, unit: &'static str) -> Self {
        Stage {
            stage: stage.into(),
            total,
            unit,
            started: std::time::Instant::now(),
        }
    }

    /// The event for `done` units.
    pub fn at(&self, done: u64, finished: bool) -> Progress {
        Progress {
            stage: self.stage.clone(),
            done,
            total: self.total,
            unit: self.unit,
            elapsed_s: self.started.elapsed().as_secs_f64(),
            finished,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_done_total_rate_and_time_left() {
        let p = Progress {
            stage: "import".into(),
            done: 250,
            total: Some(1000),
            unit: "rows",
            elapsed_s: 2.0,
            finished: false,
        };
        assert_eq!(p.rate(), 125.0);
        assert_eq!(p.eta_s(), Some(6.0));
        assert_eq!(
            p.line(),
            "import: 250/1000 rows (25%), 125 rows/s, 6.0 s left"
        );
        let f = Progress {
            done: 1000,
            finished: true,
            elapsed_s: 8.0,
            ..p
        };
        assert!(f.line().ends_with("done in 8.0 s"), "{}", f.line());
        assert_eq!(duration(125.0), "2 min 05 s");
    }

    #[test]
    fn one_epoch_is_singular() {
        assert_eq!(epochs(1), "1 epoch");
        assert_eq!(epochs(0), "0 epochs");
        assert_eq!(epochs(20), "20 epochs");
    }
}
