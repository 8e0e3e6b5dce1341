//! Gate lines of the ledger: approvals and rejections signed by approvers,
//! and the host's own record of when a loop stopped to wait for a person.
//!
//! They share `.proctor/ledger.jsonl` with runs and answers (each reader
//! skips the lines it does not know). An approval or rejection names the
//! exact commit it judged and is signed with an approver key
//! ([`super::approver`]); the host's `gated`/`resumed` lines carry an HMAC
//! under the answer-auth key. Any line an agent writes fails verification
//! and counts for nothing. Parsing never panics.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::approver::{ApproverKey, Trusted};
use super::key::{random_id, AnswerKey};

pub const GATE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GateEntry {
    /// A person approved the loop's candidate at `commit`.
    Approval {
        v: u32,
        #[serde(rename = "loop")]
        loop_id: String,
        id: String,
        /// Unix milliseconds.
        ts: i64,
        commit: String,
        approver: String,
        sig: String,
    },
    /// A person answered a gated loop with anything but `approve`.
    Rejection {
        v: u32,
        #[serde(rename = "loop")]
        loop_id: String,
        id: String,
        ts: i64,
        commit: String,
        approver: String,
        text: String,
        sig: String,
    },
    /// The host halted the loop for approval (the clock stops here).
    Gated {
        v: u32,
        #[serde(rename = "loop")]
        loop_id: String,
        id: String,
        ts: i64,
        commit: String,
        hmac: String,
    },
    /// A later run took the loop up again (the clock restarts here).
    Resumed {
        v: u32,
        #[serde(rename = "loop")]
        loop_id: String,
        id: String,
        ts: i64,
        gated: String,
        hmac: String,
    },
}

fn decision_message(
    kind: &str,
    loop_id: &str,
    commit: &str,
    id: &str,
    ts: i64,
    text: &str,
) -> Vec<u8> {
    format!("proctor-gate-v1\0{kind}\0{loop_id}\0{commit}\0{id}\0{ts}\0{text}").into_bytes()
}

fn gated_message(loop_id: &str, commit: &str, id: &str, ts: i64) -> Vec<u8> {
    format!("proctor-gated-v1\0{loop_id}\0{commit}\0{id}\0{ts}").into_bytes()
}

fn resumed_message(loop_id: &str, gated: &str, id: &str, ts: i64) -> Vec<u8> {
    format!("proctor-resumed-v1\0{loop_id}\0{gated}\0{id}\0{ts}").into_bytes()
}

fn now_ms() -> i64 {
    (super::now() * 1000.0) as i64
}

/// A signed approval (`approve`) or rejection (any other text) of `commit`.
pub fn decision(key: &ApproverKey, loop_id: &str, commit: &str, text: &str) -> GateEntry {
    let id = random_id(12);
    let ts = now_ms();
    if is_approval(text) {
        let sig = key.sign(&decision_message("approval", loop_id, commit, &id, ts, ""));
        GateEntry::Approval {
            v: GATE_VERSION,
            loop_id: loop_id.into(),
            id,
            ts,
            commit: commit.into(),
            approver: key.id.clone(),
            sig,
        }
    } else {
        let sig = key.sign(&decision_message(
            "rejection",
            loop_id,
            commit,
            &id,
            ts,
            text,
        ));
        GateEntry::Rejection {
            v: GATE_VERSION,
            loop_id: loop_id.into(),
            id,
            ts,
            commit: commit.into(),
            approver: key.id.clone(),
            text: text.into(),
            sig,
        }
    }
}

/// Only this exact word (trimmed) approves, as in Lute.
pub fn is_approval(text: &str) -> bool {
    text.trim() == "approve"
}

/// The loop halted at its gate at `ts` (Unix milliseconds, the engine's
/// clock).
pub fn gated(key: &AnswerKey, loop_id: &str, commit: &str, ts: i64) -> GateEntry {
    let id = random_id(8);
    let hmac = key.sign(&gated_message(loop_id, commit, &id, ts));
    GateEntry::Gated {
        v: GATE_VERSION,
        loop_id: loop_id.into(),
        id,
        ts,
        commit: commit.into(),
        hmac,
    }
}

/// A run took the loop off its gate at `ts` (Unix milliseconds, the
/// engine's clock).
pub fn resumed(key: &AnswerKey, loop_id: &str, gated: &str, ts: i64) -> GateEntry {
    let id = random_id(8);
    let hmac = key.sign(&resumed_message(loop_id, gated, &id, ts));
    GateEntry::Resumed {
        v: GATE_VERSION,
        loop_id: loop_id.into(),
        id,
        ts,
        gated: gated.into(),
        hmac,
    }
}

/// Parses ledger text; lines that are not gate entries are skipped.
pub fn parse(text: &str) -> Vec<GateEntry> {
    super::jsonl::parse(text)
}

pub fn read(path: &Path) -> Vec<GateEntry> {
    super::jsonl::read(path)
}

pub fn append(path: &Path, entry: &GateEntry) -> std::io::Result<()> {
    super::jsonl::append(path, entry)
}

/// What the people said about one loop's candidate commit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Distinct trusted approvers since the last rejection, in order.
    pub approvers: Vec<String>,
    /// The last trusted rejection, if it came after every approval:
    /// (approver, text).
    pub rejection: Option<(String, String)>,
    /// Ids whose signatures did not verify under any trusted key (an
    /// approver this host does not know yet, or a forgery).
    pub untrusted: Vec<String>,
}

impl Tally {
    pub fn approved(&self, needed: u32) -> bool {
        self.approvers.len() as u32 >= needed.max(1)
    }
}

/// One approval or rejection whose signature verified under a trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub approved: bool,
    pub approver: String,
    /// Unix milliseconds.
    pub ts: i64,
    pub commit: String,
    /// A rejection's text (empty for an approval).
    pub text: String,
}

/// Every verified decision on `loop_id`, in ledger order (forgeries and
/// unknown approvers left out).
pub fn decisions(entries: &[GateEntry], trusted: &Trusted, loop_id: &str) -> Vec<Decision> {
    let mut out = Vec::new();
    for entry in entries {
        let (approved, l, id, ts, commit, approver, text, sig) = match entry {
            GateEntry::Approval {
                loop_id: l,
                id,
                ts,
                commit,
                approver,
                sig,
                ..
            } => (true, l, id, *ts, commit, approver, "", sig),
            GateEntry::Rejection {
                loop_id: l,
                id,
                ts,
                commit,
                approver,
                text,
                sig,
                ..
            } => (false, l, id, *ts, commit, approver, text.as_str(), sig),
            _ => continue,
        };
        let kind = if approved { "approval" } else { "rejection" };
        if l == loop_id
            && trusted.verify(
                approver,
                &decision_message(kind, l, commit, id, ts, text),
                sig,
            )
        {
            out.push(Decision {
                approved,
                approver: approver.clone(),
                ts,
                commit: commit.clone(),
                text: text.to_string(),
            });
        }
    }
    out
}

/// Counts approvals of `commit` for `loop_id`, in ledger order: a trusted
/// rejection clears the approvals before it; a repeated approver counts once.
pub fn tally(entries: &[GateEntry], trusted: &Trusted, loop_id: &str, commit: &str) -> Tally {
    let mut out = Tally::default();
    for entry in entries {
        match entry {
            GateEntry::Approval {
                loop_id: l,
                id,
                ts,
                commit: c,
                approver,
                sig,
                ..
            } if l == loop_id && c == commit => {
                let message = decision_message("approval", l, c, id, *ts, "");
                if trusted.verify(approver, &message, sig) {
                    if !out.approvers.contains(approver) {
                        out.approvers.push(approver.clone());
                    }
                    out.rejection = None;
                } else if !out.untrusted.contains(approver) {
                    out.untrusted.push(approver.clone());
                }
            }
            GateEntry::Rejection {
                loop_id: l,
                id,
                ts,
                commit: c,
                approver,
                text,
                sig,
                ..
            } if l == loop_id && c == commit => {
                let message = decision_message("rejection", l, c, id, *ts, text);
                if trusted.verify(approver, &message, sig) {
                    out.approvers.clear();
                    out.rejection = Some((approver.clone(), text.clone()));
                }
            }
            _ => {}
        }
    }
    out
}

/// The host's latest `gated` line for the loop that no `resumed` line
/// answers yet: (its id, unix seconds).
pub fn open_gate(entries: &[GateEntry], key: &AnswerKey, loop_id: &str) -> Option<(String, f64)> {
    let spans = spans(entries, key, loop_id);
    spans
        .into_iter()
        .rev()
        .find(|(_, _, end)| end.is_none())
        .map(|(id, start, _)| (id, start))
}

/// Seconds the loop spent halted at its gate within `[since, now]`: the
/// time budget does not run while a person is being waited for.
pub fn paused_secs(
    entries: &[GateEntry],
    key: &AnswerKey,
    loop_id: &str,
    since: f64,
    now: f64,
) -> f64 {
    spans(entries, key, loop_id)
        .into_iter()
        .filter_map(|(_, start, end)| {
            let end = end?;
            let (a, b) = (start.max(since), end.min(now));
            (b > a).then_some(b - a)
        })
        .sum()
}

/// Verified (gated id, start, resumed at) spans of one loop, in order.
fn spans(entries: &[GateEntry], key: &AnswerKey, loop_id: &str) -> Vec<(String, f64, Option<f64>)> {
    let mut out: Vec<(String, f64, Option<f64>)> = Vec::new();
    for entry in entries {
        match entry {
            GateEntry::Gated {
                loop_id: l,
                id,
                ts,
                commit,
                hmac,
                ..
            } if l == loop_id
                && key.verify(&gated_message(l, commit, id, *ts), hmac)
                && !out.iter().any(|(g, _, _)| g == id) =>
            {
                out.push((id.clone(), *ts as f64 / 1000.0, None));
            }
            GateEntry::Resumed {
                loop_id: l,
                id,
                ts,
                gated,
                hmac,
                ..
            } if l == loop_id && key.verify(&resumed_message(l, gated, id, *ts), hmac) => {
                if let Some(span) = out
                    .iter_mut()
                    .find(|(g, _, end)| g == gated && end.is_none())
                {
                    let at = *ts as f64 / 1000.0;
                    if at >= span.1 {
                        span.2 = Some(at);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> (tempfile::TempDir, ApproverKey, AnswerKey) {
        let dir = tempfile::tempdir().unwrap();
        let approver = ApproverKey::load_or_create(dir.path()).unwrap();
        let answer = AnswerKey::load_or_create(dir.path()).unwrap();
        (dir, approver, answer)
    }

    fn lines(entries: &[GateEntry]) -> String {
        entries
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect()
    }

    #[test]
    fn decisions_keep_only_verified_lines_of_the_loop_with_who_and_when() {
        let (_d, alice, _) = keys();
        let (_e, mallory, _) = keys();
        let empty = tempfile::tempdir().unwrap();
        let trusted = Trusted::load(Some(&alice), empty.path());
        let approve = decision(&alice, "ship", "c1", "approve");
        let reject = decision(&alice, "ship", "c1", "not yet");
        let other_loop = decision(&alice, "docs", "c1", "approve");
        let untrusted = decision(&mallory, "ship", "c1", "approve");
        let mut forged = decision(&alice, "ship", "c1", "approve");
        if let GateEntry::Approval { commit, .. } = &mut forged {
            *commit = "c2".into();
        }
        let text = lines(&[approve.clone(), reject, other_loop, untrusted, forged]);
        let got = decisions(&parse(&text), &trusted, "ship");
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].approved && got[0].approver == alice.id && got[0].commit == "c1");
        if let GateEntry::Approval { ts, .. } = approve {
            assert_eq!(got[0].ts, ts);
        }
        assert!(!got[1].approved);
        assert_eq!(got[1].text, "not yet");
    }

    #[test]
    fn approvals_count_per_commit_and_per_person() {
        let (_d, alice, _) = keys();
        let (_e, bob, _) = keys();
        let empty = tempfile::tempdir().unwrap();
        let mut trusted = Trusted::load(Some(&alice), empty.path());
        let a1 = decision(&alice, "ship", "c1", "approve");
        let a2 = decision(&alice, "ship", "c1", " approve\n");
        let other_commit = decision(&alice, "ship", "c0", "approve");
        let b1 = decision(&bob, "ship", "c1", "approve");
        let text = lines(&[a1, a2, other_commit, b1]);
        let t = tally(&parse(&text), &trusted, "ship", "c1");
        assert_eq!(t.approvers, vec![alice.id.clone()]);
        assert_eq!(t.untrusted, vec![bob.id.clone()]);
        assert!(t.approved(1) && !t.approved(2));
        trusted.add(bob.public());
        let t = tally(&parse(&text), &trusted, "ship", "c1");
        assert!(t.approved(2));
        assert!(!tally(&parse(&text), &trusted, "ship", "c2").approved(1));
        assert!(!tally(&parse(&text), &trusted, "other", "c1").approved(1));
    }

    #[test]
    fn a_rejection_clears_earlier_approvals() {
        let (_d, alice, _) = keys();
        let empty = tempfile::tempdir().unwrap();
        let trusted = Trusted::load(Some(&alice), empty.path());
        let text = lines(&[
            decision(&alice, "ship", "c1", "approve"),
            decision(&alice, "ship", "c1", "not yet, the changelog is wrong"),
        ]);
        let t = tally(&parse(&text), &trusted, "ship", "c1");
        assert!(!t.approved(1));
        assert_eq!(
            t.rejection.as_ref().map(|r| r.1.as_str()),
            Some("not yet, the changelog is wrong")
        );
    }

    #[test]
    fn forged_and_edited_lines_count_for_nothing() {
        let (_d, alice, _) = keys();
        let empty = tempfile::tempdir().unwrap();
        let trusted = Trusted::load(Some(&alice), empty.path());
        let good = serde_json::to_string(&decision(&alice, "ship", "c1", "approve")).unwrap();
        let moved = good.replace("\"c1\"", "\"c2\"");
        let forged = format!(
            r#"{{"type":"approval","v":1,"loop":"ship","id":"x","ts":1,"commit":"c2","approver":"{}","sig":"{}"}}"#,
            alice.id,
            "ab".repeat(64)
        );
        let t = tally(
            &parse(&format!("{moved}\n{forged}\n")),
            &trusted,
            "ship",
            "c2",
        );
        assert!(!t.approved(1));
    }

    #[test]
    fn paused_time_is_between_gated_and_resumed() {
        let (_d, _, key) = keys();
        let g = gated(&key, "ship", "c1", 1_800_000_000_000);
        let GateEntry::Gated { id, ts, .. } = &g else {
            unreachable!()
        };
        let start = *ts as f64 / 1000.0;
        assert_eq!(
            open_gate(std::slice::from_ref(&g), &key, "ship").map(|o| o.0),
            Some(id.clone())
        );
        let r = resumed(&key, "ship", id, 1_800_000_002_000);
        let entries = vec![g.clone(), r];
        assert!(open_gate(&entries, &key, "ship").is_none());
        let paused = paused_secs(&entries, &key, "ship", 0.0, start + 3600.0);
        assert_eq!(paused, 2.0);
        // A forged resumed line with a late timestamp is not counted.
        let forged = GateEntry::Resumed {
            v: 1,
            loop_id: "ship".into(),
            id: "f".into(),
            ts: (start as i64 + 10_000) * 1000,
            gated: id.clone(),
            hmac: "00".into(),
        };
        let entries = vec![g, forged];
        assert_eq!(paused_secs(&entries, &key, "ship", 0.0, start + 1e6), 0.0);
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in ".{0,400}") {
            let _ = parse(&text);
        }

        #[test]
        fn entries_round_trip(loop_id in "[a-z][a-z0-9-]{0,10}", commit in "[0-9a-f]{40}", ts in 0i64..i64::MAX / 2, text in ".{0,40}") {
            let entry = GateEntry::Rejection { v: 1, loop_id, id: "n".into(), ts, commit, approver: "a".into(), text, sig: "s".into() };
            let line = serde_json::to_string(&entry).unwrap();
            prop_assert_eq!(parse(&line), vec![entry]);
        }
    }
}
