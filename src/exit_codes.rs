//! Exit codes: the one place they are defined (see README, "Exit codes").

/// All loops closed.
pub const CLOSED: i32 = 0;
/// Usage or precondition: bad manifest or flag, dirty tree, no engine.
pub const USAGE: i32 = 1;
/// Internal or git error.
pub const INTERNAL: i32 = 2;
/// Blocked: a budget ran out; see `proctor inbox`, then `proctor answer`.
pub const BLOCKED: i32 = 3;
/// Gated: a passing loop awaits human approval.
pub const GATED: i32 = 4;
/// Interrupted by SIGINT or SIGTERM (as shells report 128 + SIGINT).
pub const INTERRUPTED: i32 = 130;
