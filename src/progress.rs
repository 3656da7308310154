//! Progress of long operator commands (`atelier verify`, `bench`): a bar with counts, rate
//! and ETA on a terminal (`indicatif`), and plain lines when stderr is piped, so that logs
//! and CI output stay readable. Either way it goes to stderr: stdout keeps the result.
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use atelier_actors::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Least time between two plain lines of one phase.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// Reports the phases of `command` (e.g. "verify").
pub struct Reporter {
    command: &'static str,
    state: Mutex<Phase>,
    terminal: bool,
}

#[derive(Default)]
struct Phase {
    name: String,
    total: Option<u64>,
    done: u64,
    started: Option<Instant>,
    last_line: Option<Instant>,
    bar: Option<ProgressBar>,
}

impl Reporter {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn new(command: &'static str) -> Self {
        Self::with_terminal(command, std::io::stderr().is_terminal())
    }

    pub fn with_terminal(command: &'static str, terminal: bool) -> Self {
        Self {
            command,
            state: Mutex::new(Phase::default()),
            terminal,
        }
    }

    fn bar(&self, name: &str, total: Option<u64>) -> ProgressBar {
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
            None => ProgressBar::new_spinner(),
        };
        let template = match total {
            Some(_) => "{prefix} [{bar:30}] {human_pos}/{human_len} ({rate}, ETA {eta})",
            None => "{prefix} {spinner} {human_pos} ({rate})",
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("a valid template")
                // Whole items per second: indicatif's own `per_sec` prints four decimals.
                .with_key(
                    "rate",
                    |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                        let _ = write!(out, "{:.0}/s", state.per_sec());
                    },
                )
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}: {name}", self.command));
        bar
    }

    /// The plain line for a phase: counts, share, rate and the time left.
    fn line(&self, phase: &Phase, last: bool) -> String {
        let elapsed = phase.started.map_or(0.0, |at| at.elapsed().as_secs_f64());
        let rate = if elapsed > 0.0 {
            phase.done as f64 / elapsed
        } else {
            0.0
        };
        let counts = match phase.total {
            Some(total) if total > 0 => {
                let left = total.saturating_sub(phase.done) as f64;
                let eta = if rate > 0.0 { left / rate } else { 0.0 };
                let share = phase.done as f64 * 100.0 / total as f64;
                format!(
                    "{}/{total} ({share:.0}%), {rate:.0}/s, ETA {eta:.0}s",
                    phase.done
                )
            }
            _ => format!("{}, {rate:.0}/s", phase.done),
        };
        let state = if last {
            format!("done in {elapsed:.1}s")
        } else {
            counts.clone()
        };
        match last {
            true => format!("{}: {}: {} {state}", self.command, phase.name, counts),
            false => format!("{}: {}: {state}", self.command, phase.name),
        }
    }
}

impl Progress for Reporter {
    fn phase(&self, name: &str, total: Option<u64>) {
        let mut phase = self.state.lock().expect("progress lock");
        *phase = Phase {
            name: name.to_owned(),
            total,
            started: Some(Instant::now()),
            bar: self.terminal.then(|| self.bar(name, total)),
            ..Phase::default()
        };
    }

    fn advance(&self, items: u64) {
        let mut phase = self.state.lock().expect("progress lock");
        phase.done += items;
        if let Some(bar) = &phase.bar {
            bar.inc(items);
            return;
        }
        let due = phase.last_line.is_none_or(|at| at.elapsed() >= LINE_EVERY);
        if due {
            phase.last_line = Some(Instant::now());
            eprintln!("{}", self.line(&phase, false));
        }
    }

    fn finish(&self) {
        let phase = self.state.lock().expect("progress lock");
        match &phase.bar {
            Some(bar) => bar.finish(),
            None => eprintln!("{}", self.line(&phase, true)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Piped, a phase reads as lines with its counts and share, and a last one with its time.
    #[test]
    fn plain_lines_say_how_far_and_how_long() {
        let reporter = Reporter::with_terminal("verify", false);
        reporter.phase("workflows", Some(200));
        reporter.advance(50);
        let phase = reporter.state.lock().unwrap();
        let line = reporter.line(&phase, false);
        assert!(
            line.starts_with("verify: workflows: 50/200 (25%), "),
            "{line}"
        );
        assert!(line.contains("ETA"), "{line}");
        let last = reporter.line(&phase, true);
        assert!(
            last.starts_with("verify: workflows: 50/200 (25%)"),
            "{last}"
        );
        assert!(last.contains(" done in "), "{last}");
    }
}
