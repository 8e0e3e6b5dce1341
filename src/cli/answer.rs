//! `proctor answer`: a person's reply to a card, authenticated with the
//! answer-auth key and recorded in the ledger.

use super::CommandError;
use crate::engine::gate::{card_kind, is_inside};
use crate::engine::short;
use crate::git::GitRepo;
use crate::manifest;
use crate::protect::review::Review;
use crate::state::approver::{approvers_dir, ApproverKey};
use crate::state::gate::{self, is_approval};
use crate::state::key::{key_dir, AnswerKey};
use crate::state::{ledger, Paths};
use crate::views::out::say;

/// Answer a blocked loop: the text goes into the loop's next prompt and
/// refreshes its budget once. The answer is signed with a key kept outside
/// the repository (`PROCTOR_KEY_DIR`), so no agent can forge one.
///
/// The answer waits in `.proctor/answers.jsonl` (in your checkout, never
/// committed, out of every container's reach) until the next `proctor run`
/// moves it into the run's ledger.
///
/// For a loop waiting on its exam review (`review:` with `block: true` in
/// `.proctor/config.yaml`), `approve` lets its agent start at the next run;
/// any other answer goes to the reviewer, which is asked again. Neither
/// refreshes a budget.
///
/// For a gated loop (`gate: human`), `approve` signs an approval of the
/// tip of the run's branch (`proctor/<root>`, as the READY card names it)
/// with your approver key; the next
/// `proctor run` checks the exam once more and seals the loop. Any other
/// text is recorded as a rejection: it unlocks nothing and refreshes no
/// budget.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The loop to answer (as named on its card in `INBOX/`).
    #[arg(value_name = "LOOP")]
    pub loop_id: String,
    /// The answer.
    #[arg(required = true, value_name = "TEXT")]
    pub text: Vec<String>,
}

pub fn cmd_answer(args: Args) -> Result<i32, CommandError> {
    let git = GitRepo::open(&super::cwd()?)?;
    let paths = Paths::new(git.root());
    let text = args.text.join(" ");
    if text.trim().is_empty() {
        return Err(CommandError::user("the answer is empty"));
    }
    if !is_review(&paths, &args.loop_id) && is_gated(&git, &paths, &args.loop_id) {
        let decided = decide_gate(&git, &paths, &args.loop_id, &text, None)?;
        if let Some(review) = &decided.review {
            // The person approves what proctor shows, read from git's
            // objects without the repository's attributes or diff drivers.
            say!(
                "{}{}",
                crate::terminal::text(&review.flags_markdown()),
                crate::terminal::text(&review.body_markdown())
            );
        }
        let GateDecision {
            loop_id,
            branch,
            commit,
            approver,
            public_path,
            review,
        } = decided;
        let at = short(&commit);
        if review.is_some() {
            say!(
                "approved loop `{loop_id}` at commit {at} on `{branch}` as approver {approver}; the next run checks the exam once more and seals the gate if it still passes: {}",
                next_run(git.root())
            );
            say!(
                "(another host counts this approval once it trusts your public key: copy `{}` into its approvers directory)",
                public_path.display()
            );
        } else {
            say!(
                "recorded a rejection of loop `{loop_id}` at commit {at} by approver {approver}: it unlocks nothing and refreshes no budget; change what needs changing, then `proctor run` examines the new state"
            );
        }
        return Ok(0);
    }
    if is_review(&paths, &args.loop_id) {
        record_answer(
            &git,
            &paths,
            &args.loop_id,
            &format!("{}{text}", ledger::REVIEW_ANSWER),
        )?;
        if is_approval(&text) {
            say!(
                "approved the exam review of loop `{}`: its agent starts at the next `proctor run`",
                args.loop_id
            );
        } else {
            say!(
                "recorded your answer to the exam review of loop `{}`: it is not `approve`, so the loop waits; the next `proctor run` asks the reviewer again with your answer",
                args.loop_id
            );
        }
        return Ok(0);
    }
    record_answer(&git, &paths, &args.loop_id, &text)?;
    say!(
        "recorded the answer for loop `{}`: it goes into the next prompt and refreshes the loop's budget once; {}",
        args.loop_id,
        next_run(git.root())
    );
    Ok(0)
}

/// What resumes the latest run: `continue with `proctor run``, or `--file`
/// and `once` runs' own command (an answer after `once` is read by the
/// same `proctor once` run again).
pub(crate) fn next_run(root: &std::path::Path) -> String {
    let view = crate::views::View::build(&crate::views::Context::load(root, None));
    if view.rerun.starts_with("proctor ") {
        format!("continue with `{}`", view.rerun)
    } else {
        view.rerun
    }
}

/// Whether `loop_id` is gated (`gate:` in the manifest, or a READY card):
/// its answer is an approval or a rejection, signed with the approver key.
pub(crate) fn is_gated(git: &GitRepo, paths: &Paths, loop_id: &str) -> bool {
    let card = std::fs::read_to_string(paths.card_for(loop_id)).unwrap_or_default();
    manifest::find(git.root())
        .and_then(|p| manifest::load(&p).ok())
        .as_ref()
        .and_then(|m| m.find_loop(loop_id))
        .is_some_and(|spec| spec.gate.is_some())
        || matches!(card_kind(&card), Some("ready"))
}

/// Whether `loop_id` waits on an exam review's card (`review:` with
/// `block: true`): its answer decides the review only.
fn is_review(paths: &Paths, loop_id: &str) -> bool {
    let card = std::fs::read_to_string(paths.card_for(loop_id)).unwrap_or_default();
    matches!(card_kind(&card), Some("review"))
}

/// Signs an answer to a blocked loop with the answer-auth key and leaves
/// it in `.proctor/answers.jsonl` for the next run.
pub(crate) fn record_answer(
    git: &GitRepo,
    paths: &Paths,
    loop_id: &str,
    text: &str,
) -> Result<(), CommandError> {
    if text.trim().is_empty() {
        return Err(CommandError::user("the answer is empty"));
    }
    let known_in_manifest = manifest::find(git.root())
        .and_then(|p| manifest::load(&p).ok())
        .map(|m| m.find_loop(loop_id).is_some());
    if known_in_manifest == Some(false) && !paths.card_for(loop_id).exists() {
        return Err(CommandError::hint(
            format!("no loop `{loop_id}` in the manifest and no card `INBOX/{loop_id}.md`"),
            "`ls INBOX/` shows the loops waiting for an answer",
        ));
    }
    let key = AnswerKey::load_or_create(&key_dir())?;
    let entry = ledger::signed_answer(&key, loop_id, text);
    ledger::append(&paths.answers, &entry).map_err(|e| CommandError::Internal {
        message: format!("cannot write `{}`: {e}", paths.answers.display()),
    })
}

/// A gate decision as recorded.
pub(crate) struct GateDecision {
    pub loop_id: String,
    pub branch: String,
    /// The commit the decision is bound to (the run branch's tip).
    pub commit: String,
    pub approver: String,
    pub public_path: std::path::PathBuf,
    /// The change approved (`None` for a rejection).
    pub review: Option<Review>,
}

/// Signs an approval or a rejection of the commit under review: the tip
/// of the run's branch. `shown` is the commit the person was shown (the
/// web view's page); when the branch has moved on since, nothing is
/// signed, so a stale page cannot approve a newer commit.
pub(crate) fn decide_gate(
    git: &GitRepo,
    paths: &Paths,
    loop_id: &str,
    text: &str,
    shown: Option<&str>,
) -> Result<GateDecision, CommandError> {
    let Some(branch) = run_branch(git, paths) else {
        return Err(CommandError::hint(
            format!("loop `{loop_id}` is gated, and an approval binds to the commit under review, but no run of this repository has a branch yet"),
            "`proctor run` first: a gated loop writes a READY card when its work is ready for review",
        ));
    };
    let commit = git.branch_tip(&branch)?.ok_or_else(|| {
        CommandError::hint(
            format!("the run's branch `{branch}` does not exist"),
            "`proctor run` makes it again",
        )
    })?;
    if let Some(shown) = shown {
        if shown != commit.to_string() {
            return Err(CommandError::hint(
                format!(
                    "the page showed commit {}, but `{branch}` is now at {}: nothing was signed",
                    short(shown),
                    short(&commit.to_string())
                ),
                "reload the page and review the new commit",
            ));
        }
    }
    let dir = key_dir();
    if is_inside(&dir, git.root()) || is_inside(&approvers_dir(), git.root()) {
        return Err(CommandError::hint(
            "the approver key or the approvers directory is inside the repository, where an agent can read or write it",
            "point `PROCTOR_KEY_DIR` and `PROCTOR_APPROVERS_DIR` outside the repository",
        ));
    }
    let review = if is_approval(text) {
        let base = crate::engine::history::base_of(git, commit)?;
        let entries = git.changed_entries(base, commit)?;
        Some(Review::new(
            &base.to_string(),
            &commit.to_string(),
            &entries,
        ))
    } else {
        None
    };
    let approver = ApproverKey::load_or_create(&dir)?;
    let entry = gate::decision(&approver, loop_id, &commit.to_string(), text);
    gate::append(&paths.answers, &entry).map_err(|e| CommandError::Internal {
        message: format!("cannot write `{}`: {e}", paths.answers.display()),
    })?;
    Ok(GateDecision {
        loop_id: loop_id.to_string(),
        branch,
        commit: commit.to_string(),
        approver: approver.id.clone(),
        public_path: approver.public_path.clone(),
        review,
    })
}

/// The branch of the latest run (as its `run_start` event names it), else
/// `proctor/<root>` of the manifest's root loop.
pub(crate) fn run_branch(git: &GitRepo, paths: &Paths) -> Option<String> {
    let from_events = crate::engine::events::read(&paths.events)
        .into_iter()
        .rev()
        .find_map(|r| match r.event {
            crate::engine::events::Event::RunStart { branch, .. } => Some(branch),
            _ => None,
        });
    from_events.or_else(|| {
        manifest::find(git.root())
            .and_then(|p| manifest::load(&p).ok())
            .map(|m| format!("proctor/{}", m.root.id))
    })
}

#[cfg(test)]
mod next_run_tests {
    /// `answer` (and the web view's answer) said "continue with `proctor
    /// run`" after a `run --file` or a `once`: it names that run's command.
    #[test]
    fn the_reply_names_the_latest_runs_own_command() {
        let dir = tempfile::tempdir().expect("temp dir");
        let events = dir.path().join(".proctor/events.jsonl");
        std::fs::create_dir_all(events.parent().expect("parent")).expect("mkdir");
        let start = |manifest: &str| {
            format!(
                r#"{{"v":1,"ts":1764900000.0,"run":"5e1f0a2b","type":"run_start","root":"r","branch":"proctor/r","base":"0123456789abcdef0123456789abcdef01234567","manifest":"{manifest}","engine":"docker 27.5.1","pid":4242}}"#
            ) + "\n"
        };
        assert_eq!(super::next_run(dir.path()), "continue with `proctor run`");
        std::fs::write(&events, start("other.yaml")).expect("write");
        assert_eq!(
            super::next_run(dir.path()),
            "continue with `proctor run --file other.yaml`"
        );
        std::fs::write(&events, start("proctor once")).expect("write");
        assert_eq!(
            super::next_run(dir.path()),
            "run the same `proctor once` again"
        );
    }
}
