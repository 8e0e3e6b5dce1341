//! `proctor plan`: a goal into a proposed manifest, drafted by an agent,
//! checked by proctor, reviewed by a critic. It prints; `crate::plan` does
//! the work.

use super::CommandError;
use crate::git::GitRepo;
use crate::manifest;
use crate::plan::{self, Outcome, Request, Step, GRAPH, PROPOSAL};
use crate::run;
use crate::state::key::{key_dir, AnswerKey};
use crate::terminal;
use crate::views::out::say;

/// Draft a manifest for a goal with an agent; proctor checks it and a
/// critic reviews it: `proctor plan --agent codex "migrate to tokio 1"`.
///
/// A drafting agent, caged on a read-only copy of the committed tree, writes `proctor.proposed.yaml`; proctor checks it (it parses and
/// lints; each exam runs once on HEAD in a verifier container and must fail
/// there and be able to run; the files an exam names must be protected); a
/// critic (the same agent unless `--critic`) reviews it for vacuous or
/// self-graded exams, unprotected exam files, missing budgets and loops too
/// large for one run. What they find goes back to the drafter, for at most
/// `--rounds` rounds. Nothing runs: read `proctor.proposed.yaml`, then
/// rename it to `proctor.yaml` (or pass `--accept`). Exit 0 when the
/// proposal passed every check and the critic approved it, 3 when the
/// rounds ran out first.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The drafting agent: a preset (`codex`, `claude`, ...) or a command
    /// that reads the prompt on stdin (default: the existing manifest's).
    #[arg(long, value_name = "CMD")]
    pub agent: Option<String>,
    /// The critic (default: the drafting agent).
    #[arg(long, value_name = "CMD")]
    pub critic: Option<String>,
    /// Let the drafter answer with a dependency graph (`proctor.plan.yaml`:
    /// nodes with `depends_on`), which proctor turns into a manifest.
    #[arg(long)]
    pub dag: bool,
    /// Keep the graph as `proctor.plan.yaml` beside the proposal.
    #[arg(long, requires = "dag")]
    pub keep_dag: bool,
    /// Rounds of drafting at most.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
    /// Write an approved proposal to `proctor.yaml` (never over an
    /// existing one).
    #[arg(long)]
    pub accept: bool,
    /// Time limit of each drafter and critic container (e.g. `20m`).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// The goal, in words.
    #[arg(required = true, value_name = "GOAL")]
    pub goal: Vec<String>,
}

pub async fn cmd_plan(args: Args) -> Result<i32, CommandError> {
    let goal = args.goal.join(" ");
    if goal.trim().is_empty() {
        return Err(CommandError::user(
            "the goal is empty: say what the work should achieve",
        ));
    }
    let timeout = match &args.timeout {
        Some(t) => Some(manifest::parse_duration(t).ok_or_else(|| {
            CommandError::user(format!(
                "`--timeout {t}`: not a duration such as `90s`, `20m` or `1h`"
            ))
        })?),
        None => None,
    };
    let cwd = super::cwd()?;
    let git = GitRepo::open(&cwd)?;
    let root = git.root().to_path_buf();
    let agent = match args.agent {
        Some(agent) => agent,
        None => manifest::find(&root)
            .and_then(|path| manifest::load(&path).ok())
            .and_then(|m| m.root.agent)
            .ok_or_else(|| {
                CommandError::hint(
                    "no drafting agent: the repository's manifest names none",
                    "pass `--agent CMD`, e.g. `--agent codex`",
                )
            })?,
    };
    let mut config = manifest::load_config(&root)?;
    let cage = run::connect_cage(&config).await?;
    // A config `image: auto`: the planners and the proposal's exams run in
    // HEAD's image.
    if let Some(head) = git.head()? {
        let mut show = |event: crate::engine::events::Event| {
            if let Some(line) = crate::render::human_line(&event) {
                say!("{line}");
            }
        };
        run::image_auto::resolve_outside_run(&git, head, &cage, &mut config, None, &mut show)
            .await?;
    }
    let key = AnswerKey::load_or_create(&key_dir())?;
    let req = Request {
        goal,
        agent,
        critic: args.critic,
        dag: args.dag,
        rounds: args.rounds,
        timeout,
    };
    say!(
        "planning with `{}` (critic `{}`), at most {} round(s)",
        terminal::line(&req.agent),
        terminal::line(req.critic.as_deref().unwrap_or(&req.agent)),
        req.rounds
    );
    let mut show = |step: Step| show_step(&step);
    let outcome = plan::plan(&cage, &git, &config, &key, &req, &mut show).await?;

    // The proposal goes into the checkout for the user to read; nothing
    // runs it.
    let proposal_path = root.join(PROPOSAL);
    if let Some(text) = &outcome.proposal {
        write(&proposal_path, text)?;
    }
    if args.keep_dag {
        if let Some(graph) = &outcome.graph {
            write(&root.join(GRAPH), graph)?;
        }
    }
    report(&outcome);
    if !outcome.accepted {
        say!(
            "verdict: not ready after {} round(s){}",
            outcome.rounds,
            if outcome.proposal.is_some() {
                format!("; the last proposal is in `{PROPOSAL}` with what stands against it above")
            } else {
                String::new()
            }
        );
        return Ok(crate::exit_codes::BLOCKED);
    }
    let manifest_path = root.join("proctor.yaml");
    if args.accept {
        if manifest_path.exists() {
            say!("verdict: ready; `proctor.yaml` exists, so the proposal stays in `{PROPOSAL}` (compare them, then rename it yourself)");
        } else if let Some(text) = &outcome.proposal {
            write(&manifest_path, text)?;
            let _ = std::fs::remove_file(&proposal_path);
            say!("verdict: ready; accepted as `proctor.yaml`: review it, commit it, then `proctor run`");
        }
    } else {
        say!("verdict: ready; review `{PROPOSAL}`, then rename it to `proctor.yaml` (or plan again with `--accept`), commit it and `proctor run`");
    }
    Ok(0)
}

fn write(path: &std::path::Path, text: &str) -> Result<(), CommandError> {
    crate::state::write_file(path, text.as_bytes())
        .map_err(|e| CommandError::user(format!("cannot write `{}`: {e}", path.display())))
}

fn show_step(step: &Step) {
    match step {
        Step::Drafting { round, of } => say!("round {round} of {of}: drafting"),
        Step::Drafted {
            exit, secs, log, ..
        } => say!(
            "  the drafter exited {exit} after {} (log: {log})",
            crate::engine::fmt_secs(*secs)
        ),
        Step::FromGraph { .. } => say!("  it answered with a graph: turned into a manifest"),
        Step::Checked { lines, .. } => {
            for line in lines {
                say!("  {}", terminal::line(line));
            }
        }
        Step::Critiquing { .. } => say!("  the critic reviews it"),
        Step::Critiqued {
            findings,
            approved,
            log,
            ..
        } => {
            if *approved {
                say!("  the critic approved it (log: {log})");
            } else {
                say!(
                    "  the critic found {} problem(s) (log: {log})",
                    findings.len()
                );
                for finding in findings {
                    say!("    - {}", terminal::line(finding));
                }
            }
        }
        Step::SentBack { reasons, .. } => {
            say!(
                "  sent back to the drafter with {} reason(s)",
                reasons.len()
            );
        }
    }
}

/// The final proposal, what proctor checked, and the critic's notes.
fn report(outcome: &Outcome) {
    say!("");
    match &outcome.proposal {
        Some(text) => {
            say!("== the proposal ({PROPOSAL})");
            // The drafter's text: newlines kept, control characters escaped.
            say!("{}", terminal::text(text.trim_end()));
        }
        None => say!("== no proposal: the drafter wrote none proctor could read"),
    }
    say!("== what proctor checked");
    for line in &outcome.checked {
        say!("  ok    {}", terminal::line(line));
    }
    for line in &outcome.problems {
        say!("  wrong {}", terminal::line(line));
    }
    say!("== the critic's notes");
    if !outcome.critic_reviewed {
        say!("  (the critic did not review it: proctor's checks sent it back first)");
    } else if outcome.critic_notes.is_empty() {
        say!("  none: approved");
    }
    for note in &outcome.critic_notes {
        say!("  - {}", terminal::line(note));
    }
}
