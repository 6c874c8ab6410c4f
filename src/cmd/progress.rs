//! A progress line for long runs (`replay`, `backtest`): records done, rate and time left.
//!
//! It is drawn on stdout only when stdout is a terminal, and only once the run has lasted
//! [`DELAY`] (or `VIGIE_PROGRESS_AFTER_MS` milliseconds), so short runs, pipes and files see
//! nothing of it. Counting goes on while it is hidden, so the rate and the estimate are right
//! from the first drawing.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
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
    delay: Duration,
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
        let delay = std::env::var("VIGIE_PROGRESS_AFTER_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(DELAY, Duration::from_millis);
        Progress {
            bar,
            started: Instant::now(),
            delay,
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
            && self.started.elapsed() >= self.delay
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

    /// Sets the total once it is known.
    pub fn set_total(&self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_style(style(true));
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
        "{msg} [{bar:30}] {human_pos}/{human_len} records, {rate}, ETA {eta}"
    } else {
        "{spinner} {msg} {human_pos} records, {rate}, {elapsed}"
    };
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            },
        )
        .progress_chars("=> ")
}
