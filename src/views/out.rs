//! Writing to stdout and stderr for every verb: views, JSON and one-line
//! messages.
//! A closed pipe (`proctor status | head`) ends output quietly instead of
//! panicking as `println!` would. Whether a view is coloured is decided by
//! [`crate::terminal::stdout_colour`], never here.
//!
//! `proctor mcp` runs the verbs in its own process, where stdout carries
//! the protocol: there a verb's output is captured per call ([`capture`])
//! and handed to the client, and anything written outside a capture goes
//! to stderr, so no verb can break the protocol stream.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

tokio::task_local! {
    /// The buffer of the verb running in this task under [`capture`].
    static CAPTURE: Arc<Mutex<String>>;
}

/// Set once stdout belongs to a protocol (`proctor mcp`).
static STDOUT_IS_PROTOCOL: AtomicBool = AtomicBool::new(false);

/// From now on, output outside a [`capture`] goes to stderr.
pub fn reserve_stdout() {
    STDOUT_IS_PROTOCOL.store(true, Ordering::SeqCst);
}

/// Runs `verb` with everything it would print (stdout and the messages of
/// [`print_err`]) collected, and returns its result with that text.
pub async fn capture<T>(verb: impl std::future::Future<Output = T>) -> (T, String) {
    let buffer = Arc::new(Mutex::new(String::new()));
    let result = CAPTURE.scope(buffer.clone(), verb).await;
    let text = match buffer.lock() {
        Ok(text) => text.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    (result, text)
}

/// [`capture`] for a verb that blocks (waits, sleeps, reads files): it
/// runs on the blocking pool, so the protocol keeps being served.
pub async fn capture_blocking<T: Send + 'static>(
    verb: impl FnOnce() -> T + Send + 'static,
) -> Result<(T, String), tokio::task::JoinError> {
    let buffer = Arc::new(Mutex::new(String::new()));
    let inner = buffer.clone();
    let result = tokio::task::spawn_blocking(move || CAPTURE.sync_scope(inner, verb)).await?;
    let text = match buffer.lock() {
        Ok(text) => text.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    Ok((result, text))
}

/// Appends to the running capture; false when there is none.
fn captured(text: &str) -> bool {
    CAPTURE
        .try_with(|buffer| match buffer.lock() {
            Ok(mut b) => b.push_str(text),
            Err(poisoned) => poisoned.into_inner().push_str(text),
        })
        .is_ok()
}

/// Writes to stdout; a closed pipe ends output quietly.
pub fn print_out(text: &str) {
    if captured(text) {
        return;
    }
    if STDOUT_IS_PROTOCOL.load(Ordering::SeqCst) {
        let _ = std::io::stderr().write_all(text.as_bytes());
        return;
    }
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
    if captured(text) {
        return;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_captured_verb_prints_into_its_own_buffer() {
        let ((), text) = capture(async {
            say!("one");
            print_err("two\n");
        })
        .await;
        assert_eq!(text, "one\ntwo\n");
        let (n, text) = capture_blocking(|| {
            say!("three");
            3
        })
        .await
        .unwrap();
        assert_eq!((n, text.as_str()), (3, "three\n"));
    }
}
