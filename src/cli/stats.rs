//! `proctor stats`: sums over every recorded run. Read-only.

use super::status::{print_json, print_out, ManifestFile};
use super::CommandError;
use crate::engine::fmt_secs;
use crate::views::{history, utc};

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
    let ctx = args.manifest.context()?;
    let s = history::stats(&ctx.records, &ctx.raw, ctx.holder);
    if args.json {
        print_json(&serde_json::to_value(&s).unwrap_or_default());
        return Ok(0);
    }
    let since = match (s.first, s.last) {
        (Some(a), Some(b)) => format!(" · {} to {}", utc(a), utc(b)),
        _ => String::new(),
    };
    let mut out = format!("proctor stats{since}\n");
    out.push_str(&format!(
        "runs:              {} ({} closed, {} blocked, {} gated, {} interrupted, {} failed, {} running)\n",
        s.runs, s.closed, s.blocked, s.gated, s.interrupted, s.errors, s.running
    ));
    out.push_str(&format!(
        "attempts:          {} agent runs: {} verified by the exam, {} rejected\n",
        s.attempts, s.verified, s.rejected
    ));
    out.push_str(&format!(
        "cheats blocked:    {} (quarantined edits)\n",
        s.cheats_blocked
    ));
    out.push_str(&format!(
        "exams:             {} administered, {} in verifier containers\n",
        s.exams,
        fmt_secs(s.exam_secs)
    ));
    out.push_str(&format!("loops closed:      {}\n", s.loops_closed));
    out.push_str(&format!("agent time:        {}\n", fmt_secs(s.agent_secs)));
    print_out(&out);
    Ok(0)
}
