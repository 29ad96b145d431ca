//! A one-line progress bar on stderr: steps done of the planned total, elapsed time, what runs.
//! Redrawn in place on a terminal; one plain line per step otherwise (a log file gets no escapes).

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Counts steps against a planned total.
pub struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    terminal: bool,
}

impl Progress {
    /// A bar for `total` steps.
    pub fn new(total: usize) -> Self {
        Self { total: total.max(1), done: 0, started: Instant::now(), terminal: std::io::stderr().is_terminal() }
    }

    /// Marks the start of the next step and redraws the bar.
    pub fn step(&mut self, label: &str) {
        self.done += 1;
        let width = 30;
        let filled = (self.done.min(self.total) * width) / self.total;
        let bar: String = "#".repeat(filled) + &".".repeat(width - filled);
        let line =
            format!("[{bar}] {}/{} {:>6.0}s  {label}", self.done, self.total, self.started.elapsed().as_secs_f64());
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal { write!(err, "\r\x1b[2K{line}") } else { writeln!(err, "{line}") };
        let _ = err.flush();
    }

    /// Ends the bar's line.
    pub fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}
