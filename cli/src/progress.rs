//! The progress bar on stderr and the final summary line.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::pipeline::Progress;

/// `--progress` / `--no-progress` / neither (a bar when stderr is a terminal).
#[derive(Debug, Clone, Copy)]
pub(crate) enum ProgressMode {
    Auto,
    Always,
    Never,
}

/// A bar over input bytes (for an ETA when the size is known), showing documents and
/// documents per second.
pub(crate) struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    pub(crate) fn new(mode: ProgressMode, verb: &str, total_bytes: Option<u64>) -> Self {
        let show = match mode {
            ProgressMode::Always => true,
            ProgressMode::Never => false,
            ProgressMode::Auto => std::io::stderr().is_terminal(),
        };
        if !show {
            return Bar { bar: None };
        }
        let bar = match total_bytes {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let template = if total_bytes.is_some() {
            "{spinner} {prefix} [{bar:30}] {percent:>3}% {msg} ETA {eta}"
        } else {
            "{spinner} {prefix} {msg} {elapsed}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(verb.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar { bar: Some(bar) }
    }

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn update(&self, documents: u64, bytes: u64) {
        if let Some(b) = &self.bar {
            b.set_position(bytes);
            let secs = b.elapsed().as_secs_f64();
            let rate = if secs > 0.0 {
                documents as f64 / secs
            } else {
                0.0
            };
            b.set_message(format!("{documents} docs, {rate:.0} docs/s"));
        }
    }
}
