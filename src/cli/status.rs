//! `proctor status`: where every loop stands, from the events file and the
//! cards. Read-only; no exam is run.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use super::CommandError;
use crate::git::GitRepo;
use crate::render::use_colour;
use crate::views::{json, text, Context, View};

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
    let ctx = args.manifest.context()?;
    let view = View::build(&ctx);
    if args.json {
        print_json(&json::to_json(&view));
    } else {
        print_out(&text::tree(&view, "proctor status", stdout_colour()));
    }
    Ok(0)
}

/// `--file`, shared by the read-only views.
#[derive(Debug, clap::Args)]
pub struct ManifestFile {
    /// The manifest (default: proctor.yaml, else lute.yaml).
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
}

impl ManifestFile {
    /// The view context of the repository around the working directory.
    pub(super) fn context(self) -> Result<Context, CommandError> {
        let cwd = super::cwd()?;
        let git = GitRepo::open(&cwd)?;
        let file = self.file.map(|f| cwd.join(f));
        Ok(Context::load(git.root(), file.as_deref()))
    }
}

/// Colour on stdout only at a terminal, outside CI, without `NO_COLOR`.
pub(super) fn stdout_colour() -> bool {
    use_colour(
        std::io::stdout().is_terminal(),
        std::env::var_os("CI").is_some(),
        std::env::var_os("NO_COLOR").is_some(),
    )
}

/// Writes to stdout; a closed pipe (`| head`) ends output quietly.
pub(crate) fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// `println!` that ends quietly when stdout is a closed pipe.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::status::print_out(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use say;

pub(super) fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    print_out(&format!("{text}\n"));
}
