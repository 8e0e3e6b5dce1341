//! `proctor land`: merge a run's branch into the branch it started from,
//! only if the root exam passes again on the merged tree.

use std::path::PathBuf;

use super::CommandError;
use crate::cage::Cage;
use crate::engine::events::{Event, Verdict};
use crate::engine::{history, Engine, Settings};
use crate::exit_codes;
use crate::git::{GitRepo, LandPlan, Oid};
use crate::manifest::{self, LoopSpec, Manifest};
use crate::protect::Rules;
use crate::render::human_line;
use crate::state::cards::{self, Card, CardKind};
use crate::state::key::{key_dir, random_id, AnswerKey};
use crate::state::lock::{LockError, RunLock};
use crate::state::{self, Paths};
use crate::views::out::say;

/// Merge the run's branch `proctor/<root>` into the branch the run started
/// from (or BRANCH), only if the root loop's exam passes again in a
/// verifier container on the merged tree. A fast-forward when the target
/// has not moved; otherwise a merge commit. A conflict, or an exam that
/// fails on the merged tree, leaves the target exactly as it was and writes
/// a card (exit 3). A target checked out here with uncommitted changes is
/// refused (exit 1); a checked-out target's files are updated with it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The branch to land on (default: the branch the run started from).
    #[arg(value_name = "BRANCH")]
    pub branch: Option<String>,
    /// The manifest whose root loop's run to land.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
}

pub async fn cmd_land(args: Args) -> Result<i32, CommandError> {
    let cwd = super::cwd()?;
    let git = GitRepo::open(&cwd)?;
    let paths = Paths::new(git.root());
    let manifest_path = match &args.file {
        Some(file) => cwd.join(file),
        None => manifest::find(git.root()).ok_or_else(|| {
            CommandError::hint(
                format!("no `proctor.yaml` or `lute.yaml` in `{}`", git.root().display()),
                "`land` re-runs the root loop's exam; a `proctor once` branch is merged with `git merge`",
            )
        })?,
    };
    let manifest = manifest::load(&manifest_path)?;
    let root = landed_root(&manifest, &paths);
    let work = format!("proctor/{}", root.id);
    let Some(work_tip) = git.branch_tip(&work)? else {
        return Err(CommandError::hint(
            format!("there is no branch `{work}` to land"),
            "`proctor run` makes it",
        ));
    };
    let target = match args.branch {
        Some(b) => b,
        None => git.start_branch_of(&work)?.ok_or_else(|| {
            CommandError::hint(
                format!("no branch is recorded as the one `{work}` started from"),
                "name it: `proctor land main`",
            )
        })?,
    };
    if target == work {
        return Err(CommandError::user(format!(
            "`{work}` cannot land on itself"
        )));
    }
    // No run may write the branch (or the target's files) meanwhile.
    git.ensure_excluded(&state::EXCLUDE_PATTERNS)?;
    let _lock = match RunLock::acquire(&paths.lock) {
        Ok(lock) => lock,
        Err(LockError::Held { who, .. }) => {
            return Err(CommandError::hint(
                format!("a proctor run is active in this repository ({who})"),
                "land once it has ended (`proctor stop` ends it)",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let plan = git.plan_land(&target, &work)?;
    let (from, candidate, how) = match plan {
        LandPlan::UpToDate => {
            say!("`{target}` already has every commit of `{work}`: nothing to land");
            return Ok(exit_codes::CLOSED);
        }
        LandPlan::Conflict { paths: files, .. } => {
            let reason = format!(
                "`proctor land` did not merge `{work}` into `{target}`: both changed {} (merge conflict); `{target}` is unchanged. proctor never resolves a conflict itself.",
                files.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
            );
            write_card(&paths, &root, reason, "")?;
            // File names are the repository's (an agent's): escaped.
            say!(
                "{}",
                crate::terminal::line(&format!(
                    "not landed: merge conflict in {}; `{target}` is unchanged; see INBOX/{}.md",
                    files.join(", "),
                    root.id
                ))
            );
            return Ok(exit_codes::BLOCKED);
        }
        LandPlan::FastForward { from, to } => (from, to, "fast-forward"),
        LandPlan::Merge { from, to } => (from, to, "merge"),
    };
    if let Some(at) = git.checked_out_where(&target)? {
        if at != git.root() {
            return Err(CommandError::hint(
                format!("`{target}` is checked out in `{}`", at.display()),
                "land into a branch checked out here or nowhere",
            ));
        }
        let changed =
            git.changed_tracked_paths(&|p| p.starts_with(".proctor/") || p.starts_with("INBOX/"))?;
        if !changed.is_empty() {
            return Err(CommandError::hint(
                format!(
                    "`{target}` is checked out here with uncommitted changes: {}",
                    changed.join(", ")
                ),
                "commit or stash them, then `proctor land` again",
            ));
        }
    }
    say!(
        "proctor land: `{work}` into `{target}` ({how}): the exam of loop `{}` on the merged tree {}",
        root.id,
        short(candidate)
    );
    let (verdict, exit, output) = examine(&git, &manifest, &root, work_tip, candidate).await?;
    if verdict != Verdict::Pass {
        let reason = format!(
            "`proctor land` did not merge `{work}` into `{target}`: the exam `{}` exited {exit} on the merged tree {}; `{target}` is unchanged.",
            root.done_when,
            short(candidate)
        );
        write_card(&paths, &root, reason, &output)?;
        say!(
            "not landed: the exam failed on the merged tree (exit {exit}); `{target}` is unchanged; see INBOX/{}.md",
            root.id
        );
        return Ok(exit_codes::BLOCKED);
    }
    git.land(&target, from, candidate)?;
    cards::clear(&paths.inbox, &root.id);
    say!(
        "landed `{work}` on `{target}` at {} (the exam passed on the merged tree)",
        short(candidate)
    );
    Ok(exit_codes::CLOSED)
}

/// The loop whose run to land: the root of the latest run (as its
/// `run_start` event names it) when the manifest has it, else the
/// manifest's root.
fn landed_root(manifest: &Manifest, paths: &Paths) -> LoopSpec {
    let latest = crate::engine::events::read(&paths.events)
        .into_iter()
        .rev()
        .find_map(|r| match r.event {
            Event::RunStart { root, .. } => Some(root),
            _ => None,
        });
    latest
        .and_then(|id| manifest.find_loop(&id).cloned())
        .unwrap_or_else(|| manifest.root.clone())
}

/// The root exam once, in a verifier container, on `candidate`.
async fn examine(
    git: &GitRepo,
    manifest: &Manifest,
    root: &LoopSpec,
    work_tip: Oid,
    candidate: Oid,
) -> Result<(Verdict, i64, String), CommandError> {
    let mut config = manifest::load_config(git.root())?;
    let cage = crate::run::connect_cage(&config).await?;
    let key = AnswerKey::load_or_create(&key_dir())?;
    let base = history::base_of(git, work_tip)?;
    // The exam runs in the image the run's exams ran in: `image: auto`
    // from the run's base commit.
    let mut root = root.clone();
    let mut show = |e: Event| {
        if let Some(line) = human_line(&e) {
            crate::views::out::say_err!("{line}");
        }
    };
    crate::run::image_auto::resolve_outside_run(
        git,
        base,
        &cage,
        &mut config,
        Some(&mut root),
        &mut show,
    )
    .await?;
    let rel = manifest
        .path
        .strip_prefix(git.root())
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let rules = Rules::new(manifest.all_protected(), rel.as_deref());
    let settings = Settings::new(format!("land-{}", random_id(4)), git.root(), &config, rules);
    let mut emit = |e: Event| {
        if let Some(line) = human_line(&e) {
            crate::views::out::say_err!("{line}");
        }
    };
    let mut engine = Engine::new(&cage, git, &key, settings, base, &mut emit)?;
    let result = engine.examine_candidate(&root, candidate).await;
    drop(engine);
    cage.settle().await;
    Ok(result?)
}

fn write_card(
    paths: &Paths,
    root: &LoopSpec,
    reason: String,
    output: &str,
) -> Result<(), CommandError> {
    Card {
        kind: CardKind::NotLanded,
        loop_id: &root.id,
        task: root.task.as_deref(),
        exam: &root.done_when,
        reason,
        tried: &[],
        last_failure: output,
        notes: &[],
        review: None,
        rerun: "proctor run",
    }
    .write(&paths.inbox)
    .map_err(|e| CommandError::Internal {
        message: format!("cannot write the card in `{}`: {e}", paths.inbox.display()),
    })?;
    Ok(())
}

fn short(oid: Oid) -> String {
    oid.to_string().chars().take(12).collect()
}
