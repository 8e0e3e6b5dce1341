//! `proctor init`: a commented starter manifest, and the host config that
//! makes its exam run on this machine's toolchain.

use super::CommandError;
use crate::git::GitRepo;
use crate::manifest::{self, toolchain, CONFIG_PATH};
use crate::views::out::say;

/// Write a commented starter `proctor.yaml`, with an exam inferred from the
/// repository where possible (Cargo, Go, npm, pytest or make), and the
/// `.proctor/config.yaml` that exam needs on this machine.
///
/// The config is written when the exam's toolchain or dependencies are
/// ones the `host` image cannot see (rustup under ~/.cargo, pyenv, a venv,
/// nvm, node_modules): read-only mounts and the variables that point at
/// them. An existing config is kept and the lines it needs are shown.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Overwrite an existing `proctor.yaml` (and the config `init` would write).
    #[arg(long)]
    pub force: bool,
    /// The agent to write in `agent:`: a preset (`codex`, `claude`,
    /// `mini-swe-agent`) or a command; default `codex`.
    #[arg(long, value_name = "CMD")]
    pub agent: Option<String>,
    /// Start from a template instead of inferring the exam: `cargo`, `npm`,
    /// `pytest`, `go`, `make`, or `migration` (a parent exam over parallel
    /// children, one per top directory of the code).
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
}

pub fn cmd_init(args: Args) -> Result<i32, CommandError> {
    let cwd = super::cwd()?;
    let (root, in_git) = match GitRepo::open(&cwd) {
        Ok(git) => (git.root().to_path_buf(), true),
        Err(_) => (cwd, false),
    };
    let path = root.join("proctor.yaml");
    if path.exists() && !args.force {
        return Err(CommandError::hint(
            format!("`{}` already exists", path.display()),
            "pass `--force` to overwrite it",
        ));
    }
    let (text, eco) = match &args.template {
        Some(name) => {
            let text = manifest::templates::template(name, &root, args.agent.as_deref())
                .ok_or_else(|| {
                    CommandError::user(format!(
                        "unknown template `{name}`; the templates are {}",
                        manifest::templates::TEMPLATES.join(", ")
                    ))
                })?;
            (text, manifest::templates::ecosystem(name, &root))
        }
        None => (
            manifest::starter_manifest_with(&root, args.agent.as_deref()),
            manifest::starter::detect(&root).first().copied(),
        ),
    };
    // What init writes must load, whatever `--agent` held.
    manifest::parse(&text, &path)?;
    write(&path, &text)?;
    say!("wrote {}", path.display());
    write_toolchain_config(&root, eco, args.force)?;
    // A preset's CLI the cage cannot see stops the run at its first agent
    // (exit 127): say so now. (An `image:` may have it: only a warning.)
    if let Some(chosen) = manifest::preset::chosen(args.agent.as_deref().unwrap_or("codex")) {
        if let Some(why) =
            toolchain::unseen_agent_cli(chosen.preset.cli, &toolchain::HostEnv::current())
        {
            say!("warning: agent `{}`: {why}", chosen.preset.name);
        }
    }
    say!(
        "next: edit `task:`{}, {}commit, then `proctor lint` and `proctor run`",
        if args.agent.is_some() {
            ""
        } else {
            " and `agent:`"
        },
        // proctor works on git history only: every other verb refuses here.
        if in_git { "" } else { "`git init`, " }
    );
    Ok(0)
}

/// `.proctor/config.yaml` for the exam's toolchain: written when it is
/// needed and absent (or with `force`), else shown for the user to merge.
fn write_toolchain_config(
    root: &std::path::Path,
    eco: Option<toolchain::Ecosystem>,
    force: bool,
) -> Result<(), CommandError> {
    let Some(eco) = eco else {
        return Ok(());
    };
    let found = toolchain::detect(eco, root, &toolchain::HostEnv::current());
    for line in &found.missing {
        say!("warning: {line}");
    }
    if found.is_empty() {
        for line in &found.found {
            say!("toolchain: {line} (the `host` image sees it)");
        }
        return Ok(());
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let body = found.config_yaml(home.as_deref());
    let config = root.join(CONFIG_PATH);
    if config.exists() && !force {
        say!(
            "`{}` exists; to run the exam on this machine's toolchain it needs:",
            config.display()
        );
        for line in body.lines() {
            say!("  {line}");
        }
        return Ok(());
    }
    let text = format!(
        "# .proctor/config.yaml: written by `proctor init` for this machine.\n\
         # The `host` image sees /usr, /bin and /lib* only; these mounts\n\
         # (read-only) and variables (agent and exam) make the toolchain and\n\
         # dependencies below visible. Keys: docs/manifest.md#host-config-proctorconfigyaml\n\
         {body}"
    );
    // The same check `run` makes: what init writes must load.
    manifest::parse_config(&text, &config)?;
    if let Some(dir) = config.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CommandError::user(format!("cannot create `{}`: {e}", dir.display())))?;
    }
    write(&config, &text)?;
    say!(
        "wrote {} (the exam's toolchain on this machine):",
        config.display()
    );
    for line in &found.found {
        say!("  {line}");
    }
    Ok(())
}

fn write(path: &std::path::Path, text: &str) -> Result<(), CommandError> {
    std::fs::write(path, text)
        .map_err(|e| CommandError::user(format!("cannot write `{}`: {e}", path.display())))
}
