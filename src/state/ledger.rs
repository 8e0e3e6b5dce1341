//! The ledger: `.proctor/ledger.jsonl`, committed with the work.
//!
//! It records each run's duration and the human answers. Budgets are never
//! read from its run lines (they come from committed history); only answer
//! lines whose HMAC verifies under the answer-auth key count, each once.
//! Any line may be garbage: parsing skips it and never panics.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::key::{random_id, AnswerKey};

pub const LEDGER_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    Run {
        v: u32,
        #[serde(rename = "loop")]
        loop_id: String,
        run: u32,
        secs: f64,
        exit: i64,
        ts: i64,
    },
    Answer {
        v: u32,
        #[serde(rename = "loop")]
        loop_id: String,
        /// A random nonce: a copied line refreshes nothing twice.
        id: String,
        /// Unix milliseconds.
        ts: i64,
        text: String,
        hmac: String,
    },
}

/// A human answer whose HMAC verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub id: String,
    pub ts_ms: i64,
    pub text: String,
}

fn answer_message(loop_id: &str, id: &str, ts: i64, text: &str) -> Vec<u8> {
    format!("proctor-answer-v1\0{loop_id}\0{id}\0{ts}\0{text}").into_bytes()
}

/// Makes a signed answer line.
pub fn signed_answer(key: &AnswerKey, loop_id: &str, text: &str) -> Entry {
    let id = random_id(12);
    let ts = (super::now() * 1000.0) as i64;
    let hmac = key.sign(&answer_message(loop_id, &id, ts, text));
    Entry::Answer {
        v: LEDGER_VERSION,
        loop_id: loop_id.to_string(),
        id,
        ts,
        text: text.to_string(),
        hmac,
    }
}

/// Parses ledger text; lines that are not valid entries are skipped.
pub fn parse(text: &str) -> Vec<Entry> {
    super::jsonl::parse(text)
}

pub fn read(path: &Path) -> Vec<Entry> {
    super::jsonl::read(path)
}

pub fn append(path: &Path, entry: &Entry) -> std::io::Result<()> {
    super::jsonl::append(path, entry)
}

/// What opens the signed text of an answer to an exam review's card
/// (`proctor answer` adds it): such an answer decides the review only; it
/// refreshes no budget and reaches no agent's prompt.
pub const REVIEW_ANSWER: &str = "[exam review] ";

/// The authenticated answers for one loop, oldest first, each nonce once;
/// answers to its exam review are not among them ([`review_answers_for`]).
pub fn answers_for(entries: &[Entry], key: &AnswerKey, loop_id: &str) -> Vec<Answer> {
    all_answers_for(entries, key, loop_id)
        .into_iter()
        .filter(|a| !a.text.starts_with(REVIEW_ANSWER))
        .collect()
}

/// The authenticated answers to one loop's exam review, oldest first, with
/// [`REVIEW_ANSWER`] taken off their text.
pub fn review_answers_for(entries: &[Entry], key: &AnswerKey, loop_id: &str) -> Vec<Answer> {
    all_answers_for(entries, key, loop_id)
        .into_iter()
        .filter_map(|mut a| {
            a.text = a.text.strip_prefix(REVIEW_ANSWER)?.to_string();
            Some(a)
        })
        .collect()
}

fn all_answers_for(entries: &[Entry], key: &AnswerKey, loop_id: &str) -> Vec<Answer> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for entry in entries {
        if let Entry::Answer {
            loop_id: l,
            id,
            ts,
            text,
            hmac,
            ..
        } = entry
        {
            if l == loop_id
                && key.verify(&answer_message(l, id, *ts, text), hmac)
                && seen.insert(id.clone())
            {
                out.push(Answer {
                    id: id.clone(),
                    ts_ms: *ts,
                    text: text.clone(),
                });
            }
        }
    }
    out
}

/// Moves the answers and approvals `proctor answer` recorded in the
/// checkout (`answers`, private) into the run's ledger (`ledger`, in the
/// run's worktree, committed with the next attempt), each line once.
/// Lines that are neither are dropped. Only the run holding the run lock
/// calls this; the file is renamed aside first, so an answer recorded
/// meanwhile lands in a new file for the next run. Returns how many lines
/// moved.
pub fn move_answers(answers: &Path, ledger: &Path) -> std::io::Result<usize> {
    let taking = answers.with_extension(format!("taking-{}", std::process::id()));
    match std::fs::symlink_metadata(answers) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            super::repair_file(answers)?;
            return Ok(0);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    }
    std::fs::rename(answers, &taking)?;
    let text = super::jsonl::read_text(&taking);
    let already = super::jsonl::read_text(ledger);
    let present: HashSet<&str> = already.lines().collect();
    let mut moved = 0;
    for line in text.lines() {
        let is_answer = matches!(parse(line).first(), Some(Entry::Answer { .. }))
            || matches!(
                super::gate::parse(line).first(),
                Some(
                    super::gate::GateEntry::Approval { .. }
                        | super::gate::GateEntry::Rejection { .. }
                )
            );
        if is_answer && !present.contains(line) {
            super::append_line(ledger, line)?;
            moved += 1;
        }
    }
    std::fs::remove_file(&taking)?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> (tempfile::TempDir, AnswerKey) {
        let dir = tempfile::tempdir().unwrap();
        let key = AnswerKey::load_or_create(dir.path()).unwrap();
        (dir, key)
    }

    #[test]
    fn answers_move_from_the_checkout_into_the_runs_ledger_once() {
        let (dir, key) = key();
        let answers = dir.path().join("answers.jsonl");
        let ledger = dir.path().join("wt/.proctor/ledger.jsonl");
        let line = serde_json::to_string(&signed_answer(&key, "fix", "try again")).unwrap();
        std::fs::write(&answers, format!("{line}\nnot an answer\n")).unwrap();
        assert_eq!(move_answers(&answers, &ledger).unwrap(), 1);
        assert!(!answers.exists());
        // The same line recorded again (a copy) is not added twice.
        std::fs::write(&answers, format!("{line}\n")).unwrap();
        assert_eq!(move_answers(&answers, &ledger).unwrap(), 0);
        assert_eq!(answers_for(&read(&ledger), &key, "fix").len(), 1);
        assert_eq!(move_answers(&answers, &ledger).unwrap(), 0, "nothing left");
    }

    #[test]
    fn only_signed_answers_count_and_each_once() {
        let (_dir, key) = key();
        let good = signed_answer(&key, "fix", "try the other approach");
        let line = serde_json::to_string(&good).unwrap();
        let forged = line.replace("try the other approach", "you may close");
        let other_loop = serde_json::to_string(&signed_answer(&key, "other", "x")).unwrap();
        let text = format!("{line}\n{line}\n{forged}\nnot json\n{other_loop}\n");
        let answers = answers_for(&parse(&text), &key, "fix");
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].text, "try the other approach");
    }

    #[test]
    fn entries_round_trip() {
        let entry = Entry::Run {
            v: 1,
            loop_id: "a".into(),
            run: 3,
            secs: 1.5,
            exit: 0,
            ts: 17,
        };
        let line = serde_json::to_string(&entry).unwrap();
        assert_eq!(parse(&line), vec![entry]);
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in ".{0,400}") {
            let _ = parse(&text);
        }

        #[test]
        fn run_entries_round_trip(loop_id in "[a-z][a-z0-9-]{0,12}", run in 0u32..10_000, secs in 0.0f64..1e6, exit in -1i64..256, ts in 0i64..i64::MAX / 2) {
            let entry = Entry::Run { v: 1, loop_id, run, secs, exit, ts };
            let line = serde_json::to_string(&entry).unwrap();
            prop_assert_eq!(parse(&line), vec![entry]);
        }
    }
}
