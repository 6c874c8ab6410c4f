//! A progress line for long runs (`replay`, `backtest`): records done, rate and time left.
//!
//! It is drawn on stdout only when stdout is a terminal, and only once the run has lasted
//! [`DELAY`], so short runs, pipes and files see nothing of it. Counting goes on while it is
//! hidden, so the rate and the estimate are right from the first drawing.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::borrow::Cow;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a run goes before its progress line appears.
pub const DELAY: Duration = Duration::from_secs(1);

/// The progress of a run over records, shared by the threads that do the work.
pub struct Progress {
    /// `None` when stdout is not a terminal: nothing is counted or drawn.
    bar: Option<ProgressBar>,
    started: Instant,
    shown: AtomicBool,
}

impl Progress {
    /// Progress over `total` records (`None`: not known, no estimate of the time left).
    pub fn new(total: Option<u64>) -> Progress {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
            bar.set_style(style(total.is_some()));
            bar
        });
        Progress {
            bar,
            started: Instant::now(),
            shown: AtomicBool::new(false),
        }
    }

    /// True when the line may be drawn (stdout is a terminal).
    pub fn enabled(&self) -> bool {
        self.bar.is_some()
    }

    /// `n` more records done. Cheap, but meant for batches of records rather than each one.
    pub fn inc(&self, n: u64) {
        let Some(bar) = &self.bar else { return };
        bar.inc(n);
        if !self.shown.load(Ordering::Relaxed)
            && self.started.elapsed() >= DELAY
            && !self.shown.swap(true, Ordering::Relaxed)
        {
            bar.set_draw_target(ProgressDrawTarget::stdout());
        }
    }

    /// What the run is doing, shown before the counts.
    pub fn set_message(&self, message: impl Into<Cow<'static, str>>) {
        if let Some(bar) = &self.bar {
            bar.set_message(message);
        }
    }

    /// Removes the line, so that what the run prints next starts on a clean line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn style(known_total: bool) -> ProgressStyle {
    let template = if known_total {
        "{msg} [{bar:30}] {human_pos}/{human_len} records, {per_sec}, ETA {eta}"
    } else {
        "{spinner} {msg} {human_pos} records, {per_sec}, {elapsed}"
    };
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("=> ")
}
