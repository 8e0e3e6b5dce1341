//! `proctor status`: where every loop stands, from the events file and the
//! cards. Read-only; no exam is run.

use super::CommandError;
use crate::terminal::stdout_colour;
use crate::views::out::{print_json, print_out};
use crate::views::{json, text, ManifestFile, View};

/// Show the loop tree with a word and a mark per loop (done, running,
/// waiting, blocked, gated, untouched), runs used of each budget, agent time
/// and the next command to type. Read-only: rendered from
/// `.proctor/events.jsonl` and the cards in `INBOX/`; no exam is run.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub manifest: ManifestFile,
    /// Print the `watch --json` shape instead.
    #[arg(long)]
    pub json: bool,
}

pub fn cmd_status(args: Args) -> Result<i32, CommandError> {
    let ctx = args.manifest.context(&super::cwd()?)?;
    let view = View::build(&ctx);
    if args.json {
        print_json(&json::to_json(&view));
    } else {
        print_out(&text::tree(&view, "proctor status", stdout_colour()));
    }
    Ok(0)
}
