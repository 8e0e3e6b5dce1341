//! `proctor inbox`: every loop waiting for a person, with the command to
//! answer it. Read-only.

use super::CommandError;
use crate::terminal::stdout_colour;
use crate::views::out::{print_json, print_out};
use crate::views::{json, text, ManifestFile, View};

/// List every blocked or gated loop (its card in `INBOX/`) with the exact
/// command to answer it. Read-only.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub manifest: ManifestFile,
    /// Print the cards as JSON (the `cards` list of `watch --json`).
    #[arg(long)]
    pub json: bool,
}

pub fn cmd_inbox(args: Args) -> Result<i32, CommandError> {
    let ctx = args.manifest.context(&super::cwd()?)?;
    let view = View::build(&ctx);
    if args.json {
        let all = json::to_json(&view);
        print_json(&all["cards"]);
    } else {
        print_out(&text::inbox(&view, stdout_colour()));
    }
    Ok(0)
}
