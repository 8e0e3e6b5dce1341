//! `proctor init`: a commented starter manifest.

use super::CommandError;
use crate::git::GitRepo;
use crate::manifest;

/// Write a commented starter `proctor.yaml`, with an exam inferred from the
/// repository where possible (Cargo, npm, pytest or make).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Overwrite an existing `proctor.yaml`.
    #[arg(long)]
    pub force: bool,
}

pub fn cmd_init(args: Args) -> Result<i32, CommandError> {
    let cwd = super::cwd()?;
    let root = match GitRepo::open(&cwd) {
        Ok(git) => git.root().to_path_buf(),
        Err(_) => cwd,
    };
    let path = root.join("proctor.yaml");
    if path.exists() && !args.force {
        return Err(CommandError::hint(
            format!("`{}` already exists", path.display()),
            "pass `--force` to overwrite it",
        ));
    }
    let text = manifest::starter_manifest(&root);
    std::fs::write(&path, text)
        .map_err(|e| CommandError::user(format!("cannot write `{}`: {e}", path.display())))?;
    crate::views::out::say!(
        "wrote {}; edit `task:`, `agent:` and `done_when:`, then `proctor lint` and `proctor run`",
        path.display()
    );
    Ok(0)
}
