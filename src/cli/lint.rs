//! `proctor lint`: validate the manifest and administer every exam once.

use std::path::PathBuf;

use super::CommandError;
use crate::cage::{Cage, LABEL_RUN};
use crate::engine::{fmt_secs, runnable, Engine, Settings};
use crate::git::GitRepo;
use crate::manifest::{self, Order};
use crate::run;
use crate::state::key::{key_dir, random_id, AnswerKey};
use crate::views::out::say;

/// Validate the manifest, then run every loop's exam once in a verifier
/// container on the committed tree of HEAD and classify it: pass, fail,
/// not-yet (exit 75) or error (the exam cannot run at all: exit 126/127, or
/// 75 without a time budget, a missing command, runner module, toolchain or
/// network). Fails (exit 1) on any error, because an exam must be
/// administrable before work begins. A failing exam's last lines are shown
/// with the path of its whole output. A loop's judge (`judge:`) is asked
/// only with `--judges` (it usually calls a paid model); a loop with
/// `judge:` and no judge in `.proctor/config.yaml` is an error. An
/// `image: auto` is built first (or found built) from HEAD's committed
/// tree.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest (default: proctor.yaml, else lute.yaml).
    pub file: Option<PathBuf>,
    /// Show a failing exam's whole output, not only its last lines.
    #[arg(short, long)]
    pub verbose: bool,
    /// Also ask each loop's judge once about a passing exam (on HEAD's
    /// empty diff: a check that the judge runs and answers).
    #[arg(long)]
    pub judges: bool,
}

/// Lines of a failing exam's output `lint` shows without `-v`.
const TAIL_LINES: usize = 10;

pub use crate::engine::runnable::{classify, Class};

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
    say!("{}: manifest valid", path.display());
    for spec in manifest.root.walk(Order::ParentsFirst) {
        if spec.judged_only().is_some() {
            crate::views::out::say_err!(
                "warning: loop `{}` is judged, not examined: its `done_when` is a judge's rubric (Lute's `judge: ...`), so no exam's exit code backs its close, only a judge's word; give it an exam (a shell command) and keep the rubric as `judge:`, which can then only veto",
                spec.id
            );
        }
    }
    for spec in manifest.root.walk(Order::ParentsFirst) {
        for name in spec.unmounted_caches() {
            crate::views::out::say_err!(
                "warning: loop `{}`'s exam names `/cache/{name}` but the loop has no `caches: [{name}]` (caches are not inherited): its exam cannot create that folder",
                spec.id
            );
        }
    }
    for schedule in &manifest.schedules {
        say!(
            "  schedule `{}` runs loop `{}` (`proctor cron sync` installs it)",
            schedule.at,
            schedule.run
        );
    }
    let head = git.head()?.ok_or_else(|| {
        CommandError::hint(
            "the repository has no commits yet",
            "commit once, then lint",
        )
    })?;
    // The exams' logs go under `.proctor/`: keep them out of `git status`
    // and `git add -A`, as a run does (lint left `.proctor/` untracked).
    git.ensure_excluded(&crate::state::EXCLUDE_PATTERNS)?;
    let mut config = manifest::load_config(git.root())?;
    run::refuse_unjudged(&manifest.root, &config)?;
    run::check_mounts(&config)?;
    // As a run warns at its start: a preset agent with no credentials
    // cannot reach its model (lint never wakes an agent to find out).
    let mounts: Vec<crate::engine::HostMount> = config
        .mounts
        .iter()
        .map(|m| crate::engine::HostMount::parse(m))
        .collect();
    let values: Vec<(String, String)> = config.env.clone().into_iter().collect();
    for warning in run::keyless_presets(&manifest.root, None, &mounts, &values, |name| {
        std::env::var_os(name).is_some_and(|v| !v.is_empty())
    }) {
        crate::views::out::say_err!("warning: {}", crate::terminal::line(&warning.to_string()));
    }
    let cage = run::connect_cage(&config).await?;
    // `image: auto`: built (or found built) from HEAD's committed tree, as
    // a run builds it from its base commit.
    let mut root = manifest.root.clone();
    let mut show = |event: crate::engine::events::Event| {
        if let Some(line) = crate::render::human_line(&event) {
            say!("{line}");
        }
    };
    run::image_auto::resolve_outside_run(
        &git,
        head,
        &cage,
        &mut config,
        Some(&mut root),
        &mut show,
    )
    .await?;
    let key = AnswerKey::load_or_create(&key_dir())?;
    let run_id = format!("lint-{}", random_id(3));
    let rules = crate::protect::Rules::new(
        manifest.all_protected(),
        path.strip_prefix(git.root()).ok().and_then(|p| p.to_str()),
    );
    let mut settings = Settings::new(run_id.clone(), git.root(), &config, rules);
    // The exam gets the host variables `env: {verifier: [...]}` names, as
    // in a run: a toolchain's `PATH` must reach lint's exams too.
    let (env, unset) = run::host_env(&manifest.root, None);
    if !unset.is_empty() {
        say!(
            "warning: not set here, so not passed: {}",
            unset
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    settings.host_env = env;
    // Children before their parent, the order loops close in.
    let loops = root.walk(Order::ChildrenFirst);
    let mut ignore = |_e| {};
    let mut engine = Engine::new(&cage, &git, &key, settings, head, &mut ignore)?;
    if !args.judges {
        engine = engine.without_judges();
    }
    let mut errors = 0;
    say!(
        "administering {} exam(s) on the committed tree of HEAD ({})",
        loops.len(),
        &head.to_string()[..12]
    );
    for spec in &loops {
        if spec.judged_only().is_some() && !args.judges {
            say!(
                "  judged   {}: `{}` (not asked: `proctor lint --judges` asks the judge once)",
                spec.id,
                spec.done_when
            );
            continue;
        }
        let exam = engine.administer_once(spec, head).await?;
        let exit = exam.exit;
        let class = classify(
            exit,
            exam.timed_out,
            spec.budget.wall.is_some(),
            &exam.output,
        );
        let word = match class {
            Class::Pass => "pass",
            Class::Fail => "fail",
            Class::NotYet => "not-yet",
            Class::Error => "error",
        };
        say!(
            "  {word:<8} {}: `{}` (exit {exit}, {})",
            spec.id,
            spec.done_when,
            fmt_secs(exam.secs)
        );
        if class == Class::Error {
            errors += 1;
            let why = if exit == 75 {
                "it answered 75 (not yet) but the loop has no time budget; add one such as `budget: 8h`".to_string()
            } else {
                match runnable::cannot_run(exit, &exam.output) {
                    Some(why) => format!("the exam cannot run at all: {why}"),
                    None => "the exam cannot run at all".to_string(),
                }
            };
            say!("           {}", crate::terminal::line(&why));
            suggest_toolchain(git.root(), &config);
        }
        if matches!(class, Class::Fail | Class::Error) {
            show_output(git.root(), &exam.log, &exam.output, args.verbose);
        }
        if spec.judge.is_some() {
            let line = match &exam.ruling {
                Some(r) if r.pass => "judge: no veto".to_string(),
                Some(r) => {
                    if judge_cannot_run(&r.reason) {
                        errors += 1;
                    }
                    format!("judge: veto: {}", r.reason.lines().next().unwrap_or(""))
                }
                None if args.judges => "judge: not asked (the exam did not pass)".to_string(),
                None => "judge: not asked (`proctor lint --judges` asks it once)".to_string(),
            };
            // The judge's words are a model's, about an agent's diff: escaped.
            say!("           {}", crate::terminal::line(&line));
        }
    }
    // The exams' containers are gone; this removes any egress network.
    let _ = cage.remove_labelled(&[(LABEL_RUN, run_id.as_str())]).await;
    if errors > 0 {
        crate::views::out::say_err!(
            "error: {errors} exam(s) cannot be administered; fix them before `proctor run`"
        );
        return Ok(crate::exit_codes::USAGE);
    }
    Ok(0)
}

/// Whether a veto says the judge itself could not run (its container,
/// or its command missing): the judge is then not administrable.
fn judge_cannot_run(reason: &str) -> bool {
    reason.starts_with("the judge could not run")
        || reason.starts_with("the judge exited 126")
        || reason.starts_with("the judge exited 127")
}

/// When an exam cannot run and this machine has its toolchain where the
/// `host` image cannot see it, the config lines `init` would write (once).
fn suggest_toolchain(root: &std::path::Path, config: &manifest::Config) {
    let host = manifest::toolchain::HostEnv::current();
    let Some((_, found)) = manifest::toolchain::for_repo(root, &host) else {
        return;
    };
    let missing_mount = found.mounts.iter().any(|m| {
        !config
            .mounts
            .iter()
            .any(|c| crate::engine::HostMount::parse(c).path == std::path::Path::new(m))
    });
    let missing_env = found
        .env
        .iter()
        .any(|(name, _)| !config.env.iter().any(|(n, _)| n == name));
    if !missing_mount && !missing_env {
        return;
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    say!("{}", suggestion(&found.config_yaml(home.as_deref())));
}

/// The config lines to add, indented under their heading and without the
/// `| ` that marks the exam's output below them (the two read as one
/// block, and the output's last line as YAML).
fn suggestion(yaml: &str) -> String {
    let mut out = format!(
        "           this machine's toolchain for it: add to `{}`:",
        manifest::CONFIG_PATH
    );
    for line in yaml.lines() {
        out.push_str(&format!("\n               {}", crate::terminal::line(line)));
    }
    out.push_str("\n           the exam's output:");
    out
}

/// A failing exam's output: its last lines (all of the log with
/// `verbose`), then where the whole of it is.
fn show_output(root: &std::path::Path, log: &str, output: &str, verbose: bool) {
    let whole = verbose
        .then(|| std::fs::read(root.join(log)).ok())
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let lines: Vec<&str> = match &whole {
        Some(text) => text.lines().collect(),
        None => runnable::tail_lines(output, TAIL_LINES),
    };
    for line in lines {
        // The exam's output is the code under test's: escaped.
        say!("           | {}", crate::terminal::line(line));
    }
    say!(
        "           output: {log}{}",
        if verbose {
            ""
        } else {
            " (`-v` shows all of it)"
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The suggested YAML carried the same `| ` as the exam's output that
    /// follows it, so `/bin/sh: 1: cargo: not found` read as a config line.
    #[test]
    fn the_toolchain_suggestion_is_apart_from_the_exam_output() {
        let text = suggestion("mounts:\n  - \"~/.cargo\"\n");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "               mounts:");
        assert_eq!(lines[2], "                 - \"~/.cargo\"");
        assert!(!text.contains('|'), "{text}");
        assert_eq!(lines[3], "           the exam's output:");
    }

    #[test]
    fn exit_codes_classify_as_the_contract_says() {
        assert_eq!(classify(0, false, false, ""), Class::Pass);
        assert_eq!(classify(1, false, false, ""), Class::Fail);
        assert_eq!(classify(127, false, false, ""), Class::Error);
        assert_eq!(classify(126, false, false, ""), Class::Error);
        assert_eq!(classify(75, false, true, ""), Class::NotYet);
        assert_eq!(classify(75, false, false, ""), Class::Error);
        assert_eq!(classify(-1, true, false, ""), Class::Fail);
        assert_eq!(
            classify(1, false, false, "/usr/bin/python3: No module named pytest"),
            Class::Error
        );
        assert_eq!(classify(1, false, false, "FAILED test_add"), Class::Fail);
    }
}
