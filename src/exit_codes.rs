//! Exit codes: the one place they are defined (see README, "Exit codes").

/// All loops closed (`land`: landed, or nothing to land).
pub const CLOSED: i32 = 0;
/// Usage or precondition: bad manifest or flag, uncommitted manifest, no engine.
pub const USAGE: i32 = 1;
/// Internal or git error.
pub const INTERNAL: i32 = 2;
/// Blocked: a budget ran out (see `proctor inbox`, then `proctor answer`),
/// `land` left the target as it was (conflict, failing merged tree), or
/// `plan` ran out of rounds before its proposal was ready.
pub const BLOCKED: i32 = 3;
/// Gated: a passing loop awaits human approval.
pub const GATED: i32 = 4;
/// Interrupted by SIGINT or SIGTERM (as shells report 128 + SIGINT).
pub const INTERRUPTED: i32 = 130;

/// What every domain error tells the command line: whether the user can
/// fix it (exit 1) or something failed underneath (exit 2), and the next
/// thing to do. The message (`Display`) never carries the hint, so the
/// command line prints each once: `error: <message>`, then `hint: <hint>`;
/// the error itself, with its cause chain, is kept.
pub trait DomainError: std::error::Error + Send + Sync + 'static {
    /// Whether the user can fix this (a usage or precondition error).
    fn is_users_to_fix(&self) -> bool;
    /// The next thing to do, when there is one.
    fn hint(&self) -> Option<String> {
        None
    }
    /// The last lines of a command the error is about (an exam or agent
    /// that cannot run), shown under the error line, each escaped: the
    /// message itself stays one line.
    fn output(&self) -> Option<String> {
        None
    }
}

/// The exit code a domain error ends the command with.
pub fn of(error: &dyn DomainError) -> i32 {
    if error.is_users_to_fix() {
        USAGE
    } else {
        INTERNAL
    }
}
