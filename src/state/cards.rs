//! Cards: `INBOX/<loop>.md`, written when a loop needs a person.
//!
//! A card is a report for a human, never an input: nothing proctor decides
//! is read back from a card, so a card an agent writes means nothing.

use std::path::Path;

use crate::terminal::{line, text};

/// A backtick fence longer than any run of backticks in `body`, so the
/// body cannot close it (CommonMark closes a fence only with one at least
/// as long).
pub fn fence_for(body: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in body.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

/// Why a loop halted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardKind {
    Blocked,
    Ready,
    /// `proctor land` left the target branch as it was (a conflict, or the
    /// exam failed on the merged tree). Marked `blocked` for the views.
    NotLanded,
    /// The exam's reviewer answered before the loop's first agent run, and
    /// the config says `block: true`: a person answers `approve` to let
    /// the agent start. Counted as gated (exit 4) by the views.
    Review,
}

/// One attempt, as the card lists it.
#[derive(Debug, Clone)]
pub struct Tried {
    pub run: u32,
    pub agent_exit: i64,
    pub agent_secs: f64,
    pub verdict: String,
}

pub struct Card<'a> {
    pub kind: CardKind,
    pub loop_id: &'a str,
    pub task: Option<&'a str>,
    pub exam: &'a str,
    pub reason: String,
    pub tried: &'a [Tried],
    pub last_failure: &'a str,
    pub notes: &'a [String],
    /// For a READY card: proctor's own review of the commit to approve
    /// (its flags go on top, the diff before "What to do").
    pub review: Option<&'a crate::protect::review::Review>,
    /// The command that resumes the run (`proctor run`, `proctor run
    /// --file FILE`), or after `once` the sentence saying to run it again.
    pub rerun: &'a str,
}

impl Card<'_> {
    pub fn render(&self) -> String {
        let id = self.loop_id;
        let (title, marker) = match self.kind {
            CardKind::Blocked => ("BLOCKED", "blocked"),
            CardKind::Ready => ("READY", "ready"),
            CardKind::NotLanded => ("NOT LANDED", "blocked"),
            CardKind::Review => ("EXAM REVIEW", "review"),
        };
        let mut out = format!(
            "<!-- proctor card v1 {marker} {id} -->\n# {title}: {id}\n\n{}\n\n",
            line(&self.reason)
        );
        if let Some(review) = self.review {
            out.push_str(&review.flags_markdown());
        }
        if let Some(task) = self.task {
            out.push_str(&format!("## Task\n\n{}\n\n", text(task.trim())));
        }
        out.push_str(&format!("## Exam\n\n`{}`\n\n", line(self.exam)));
        if !self.tried.is_empty() {
            out.push_str("## What was tried\n\n");
            for t in self.tried {
                out.push_str(&format!(
                    "- run {}: agent exited {} after {:.1}s; exam: {}\n",
                    t.run,
                    t.agent_exit,
                    t.agent_secs,
                    line(&t.verdict)
                ));
            }
            out.push('\n');
        }
        for note in self.notes {
            out.push_str(&format!("Note: {}\n\n", line(note)));
        }
        if !self.last_failure.trim().is_empty() {
            // The exam's output is the agent's to shape: escaped, and in a
            // fence it cannot close (a ``` of its own would end the block
            // and let it write headings and commands into the card).
            let body = text(self.last_failure.trim_end());
            let fence = fence_for(&body);
            let heading = match self.kind {
                CardKind::Review => "The reviewer's findings",
                _ => "Last failure",
            };
            out.push_str(&format!("## {heading}\n\n{fence}\n{body}\n{fence}\n\n"));
        }
        if let Some(review) = self.review {
            out.push_str(&review.body_markdown());
        }
        out.push_str("## What to do\n\n");
        // A command goes in the block; `once` records no flags, so its
        // resume is a sentence after it.
        let (rerun, after) = if self.rerun.starts_with("proctor ") {
            (format!("    {}\n", self.rerun), String::new())
        } else {
            (String::new(), format!("\nThen {}.\n", self.rerun))
        };
        match self.kind {
            CardKind::Blocked => out.push_str(&format!(
                "Answer with guidance, then run again. The answer goes into the next prompt \
                 and refreshes this loop's budget once:\n\n    proctor answer {id} \"...\"\n{rerun}{after}"
            )),
            CardKind::Ready => out.push_str(&format!(
                "The exam passes. Review the work branch, then approve to let the loop close \
                 (the next run checks the exam once more before sealing):\n\n    proctor answer {id} approve\n{rerun}{after}\n\
                 Any other answer is recorded as a rejection: it unlocks nothing and refreshes no budget.\n"
            )),
            CardKind::NotLanded => out.push_str(
                "The target branch is exactly as it was. Bring its changes into the work (or fix \
                 what fails on the merged tree), then land again:\n\n    proctor land\n",
            ),
            CardKind::Review => out.push_str(&format!(
                "Read the reviewer's findings above. If the exam holds, approve to let the agent \
                 start:\n\n    proctor answer {id} approve\n{rerun}{after}\n\
                 Any other answer goes to the reviewer, which is asked again at the next run (the \
                 loop waits again). To change the exam, commit the change on your branch and \
                 start a new run. An answer here refreshes no budget.\n"
            )),
        }
        out
    }

    pub fn write(&self, inbox: &Path) -> std::io::Result<std::path::PathBuf> {
        let path = inbox.join(format!("{}.md", self.loop_id));
        super::write_file(&path, self.render().as_bytes())?;
        Ok(path)
    }
}

/// Removes a loop's card once the loop moves on.
pub fn clear(inbox: &Path, loop_id: &str) {
    let _ = std::fs::remove_file(inbox.join(format!("{loop_id}.md")));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tried() -> Vec<Tried> {
        vec![
            Tried {
                run: 1,
                agent_exit: 0,
                agent_secs: 1.25,
                verdict: "fail (exit 1)".into(),
            },
            Tried {
                run: 2,
                agent_exit: 137,
                agent_secs: 900.0,
                verdict: "fail (exit 1)".into(),
            },
        ]
    }

    #[test]
    fn a_blocked_card_names_the_answer_command() {
        let tried = tried();
        let notes = ["the last 2 agent runs changed nothing; is the agent command non-interactive and allowed to edit files?".to_string()];
        let card = Card {
            kind: CardKind::Blocked,
            loop_id: "fix",
            task: Some("make it pass\n"),
            exam: "sh test.sh",
            reason: "budget spent: 2 of 2 runs".into(),
            tried: &tried,
            last_failure: "FAIL: add(2,2) = 5\n",
            notes: &notes,
            review: None,
            rerun: "proctor run",
        };
        insta::assert_snapshot!(card.render());
    }

    /// After `once` (no manifest, flags not recorded) the card said
    /// `proctor run`, which has nothing to run.
    #[test]
    fn a_once_runs_card_says_to_run_it_again() {
        let card = Card {
            kind: CardKind::Blocked,
            loop_id: "once",
            task: None,
            exam: "sh test.sh",
            reason: "budget spent: 1 of 1 runs".into(),
            tried: &[],
            last_failure: "",
            notes: &[],
            review: None,
            rerun: crate::run::ONCE_AGAIN,
        };
        let text = card.render();
        assert!(
            text.ends_with(
                "    proctor answer once \"...\"\n\nThen run the same `proctor once` again.\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_exam_review_card_holds_the_findings_and_names_approve() {
        let notes = [
            "an earlier answer to this review, given to the reviewer: look at src too".to_string(),
        ];
        let card = Card {
            kind: CardKind::Review,
            loop_id: "fix",
            task: Some("drop the TODO"),
            exam: "sh tests/check.sh",
            reason: "proctor stopped loop `fix` before work: its exam's reviewer answered before its first agent run; a person reads the findings and answers `approve` to let the agent start.".into(),
            tried: &[],
            last_failure: "1. Delete src/.\n```\n# planted heading",
            notes: &notes,
            review: None,
            rerun: "proctor run",
        };
        insta::assert_snapshot!(card.render());
    }

    #[test]
    fn a_ready_card_names_the_approve_command() {
        let card = Card {
            kind: CardKind::Ready,
            loop_id: "ship",
            task: None,
            exam: "make release-check",
            reason: "the exam passes on 0123456789ab; 2 approvals are needed".into(),
            tried: &[],
            last_failure: "",
            notes: &[],
            review: None,
            rerun: "proctor run",
        };
        insta::assert_snapshot!(card.render());
    }
}
