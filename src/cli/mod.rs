//! The command line: one file per verb, one flat dispatch, one mapping from
//! errors to exit codes. Verbs call the engine and the renderers; they hold
//! no loop logic of their own.

use std::io::Write;

use clap::{Parser, Subcommand};

use crate::exit_codes;

mod error;
pub use error::CommandError;
mod answer;
mod attest;
mod audit;
mod completions;
mod cron;
mod demo;
mod detach;
mod estimate;
pub mod gauntlet;
mod image;
mod inbox;
mod init;
mod judge;
mod key;
mod land;
mod lint;
mod logs;
mod mcp;
mod once;
mod plan;
mod proxy;
mod quarantine;
mod reap;
pub mod run;
mod runs;
mod serve;
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
    Plan(plan::Args),
    Estimate(estimate::Args),
    Answer(answer::Args),
    Demo(demo::Args),
    Init(init::Args),
    Lint(lint::Args),
    Judge(judge::Args),
    Logs(logs::Args),
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
    Land(land::Args),
    Runs(runs::Args),
    Stats(stats::Args),
    Cron(cron::Args),
    Image(image::Args),
    Key(key::Args),
    Attest(attest::Args),
    Serve(serve::Args),
    Mcp(mcp::Args),
    Completions(completions::Args),
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
            crate::views::out::say_err!("error: cannot start the async runtime: {e}");
            return exit_codes::INTERNAL;
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = std::io::stderr().write_all(e.render().as_bytes());
            e.exit_code()
        }
    }
}

async fn dispatch(command: Command) -> Result<i32, CommandError> {
    match command {
        Command::Run(args) => run::cmd_run(args).await,
        Command::Once(args) => once::cmd_once(args).await,
        Command::Plan(args) => plan::cmd_plan(args).await,
        Command::Estimate(args) => estimate::cmd_estimate(args),
        Command::Answer(args) => answer::cmd_answer(args),
        Command::Demo(args) => demo::cmd_demo(args).await,
        Command::Init(args) => init::cmd_init(args),
        Command::Lint(args) => lint::cmd_lint(args).await,
        Command::Judge(args) => judge::cmd_judge(args).await,
        Command::Logs(args) => logs::cmd_logs(args),
        Command::Reap(args) => reap::cmd_reap(args).await,
        Command::Quarantine(args) => quarantine::cmd_quarantine(args),
        Command::Audit(args) => audit::cmd_audit(args),
        Command::Gauntlet(args) => gauntlet::cmd_gauntlet(args),
        Command::Proxy(args) => proxy::cmd_proxy(args).await,
        Command::Status(args) => status::cmd_status(args),
        Command::Watch(args) => watch::cmd_watch(args),
        Command::Inbox(args) => inbox::cmd_inbox(args),
        Command::Stop(args) => stop::cmd_stop(args).await,
        Command::Land(args) => land::cmd_land(args).await,
        Command::Runs(args) => runs::cmd_runs(args),
        Command::Stats(args) => stats::cmd_stats(args),
        Command::Cron(args) => cron::cmd_cron(args),
        Command::Image(args) => image::cmd_image(args).await,
        Command::Key(args) => key::cmd_key(args),
        Command::Attest(args) => attest::cmd_attest(args).await,
        Command::Serve(args) => serve::cmd_serve(args).await,
        Command::Mcp(args) => mcp::cmd_mcp(args).await,
        Command::Completions(args) => completions::cmd_completions(args),
    }
}

/// The working directory, or a user error.
pub fn cwd() -> Result<std::path::PathBuf, CommandError> {
    std::env::current_dir()
        .map_err(|e| CommandError::user(format!("cannot read the current directory: {e}")))
}

#[cfg(test)]
mod injection;
#[cfg(test)]
mod tests;
