//! `proctor runs`: past runs with their outcome and duration. Read-only.

use super::CommandError;
use crate::views::out::{print_json, print_out};
use crate::views::{history, text, ManifestFile};

/// List past runs of this repository (newest last): when each started,
/// which loop tree, how it ended, how long it took, its agent runs and
/// agent time. Read-only, from `.proctor/events.jsonl`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show at most this many (the most recent).
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: usize,
    /// Print JSON (a list of runs) instead.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub manifest: ManifestFile,
}

pub fn cmd_runs(args: Args) -> Result<i32, CommandError> {
    let ctx = args.manifest.context(&super::cwd()?)?;
    let rows = history::runs(&ctx.records, ctx.holder);
    let skip = rows.len().saturating_sub(args.limit);
    let rows = &rows[skip..];
    if args.json {
        print_json(&serde_json::to_value(rows).unwrap_or_default());
        return Ok(0);
    }
    print_out(&text::runs_table(rows));
    Ok(0)
}
