//! A one-line progress bar on stderr: steps done of the planned total, elapsed time, what runs.

use std::io::Write;
use std::time::Instant;

/// Counts steps against a planned total.
pub struct Progress {
    total: usize,
    done: usize,
    started: Instant,
}

impl Progress {
    /// A bar for `total` steps.
    pub fn new(total: usize) -> Self {
        Self { total: total.max(1), done: 0, started: Instant::now() }
    }

    /// Marks the start of the next step and redraws the bar.
    pub fn step(&mut self, label: &str) {
        self.done += 1;
        let width = 30;
        let filled = (self.done.min(self.total) * width) / self.total;
        let bar: String = "#".repeat(filled) + &".".repeat(width - filled);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K[{bar}] {}/{} {:>6.0}s  {label}",
            self.done,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
        let _ = err.flush();
    }

    /// Ends the bar's line.
    pub fn finish(&self) {
        eprintln!();
    }
}
