//! `proctor run --dry-run`: the tree, the first exam and the first prompt,
//! with nothing started or spent.

use crate::common::{stderr, stdout, TestRepo};

const TREE: &str = "loop: whole\ndone_when: sh test.sh\nloops:\n  - loop: part\n    task: Make the part work.\n    agent: sh fix.sh\n    done_when: test -f part.done\n    budget: 2 runs\n";

#[test]
fn dry_run_shows_the_first_prompt_and_starts_nothing() {
    let repo = TestRepo::new()
        .manifest(TREE)
        .file("test.sh", "exit 1\n")
        .file(
            ".proctor/journal/part.md",
            "# Journal of loop `part`\n\ntried the obvious\n",
        )
        .commit("start");
    // No engine may be needed: point the binary at none.
    let out = repo.proctor_env(
        &["run", "--dry-run"],
        &[("DOCKER_HOST", "unix:///nonexistent/proctor-dry-run.sock")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "  whole: exam `sh test.sh`, no agent (checks its children's work), budget 10 runs\n",
        "    part: exam `test -f part.done`, agent `sh fix.sh`, budget 2 runs\n",
        "first: the exam of loop `part` (`test -f part.done`)",
        "if it fails: loop `part`'s agent `sh fix.sh` wakes for run 1 with this prompt on stdin:",
        "# proctor: loop `part`, run 1 of 2\n",
        "Make the part work.",
        "(the output of the failing first check of the exam goes here)",
        "tried the obvious",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    // Nothing made: no branch, no lock, no events, no cards.
    let git = git2::Repository::open(repo.path()).unwrap();
    assert!(git
        .find_branch("proctor/whole", git2::BranchType::Local)
        .is_err());
    assert!(!repo.exists(".proctor/lock"));
    assert!(!repo.exists(".proctor/events.jsonl"));
    assert!(!repo.exists(".proctor/logs"));
    assert!(!repo.exists("INBOX"));
    assert!(repo.status().is_empty(), "{:?}", repo.status());
}

#[test]
fn dry_run_refuses_a_loop_without_children_or_agent() {
    let repo = TestRepo::new()
        .manifest("loop: lone\ndone_when: 'true'\n")
        .commit("start");
    let out = repo.proctor(&["run", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("loop `lone` has no `agent`"),
        "{}",
        stderr(&out)
    );
    // `--agent` gives it one.
    let out = repo.proctor(&["run", "--dry-run", "--agent", "sh fix.sh"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("agent `sh fix.sh`"),
        "{}",
        stdout(&out)
    );
}

/// `proctor status | head -1` and the like: a verb whose stdout (or
/// stderr) is a closed pipe ends quietly, never with a panic (exit 101).
#[test]
fn a_closed_pipe_never_ends_a_verb_in_a_panic() {
    let repo = TestRepo::new()
        .manifest(TREE)
        .file("test.sh", "exit 1\n")
        .commit("start");
    let verbs: &[&[&str]] = &[
        &["--help"],
        &["--version"],
        &["run", "--help"],
        &["run", "--dry-run"],
        &["init", "--force"],
        &["status"],
        &["watch", "--snapshot"],
        &["watch", "--json"],
        &["inbox"],
        &["runs"],
        &["stats"],
        &["audit"],
        &["quarantine", "list"],
        &["logs", "part"],
        &["image", "ls"],
        &["lint"],
        &["reap"],
        &["estimate"],
        &["estimate", "--json"],
        &["runs", "--json"],
        &["stats", "--json"],
        &["completions", "bash"],
        &["completions", "man"],
        &["key", "export"],
    ];
    for closed in ["stdout", "stderr"] {
        for args in verbs {
            let (reader, writer) = std::io::pipe().unwrap();
            drop(reader);
            let mut cmd = repo.command(args);
            // No engine: the verbs that need one fail, on the closed pipe.
            cmd.env(
                "DOCKER_HOST",
                "unix:///nonexistent/proctor-closed-pipe.sock",
            );
            if closed == "stdout" {
                cmd.stdout(writer);
            } else {
                cmd.stderr(writer);
            }
            let out = cmd.output().unwrap();
            assert_ne!(
                out.status.code(),
                Some(101),
                "proctor {} with a closed {closed} panicked:\n{}",
                args.join(" "),
                stderr(&out)
            );
            assert!(
                !stderr(&out).contains("panicked"),
                "proctor {}: {}",
                args.join(" "),
                stderr(&out)
            );
        }
    }
}
