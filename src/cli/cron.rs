//! `proctor cron`: compile the manifest's `schedules:` into the user's
//! crontab (or systemd user timers), or remove them.

use std::path::PathBuf;

use super::CommandError;
use crate::cage::repo_label;
use crate::cron::{self, systemd, Crontab, Job, Tick, CARRIED_ENV};
use crate::git::GitRepo;
use crate::manifest;
use crate::views::out::say;

/// Compile `schedules:` into a managed block of your crontab (`sync`), or
/// remove it (`remove`). Each tick runs `proctor run --skip-if-running
/// <loop>` in the repository, which exits 0 without work while a run holds
/// the repository. Other crontab lines are kept as they are; a crontab that
/// cannot be read or has a broken block is never written.
/// `PROCTOR_CRONTAB_FILE` names a file to use instead of `crontab -l`/`-`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Write (or rewrite) this repository's schedules.
    Sync {
        /// Write systemd user timers (`~/.config/systemd/user`, or
        /// `PROCTOR_SYSTEMD_DIR`) instead of crontab lines.
        #[arg(long)]
        systemd: bool,
        /// The manifest (default: proctor.yaml, else lute.yaml).
        #[arg(long, short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Remove this repository's schedules.
    Remove {
        /// Remove the systemd user timers instead of the crontab block.
        #[arg(long)]
        systemd: bool,
    },
}

pub fn cmd_cron(args: Args) -> Result<i32, CommandError> {
    let cwd = super::cwd()?;
    let git = GitRepo::open(&cwd)?;
    let root = git.root().to_path_buf();
    let (systemd_units, file) = match &args.action {
        Action::Sync { systemd, file } => (*systemd, file.clone()),
        Action::Remove { systemd } => (*systemd, None),
    };
    let default_manifest = manifest::find(&root);
    let manifest_path = file.map(|f| cwd.join(f));
    let exe = std::env::current_exe().map_err(|e| CommandError::Internal {
        message: format!("cannot find the proctor binary: {e}"),
    })?;
    let job = Job {
        repo: root.clone(),
        exe,
        manifest: manifest_path
            .clone()
            .filter(|p| Some(p) != default_manifest.as_ref()),
        env: CARRIED_ENV
            .iter()
            .filter_map(|name| {
                std::env::var(name)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(|v| (name.to_string(), v))
            })
            .collect(),
    };
    let ticks: Vec<Tick> = match &args.action {
        Action::Remove { .. } => Vec::new(),
        Action::Sync { .. } => {
            let path = manifest_path.or(default_manifest).ok_or_else(|| {
                CommandError::hint(
                    format!("no `proctor.yaml` or `lute.yaml` in `{}`", root.display()),
                    "write one with `proctor init`",
                )
            })?;
            let manifest = manifest::load(&path)?;
            manifest
                .schedules
                .iter()
                .map(|s| Tick {
                    at: s.at.clone(),
                    loop_id: s.run.clone(),
                })
                .collect()
        }
    };
    if systemd_units {
        let dir = systemd::unit_dir();
        let label = repo_label(&root);
        if matches!(args.action, Action::Remove { .. }) {
            let n = systemd::remove(&dir, &job, &label)?;
            say!(
                "systemd: removed {n} unit file(s) for {} from `{}`",
                root.display(),
                dir.display()
            );
            return Ok(0);
        }
        let names = systemd::sync(&dir, &job, &label, &ticks)?;
        if names.is_empty() {
            say!("systemd: no `schedules:` in the manifest; removed this repository's timers");
        } else {
            say!(
                "systemd: {} timer(s) for {} in `{}`; enable them with:",
                names.len(),
                root.display(),
                dir.display()
            );
            say!(
                "  systemctl --user daemon-reload && systemctl --user enable --now {}",
                names.join(" ")
            );
        }
        return Ok(0);
    }
    let crontab = Crontab::from_env();
    let n = cron::sync(&crontab, &job, &ticks)?;
    match args.action {
        Action::Remove { .. } => say!(
            "crontab: removed the proctor block for {} from {}",
            root.display(),
            crontab.describe()
        ),
        Action::Sync { .. } if n == 0 => say!(
            "crontab: no `schedules:` in the manifest; removed the proctor block for {} from {}",
            root.display(),
            crontab.describe()
        ),
        Action::Sync { .. } => {
            say!(
                "crontab: {n} schedule(s) for {} in {}:",
                root.display(),
                crontab.describe()
            );
            for tick in &ticks {
                say!(
                    "  {}  proctor run --skip-if-running {}",
                    tick.at,
                    tick.loop_id
                );
            }
            say!("  (cron starts jobs with a small environment: the agent runs in its container, but check `DOCKER_HOST` and mail for tick output)");
        }
    }
    Ok(0)
}
