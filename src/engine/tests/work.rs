//! What reaches the agent (failing output, journal, notes) and what the
//! boundary does with its work (quarantine and restore), and nested loops.

use super::{make_done, prompts, write, Repo, Run};
use crate::cage::fake::Scripted;
use crate::cage::{Access, Role};
use crate::engine::Ending;

#[test]
fn the_failing_output_and_the_journal_reach_the_next_prompt() {
    let repo = Repo::new(
        "loop: fix\ntask: Make add add.\nagent: fix-it\ndone_when: sh test.sh\nbudget: 3 runs\n",
        &[],
    );
    let cage = repo.cage([
        Scripted::exam(1).output("FAIL add: expected 4, got 0"),
        Scripted::agent_edits(|work| {
            let journal = work.join(".proctor/journal/fix.md");
            let mut text = std::fs::read_to_string(&journal).unwrap_or_default();
            text.push_str("- run 1: tried the plus sign in calc.sh\n");
            std::fs::write(&journal, text).expect("journal");
        }),
        Scripted::exam(1).output("FAIL add: expected 4, got -2"),
        Scripted::agent_edits(make_done),
        Scripted::exam(0),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    let prompts = prompts(&cage);
    assert_eq!(prompts.len(), 2);
    assert!(prompts[0].contains("run 1 of 3"), "{}", prompts[0]);
    assert!(prompts[0].contains("Make add add."), "{}", prompts[0]);
    assert!(
        prompts[0].contains("FAIL add: expected 4, got 0"),
        "{}",
        prompts[0]
    );
    assert!(prompts[1].contains("run 2 of 3"), "{}", prompts[1]);
    assert!(
        prompts[1].contains("FAIL add: expected 4, got -2"),
        "{}",
        prompts[1]
    );
    assert!(!prompts[1].contains("got 0"), "{}", prompts[1]);
    assert!(
        prompts[1].contains("- run 1: tried the plus sign in calc.sh"),
        "{}",
        prompts[1]
    );
    // The journal is committed with the attempt.
    assert!(repo
        .read(".proctor/journal/fix.md")
        .is_some_and(|j| j.contains("tried the plus sign")));
}

#[test]
fn runs_that_change_nothing_leave_a_note_for_the_agent_and_the_card() {
    let repo = Repo::new(
        "loop: idle\nagent: fix-it\ndone_when: test -f done\nbudget: 3 runs\n",
        &[],
    );
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(1),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("idle"));
    let note = "the last 2 agent runs changed nothing";
    let prompts = prompts(&cage);
    assert!(!prompts[1].contains("changed nothing"), "{}", prompts[1]);
    assert!(prompts[2].contains(note), "{}", prompts[2]);
    let card = repo.read("INBOX/idle.md").expect("a card");
    assert!(
        card.contains("the last 3 agent runs changed nothing"),
        "{card}"
    );
    let edits: Vec<bool> = run
        .events
        .iter()
        .filter_map(|e| match e {
            crate::engine::events::Event::AgentEnd { edits, .. } => Some(*edits),
            _ => None,
        })
        .collect();
    assert_eq!(edits, [false, false, false]);
    assert!(run
        .report
        .boundary
        .iter()
        .any(|l| l == "loop `idle`: run 1: the agent changed nothing"));
}

#[test]
fn edits_to_protected_files_are_quarantined_restored_and_explained() {
    let exam = "test \"$(cat add.txt)\" = 4\n";
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: sh test.sh\nbudget: 2 runs\nprotected: [test.sh]\n",
        &[("test.sh", exam), ("add.txt", "5\n")],
    );
    // The exam passes only if the committed tree still holds the real exam
    // and the right answer.
    let honest = move |tree: &std::path::Path| {
        let same = std::fs::read_to_string(tree.join("test.sh"))
            .ok()
            .as_deref()
            == Some(exam);
        let right = std::fs::read_to_string(tree.join("add.txt"))
            .ok()
            .as_deref()
            == Some("4\n");
        i64::from(!(same && right))
    };
    let cage = repo.cage([
        Scripted::exam_of(honest),
        Scripted::agent_edits(|work| write(work, "test.sh", "exit 0\n")),
        Scripted::exam_of(honest),
        Scripted::agent_edits(|work| write(work, "add.txt", "4\n")),
        Scripted::exam_of(honest),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(
        run.trace(),
        [
            "fix: precheck exit 1",
            "fix: agent 1",
            "fix: quarantine test.sh (agent)",
            "fix: verify exit 1",
            "fix: agent 2",
            "fix: verify exit 0",
            "fix: close (2 runs)"
        ]
    );
    assert_eq!(repo.read("test.sh").as_deref(), Some(exam));
    let prompt = &prompts(&cage)[1];
    assert!(prompt.contains("set aside edits to `test.sh`"), "{prompt}");
    let quarantine = repo.paths.state.join("quarantine");
    assert!(
        std::fs::read_dir(&quarantine).is_ok_and(|mut d| d.next().is_some()),
        "a quarantine record under {}",
        quarantine.display()
    );
}

/// Regression (issue 12): files of any kind under `.proctor/journal/` (a
/// fake `node_modules/.bin/jest`, a helper script, a 5 MB blob) were
/// committed despite `writes:`. Only the loop's own journal, capped, is the
/// agent's; the rest is quarantined, and the exam never sees it.
#[test]
fn the_journal_directory_takes_only_the_loops_own_capped_journal() {
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: sh test.sh\nbudget: 2 runs\nwrites: [add.txt]\n",
        &[
            ("test.sh", "test \"$(cat add.txt)\" = 4\n"),
            ("add.txt", "5\n"),
        ],
    );
    // The exam passes on the right answer, unless a side-door file reached
    // the committed tree.
    let exam = |tree: &std::path::Path| {
        let right = std::fs::read_to_string(tree.join("add.txt"))
            .ok()
            .as_deref()
            == Some("4\n");
        let smuggled = [
            ".proctor/journal/node_modules/.bin/jest",
            ".proctor/journal/run.sh",
            ".proctor/journal/other.md",
        ]
        .iter()
        .any(|p| tree.join(p).exists());
        let big = std::fs::metadata(tree.join(".proctor/journal/fix.md"))
            .is_ok_and(|m| m.len() > crate::protect::JOURNAL_CAP);
        i64::from(!right || smuggled || big)
    };
    let cage = repo.cage([
        Scripted::exam_of(exam),
        Scripted::agent_edits(|work| {
            write(work, ".proctor/journal/node_modules/.bin/jest", "exit 0\n");
            write(work, ".proctor/journal/run.sh", "echo pass\n");
            write(work, ".proctor/journal/other.md", "forged notes\n");
            write(work, ".proctor/journal/fix.md", &"x".repeat(5 << 20));
        }),
        Scripted::exam_of(exam),
        Scripted::agent_edits(|work| {
            write(work, "add.txt", "4\n");
            write(
                work,
                ".proctor/journal/fix.md",
                "add.txt held 5; it holds 4 now\n",
            );
        }),
        Scripted::exam_of(exam),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(
        run.trace(),
        [
            "fix: precheck exit 1",
            "fix: agent 1",
            "fix: quarantine .proctor/journal/fix.md, .proctor/journal/node_modules/.bin/jest, .proctor/journal/other.md, .proctor/journal/run.sh (agent)",
            "fix: verify exit 1",
            "fix: agent 2",
            "fix: verify exit 0",
            "fix: close (2 runs)"
        ]
    );
    let rules: Vec<String> = run
        .events
        .iter()
        .filter_map(|e| match e {
            super::Event::Quarantine { files, .. } => Some(files.iter().map(|f| f.rule.clone())),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        rules[0].starts_with("journal: at most 256 KiB"),
        "{rules:?}"
    );
    assert_eq!(
        rules[1],
        "journal: only `.proctor/journal/fix.md` is the agent's to write"
    );
    for gone in [".proctor/journal/run.sh", ".proctor/journal/other.md"] {
        assert_eq!(repo.read(gone), None, "{gone}");
    }
    // The honest note of run 2 stays, in the committed journal.
    assert!(repo
        .read(".proctor/journal/fix.md")
        .is_some_and(|j| j.contains("it holds 4 now")));
    let prompt = &prompts(&cage)[1];
    assert!(
        prompt.contains("`.proctor/journal/run.sh` (added"),
        "{prompt}"
    );
}

#[test]
fn an_exam_that_rewrites_its_own_materials_does_not_pass() {
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: sh test.sh\nbudget: 1 run\nprotected: [test.sh]\n",
        &[("test.sh", "exit 1\n")],
    );
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent(0),
        // Code under test rewrites the exam while it runs, and exits 0.
        Scripted::exam_of(|tree| {
            write(tree, "test.sh", "exit 0\n");
            0
        }),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("fix"));
    assert_eq!(
        run.trace(),
        [
            "fix: precheck exit 1",
            "fix: agent 1",
            "fix: quarantine test.sh (verify)",
            "fix: verify exit 0",
            "fix: blocked card"
        ]
    );
    assert!(run.report.verified.is_empty(), "{:?}", run.report.verified);
}

#[test]
fn an_exam_that_rewrites_its_materials_and_puts_them_back_does_not_pass() {
    // The seal keeps a real exam from writing its materials; this fake one
    // acts as proctor's own user, so the after-exam check is what is left.
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: sh test.sh\nbudget: 1 run\nprotected: [test.sh]\n",
        &[("test.sh", "exit 1\n")],
    );
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam_of(|tree| {
            let path = tree.join("test.sh");
            let before = std::fs::metadata(&path).expect("test.sh");
            write(tree, "test.sh", "exit 0\n");
            write(tree, "test.sh", "exit 1\n");
            let file = std::fs::File::options()
                .write(true)
                .open(&path)
                .expect("open");
            file.set_modified(before.modified().expect("mtime"))
                .expect("mtime");
            0
        }),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("fix"));
    assert_eq!(
        run.trace(),
        [
            "fix: precheck exit 1",
            "fix: agent 1",
            "fix: verify exit 0",
            "fix: blocked card"
        ]
    );
    let reason = run.events.iter().find_map(|e| match e {
        crate::engine::events::Event::CheckResult {
            reason: Some(r), ..
        } => Some(r.clone()),
        _ => None,
    });
    assert!(
        reason.as_deref().is_some_and(
            |r| r.contains("rewritten while it ran and put back") && r.contains("test.sh")
        ),
        "{reason:?}"
    );
}

#[test]
fn the_exams_materials_are_sealed_not_mounted_when_proctor_is_root() {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: sh test.sh\nbudget: 1 run\nprotected: [\"tests/a*\"]\n",
        &[("tests/a.sh", "exit 0\n"), ("tests/notes.txt", "mine\n")],
    );
    let cage = repo.cage([Scripted::exam_of(|tree| {
        let a = std::fs::metadata(tree.join("tests/a.sh")).expect("a.sh");
        let notes = std::fs::metadata(tree.join("tests/notes.txt")).expect("notes");
        let dir = std::fs::metadata(tree.join("tests")).expect("tests");
        let sealed = a.uid() != notes.uid()
            && a.mode() & 0o222 == 0
            && notes.mode() & 0o200 != 0
            && dir.mode() & 0o1000 != 0;
        i64::from(!sealed)
    })]);
    let run = repo.run(&cage);
    assert_eq!(
        run.ending,
        crate::engine::Ending::Closed,
        "{:?}",
        run.trace()
    );
    let calls = cage.calls();
    let exam = calls
        .iter()
        .find(|c| c.labels.role == Role::Verifier)
        .expect("an exam");
    assert_eq!(
        exam.mounts
            .iter()
            .filter(|m| m.access == Access::ReadOnly)
            .count(),
        0
    );
}

const NESTED: &str = "loop: root\nagent: fix-it\ndone_when: test -f a && test -f b\nbudget: 2 runs\nloops:\n  - loop: a\n    done_when: test -f a\n    budget: 2 runs\n  - loop: b\n    done_when: test -f b\n    budget: 2 runs\n";

#[test]
fn children_close_before_their_parent_is_examined() {
    let repo = Repo::new(NESTED, &[]);
    let cage = repo.cage([
        Scripted::exam_needs("a"),
        Scripted::agent_edits(|work| write(work, "a", "")),
        Scripted::exam_needs("a"),
        Scripted::exam_needs("b"),
        Scripted::agent_edits(|work| write(work, "b", "")),
        Scripted::exam_needs("b"),
        Scripted::exam_of(|tree| i64::from(!(tree.join("a").exists() && tree.join("b").exists()))),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(
        run.trace(),
        [
            "a: precheck exit 1",
            "a: agent 1",
            "a: verify exit 0",
            "a: close (1 runs)",
            "b: precheck exit 1",
            "b: agent 1",
            "b: verify exit 0",
            "b: close (1 runs)",
            "root: precheck exit 0",
            "root: close (0 runs)"
        ]
    );
    let loops: Vec<String> = cage
        .calls()
        .iter()
        .map(|i| format!("{} {}", i.labels.loop_id, i.labels.role.as_str()))
        .collect();
    assert_eq!(loops[0], "a verifier");
    assert_eq!(cage.calls_of(Role::Agent)[1].labels.loop_id, "b");
}

#[test]
fn a_blocked_child_halts_the_tree_before_its_parent() {
    let repo = Repo::new(NESTED, &[]);
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(1),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("a"));
    assert!(cage.calls().iter().all(|i| i.labels.loop_id == "a"));
    assert_eq!(cage.left(), 0);
}

#[test]
fn a_run_whose_commit_failed_leaves_no_ledger_line() {
    // Issue 13: a full disk failed the commit after the ledger recorded
    // the run, and the next commit carried a line for a run that never was.
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: test -f done\nbudget: 2 runs\n",
        &[],
    );
    let cage = repo.cage([
        Scripted::exam_needs("done"),
        Scripted::agent_edits(|work| {
            make_done(work);
            // git cannot write its index: the commit fails, as on a full disk.
            std::fs::write(work.join(".git/index.lock"), "").expect("plant index.lock");
        }),
    ]);
    assert!(repo.try_run(&cage).is_err(), "the commit cannot succeed");
    let runs = crate::state::ledger::read(&repo.paths.ledger)
        .into_iter()
        .filter(|e| matches!(e, crate::state::ledger::Entry::Run { .. }))
        .count();
    assert_eq!(runs, 0, "no ledger line for a run that was never committed");
}

/// Regression (issue 12, item 8): a symlink planted at a log's path made
/// proctor write the agent's transcript into the file it pointed to. It is
/// removed and reported, and the log is written in its place.
#[test]
fn a_link_planted_at_a_log_path_is_replaced_and_reported() {
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: test -f done\nbudget: 3 runs\n",
        &[],
    );
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim.txt");
    std::fs::write(&target, "keep\n").unwrap();
    let logs = repo.root().join(".proctor/logs");
    std::fs::create_dir_all(&logs).unwrap();
    for name in ["fix.run1.log", "fix.run1.exam.log"] {
        std::os::unix::fs::symlink(&target, logs.join(name)).unwrap();
    }
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent_edits(make_done).output("the agent's transcript\n"),
        Scripted::exam(0),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
    let log = logs.join("fix.run1.log");
    assert!(std::fs::symlink_metadata(&log).unwrap().is_file());
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "the agent's transcript\n"
    );
    let repaired: Vec<_> = run
        .events
        .iter()
        .filter_map(|e| match e {
            crate::engine::events::Event::Repaired { path, was } => {
                Some((path.clone(), was.clone()))
            }
            _ => None,
        })
        .collect();
    let expected = format!("a symlink to `{}`", target.display());
    for name in ["fix.run1.log", "fix.run1.exam.log"] {
        assert!(
            repaired
                .iter()
                .any(|(p, w)| p == &format!(".proctor/logs/{name}") && w == &expected),
            "{repaired:?}"
        );
    }
}

/// `mounts: ["~/.codex"]` was refused (`~` unexpanded), and no mount could
/// be writable though Codex writes to its home: `~` is `$HOME`, `:rw` lets
/// the agent write, and the exam's copy stays read-only.
#[test]
fn a_writable_mount_is_the_agents_alone() {
    use crate::engine::HostMount;
    let home = std::env::var("HOME").unwrap_or_default();
    if !home.is_empty() {
        assert_eq!(
            HostMount::parse("~/.codex:rw"),
            HostMount {
                path: std::path::Path::new(&home).join(".codex"),
                writable: true
            }
        );
    }
    assert!(!HostMount::parse("/opt/tools").writable);
    assert!(!HostMount::parse("/opt/tools:ro").writable);
    let repo = Repo::new(
        "loop: m\nagent: fix-it\ndone_when: test -f done\nbudget: 1 runs\nenv: {agent: [A_KEY], verifier: [TOOL_HOME]}\n",
        &[],
    );
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent_edits(make_done),
        Scripted::exam(0),
    ]);
    let run = repo.run_with(&cage, |s| {
        s.extra_mounts = vec![
            HostMount::parse("/opt/login:rw"),
            HostMount::parse("/opt/tool"),
        ];
        s.host_env = [("A_KEY", "k"), ("TOOL_HOME", "/opt/tool")]
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
    });
    assert_eq!(run.ending, Ending::Closed);
    let mount = |role: Role, path: &str| {
        cage.calls_of(role)[0]
            .mounts
            .iter()
            .find(|m| m.container == path)
            .map(|m| m.access == Access::ReadOnly)
    };
    assert_eq!(mount(Role::Agent, "/opt/login"), Some(false));
    assert_eq!(mount(Role::Agent, "/opt/tool"), Some(true));
    assert_eq!(mount(Role::Verifier, "/opt/login"), Some(true));
    assert_eq!(mount(Role::Verifier, "/opt/tool"), Some(true));
    let env = |role: Role| cage.calls_of(role)[0].env.clone();
    let has = |env: &[(String, String)], name: &str| env.iter().any(|(n, _)| n == name);
    assert!(has(&env(Role::Agent), "A_KEY") && !has(&env(Role::Agent), "TOOL_HOME"));
    assert!(has(&env(Role::Verifier), "TOOL_HOME") && !has(&env(Role::Verifier), "A_KEY"));
}

#[test]
fn only_the_base_commits_exam_writes_a_cache_the_others_get_it_copy_on_write() {
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: test -f done\nbudget: 3 runs\ncaches: [deps]\n",
        &[],
    );
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(1),
        Scripted::agent_edits(make_done),
        Scripted::exam(0),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed, "{:?}", run.trace());
    let cache = |inv: &crate::cage::Invocation| {
        inv.mounts
            .iter()
            .find(|m| m.container == "/cache/deps")
            .map(|m| m.access)
    };
    let exams = cage.calls_of(Role::Verifier);
    assert_eq!(exams.len(), 3);
    // The check on the base commit: the user's code fills the cache.
    assert_eq!(cache(&exams[0]), Some(Access::ReadWrite));
    // The agent's commits: read warm, written to a copy that is thrown away.
    assert_eq!(cache(&exams[1]), Some(Access::CopyOnWrite));
    assert_eq!(cache(&exams[2]), Some(Access::CopyOnWrite));
    // Exams prepared ahead get it as the exam they are for: writable only
    // for an exam of the base commit (the first, prepared when proctor
    // seals), a copy for any other.
    let commit = |inv: &crate::cage::Invocation| {
        inv.env
            .iter()
            .find(|(n, _)| n == "PROCTOR_COMMIT")
            .map(|(_, v)| v.clone())
    };
    let base = commit(&exams[0]);
    let prepared: Vec<_> = cage
        .prepared()
        .into_iter()
        .filter(|i| i.labels.role == Role::Verifier)
        .collect();
    assert!(!prepared.is_empty());
    assert!(prepared.iter().all(|i| match cache(i) {
        Some(Access::ReadWrite) => commit(i) == base,
        other => other == Some(Access::CopyOnWrite),
    }));
    // And, when proctor seals (else the materials' read-only mounts
    // inside the tree keep exams cold), each exam after the first started
    // in one of them.
    let warm: Vec<bool> = cage
        .calls()
        .iter()
        .zip(cage.started_warm())
        .filter(|(i, _)| i.labels.role == Role::Verifier)
        .map(|(_, w)| w)
        .collect();
    if crate::protect::seal::permitted() {
        assert_eq!(warm[1..], [true, true]);
    }
    // Agents never see a cache.
    assert!(cage
        .calls_of(Role::Agent)
        .iter()
        .all(|i| cache(i).is_none()));
}
