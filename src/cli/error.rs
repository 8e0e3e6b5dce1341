//! The one error type of the command line: a verb's own refusal, or a
//! domain error kept whole. Every hint is printed once, on its own line.

use crate::exit_codes::{self, DomainError};

/// An error a verb reports: the message is one line; the hint names the
/// next thing to do.
#[derive(Debug)]
pub enum CommandError {
    /// Bad input or an unmet precondition (exit 1).
    User {
        message: String,
        hint: Option<String>,
    },
    /// A bug, or git or the engine failing underneath (exit 2).
    Internal { message: String },
    /// A domain error, kept whole (its cause chain too): it classifies
    /// itself and offers its own hint.
    Domain(Box<dyn DomainError>),
}

impl CommandError {
    pub fn user(message: impl Into<String>) -> CommandError {
        CommandError::User {
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(message: impl Into<String>, hint: impl Into<String>) -> CommandError {
        CommandError::User {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            CommandError::User { .. } => exit_codes::USAGE,
            CommandError::Internal { .. } => exit_codes::INTERNAL,
            CommandError::Domain(e) => exit_codes::of(e.as_ref()),
        }
    }

    /// What the user sees: `error: <message>`, then `hint: <hint>` when
    /// there is one; each once.
    pub fn render(&self) -> String {
        let (message, hint, output) = match self {
            CommandError::User { message, hint } => (message.clone(), hint.clone(), None),
            CommandError::Internal { message } => (message.clone(), None, None),
            CommandError::Domain(e) => (e.to_string(), e.hint(), e.output()),
        };
        // A message can quote what an agent wrote (a file name, a card):
        // escaped, it cannot reach the terminal raw.
        let mut out = format!("error: {}\n", crate::terminal::line(&message));
        // A command's output: a line each, marked as its, each escaped, so
        // no line of it can pass for one of proctor's.
        for line in output.iter().flat_map(|o| o.lines()) {
            out.push_str(&format!("  | {}\n", crate::terminal::line(line)));
        }
        if let Some(hint) = hint {
            out.push_str(&format!("hint: {}\n", crate::terminal::line(&hint)));
        }
        out
    }
}

impl<E: DomainError> From<E> for CommandError {
    fn from(e: E) -> Self {
        CommandError::Domain(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cage::CageError;

    /// `RuntimeUnusable` carried its hint in the message too, so it was
    /// printed twice (once inside `error:`, once as `hint:`).
    #[test]
    fn a_runtime_unusable_hint_prints_once() {
        let hint = "configure the engine to use `crun`";
        let e = CommandError::from(CageError::RuntimeUnusable {
            message: "error setting rlimit type 7".into(),
            hint: hint.into(),
        });
        let text = e.render();
        assert_eq!(text.matches(hint).count(), 1, "{text}");
        assert_eq!(
            text,
            format!("error: the container engine's OCI runtime cannot start containers on this host (error setting rlimit type 7)\nhint: {hint}\n")
        );
        assert_eq!(e.exit_code(), exit_codes::USAGE);
    }

    /// The output of an exam that cannot run was printed on the error's
    /// one line, its newlines escaped (`...spent\\n  | /bin/sh: ...`).
    #[test]
    fn an_exam_that_cannot_run_shows_its_output_a_line_each() {
        let e = CommandError::from(crate::engine::EngineError::ExamCannotRun {
            loop_id: "fix".into(),
            why: "command `nosuch` was not found in the container (exit 127)".into(),
            tail: "/bin/sh: 1: nosuch: not found\nforged\u{1b}[2J".into(),
            log: ".proctor/logs/fix.run0.exam.log".into(),
            recheck: "check with `proctor lint`".into(),
        });
        let text = e.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].ends_with("no run was spent"), "{text}");
        assert_eq!(lines[1], "  | /bin/sh: 1: nosuch: not found");
        assert!(
            lines[2].starts_with("  | forged") && !lines[2].contains('\u{1b}'),
            "{text}"
        );
        assert!(lines[3].starts_with("hint: "), "{text}");
        // `proctor logs` alone is a usage error: the hint names the loop.
        assert!(lines[3].ends_with("(`proctor logs fix`)"), "{text}");
    }

    #[test]
    fn a_domain_error_keeps_its_cause_chain() {
        let io = std::io::Error::other("disk full");
        let e = CommandError::from(crate::engine::EngineError::Io {
            path: "x".into(),
            source: io,
        });
        let CommandError::Domain(inner) = &e else {
            panic!("not kept whole: {e:?}");
        };
        let cause = std::error::Error::source(inner.as_ref()).map(|c| c.to_string());
        assert_eq!(cause.as_deref(), Some("disk full"));
        assert_eq!(e.exit_code(), exit_codes::INTERNAL);
        assert_eq!(e.render(), "error: cannot write `x`: disk full\n");
    }
}
