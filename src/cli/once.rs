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
    /// Image for the agent and the exam (default: the built-in `host` image);
    /// `auto` builds the repository's own (`.proctor/Dockerfile`, a
    /// devcontainer, or `Dockerfile`) from the committed tree.
    #[arg(long)]
    pub image: Option<String>,
    /// Also protect the files matching GLOB (repeatable). The repository
    /// files `--until` names are protected without it.
    #[arg(long, value_name = "GLOB")]
    pub protect: Vec<String>,
    /// Pass host variable NAME to the agent (repeatable), as `env:` does. Its
    /// value is read from your environment, never from the command line,
    /// where `ps` and your shell history would keep a secret.
    #[arg(long, value_name = "NAME")]
    pub env: Vec<String>,
    /// The agent's network: `none`, `open` (default), or hosts joined by
    /// commas (`api.openai.com,registry.npmjs.org:443`), reached through
    /// proctor's egress proxy. The exam's stays `none`.
    #[arg(long, value_name = "NET")]
    pub network: Option<String>,
    /// Mount host PATH at the same path (repeatable; `~` is your home):
    /// read-only, or writable by the agent with `PATH:rw` (never by the
    /// exam). E.g. a toolchain, or an agent CLI's login (`~/.codex:rw`).
    #[arg(long, value_name = "PATH[:rw]")]
    pub mount: Vec<String>,
    /// Per-container time limit for the agent and the exam (e.g. `20m`).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
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
    for name in &args.env {
        if name.contains('=') {
            return Err(CommandError::hint(
                format!("`--env {}`: name the variable only", name.split('=').next().unwrap_or("")),
                "export it in your shell and pass `--env NAME`: a value on the command line ends up in `ps` and your shell history",
            ));
        }
    }
    if !args.env.is_empty() {
        doc["env"] = serde_json::json!(args.env);
    }
    if let Some(network) = &args.network {
        doc["network"] = match network.as_str() {
            "none" | "open" => serde_json::json!(network),
            hosts => {
                let hosts: Vec<&str> = hosts
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .collect();
                // Named by the flag, not by the manifest `once` makes of
                // the flags (`proctor once:1:109: ... network[0]`).
                for host in &hosts {
                    manifest::check_host(host).map_err(|e| {
                        CommandError::user(format!(
                            "`--network {network}`: {e}; or `none`, or `open`"
                        ))
                    })?;
                }
                serde_json::json!(hosts)
            }
        };
    }
    if let Some(timeout) = &args.timeout {
        doc["timeout"] = serde_json::json!(timeout);
    }
    for mount in &args.mount {
        let path = mount
            .strip_suffix(":rw")
            .or_else(|| mount.strip_suffix(":ro"))
            .unwrap_or(mount);
        if !(path.starts_with('/') || path == "~" || path.starts_with("~/")) {
            return Err(CommandError::user(format!(
                "`--mount {mount}`: not an absolute path; write `/...` or `~/...` (add `:rw` to let the agent write it)"
            )));
        }
        // Before the run starts (it failed at the first container, as an
        // engine's "invalid invocation", with the branch already made).
        let host = crate::engine::HostMount::parse(mount).path;
        if !host.exists() {
            return Err(CommandError::user(format!(
                "`--mount {mount}`: `{}` does not exist on this host",
                host.display()
            )));
        }
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
    // What `attest` needs of the loop, recorded when the run starts: the
    // same document, less the agent command (it may carry a token, and no
    // verdict depends on it).
    let mut recorded = doc;
    if let Some(fields) = recorded.as_object_mut() {
        fields.remove("agent");
    }
    let summary = execute(
        Request {
            dir,
            root: manifest.root,
            manifest_label: "proctor once".into(),
            default_agent: None,
            mounts: args.mount.clone(),
            once: Some(recorded.to_string()),
        },
        Default::default(),
    )
    .await?;
    print_report(&summary);
    Ok(summary.exit)
}
