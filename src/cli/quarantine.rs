//! `proctor quarantine`: the edits the boundary set aside.

use super::CommandError;
use crate::git::{unified_diff, GitRepo};
use crate::protect::quarantine::{self, Record};
use crate::state::Paths;
use crate::terminal;

/// List, show or drop quarantine records: edits to the exam's materials (or
/// writes outside a loop's allow-list) that proctor set aside under
/// `.proctor/quarantine/` before restoring the trusted copies.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    /// Print records as JSON lines (for `list`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// List the records, oldest first (the default).
    List,
    /// Show what a record holds: each path, why, and a diff from the trusted
    /// copy to the attempted one.
    Diff {
        /// A record id, or an unambiguous prefix of one.
        id: String,
    },
    /// Remove records.
    Drop {
        /// A record id, or an unambiguous prefix of one.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Remove every record.
        #[arg(long)]
        all: bool,
    },
}

pub fn cmd_quarantine(args: Args) -> Result<i32, CommandError> {
    let git = GitRepo::open(&super::cwd()?)?;
    let paths = Paths::new(git.root());
    let dir = paths.state.join("quarantine");
    match args.action.unwrap_or(Action::List) {
        Action::List => {
            let records = quarantine::list(&dir);
            if args.json {
                for r in &records {
                    crate::views::out::say!("{}", serde_json::to_string(r).unwrap_or_default());
                }
                return Ok(0);
            }
            if records.is_empty() {
                crate::views::out::say!("no quarantine records");
                return Ok(0);
            }
            for r in &records {
                crate::views::out::say!("{}", summary_line(r));
            }
            Ok(0)
        }
        Action::Diff { id } => {
            let record = quarantine::find(&dir, &id)
                .map_err(|e| CommandError::hint(e, "list the records with `proctor quarantine`"))?;
            crate::views::out::say_raw!("{}", show(&dir, &record));
            Ok(0)
        }
        Action::Drop { id, all } => {
            let records = if all {
                quarantine::list(&dir)
            } else {
                let id = id.unwrap_or_default();
                vec![quarantine::find(&dir, &id).map_err(|e| {
                    CommandError::hint(e, "list the records with `proctor quarantine`")
                })?]
            };
            for r in &records {
                quarantine::drop_record(&dir, r).map_err(|e| CommandError::Internal {
                    message: format!("cannot remove quarantine record `{}`: {e}", r.id),
                })?;
            }
            crate::views::out::say!(
                "dropped {} quarantine record{}",
                records.len(),
                if records.len() == 1 { "" } else { "s" }
            );
            Ok(0)
        }
    }
}

pub(crate) fn summary_line(r: &Record) -> String {
    let files: Vec<String> = r
        .files
        .iter()
        .map(|f| format!("{} ({})", f.path, f.change.as_str()))
        .collect();
    let when = if r.attempt == 0 {
        r.phase.clone()
    } else {
        format!("run {} · {}", r.attempt, r.phase)
    };
    let line = format!(
        "{}  loop {} · {when}  {}",
        r.id,
        r.loop_id,
        files.join(", ")
    );
    terminal::line(&line).into_owned()
}

/// A record in full: who, when, why, and a diff per path.
pub fn show(dir: &std::path::Path, r: &Record) -> String {
    let mut out = format!(
        "quarantine record {}\nloop `{}`, {}, phase `{}`, proctor run {}\ntrusted copies from commit {}\n",
        terminal::line(&r.id),
        terminal::line(&r.loop_id),
        if r.attempt == 0 {
            "before its first run".to_string()
        } else {
            format!("run {}", r.attempt)
        },
        terminal::line(&r.phase),
        terminal::line(&r.run),
        terminal::line(&r.trusted_from)
    );
    for f in &r.files {
        // The path is the agent's: escaped, it cannot start a line.
        let path = terminal::line(&f.path);
        out.push_str(&format!(
            "\n{path} — {} (rule: {})\n",
            f.change.as_str(),
            terminal::line(&f.rule)
        ));
        if let Some(target) = &f.link_target {
            out.push_str(&format!(
                "attempted: a symlink to `{}` (never followed)\n",
                terminal::line(target)
            ));
        }
        let trusted = f
            .trusted
            .as_deref()
            .and_then(|rel| quarantine::kept(dir, r, rel))
            .unwrap_or_default();
        let attempted = f
            .attempted
            .as_deref()
            .and_then(|rel| quarantine::kept(dir, r, rel))
            .unwrap_or_default();
        let diff = unified_diff(
            &trusted,
            &attempted,
            &format!("trusted/{path}"),
            &format!("attempted/{path}"),
        );
        let diff = terminal::text(&diff);
        if diff.trim().is_empty() {
            if f.link_target.is_none() {
                out.push_str("(no content difference)\n");
            }
        } else {
            out.push_str(&diff);
        }
    }
    out
}
