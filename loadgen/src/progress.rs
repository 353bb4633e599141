//! The live progress line on stderr (hidden when stderr is not a terminal, or with `--quiet`).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::Snapshot;

/// A one-line spinner showing connections, messages/s and p99 as a run goes.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A progress line, or none when `quiet`.
    pub fn new(quiet: bool) -> Progress {
        let bar = (!quiet).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                .expect("valid template");
            bar.set_style(style);
            bar
        });
        Progress { bar }
    }

    /// Shows `s` under `label` (e.g. `step 3 @ 8000/s`).
    pub fn show(&self, label: &str, s: &Snapshot) {
        let Some(bar) = &self.bar else { return };
        let msg = if s.phase == "connect" {
            format!("{label} connecting {}/{}", s.open, s.planned)
        } else {
            format!(
                "{label} conns {}/{} | sent {} | delivered {}/{} | {:.0} msg/s | p99 {:.0} µs",
                s.open, s.planned, s.sent, s.delivered, s.expected, s.rate_now, s.p99_us
            )
        };
        bar.set_message(msg);
        bar.tick();
    }

    /// Removes the line (the summary follows on stdout).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
