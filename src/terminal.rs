//! What output may carry where it goes: colour and the live progress line
//! only on a terminal, never under CI. Each is decided here, once, by a
//! pure function of the facts; callers pass the facts of their stream and
//! never decide by themselves. Captured output (a pipe, a file, a test's
//! capture) is always plain text, without a single escape code.
//!
//! Text an agent or code under test controls (file names, its output,
//! journals, commit subjects, card text) reaches people only through
//! [`line`] or [`text`]: a screen clear, a fake green "exam passed", an
//! OSC 52 clipboard write or a newline that forges a line of proctor's
//! own is shown as visible escapes, never sent to the terminal raw.

use std::borrow::Cow;
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

/// `s` for one line of output: every control character (C0 including
/// newline, carriage return and tab; DEL; C1) and every invisible
/// direction or line-separator mark is written as a visible escape (`\n`,
/// `\r`, `\t`, `\x1b`, `\u{202e}`), so the text cannot move the cursor,
/// change colours, talk to the terminal or start a line of its own.
pub fn line(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// [`line`] for multi-line text (agent and exam output, diffs): newlines
/// and tabs stay, a carriage return before a newline is dropped, every
/// other control character is escaped.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

fn escape(s: &str, multiline: bool) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' if multiline => out.push(c),
            '\r' if multiline && chars.peek() == Some(&'\n') => {}
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_escapes() {
        assert!(matches!(line("tests/a.sh"), Cow::Borrowed(_)));
        assert_eq!(line("a\nproctor: fix: closed"), "a\\nproctor: fix: closed");
        assert_eq!(
            line("\x1b[2J\x1b[32mexam passed\x1b[0m"),
            "\\x1b[2J\\x1b[32mexam passed\\x1b[0m"
        );
        assert_eq!(line("\x1b]52;c;cHduZWQ=\x07"), "\\x1b]52;c;cHduZWQ=\\x07");
        assert_eq!(line("ok\rFAIL\ttab\x7f"), "ok\\rFAIL\\ttab\\x7f");
        assert_eq!(line("\u{9b}2J \u{202e}txt.sh"), "\\u{9b}2J \\u{202e}txt.sh");
        assert_eq!(line("naïve ✓ ok"), "naïve ✓ ok");
        assert_eq!(text("a\r\nb\tc\n\x1b[2Jd\re"), "a\nb\tc\n\\x1b[2Jd\\re");
    }

    #[test]
    fn an_escaped_line_never_holds_a_control_character() {
        let every: String = (0u32..0x250).filter_map(char::from_u32).collect();
        let escaped = line(&every);
        assert!(!escaped.chars().any(unsafe_char), "{escaped}");
        let multi = text(&every);
        assert!(
            !multi
                .chars()
                .any(|c| unsafe_char(c) && c != '\n' && c != '\t'),
            "{multi}"
        );
    }

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
