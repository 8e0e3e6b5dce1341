//! The checks `proctor attest --verify` makes of an envelope, each named,
//! so a tampered file fails naming what broke: the envelope's form, the
//! signature, the statement, the subject, the commits, the event chain.

use ed25519_dalek::VerifyingKey;

use super::chain;
use super::dsse::{self, Envelope, IN_TOTO_PAYLOAD_TYPE};
use super::key::key_id;
use super::statement::{oid, Statement, PREDICATE_TYPE, STATEMENT_TYPE};
use crate::git::GitRepo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Passed,
    Failed,
    /// Nothing to check against (no events of the run on this host).
    Skipped,
}

/// One named check and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

/// Every check made, and the statement when the signature held.
#[derive(Debug, Clone)]
pub struct Verification {
    pub checks: Vec<Check>,
    pub statement: Option<Statement>,
}

impl Verification {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Failed)
    }

    fn add(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            status,
            detail: detail.into(),
        });
    }
}

/// Checks the envelope `bytes` against `public`, the repository and (when
/// it holds lines of the attested run) the events file's `events` text.
/// Checks after a failed signature are not made: nothing in an unsigned
/// payload is worth reading.
pub fn verify(
    bytes: &[u8],
    public: &VerifyingKey,
    git: &GitRepo,
    events: Option<&str>,
) -> Verification {
    let mut out = Verification {
        checks: Vec::new(),
        statement: None,
    };
    let envelope: Envelope = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(e) => {
            out.add(
                "envelope",
                Status::Failed,
                format!("not a DSSE envelope: {e}"),
            );
            return out;
        }
    };
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        out.add(
            "envelope",
            Status::Failed,
            format!(
                "payload type `{}`, not `{IN_TOTO_PAYLOAD_TYPE}`",
                envelope.payload_type
            ),
        );
        return out;
    }
    out.add("envelope", Status::Passed, "DSSE, in-toto payload");
    let payload = match dsse::open(&envelope, public) {
        Ok(p) => p,
        Err(e) => {
            out.add("signature", Status::Failed, e.to_string());
            return out;
        }
    };
    out.add(
        "signature",
        Status::Passed,
        format!("Ed25519, key {}", key_id(public)),
    );
    let statement: Statement = match serde_json::from_slice(&payload) {
        Ok(s) => s,
        Err(e) => {
            out.add(
                "statement",
                Status::Failed,
                format!("not proctor's statement: {e}"),
            );
            return out;
        }
    };
    if statement.statement_type != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE {
        out.add(
            "statement",
            Status::Failed,
            format!(
                "type `{}` with predicate `{}`, not `{STATEMENT_TYPE}` with `{PREDICATE_TYPE}`",
                statement.statement_type, statement.predicate_type
            ),
        );
        return out;
    }
    out.add(
        "statement",
        Status::Passed,
        format!(
            "run {}, {} loop{}",
            statement.predicate.run,
            statement.predicate.loops.len(),
            if statement.predicate.loops.len() == 1 {
                ""
            } else {
                "s"
            }
        ),
    );
    check_subject(&mut out, &statement);
    check_commits(&mut out, &statement, git);
    check_events(&mut out, &statement, events);
    out.statement = Some(statement);
    out
}

fn check_subject(out: &mut Verification, statement: &Statement) {
    let head = &statement.predicate.head;
    let digests: Vec<Option<&String>> = statement
        .subject
        .iter()
        .map(|s| s.digest.get("gitCommit"))
        .collect();
    match digests.as_slice() {
        [Some(commit)] if *commit == head => {
            out.add("subject", Status::Passed, format!("commit {head}"))
        }
        [Some(commit)] => out.add(
            "subject",
            Status::Failed,
            format!("the subject is commit {commit}, the run closed on {head}"),
        ),
        _ => out.add(
            "subject",
            Status::Failed,
            format!(
                "{} subjects; one with a `gitCommit` digest was expected",
                digests.len()
            ),
        ),
    }
}

fn check_commits(out: &mut Verification, statement: &Statement, git: &GitRepo) {
    let p = &statement.predicate;
    let mut named: Vec<&str> = vec![&p.base, &p.head];
    for l in &p.loops {
        named.extend(l.closed_on.as_deref());
        named.extend(l.verdicts.iter().map(|v| v.commit.as_str()));
    }
    let mut missing: Vec<&str> = Vec::new();
    for commit in named {
        let known = oid(commit).is_ok_and(|o| git.has_commit(o));
        if !known && !missing.contains(&commit) {
            missing.push(commit);
        }
    }
    if !missing.is_empty() {
        out.add(
            "commits",
            Status::Failed,
            format!("not in this repository: {}", missing.join(", ")),
        );
        return;
    }
    let descends = match (oid(&p.base), oid(&p.head)) {
        (Ok(base), Ok(head)) => git.is_ancestor(base, head).unwrap_or(false),
        _ => false,
    };
    if descends {
        out.add(
            "commits",
            Status::Passed,
            format!(
                "base {} and head {} exist; head descends from base",
                p.base, p.head
            ),
        );
    } else {
        out.add(
            "commits",
            Status::Failed,
            format!("head {} does not descend from base {}", p.head, p.base),
        );
    }
}

fn check_events(out: &mut Verification, statement: &Statement, events: Option<&str>) {
    let p = &statement.predicate;
    let lines = events
        .map(|text| chain::run_lines(text, &p.run))
        .unwrap_or_default();
    if lines.is_empty() {
        out.add(
            "events",
            Status::Skipped,
            format!(
                "not checked: `.proctor/events.jsonl` here holds no line of run {}",
                p.run
            ),
        );
        return;
    }
    let here = chain::chain(&lines);
    if here.count == p.events.count && here.head == p.events.head {
        out.add(
            "events",
            Status::Passed,
            format!(
                "{} lines of run {} chain to {}",
                here.count, p.run, here.head
            ),
        );
    } else {
        out.add(
            "events",
            Status::Failed,
            format!(
                "`.proctor/events.jsonl` holds {} lines of run {} chaining to {}; the statement recorded {} chaining to {}",
                here.count, p.run, here.head, p.events.count, p.events.head
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::TestRunner;

    /// An envelope is untrusted input: any bytes, and any signed payload
    /// that is not proctor's statement, fail a named check, never panic.
    #[test]
    fn any_input_fails_a_named_check_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let git = GitRepo::init_with_commit(&dir.path().join("repo"), "base").unwrap();
        let key = super::super::key::AttestKey::load_or_create(&dir.path().join("keys")).unwrap();
        let mut runner = TestRunner::default();
        runner
            .run(&proptest::collection::vec(any::<u8>(), 0..300), |bytes| {
                let result = verify(&bytes, &key.public(), &git, None);
                prop_assert!(!result.passed());
                Ok(())
            })
            .unwrap();
        runner
            .run(&"\\{.{0,200}", |text| {
                let envelope = dsse::seal(&key, IN_TOTO_PAYLOAD_TYPE, text.as_bytes());
                let bytes = serde_json::to_vec(&envelope).unwrap();
                let result = verify(&bytes, &key.public(), &git, Some(&text));
                prop_assert!(!result.passed());
                prop_assert!(result
                    .checks
                    .iter()
                    .any(|c| c.name == "signature" && c.status == Status::Passed));
                Ok(())
            })
            .unwrap();
    }
}
