//! `proctor judge -- "<rubric>"`: ask the config's judge once, by hand,
//! about HEAD's diff.

use super::CommandError;
use crate::cage::{Cage, LABEL_RUN};
use crate::engine::{Engine, Settings};
use crate::git::GitRepo;
use crate::manifest;
use crate::run;
use crate::state::key::{key_dir, random_id, AnswerKey};
use crate::views::out::say;

/// Ask the judge named in `.proctor/config.yaml` once about HEAD's diff
/// (HEAD against its parent) with RUBRIC, in its own container as a run
/// would: no tree, only the variables and network its config gives it.
/// Prints its ruling; exits 0 only on `PASS` (its first line exactly
/// `PASS` and exit 0), 3 on a veto (an error, a timeout or any other
/// first line).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The rubric the judge holds the change to.
    #[arg(required = true, num_args = 1.., trailing_var_arg = true)]
    pub rubric: Vec<String>,
}

pub async fn cmd_judge(args: Args) -> Result<i32, CommandError> {
    let cwd = super::cwd()?;
    let git = GitRepo::open(&cwd)?;
    let rubric = args.rubric.join(" ");
    if rubric.trim().is_empty() {
        return Err(CommandError::hint(
            "the rubric is empty",
            "give one: `proctor judge -- \"the change keeps the public API\"`",
        ));
    }
    let head = git.head()?.ok_or_else(|| {
        CommandError::hint(
            "the repository has no commits yet",
            "commit once, then ask the judge",
        )
    })?;
    // HEAD against its first parent (a root commit's diff is empty).
    let base = git
        .first_parent_log(head, None)?
        .get(1)
        .map_or(head, |c| c.oid);
    let config = manifest::load_config(git.root())?;
    if config.judge.is_none() {
        return Err(CommandError::hint(
            "`.proctor/config.yaml` names no `judge` command",
            "name one: `judge: CMD`, or `judge: {command: CMD, env: [NAMES], network: open, timeout: 5m}`",
        ));
    }
    let cage = run::connect_cage(&config).await?;
    // A config `image: auto`: the judge runs in HEAD's image.
    let mut config = config;
    let mut show = |event: crate::engine::events::Event| {
        if let Some(line) = crate::render::human_line(&event) {
            crate::views::out::say_err!("{line}");
        }
    };
    run::image_auto::resolve_outside_run(&git, head, &cage, &mut config, None, &mut show).await?;
    let key = AnswerKey::load_or_create(&key_dir())?;
    let run_id = format!("judge-{}", random_id(3));
    let rules = crate::protect::Rules::new(Vec::<String>::new(), None);
    let settings = Settings::new(run_id.clone(), git.root(), &config, rules);
    let mut spec = manifest::parse(
        "loop: judge\ndone_when: \"true\"\n",
        std::path::Path::new("proctor judge"),
    )?
    .root;
    spec.judge = Some(rubric);
    let mut ignore = |_e| {};
    let mut engine = Engine::new(&cage, &git, &key, settings, base, &mut ignore)?;
    let ruling = engine.judge_once(&spec, head).await;
    let _ = cage.remove_labelled(&[(LABEL_RUN, run_id.as_str())]).await;
    let ruling = ruling?;
    // The judge's words are about an agent's diff: escaped.
    if ruling.pass {
        say!(
            "PASS: the judge raised no veto on {}",
            &head.to_string()[..12]
        );
        for line in ruling.reason.lines() {
            say!("  {}", crate::terminal::line(line));
        }
        Ok(crate::exit_codes::CLOSED)
    } else {
        say!("VETO: the judge vetoed {}:", &head.to_string()[..12]);
        for line in ruling.reason.lines() {
            say!("  {}", crate::terminal::line(line));
        }
        Ok(crate::exit_codes::BLOCKED)
    }
}
