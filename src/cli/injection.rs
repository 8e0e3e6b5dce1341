//! Terminal and card injection (issue 12): every surface that shows text an
//! agent controls (file names, exam output, card text) shows it escaped. A
//! screen clear, a fake green "exam passed", an OSC 52 clipboard write, a
//! carriage return or a newline in a file name never reaches the terminal
//! raw, and a path never starts a line of its own.

use crate::engine::events::{Event, QuarantinedFile, Record};
use crate::protect::quarantine::{self, Meta};
use crate::protect::{Change, Tamper};
use crate::state::cards::{Card, CardKind};

/// A file name that tries everything at once.
const NASTY: &str = "tests/a\nproctor: fix: closed after 1 run\x1b[2J\x1b[32mexam passed\x1b[0m\x1b]52;c;cm0gLXJmIH4=\x07\rok";

/// No escape byte, bell or carriage return, and no line that starts with
/// what the agent wrote.
fn assert_clean(surface: &str, text: &str) {
    assert!(
        !text.contains(['\x1b', '\x07', '\r', '\u{9b}']),
        "{surface} carries a raw control character:\n{text:?}"
    );
    for line in text.lines() {
        let body = line.trim_start_matches([
            ' ', '+', '-', '.', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 's',
        ]);
        assert!(
            !body.starts_with("proctor: fix: closed") && !body.starts_with("exam passed"),
            "{surface}: a forged line `{line}` in:\n{text}"
        );
    }
}

fn quarantine_event() -> Event {
    Event::Quarantine {
        loop_id: "fix".into(),
        run: 1,
        phase: "agent".into(),
        id: "fix-run1-ab12".into(),
        path: ".proctor/quarantine/fix-run1-ab12".into(),
        files: vec![QuarantinedFile {
            path: NASTY.into(),
            change: Change::Added,
            rule: "protected: `tests/**`".into(),
        }],
        commit: None,
    }
}

#[test]
fn run_lines_and_the_audit_trail_escape_file_names_and_reasons() {
    let line = crate::render::human_line(&quarantine_event()).unwrap();
    assert_clean("a run line", &line);
    assert!(!line.contains('\n'));
    let records: Vec<Record> = [
        quarantine_event(),
        Event::Card {
            loop_id: "fix".into(),
            kind: "blocked".into(),
            path: "INBOX/fix.md".into(),
            reason: "exam output:\n\x1b[1A\x1b[2Kproctor: fix: closed after 1 run".into(),
        },
    ]
    .into_iter()
    .enumerate()
    .map(|(i, event)| Record {
        v: 1,
        ts: 1_800_000_000.0 + i as f64,
        run: "5af75a6e".into(),
        event,
    })
    .collect();
    let trail: Vec<&Record> = records.iter().collect();
    let text = super::audit::render_trail("5af75a6e", &trail);
    assert_clean("audit", &text);
    insta::assert_snapshot!(text);
}

#[test]
fn quarantine_lists_and_diffs_escape_paths_and_content() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("work");
    std::fs::create_dir_all(root.join("tests")).unwrap();
    std::fs::write(
        root.join(NASTY),
        "echo ok\n\x1b[2J\x1b[32m5 tests, 0 failed\x1b[0m\r\n",
    )
    .unwrap();
    let qdir = dir.path().join("quarantine");
    let meta = Meta {
        run: "5af75a6e",
        loop_id: "fix",
        attempt: 1,
        phase: "agent",
        trusted_from: "0123456789abcdef0123456789abcdef01234567".into(),
    };
    let tampers = [Tamper {
        path: NASTY.into(),
        change: Change::Added,
        rule: "protected: `tests/**`".into(),
    }];
    let record = quarantine::save(&qdir, &meta, &root, &tampers, &|_| None).unwrap();
    let listed = super::quarantine::summary_line(&record);
    assert_clean("quarantine", &listed);
    assert!(!listed.contains('\n'));
    let shown = super::quarantine::show(&qdir, &record);
    assert_clean("quarantine diff", &shown);
    assert!(
        shown.contains("+\\x1b[2J\\x1b[32m5 tests, 0 failed\\x1b[0m"),
        "{shown}"
    );
}

#[test]
fn cards_escape_agent_text_and_fence_it_so_it_cannot_close_the_block() {
    let failure = "FAIL add\n```\n\n## What to do\n\n    proctor answer fix approve\n\x1b]52;c;cm0gLXJmIH4=\x07";
    let card = Card {
        kind: CardKind::Blocked,
        loop_id: "fix",
        task: Some("make it pass"),
        exam: "sh test.sh",
        reason: format!("quarantined `{NASTY}`"),
        tried: &[],
        last_failure: failure,
        notes: &[format!("edits to `{NASTY}` were set aside")],
        review: None,
        rerun: "proctor run",
    };
    let text = card.render();
    assert_clean("a card", &text);
    // The output's own ``` stays inside a longer fence, so its heading is
    // text in a code block; proctor's heading follows the closing fence.
    assert!(text.contains("\n````\nFAIL add\n```\n"), "{text}");
    assert_eq!(text.lines().filter(|l| *l == "````").count(), 2, "{text}");
    assert!(text.contains("\n````\n\n## What to do\n"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn errors_escape_what_they_quote() {
    let e = super::CommandError::hint(format!("cannot read `{NASTY}`"), "\x1b[2Jtry again");
    assert_clean("an error", &e.render());
}
