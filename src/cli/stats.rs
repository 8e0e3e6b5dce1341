//! `proctor stats`: sums over every recorded run. Read-only.

use super::CommandError;
use crate::views::out::{print_json, print_out};
use crate::views::{history, text, ManifestFile};

/// Sum every recorded run: runs and how they ended, attempts the exam
/// verified and rejected, cheats blocked (quarantined edits), exams
/// administered, agent time. Read-only, from `.proctor/events.jsonl`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub manifest: ManifestFile,
}

pub fn cmd_stats(args: Args) -> Result<i32, CommandError> {
    let ctx = args.manifest.context(&super::cwd()?)?;
    let s = history::stats(&ctx.records, &ctx.raw, ctx.holder);
    if args.json {
        print_json(&serde_json::to_value(&s).unwrap_or_default());
        return Ok(0);
    }
    print_out(&text::stats_summary(&s));
    Ok(0)
}
