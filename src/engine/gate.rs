//! Human gates: a gated loop whose exam passes does not close. It halts with
//! a READY card (exit 4) until enough trusted approvers have signed
//! `approve` for the exact commit that passed; the next run administers the
//! exam once more and seals the loop only if it still passes on that commit.
//! If the world moved, the card is marked superseded and the loop takes the
//! normal path. Approvals are read only from signed ledger lines verified
//! against keys outside the repository: nothing an agent writes (cards,
//! ledger lines, files named like approvals) can seal a gate.

use std::path::Path;

use super::events::{Event, GateStatus};
use super::history::trailer as history_trailer;
use super::{io_err, short, Ending, Engine, EngineError};
use crate::cage::Cage;
use crate::git::Oid;
use crate::manifest::{Gate, LoopSpec, Order};
use crate::protect::review::Review;
use crate::state;
use crate::state::approver::{approvers_dir, ApproverKey, Trusted};
use crate::state::cards::{Card, CardKind, Tried};
use crate::state::gate::{self as gate_lines, Tally};

impl<C: Cage> Engine<'_, C> {
    /// The approvers this host trusts: its own approver key (next to the
    /// answer-auth key, when it exists) and the approvers directory, unless
    /// that directory is inside the repository an agent can write.
    fn trusted_approvers(&self) -> Trusted {
        let own = ApproverKey::load(&self.key.path.with_file_name("approver.key")).ok();
        let dir = approvers_dir();
        if is_inside(&dir, &self.paths.root) {
            return Trusted::load(own.as_ref(), Path::new("/nonexistent"));
        }
        Trusted::load(own.as_ref(), &dir)
    }

    fn tally(&self, spec: &LoopSpec, commit: Oid) -> Tally {
        let entries = self.gate_entries();
        gate_lines::tally(
            &entries,
            &self.trusted_approvers(),
            &spec.id,
            &commit.to_string(),
        )
    }

    /// Takes every gated loop of the tree off its gate: the time a person
    /// took to answer is recorded as paused, so it never spends the loop's
    /// time budget. Remembers which loops were waiting, so a failing exam
    /// can mark their card superseded.
    pub(super) fn resume_gates(&mut self, root: &LoopSpec) -> Result<(), EngineError> {
        let gated: Vec<String> = root
            .walk(Order::ParentsFirst)
            .into_iter()
            .filter(|spec| spec.gate.is_some())
            .map(|spec| spec.id.clone())
            .collect();
        if gated.is_empty() {
            return Ok(());
        }
        let entries = self.gate_entries();
        for id in gated {
            if let Some((gated_id, _)) = gate_lines::open_gate(&entries, self.key, &id) {
                let line = gate_lines::resumed(self.key, &id, &gated_id, self.now_ms());
                gate_lines::append(&self.paths.ledger, &line)
                    .map_err(io_err(&self.paths.ledger))?;
                self.resumed_gates.insert(id);
            }
        }
        Ok(())
    }

    /// The gate lines of the ledger, with a parallel child's parent's after
    /// its own, each once.
    fn gate_entries(&self) -> Vec<gate_lines::GateEntry> {
        let mut entries = gate_lines::read(&self.paths.ledger);
        if let Some(outer) = &self.outer_ledger {
            for entry in gate_lines::read(outer) {
                if !entries.contains(&entry) {
                    entries.push(entry);
                }
            }
        }
        entries
    }

    /// The engine's clock in Unix milliseconds, as gate lines record it.
    fn now_ms(&self) -> i64 {
        (self.clock.now() * 1000.0) as i64
    }

    /// Seconds of `[since, now]` the loop spent halted at its gate.
    pub(super) fn paused_secs(&self, loop_id: &str, since: f64, now: f64) -> f64 {
        let entries = self.gate_entries();
        gate_lines::paused_secs(&entries, self.key, loop_id, since, now)
    }

    /// What a passing exam means for a gated loop: `None` to keep
    /// confirming, else how the loop ends in this run.
    pub(super) async fn gate_pass(
        &mut self,
        spec: &LoopSpec,
        gate: Gate,
        commit: Oid,
        streak: u32,
        tried: &[Tried],
    ) -> Result<Option<Ending>, EngineError> {
        self.resumed_gates.remove(&spec.id);
        if self.sealed_earlier(spec)? {
            return self.close(spec, commit).await.map(Some);
        }
        let tally = self.tally(spec, commit);
        if tally.approved(gate.approvals) {
            return self.seal(spec, gate, commit, &tally).map(Some);
        }
        if streak < spec.confirm {
            return Ok(None);
        }
        self.await_approval(spec, gate, commit, &tally, tried)
            .map(Some)
    }

    /// The exam of a loop that was waiting at its gate no longer passes:
    /// its card is marked superseded and the loop goes back to work.
    pub(super) fn gate_moved(&mut self, spec: &LoopSpec, commit: Oid, exit: i64) {
        if !self.resumed_gates.remove(&spec.id) {
            return;
        }
        let note = format!(
            "the exam no longer passes (exit {exit} on commit {}); earlier approvals do not apply and the loop goes back to work",
            short(&commit.to_string())
        );
        let path = self.paths.card_for(&spec.id);
        if let Ok(text) = std::fs::read_to_string(&path) {
            if card_kind(&text) == Some("ready") {
                let _ = state::write_file(&path, supersede_text(&text, &note).as_bytes());
            }
        }
        (self.emit)(Event::Gate {
            loop_id: spec.id.clone(),
            status: GateStatus::Superseded,
            commit: commit.to_string(),
            approvals: Vec::new(),
            needed: spec.gate.map_or(1, |g| g.approvals),
            note: Some(note),
        });
    }

    /// Whether this branch already holds a seal of the loop with no attempt
    /// of it since: an approved loop stays approved while its exam passes.
    fn sealed_earlier(&self, spec: &LoopSpec) -> Result<bool, EngineError> {
        let Some(tip) = self.git.head()? else {
            return Ok(false);
        };
        if tip == self.base {
            return Ok(false);
        }
        let run_prefix = format!("proctor({}): run ", spec.id);
        let close = format!("proctor({}): close", spec.id);
        for commit in self.git.first_parent_log(tip, Some(self.base))? {
            let summary = commit.message.lines().next().unwrap_or("");
            if summary.starts_with(&run_prefix) {
                return Ok(false);
            }
            if summary == close && history_trailer(&commit.message, "Proctor-Approved-By").is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn seal(
        &mut self,
        spec: &LoopSpec,
        gate: Gate,
        commit: Oid,
        tally: &Tally,
    ) -> Result<Ending, EngineError> {
        let id = spec.id.as_str();
        crate::state::cards::clear(&self.paths.inbox, id);
        let approvers = tally.approvers.join(", ");
        // Always a commit of its own: the seal and the approvals (ledger
        // lines) enter history together.
        let close = self.commit(
            &format!(
                "proctor({id}): close\n\nProctor-Loop: {id}\nProctor-Verified: {commit}\nProctor-Approved-By: {approvers}\n"
            ),
            &|p| state::is_private(p),
        )?;
        (self.emit)(Event::Gate {
            loop_id: id.to_string(),
            status: GateStatus::Sealed,
            commit: commit.to_string(),
            approvals: tally.approvers.clone(),
            needed: gate.approvals,
            note: None,
        });
        self.report.verified.push(format!(
            "loop `{id}`: gate sealed by {} approver(s) ({approvers}) after the exam passed again on commit {}",
            tally.approvers.len(),
            short(&commit.to_string())
        ));
        let runs = self.runs.get(id).copied().unwrap_or(0);
        (self.emit)(Event::Close {
            loop_id: id.to_string(),
            runs,
            commit: close.to_string(),
        });
        Ok(Ending::Closed)
    }

    fn await_approval(
        &mut self,
        spec: &LoopSpec,
        gate: Gate,
        commit: Oid,
        tally: &Tally,
        tried: &[Tried],
    ) -> Result<Ending, EngineError> {
        let id = spec.id.as_str();
        let needed = gate.approvals;
        let have = tally.approvers.len();
        let reason = format!(
            "the exam passes on commit {}; the loop needs {} before it may close{}",
            short(&commit.to_string()),
            plural(needed as usize, "approval"),
            if have > 0 {
                format!(" ({have} so far: {})", tally.approvers.join(", "))
            } else {
                String::new()
            }
        );
        let mut notes = vec![format!(
            "Approvals bind to commit {commit}: `proctor answer {id} approve` on the work branch signs it with your approver key (`PROCTOR_KEY_DIR`). Each approver needs their own key; this host trusts its own key and the public keys in `{}`.",
            approvers_dir().display()
        )];
        if let Some((who, text)) = &tally.rejection {
            notes.push(format!("Rejected by {who}: {text}"));
        }
        if !tally.untrusted.is_empty() {
            notes.push(format!(
                "Not counted: approvals signed by {} (not a trusted approver on this host; copy their `approver.pub` into the approvers directory).",
                tally.untrusted.join(", ")
            ));
        }
        // What the person approves, as proctor reads it: not `git diff`,
        // which the agent's `.gitattributes` or a diff driver can blind.
        let entries = self.git.changed_entries(self.base, commit)?;
        let review = Review::new(&self.base.to_string(), &commit.to_string(), &entries);
        let card = Card {
            kind: CardKind::Ready,
            loop_id: id,
            task: spec.task.as_deref(),
            exam: &spec.done_when,
            reason: format!("proctor paused loop `{id}`: {reason}."),
            tried,
            last_failure: "",
            notes: &notes,
            review: Some(&review),
            rerun: &self.settings.rerun,
        };
        let path = card
            .write(&self.paths.inbox)
            .map_err(io_err(&self.paths.inbox))?;
        let line = gate_lines::gated(self.key, id, &commit.to_string(), self.now_ms());
        gate_lines::append(&self.paths.ledger, &line).map_err(io_err(&self.paths.ledger))?;
        (self.emit)(Event::Card {
            loop_id: id.to_string(),
            kind: "ready".into(),
            path: self.paths.rel(&path),
            reason: reason.clone(),
        });
        (self.emit)(Event::Gate {
            loop_id: id.to_string(),
            status: GateStatus::Ready,
            commit: commit.to_string(),
            approvals: tally.approvers.clone(),
            needed,
            note: None,
        });
        self.report
            .unverified
            .push(format!("loop `{id}` did not close: {reason}"));
        Ok(Ending::Gated {
            loop_id: id.to_string(),
        })
    }
}

/// Whether `path` is `root` or below it (after resolving links where the
/// path exists).
pub fn is_inside(path: &Path, root: &Path) -> bool {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    path.starts_with(root)
}

/// The kind word of a card's first line (`<!-- proctor card v1 KIND ID -->`).
pub fn card_kind(text: &str) -> Option<&str> {
    text.lines()
        .next()?
        .strip_prefix("<!-- proctor card v1 ")?
        .split_whitespace()
        .next()
}

/// A READY card rewritten as superseded, the reason on top.
fn supersede_text(text: &str, note: &str) -> String {
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap_or("")
        .replacen(" ready ", " superseded ", 1);
    let rest: Vec<&str> = lines.collect();
    let rest = rest.join("\n").replacen("# READY: ", "# SUPERSEDED: ", 1);
    format!("{header}\n{rest}\n\nSUPERSEDED: {note}.\n")
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_card_reads_as_superseded() {
        let card = "<!-- proctor card v1 ready ship -->\n# READY: ship\n\nbody\n";
        assert_eq!(card_kind(card), Some("ready"));
        let moved = supersede_text(card, "the exam no longer passes");
        assert_eq!(card_kind(&moved), Some("superseded"));
        insta::assert_snapshot!(moved);
        assert_eq!(card_kind("garbage"), None);
    }
}
