//! Writing to stdout for every verb: views, JSON and one-line messages.
//! A closed pipe (`proctor status | head`) ends output quietly instead of
//! panicking as `println!` would. Whether a view is coloured is decided by
//! [`crate::terminal::stdout_colour`], never here.

use std::io::Write;

/// Writes to stdout; a closed pipe ends output quietly.
pub fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// `println!` that ends quietly when stdout is a closed pipe.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::views::out::print_out(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use say;

/// Writes to stderr; a closed pipe (`proctor run 2>&1 | head -1`) ends
/// output quietly instead of panicking as `eprintln!` would.
pub fn print_err(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// `print!` that ends quietly when stdout is a closed pipe.
macro_rules! say_raw {
    ($($arg:tt)*) => {
        $crate::views::out::print_out(&format!($($arg)*))
    };
}
pub(crate) use say_raw;

/// `eprintln!` that ends quietly when stderr is a closed pipe.
macro_rules! say_err {
    ($($arg:tt)*) => {
        $crate::views::out::print_err(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use say_err;

/// Pretty JSON on stdout (`--json`).
pub fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    print_out(&format!("{text}\n"));
}
