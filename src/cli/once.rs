//! `proctor once`: an ad-hoc loop from flags, no manifest file.

use std::path::Path;

use super::run::{execute, print_report};
use super::CommandError;
use crate::git::GitRepo;
use crate::manifest;
use crate::protect;
use crate::run::Request;

/// Run an agent until an exam passes, without a manifest:
/// `proctor once --until "sh test.sh" --agent "sh fix.sh" -- "make test.sh pass"`.
/// Work happens on branch `proctor/<id>` (default `proctor/once`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The exam: a shell command that exits 0 when the work is done. The
    /// repository files it names are protected (see README, "Use").
    #[arg(long, value_name = "CMD")]
    pub until: String,
    /// The agent: a command that reads the prompt on stdin and edits the tree.
    #[arg(long, value_name = "CMD")]
    pub agent: String,
    /// Loop id (kebab-case); the branch is `proctor/<id>`.
    #[arg(long, default_value = "once")]
    pub id: String,
    /// Budget: `N runs`, a duration such as `30m`, or both joined by `/`.
    #[arg(long, default_value = "10 runs")]
    pub budget: String,
    /// Consecutive passes needed to close.
    #[arg(long, default_value_t = 1)]
    pub confirm: u32,
    /// Image for the agent and the exam (default: the built-in `host` image).
    #[arg(long)]
    pub image: Option<String>,
    /// Also protect the files matching GLOB (repeatable). The repository
    /// files `--until` names are protected without it.
    #[arg(long, value_name = "GLOB")]
    pub protect: Vec<String>,
    /// The task, after `--`.
    #[arg(last = true, required = true, value_name = "TASK")]
    pub task: Vec<String>,
}

pub async fn cmd_once(args: Args) -> Result<i32, CommandError> {
    manifest::parse_budget(&args.budget)
        .map_err(|e| CommandError::user(format!("`--budget {}`: {e}", args.budget)))?;
    let mut doc = serde_json::json!({
        "loop": args.id,
        "task": args.task.join(" "),
        "agent": args.agent,
        "done_when": args.until,
        "budget": args.budget,
        "confirm": args.confirm,
    });
    if let Some(image) = &args.image {
        doc["image"] = serde_json::Value::String(image.clone());
    }
    let dir = super::cwd()?;
    // The exam's own files are its materials: without them protected, an
    // agent that writes `exit 0` into the script `--until` runs closes the
    // loop. The words are read in the repository's root, where the exam runs.
    let mut protected = match GitRepo::open(&dir) {
        Ok(git) => protect::named::named_by(&args.until, git.root()),
        Err(_) => Vec::new(),
    };
    for glob in &args.protect {
        manifest::compile_globs(&[glob])
            .map_err(|e| CommandError::user(format!("`--protect {glob}`: {e}")))?;
        if !protected.contains(glob) {
            protected.push(glob.clone());
        }
    }
    if !protected.is_empty() {
        doc["protected"] = serde_json::json!(protected);
    }
    // JSON is YAML: the flags go through the same validation as a manifest.
    let text = serde_json::to_string(&doc).map_err(|e| CommandError::Internal {
        message: e.to_string(),
    })?;
    let manifest = manifest::parse(&text, Path::new("proctor once"))?;
    let summary = execute(
        Request {
            dir,
            root: manifest.root,
            manifest_label: "proctor once".into(),
            default_agent: None,
        },
        Default::default(),
    )
    .await?;
    print_report(&summary);
    Ok(summary.exit)
}
