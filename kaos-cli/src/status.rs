//! The status line on stderr while a turn waits: for the first token of a model call, and
//! for the next attempt after a retryable failure. On a terminal it is one line redrawn with
//! a spinner and the time waited; otherwise each status is one plain line. `--json` and
//! `--events` show none.

use std::io::{IsTerminal as _, Write as _};
use std::time::Instant;

use kaos_runner::{Event, EventKind, SpanPhase, SpanSubject};

const FRAMES: &[char] = &['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

pub(crate) struct Status {
    tty: bool,
    text: Option<String>,
    since: Instant,
    frame: usize,
    drawn: bool,
}

impl Status {
    pub(crate) fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            text: None,
            since: Instant::now(),
            frame: 0,
            drawn: false,
        }
    }

    /// Whether a spinner is showing (and wants ticks).
    pub(crate) fn spinning(&self) -> bool {
        self.tty && self.text.is_some()
    }

    /// Redraws the spinner.
    pub(crate) fn tick(&mut self) {
        if let (true, Some(text)) = (self.tty, &self.text) {
            self.frame = (self.frame + 1) % FRAMES.len();
            let waited = self.since.elapsed().as_secs_f64();
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K{} {text} ({waited:.0} s)", FRAMES[self.frame]);
            let _ = stderr.flush();
            self.drawn = true;
        }
    }

    /// Removes the spinner line, before anything else is printed.
    pub(crate) fn clear(&mut self) {
        if self.drawn {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
            self.drawn = false;
        }
    }

    fn set(&mut self, text: String) {
        self.clear();
        if self.tty {
            self.since = Instant::now();
            self.text = Some(text);
            self.tick();
        } else {
            eprintln!("  … {text}");
        }
    }

    /// Updates the status from the turn's next event.
    pub(crate) fn observe(&mut self, event: &Event) {
        match &event.kind {
            EventKind::Span(span) if span.subject == SpanSubject::LlmCall => match span.phase {
                SpanPhase::Start => {
                    let model = span.attributes.get("model").and_then(|m| m.as_str()).unwrap_or("the model");
                    self.set(format!("waiting for {model}"));
                }
                _ => self.stop(),
            },
            EventKind::RetryScheduled { model, attempt, wait_ms, reason, message } => {
                let wait = *wait_ms as f64 / 1000.0;
                self.set(format!("{model}: {reason} ({message}); retry {attempt} in {wait:.1} s"));
            }
            EventKind::TextDelta { .. }
            | EventKind::ThinkingDelta { .. }
            | EventKind::ToolCallArgsDelta { .. } => self.stop(),
            _ => {}
        }
    }

    fn stop(&mut self) {
        self.clear();
        self.text = None;
    }
}

impl Drop for Status {
    fn drop(&mut self) {
        self.clear();
    }
}
