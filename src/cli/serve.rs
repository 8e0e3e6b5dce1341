//! `proctor serve`: the local web view (`src/serve`), with the command
//! line's answer path for its forms.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{answer, CommandError};
use crate::engine::short;
use crate::git::GitRepo;
use crate::serve::{Decisions, Fleet, Server};
use crate::state::{registry, Paths};
use crate::views::out::say;

/// Serve a web view of this machine's runs on 127.0.0.1: every repository
/// `proctor run` has run in (or those named), each run live, its cards,
/// exam results, log and changes; answer a blocked loop or approve a
/// gated one from the page.
///
/// It listens on 127.0.0.1 only (no container reaches it) and every URL
/// carries a random token, printed at start: without it there is no page.
/// Forms also carry a CSRF token, and an approval signs, with your
/// approver key, only the commit the page showed.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub port: u16,
    /// Repositories to show (default: every repository in the registry
    /// `proctor run` adds to, `~/.config/proctor/registry/repos`).
    #[arg(value_name = "REPO")]
    pub repos: Vec<PathBuf>,
}

pub async fn cmd_serve(args: Args) -> Result<i32, CommandError> {
    let cwd = super::cwd()?;
    let mut given = Vec::new();
    for repo in &args.repos {
        let git = GitRepo::open(&cwd.join(repo)).map_err(|e| {
            CommandError::user(format!("`{}` is not a git repository: {e}", repo.display()))
        })?;
        given.push(git.root().to_path_buf());
    }
    let fleet = Fleet {
        given,
        registry: registry::registry_file(),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| {
            CommandError::user(format!("cannot listen on 127.0.0.1:{}: {e}", args.port))
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| CommandError::Internal {
            message: format!("cannot read the listening address: {e}"),
        })?
        .port();
    let decisions = Decisions {
        approve: Box::new(approve),
        answer: Box::new(answer_text),
    };
    let server = Arc::new(Server::new(fleet, port, decisions));
    say!("proctor serve: open {} (Ctrl-C stops it)", server.url());
    crate::serve::serve(listener, server, stopped())
        .await
        .map_err(|e| CommandError::Internal {
            message: format!("the web view stopped: {e}"),
        })?;
    Ok(0)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn message(e: &CommandError) -> String {
    e.render()
        .lines()
        .map(|l| l.trim_start_matches("error: "))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Approves `loop_id` at `commit` (the one the page showed), signed like
/// `proctor answer LOOP approve`.
fn approve(root: &Path, loop_id: &str, commit: &str) -> Result<String, String> {
    let git = GitRepo::open(root).map_err(|e| e.to_string())?;
    let paths = Paths::new(git.root());
    if !answer::is_gated(&git, &paths, loop_id) {
        return Err(format!(
            "loop `{loop_id}` is not gated: there is nothing to approve"
        ));
    }
    let decided = answer::decide_gate(&git, &paths, loop_id, "approve", Some(commit))
        .map_err(|e| message(&e))?;
    Ok(format!(
        "approved loop `{}` at commit {} on `{}` as approver {}; the next run checks the exam once more and seals the gate if it still passes: {}",
        decided.loop_id,
        short(&decided.commit),
        decided.branch,
        decided.approver,
        answer::next_run(git.root())
    ))
}

/// Answers a blocked loop, signed like `proctor answer LOOP TEXT`.
fn answer_text(root: &Path, loop_id: &str, text: &str) -> Result<String, String> {
    let git = GitRepo::open(root).map_err(|e| e.to_string())?;
    let paths = Paths::new(git.root());
    if answer::is_gated(&git, &paths, loop_id) {
        return Err(format!(
            "loop `{loop_id}` is gated: approve it with its button, or reject it with `proctor answer {loop_id} TEXT`"
        ));
    }
    answer::record_answer(&git, &paths, loop_id, text).map_err(|e| message(&e))?;
    Ok(format!(
        "recorded the answer for loop `{loop_id}`: it goes into the next prompt; {}",
        answer::next_run(git.root())
    ))
}
