//! `proctor lint`: validate the manifest and administer every exam once.

use std::path::PathBuf;

use super::CommandError;
use crate::cage::{Cage, LABEL_RUN};
use crate::engine::{fmt_secs, Engine, Settings};
use crate::git::GitRepo;
use crate::manifest::{self, Order};
use crate::run;
use crate::state::key::{key_dir, random_id, AnswerKey};

/// Validate the manifest, then run every loop's exam once in a verifier
/// container on the committed tree of HEAD and classify it: pass, fail,
/// not-yet (exit 75) or error (the exam cannot run at all: exit 126/127, or
/// 75 without a time budget). Fails (exit 1) on any error, because an exam
/// must be administrable before work begins.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest (default: proctor.yaml, else lute.yaml).
    pub file: Option<PathBuf>,
}

/// How an exam answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Pass,
    Fail,
    NotYet,
    Error,
}

pub fn classify(exit: i64, timed_out: bool, has_wall_budget: bool) -> Class {
    match exit {
        _ if timed_out => Class::Fail,
        0 => Class::Pass,
        75 if has_wall_budget => Class::NotYet,
        75 | 126 | 127 => Class::Error,
        _ => Class::Fail,
    }
}

pub async fn cmd_lint(args: Args) -> Result<i32, CommandError> {
    let cwd = super::cwd()?;
    let git = GitRepo::open(&cwd)?;
    let path = match args.file {
        Some(f) => cwd.join(f),
        None => manifest::find(git.root()).ok_or_else(|| {
            CommandError::hint(
                "no `proctor.yaml` or `lute.yaml` here",
                "write one with `proctor init`",
            )
        })?,
    };
    let manifest = manifest::load(&path)?;
    run::refuse_untimed_watchers(&manifest, &manifest.root)?;
    println!("{}: manifest valid", path.display());
    for schedule in &manifest.schedules {
        println!(
            "  schedule `{}` runs loop `{}` (`proctor cron sync` installs it)",
            schedule.at, schedule.run
        );
    }
    let head = git.head()?.ok_or_else(|| {
        CommandError::hint(
            "the repository has no commits yet",
            "commit once, then lint",
        )
    })?;
    let config = manifest::load_config(git.root())?;
    let cage = run::connect_cage(&config).await?;
    let key = AnswerKey::load_or_create(&key_dir())?;
    let run_id = format!("lint-{}", random_id(3));
    let rules = crate::protect::Rules::new(
        manifest.all_protected(),
        path.strip_prefix(git.root()).ok().and_then(|p| p.to_str()),
    );
    let settings = Settings::new(run_id.clone(), git.root(), &config, rules);
    // Children before their parent, the order loops close in.
    let loops = manifest.root.walk(Order::ChildrenFirst);
    let mut ignore = |_e| {};
    let mut engine = Engine::new(&cage, &git, &key, settings, head, &mut ignore)?;
    let mut errors = 0;
    println!(
        "administering {} exam(s) on the committed tree of HEAD ({})",
        loops.len(),
        &head.to_string()[..12]
    );
    for spec in &loops {
        let (exit, timed_out, secs, output) = engine.administer_once(spec, head).await?;
        let class = classify(exit, timed_out, spec.budget.wall.is_some());
        let word = match class {
            Class::Pass => "pass",
            Class::Fail => "fail",
            Class::NotYet => "not-yet",
            Class::Error => "error",
        };
        println!(
            "  {word:<8} {}: `{}` (exit {exit}, {})",
            spec.id,
            spec.done_when,
            fmt_secs(secs)
        );
        if class == Class::Error {
            errors += 1;
            let why = if exit == 75 {
                "it answered 75 (not yet) but the loop has no time budget; add one such as `budget: 8h`".to_string()
            } else {
                let last = output
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim();
                format!("the exam cannot run at all: {last}")
            };
            println!("           {why}");
        }
    }
    // The exams' containers are gone; this removes any egress network.
    let _ = cage.remove_labelled(&[(LABEL_RUN, run_id.as_str())]).await;
    if errors > 0 {
        eprintln!("error: {errors} exam(s) cannot be administered; fix them before `proctor run`");
        return Ok(crate::exit_codes::USAGE);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_classify_as_the_contract_says() {
        assert_eq!(classify(0, false, false), Class::Pass);
        assert_eq!(classify(1, false, false), Class::Fail);
        assert_eq!(classify(127, false, false), Class::Error);
        assert_eq!(classify(126, false, false), Class::Error);
        assert_eq!(classify(75, false, true), Class::NotYet);
        assert_eq!(classify(75, false, false), Class::Error);
        assert_eq!(classify(-1, true, false), Class::Fail);
    }
}
