//! The command line: one file per verb, one flat dispatch, one mapping from
//! errors to exit codes. Verbs call the engine and the renderers; they hold
//! no loop logic of their own.

use std::io::Write;

use clap::{Parser, Subcommand};

use crate::cage::CageError;
use crate::engine::EngineError;
use crate::exit_codes;
use crate::git::GitError;
use crate::manifest::ManifestError;
use crate::run::RunError;
use crate::state::key::KeyError;
use crate::state::lock::LockError;

mod answer;
mod audit;
mod cron;
mod demo;
mod detach;
pub mod gauntlet;
mod image;
mod inbox;
mod init;
mod lint;
mod once;
mod proxy;
mod quarantine;
mod reap;
pub mod run;
mod runs;
mod stats;
mod status;
mod stop;
mod watch;

/// Keeps an AI coding agent working on a git repository until a
/// machine-checkable exam passes. Every agent and every exam runs in a fresh
/// container.
#[derive(Debug, Parser)]
#[command(name = "proctor", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Run(run::Args),
    Once(once::Args),
    Answer(answer::Args),
    Demo(demo::Args),
    Init(init::Args),
    Lint(lint::Args),
    Reap(reap::Args),
    Quarantine(quarantine::Args),
    Audit(audit::Args),
    Gauntlet(gauntlet::Args),
    #[command(name = "__proxy", hide = true)]
    Proxy(proxy::Args),
    Status(status::Args),
    Watch(watch::Args),
    Inbox(inbox::Args),
    Stop(stop::Args),
    Runs(runs::Args),
    Stats(stats::Args),
    Cron(cron::Args),
    Image(image::Args),
}

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
        }
    }
}

impl From<ManifestError> for CommandError {
    fn from(e: ManifestError) -> Self {
        CommandError::user(e.to_string())
    }
}

impl From<CageError> for CommandError {
    fn from(e: CageError) -> Self {
        match e {
            CageError::RuntimeUnusable { ref hint, .. }
            | CageError::Weakened { ref hint, .. }
            | CageError::Remote { ref hint, .. } => CommandError::hint(e.to_string(), hint.clone()),
            e if e.is_users_to_fix() => CommandError::user(e.to_string()),
            other => CommandError::Internal {
                message: other.to_string(),
            },
        }
    }
}

impl From<GitError> for CommandError {
    fn from(e: GitError) -> Self {
        match e {
            GitError::NotARepo { .. } | GitError::Bare { .. } => CommandError::hint(
                e.to_string(),
                "run proctor inside a git repository with at least one commit",
            ),
            ref owner if owner.is_unsafe_owner() => CommandError::hint(
                e.to_string(),
                "the repository belongs to another user; run proctor as its owner, or trust it with `git config --global --add safe.directory <path>`",
            ),
            other => CommandError::Internal {
                message: other.to_string(),
            },
        }
    }
}

impl From<RunError> for CommandError {
    fn from(e: RunError) -> Self {
        let hint = e.own_hint();
        match e {
            RunError::Manifest(e) => e.into(),
            RunError::Cage(e) => e.into(),
            RunError::Git(e) => e.into(),
            RunError::Lock(e) => e.into(),
            RunError::Key(e) => e.into(),
            RunError::Engine(e) => e.into(),
            e if e.is_users_to_fix() => CommandError::User {
                message: e.to_string(),
                hint,
            },
            other => CommandError::Internal {
                message: other.to_string(),
            },
        }
    }
}

impl From<LockError> for CommandError {
    fn from(e: LockError) -> Self {
        CommandError::user(e.to_string())
    }
}

impl From<KeyError> for CommandError {
    fn from(e: KeyError) -> Self {
        CommandError::hint(
            e.to_string(),
            "set `PROCTOR_KEY_DIR` to a private directory outside the repository",
        )
    }
}

impl From<EngineError> for CommandError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Cage(c) => c.into(),
            EngineError::Git(g) => g.into(),
            EngineError::NoAgent(_) => CommandError::user(e.to_string()),
            EngineError::EngineGone { .. } => CommandError::hint(
                e.to_string(),
                "start it again and run `proctor run` to resume: the cut-short attempt is settled then (committed as interrupted if it left edits, not charged if it left none)",
            ),
            EngineError::Io { .. } => CommandError::Internal {
                message: e.to_string(),
            },
        }
    }
}

/// Parses the command line, runs the verb, and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit_codes::USAGE } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PROCTOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Log lines (warnings included) are plain unless stderr is a
        // terminal: the formatter's default colours captured output too.
        .with_ansi(crate::terminal::stderr_colour())
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit_codes::INTERNAL;
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    match result {
        Ok(code) => code,
        Err(e) => {
            let mut err = std::io::stderr();
            match &e {
                CommandError::User { message, hint } => {
                    let _ = writeln!(err, "error: {message}");
                    if let Some(hint) = hint {
                        let _ = writeln!(err, "hint: {hint}");
                    }
                }
                CommandError::Internal { message } => {
                    let _ = writeln!(err, "error: {message}");
                }
            }
            e.exit_code()
        }
    }
}

async fn dispatch(command: Command) -> Result<i32, CommandError> {
    match command {
        Command::Run(args) => run::cmd_run(args).await,
        Command::Once(args) => once::cmd_once(args).await,
        Command::Answer(args) => answer::cmd_answer(args),
        Command::Demo(args) => demo::cmd_demo(args).await,
        Command::Init(args) => init::cmd_init(args),
        Command::Lint(args) => lint::cmd_lint(args).await,
        Command::Reap(args) => reap::cmd_reap(args).await,
        Command::Quarantine(args) => quarantine::cmd_quarantine(args),
        Command::Audit(args) => audit::cmd_audit(args),
        Command::Gauntlet(args) => gauntlet::cmd_gauntlet(args),
        Command::Proxy(args) => proxy::cmd_proxy(args).await,
        Command::Status(args) => status::cmd_status(args),
        Command::Watch(args) => watch::cmd_watch(args),
        Command::Inbox(args) => inbox::cmd_inbox(args),
        Command::Stop(args) => stop::cmd_stop(args).await,
        Command::Runs(args) => runs::cmd_runs(args),
        Command::Stats(args) => stats::cmd_stats(args),
        Command::Cron(args) => cron::cmd_cron(args),
        Command::Image(args) => image::cmd_image(args).await,
    }
}

/// The working directory, or a user error.
pub fn cwd() -> Result<std::path::PathBuf, CommandError> {
    std::env::current_dir()
        .map_err(|e| CommandError::user(format!("cannot read the current directory: {e}")))
}

#[cfg(test)]
mod tests;
