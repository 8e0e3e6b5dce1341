//! What output may carry where it goes: colour and the live progress line
//! only on a terminal, never under CI. Each is decided here, once, by a
//! pure function of the facts; callers pass the facts of their stream and
//! never decide by themselves. Captured output (a pipe, a file, a test's
//! capture) is always plain text, without a single escape code.

use std::io::IsTerminal;

/// Colour codes on a stream: only on a terminal, never under CI, never
/// when the user set `NO_COLOR`.
pub fn colour(no_color: bool, is_terminal: bool, is_ci: bool) -> bool {
    is_terminal && !is_ci && !no_color
}

/// The live progress line, redrawn in place: only on a terminal, never
/// under CI. It is a separate decision from colour: `NO_COLOR` asks for
/// no colour, and the line has none.
pub fn live_progress(is_terminal: bool, is_ci: bool) -> bool {
    is_terminal && !is_ci
}

/// Whether this runs under CI (`CI` set, as every CI service does).
pub fn is_ci() -> bool {
    std::env::var_os("CI").is_some()
}

fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some()
}

/// [`colour`] for stdout.
pub fn stdout_colour() -> bool {
    colour(no_color(), std::io::stdout().is_terminal(), is_ci())
}

/// [`colour`] for stderr (event lines, warnings, logs).
pub fn stderr_colour() -> bool {
    colour(no_color(), std::io::stderr().is_terminal(), is_ci())
}

/// [`live_progress`] for a line drawn on stderr.
pub fn stderr_progress() -> bool {
    live_progress(std::io::stderr().is_terminal(), is_ci())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_outside_ci_without_no_color() {
        assert!(colour(false, true, false));
        assert!(!colour(false, false, false));
        assert!(!colour(false, true, true));
        assert!(!colour(true, true, false));
    }

    #[test]
    fn progress_only_on_a_terminal_outside_ci_whatever_no_color_says() {
        assert!(live_progress(true, false));
        assert!(!live_progress(false, false));
        assert!(!live_progress(true, true));
    }
}
