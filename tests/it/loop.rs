//! The caged loop end to end: the real binary, scripted shell agents, real
//! containers, temp repositories.

use crate::common;

use std::path::{Path, PathBuf};

use common::{redact, require_engine, stderr, stdout, TestRepo};
use proctor::cage::EngineKind;
use proctor::engine::events::{Event, Phase};

/// `insta::assert_snapshot!` with the snapshot in `snapshots/loop/<test>.snap`:
/// this module is `r#loop` (`loop` is a keyword), and insta would otherwise
/// put the `r#` into every snapshot's file name.
macro_rules! pinned {
    ($value:expr) => {{
        let mut settings = insta::Settings::clone_current();
        settings.set_prepend_module_to_snapshot(false);
        settings.set_snapshot_path("snapshots/loop");
        settings.bind(|| insta::assert_snapshot!($value));
    }};
}

const CALC: &str = "add() { echo $(( $1 - $2 )); }\n";
const TEST: &str = r#". ./calc.sh
[ "$(add 2 2)" = 4 ] || { echo "FAIL: add 2 2 printed $(add 2 2)"; exit 1; }
echo ok
"#;
const FIX: &str = "sed -i 's/\\$1 - \\$2/$1 + $2/' calc.sh\n";

fn buggy(manifest: &str) -> TestRepo {
    TestRepo::new()
        .file("calc.sh", CALC)
        .file("test.sh", TEST)
        .manifest(manifest)
        .commit("buggy")
}

#[test]
fn a_failing_test_is_fixed_within_five_runs() {
    require_engine();
    let agent = format!(
        "cat\nif [ \"$PROCTOR_RUN\" -ge 3 ]; then {FIX}else echo \"run $PROCTOR_RUN: looked, changed nothing\" >> .proctor/journal/fix.md; fi\n"
    );
    let repo = buggy(
        "loop: fix\ntask: make test.sh pass\nagent: sh agent.sh\ndone_when: sh test.sh\nbudget: 5 runs\n",
    )
    .file("agent.sh", &agent)
    .commit("agent");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(repo.agent_starts(), 3);
    let log = repo.log("proctor/fix");
    assert_eq!(log[0], "proctor(fix): close");
    assert_eq!(log[1], "proctor(fix): run 3");
    assert!(log.contains(&"proctor(fix): run 1".to_string()));
    // The user's checkout and branch are untouched; the closed run's
    // worktree is gone.
    assert_eq!(repo.head_branch(), "master");
    assert_eq!(repo.log("master").len(), 2);
    assert_eq!(repo.read("calc.sh"), CALC);
    assert_eq!(repo.status(), Vec::<String>::new());
    assert_eq!(repo.worktrees(), Vec::<String>::new());
    assert!(stdout(&out).contains("work: branch `proctor/fix` (your branch `master` is untouched)\nnext: review `proctor/fix`, then `proctor land` merges it into `master` if its exam passes on the merged tree"), "{}", stdout(&out));
    // The prompt of run 3 carried the failing output and the journal.
    let prompt = repo.read(".proctor/logs/fix.run3.log");
    assert!(prompt.contains("make test.sh pass"), "{prompt}");
    assert!(prompt.contains("FAIL: add 2 2 printed 0"), "{prompt}");
    assert!(
        prompt.contains("run 2: looked, changed nothing"),
        "{prompt}"
    );
    // The journal is committed; logs are not.
    let repo_git = git2::Repository::open(repo.path()).unwrap();
    let tree = repo_git
        .find_branch("proctor/fix", git2::BranchType::Local)
        .unwrap()
        .get()
        .peel_to_tree()
        .unwrap();
    assert!(tree
        .get_path(std::path::Path::new(".proctor/journal/fix.md"))
        .is_ok());
    assert!(tree
        .get_path(std::path::Path::new(".proctor/logs"))
        .is_err());
    assert!(stdout(&out).contains("verified:"));
    // proctor's runtime state (events, logs, lock, cards) stays out of `git status`.
    assert_eq!(repo.status(), Vec::<String>::new());
    // `estimate` reads the recorded run: one close, after 3 runs.
    let est = repo.proctor(&["estimate", "--json"]);
    assert_eq!(est.status.code(), Some(0), "{}", stderr(&est));
    let json: serde_json::Value = serde_json::from_slice(&est.stdout).unwrap();
    let fix = &json["loops"][0];
    assert_eq!(fix["loop_id"], "fix");
    assert_eq!(fix["exam"], "sh test.sh");
    assert_eq!(fix["history"]["closes"], 1);
    assert_eq!(fix["history"]["runs_worst"], 3);
    assert_eq!(fix["history"]["blocked"], 0);
    assert_eq!(fix["history"]["agent_runs"], 3);
    let est = repo.proctor(&["estimate"]);
    assert!(
        stdout(&est).contains("loop `fix` (exam `sh test.sh`)\n  1 close: runs median 3, worst 3;"),
        "{}",
        stdout(&est)
    );
    // A proposal with no history gets the past loop with a like exam.
    repo.write("new.yaml", "loop: fix-more\ndone_when: sh test.sh --all\n");
    let est = repo.proctor(&["estimate", "new.yaml", "--json"]);
    assert_eq!(est.status.code(), Some(0), "{}", stderr(&est));
    let json: serde_json::Value = serde_json::from_slice(&est.stdout).unwrap();
    let new = &json["loops"][0];
    assert_eq!(new["loop_id"], "fix-more");
    assert!(new["history"].is_null(), "{new}");
    assert_eq!(new["nearest"][0]["loop_id"], "fix");
    assert_eq!(new["nearest"][0]["summary"]["closes"], 1);
    repo.assert_no_containers();
}

#[test]
fn a_run_starts_by_removing_dead_processes_files_and_spares_live_ones() {
    use std::os::unix::fs::DirBuilderExt;
    require_engine();
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let private = common::private_dir(tmp.path());
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .unwrap();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let mut alive = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let live = alive.id();
    let plant = |pid: u32| {
        std::fs::create_dir(private.join(format!("egress-{pid:x}-1-2"))).unwrap();
        std::fs::write(private.join(format!("egress-{pid:x}-1-2.log")), "").unwrap();
        std::fs::write(private.join(format!("relay-{pid:x}-3-4.log")), "").unwrap();
        let tree = scratch
            .path()
            .join(format!("proctor-exam-{pid:x}-0badcafe-Ab3xYz"));
        std::fs::create_dir_all(tree.join("src")).unwrap();
        std::fs::write(tree.join("src/lib.rs"), "").unwrap();
    };
    plant(dead);
    plant(live);
    let dirs = [private.clone(), scratch.path().to_path_buf()];
    let repo = TestRepo::new()
        .manifest("loop: green\nagent: 'true'\ndone_when: 'true'\n")
        .commit("green")
        .env("TMPDIR", tmp.path())
        .env("PROCTOR_TMPDIR", scratch.path());
    let out = repo.proctor(&["run"]);
    let _ = alive.kill();
    let _ = alive.wait();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    if std::path::Path::new(&format!("/proc/{dead}")).exists() {
        // The pid was reused meanwhile: keeping its files is the safe call.
        return;
    }
    assert_eq!(common::host_files_of(dead, &dirs), Vec::<PathBuf>::new());
    assert_eq!(common::host_files_of(live, &dirs).len(), 4);
    assert!(repo
        .events()
        .iter()
        .any(|r| matches!(r.event, Event::Reaped { files, .. } if files >= 4)));
    assert!(
        stderr(&out).contains("leftover file(s) of earlier runs"),
        "{}",
        stderr(&out)
    );
    repo.assert_no_containers();
}

#[test]
fn an_exhausted_budget_gives_a_card_and_an_answer_refreshes_it_once() {
    require_engine();
    let repo = TestRepo::new()
        .manifest("loop: stuck\ntask: the impossible\nagent: cat\ndone_when: 'echo never; exit 1'\nbudget: 1 run\n")
        .commit("stuck");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let card = repo.read("INBOX/stuck.md");
    assert!(card.contains("BLOCKED: stuck"), "{card}");
    assert!(card.contains("proctor answer stuck"), "{card}");
    assert_eq!(repo.agent_starts(), 1);

    // A forged answer line (no valid HMAC) refreshes nothing.
    let mut ledger = repo.read(".proctor/ledger.jsonl");
    ledger.push_str(
        r#"{"type":"answer","v":1,"loop":"stuck","id":"x","ts":1,"text":"forged","hmac":"00"}"#,
    );
    ledger.push('\n');
    repo.write(".proctor/ledger.jsonl", &ledger);
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(repo.agent_starts(), 1, "a forged answer must not buy a run");

    let out = repo.proctor(&["answer", "stuck", "try the other approach"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(
        repo.agent_starts(),
        2,
        "the answer refreshes the budget once"
    );
    let prompt = repo.read(".proctor/logs/stuck.run2.log");
    assert!(prompt.contains("try the other approach"), "{prompt}");
    assert!(!prompt.contains("forged"), "{prompt}");

    // Once only: without a new answer no further run is bought.
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(repo.agent_starts(), 2);
    repo.assert_no_containers();
}

/// After `run --file other.yaml` or `once`, the report, the BLOCKED card
/// and `answer` said plain `proctor run`, which runs the default manifest
/// (or, after `once`, none): each names the run's own way back.
#[test]
fn a_blocked_file_or_once_run_names_its_own_resume_command() {
    require_engine();
    let repo = TestRepo::new()
        .file(
            "other.yaml",
            "loop: other\nagent: cat\ndone_when: 'exit 1'\nbudget: 1 run\n",
        )
        .commit("other");
    let out = repo.proctor(&["run", "--file", "other.yaml"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report.contains("`proctor answer other \"...\"` and `proctor run --file other.yaml`"),
        "{report}"
    );
    let card = repo.read("INBOX/other.md");
    assert!(
        card.contains("\n    proctor run --file other.yaml\n"),
        "{card}"
    );
    let out = repo.proctor(&["answer", "other", "look again"]);
    assert!(
        stdout(&out).contains("continue with `proctor run --file other.yaml`"),
        "{}",
        stdout(&out)
    );

    let out = repo.proctor(&[
        "once", "--id", "solo", "--budget", "1 run", "--until", "exit 1", "--agent", "cat", "--",
        "fix",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report.contains("and run the same `proctor once` again")
            && report.contains("kept so running the same `proctor once` again resumes there"),
        "{report}"
    );
    let card = repo.read("INBOX/solo.md");
    assert!(
        card.contains("Then run the same `proctor once` again.")
            && !card.contains("    proctor run"),
        "{card}"
    );
    let out = repo.proctor(&["answer", "solo", "look again"]);
    assert!(
        stdout(&out)
            .contains("refreshes the loop's budget once; run the same `proctor once` again"),
        "{}",
        stdout(&out)
    );
    repo.assert_no_containers();
}

#[test]
fn deleting_the_ledger_buys_nothing() {
    require_engine();
    let repo = TestRepo::new()
        .manifest("loop: stuck\nagent: 'rm -f .proctor/ledger.jsonl'\ndone_when: 'exit 1'\nbudget: 2 runs\n")
        .commit("stuck");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let _ = std::fs::remove_file(repo.path().join(".proctor/ledger.jsonl"));
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(
        repo.agent_starts(),
        2,
        "budgets come from committed history"
    );
    repo.assert_no_containers();
}

#[test]
fn the_exam_runs_in_a_container_on_the_committed_tree() {
    require_engine();
    let marker = format!("/tmp/proctor-host-marker-{}", std::process::id());
    // Passes only inside a container, and only if the agent's uncommitted
    // scratch file is absent: the exam sees the committed tree, with no network.
    let exam = format!(
        "touch {marker}; (test -f /.dockerenv || test -f /run/.containerenv) && test -f done.txt && ! test -e /work/.git && test \"$(ls /sys/class/net)\" = lo"
    );
    let repo = TestRepo::new()
        .manifest(&format!(
            "loop: where\nagent: 'echo yes > done.txt'\ndone_when: '{exam}'\nbudget: 2 runs\n"
        ))
        .commit("where");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !std::path::Path::new(&marker).exists(),
        "the exam ran on the host"
    );
    let containers: Vec<String> = repo
        .events()
        .iter()
        .filter_map(|r| match &r.event {
            Event::CheckResult {
                container,
                phase: Phase::Verify,
                ..
            } => Some(container.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(containers.len(), 1);
    assert!(!containers[0].is_empty());
    repo.assert_no_containers();
}

#[test]
fn nested_loops_close_children_first() {
    require_engine();
    let repo = TestRepo::new()
        .manifest(
            "loop: parent\nagent: 'touch \"$PROCTOR_LOOP.done\"'\ndone_when: test -f a.done && test -f b.done\nloops:\n  - loop: a\n    done_when: test -f a.done\n  - loop: b\n    done_when: test -f b.done\n",
        )
        .commit("nested");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let closes: Vec<String> = repo
        .events()
        .iter()
        .filter_map(|r| match &r.event {
            Event::Close { loop_id, .. } => Some(loop_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(closes, ["a", "b", "parent"]);
    // The parent's own exam passed without waking its agent.
    assert!(!repo.exists("parent.done"));
    repo.assert_no_containers();
}

#[test]
fn a_lute_manifest_runs_unchanged() {
    require_engine();
    let repo = buggy("")
        .file(
            "lute.yaml",
            "loop: calc\nagent: sh fix.sh\nbudget: 3 runs\ndone_when: \"sh test.sh\"\nloops:\n  - loop: add\n    task: Make add add.\n    done_when: \"sh test.sh\"\n    budget: 2 runs\n    confirm: 2\n    protected: [\"test.sh\"]\n",
        )
        .file("fix.sh", FIX)
        .commit("lute");
    std::fs::remove_file(repo.path().join("proctor.yaml")).unwrap();
    let repo = repo.commit("only lute.yaml");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(repo
        .read_at("proctor/calc", "calc.sh")
        .unwrap()
        .contains("$1 + $2"));
    repo.assert_no_containers();
}

/// `proctor once` with the fixing agent and the test as its exam.
const ONCE_FIX: &[&str] = &[
    "once",
    "--until",
    "sh test.sh",
    "--agent",
    "sh fix.sh",
    "--",
    "make test.sh pass",
];

#[test]
fn once_runs_without_a_manifest() {
    require_engine();
    let repo = buggy("").file("fix.sh", FIX).commit("fix script");
    let out = repo.proctor(ONCE_FIX);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(repo.head_branch(), "master");
    assert_eq!(repo.log("proctor/once")[1], "proctor(once): run 1");
    // No manifest, so no exam for `land` to re-run: it names the merge.
    let report = stdout(&out);
    assert!(
        report.contains("next: review `proctor/once`, then merge it into `master` yourself, e.g. `git merge proctor/once`"),
        "{report}"
    );
    repo.assert_no_containers();
}

/// `once` at full strength: a variable by name (its value from the
/// environment), a writable host mount (`~` expanded), no network and a
/// timeout, all from flags; an unset name is warned about, not dropped
/// silently.
#[test]
fn once_takes_env_mount_network_and_timeout_from_flags() {
    require_engine();
    let repo = TestRepo::new().file("README", "x\n").commit("start");
    let shared = repo.home.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let agent = format!(
        "echo \"$ONCE_VAR\" > {0}/seen.txt; ls /sys/class/net > {0}/ifaces.txt; touch done.txt",
        shared.display()
    );
    let out = repo.proctor_env(
        &[
            "once",
            "--until",
            "test -f done.txt",
            "--agent",
            &agent,
            "--env",
            "ONCE_VAR",
            "--env",
            "ONCE_UNSET",
            "--mount",
            "~/shared:rw",
            "--network",
            "none",
            "--timeout",
            "2m",
            "--budget",
            "1 run",
            "--",
            "touch done.txt",
        ],
        &[("ONCE_VAR", "from-the-environment")],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: `ONCE_UNSET` under `env:` is not set here"),
        "{err}"
    );
    let seen = std::fs::read_to_string(shared.join("seen.txt")).unwrap_or_default();
    assert_eq!(seen.trim(), "from-the-environment");
    let ifaces = std::fs::read_to_string(shared.join("ifaces.txt")).unwrap_or_default();
    assert_eq!(ifaces.split_whitespace().collect::<Vec<_>>(), ["lo"]);
    repo.assert_no_containers();
}

#[test]
fn once_refuses_a_value_on_the_command_line() {
    let repo = TestRepo::new().file("README", "x\n").commit("start");
    let out = repo.proctor(&[
        "once",
        "--until",
        "true",
        "--agent",
        "true",
        "--env",
        "API_KEY=sk-123",
        "--",
        "t",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`--env API_KEY`: name the variable only"),
        "{err}"
    );
    assert!(!err.contains("sk-123"), "{err}");
    let out = repo.proctor(&[
        "once",
        "--until",
        "true",
        "--agent",
        "true",
        "--mount",
        "relative/dir",
        "--",
        "t",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("`--mount relative/dir`"),
        "{}",
        stderr(&out)
    );
    // A mount that does not exist, and a bad host, are named by their
    // flag before anything starts: no branch is made.
    for (flag, value, says) in [
        ("--mount", "/nonexistent/proctor-audit", "`--mount /nonexistent/proctor-audit`: `/nonexistent/proctor-audit` does not exist on this host"),
        ("--network", "api.openai.com,bad!host", "`--network api.openai.com,bad!host`: `bad!host` is not a host name"),
    ] {
        let out = repo.proctor(&["once", "--until", "true", "--agent", "true", flag, value, "--", "t"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    assert!(
        git2::Repository::open(repo.path())
            .expect("repo")
            .find_branch("proctor/once", git2::BranchType::Local)
            .is_err(),
        "a refused `once` made its branch"
    );
}

/// A config mount this host does not have failed every run at its first
/// container with the engine's "invalid invocation: mount source ...",
/// naming neither the config nor the key: run and lint name both.
#[test]
fn a_config_mount_that_does_not_exist_is_named_before_the_run() {
    let repo = TestRepo::new()
        .manifest("loop: fix\nagent: 'true'\ndone_when: 'exit 1'\nbudget: 1 run\n")
        .file(
            ".proctor/config.yaml",
            "mounts: [\"/nonexistent/proctor-audit-mount\"]\n",
        )
        .commit("config");
    for verb in ["run", "lint"] {
        let out = repo.proctor(&[verb]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{verb}: {err}");
        assert!(
            err.contains("`.proctor/config.yaml`: `mounts` names `/nonexistent/proctor-audit-mount`, and `/nonexistent/proctor-audit-mount` does not exist on this host"),
            "{verb}: {err}"
        );
    }
    assert!(
        git2::Repository::open(repo.path())
            .expect("repo")
            .find_branch("proctor/fix", git2::BranchType::Local)
            .is_err(),
        "the refused run made its branch"
    );
}

/// Regression (issue 13): log and warning lines carried colour codes in
/// captured output. Outside CI, with a colour terminal named in `TERM` and
/// every log line on, a run and the views print no escape byte to a pipe.
#[test]
fn captured_output_carries_no_escape_codes_even_outside_ci() {
    require_engine();
    let repo = buggy("").file("fix.sh", FIX).commit("fix script");
    let captured = |args: &[&str]| {
        let out = repo
            .command(args)
            .env_remove("CI")
            .env("TERM", "xterm-256color")
            .env("PROCTOR_LOG", "debug")
            .output()
            .unwrap();
        for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !bytes.contains(&0x1b),
                "`proctor {}` wrote an escape code to {stream}:\n{}",
                args.join(" "),
                String::from_utf8_lossy(bytes)
            );
        }
        out
    };
    let run = captured(ONCE_FIX);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    // The log lines were there to be coloured: plain, level and all.
    assert!(stderr(&run).contains(" DEBUG "), "{}", stderr(&run));
    let status = captured(&["status"]);
    assert!(
        stdout(&status).contains("proctor status"),
        "{}",
        stdout(&status)
    );
    captured(&["watch", "--snapshot"]);
    captured(&["inbox"]);
    repo.assert_no_containers();
}

#[test]
fn kill_nine_mid_run_then_rerun_completes() {
    require_engine();
    let agent = format!("if [ -f slow.txt ]; then {FIX}else touch slow.txt; sleep 60; fi\n");
    let repo = buggy("loop: fix\nagent: sh agent.sh\ndone_when: sh test.sh\nbudget: 3 runs\n")
        .file("agent.sh", &agent)
        .commit("slow agent");
    let mut child = repo.spawn_quiet(&["run"]);
    repo.wait_until("the agent never started", |r| {
        r.wt_exists("fix", "slow.txt")
    });
    // SIGKILL: no cleanup at all.
    let victim = child.id();
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let _ = child.wait();
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(repo
        .events()
        .iter()
        .any(|r| matches!(r.event, Event::Reaped { containers, .. } if containers >= 1)));
    // The next run's start swept the killed run's files too.
    assert_eq!(
        common::host_files_of(victim, &default_host_dirs()),
        Vec::<PathBuf>::new()
    );
    repo.assert_no_containers();
}

/// Commit summaries of `branch`'s attempts, oldest first, each with the
/// paths it changed (outside `.proctor/`).
fn attempts(repo: &TestRepo, branch: &str) -> Vec<(String, Vec<String>)> {
    let git = git2::Repository::open(repo.path()).unwrap();
    let tip = git
        .find_branch(branch, git2::BranchType::Local)
        .unwrap()
        .get()
        .target()
        .unwrap();
    let mut walk = git.revwalk().unwrap();
    walk.push(tip).unwrap();
    walk.simplify_first_parent().unwrap();
    let mut out = Vec::new();
    for oid in walk {
        let commit = git.find_commit(oid.unwrap()).unwrap();
        let summary = commit.summary().ok().flatten().unwrap_or("").to_string();
        if !summary.contains(": run ") {
            continue;
        }
        let parent = commit.parent(0).unwrap().tree().unwrap();
        let diff = git
            .diff_tree_to_tree(Some(&parent), Some(&commit.tree().unwrap()), None)
            .unwrap();
        let paths: Vec<String> = diff
            .deltas()
            .filter_map(|d| {
                d.new_file()
                    .path()
                    .map(|p| p.to_string_lossy().into_owned())
            })
            .filter(|p| !p.starts_with(".proctor/"))
            .collect();
        out.push((summary, paths));
    }
    out.reverse();
    out
}

/// Kills a run (with `signal`) while its agent works: the agent wrote
/// `slow.txt` and sleeps. The next run completes.
fn interrupt_an_editing_agent(signal: i32) -> TestRepo {
    let agent = format!("if [ -f slow.txt ]; then {FIX}else touch slow.txt; sleep 60; fi\n");
    let repo = buggy("loop: fix\nagent: sh agent.sh\ndone_when: sh test.sh\nbudget: 2 runs\n")
        .file("agent.sh", &agent)
        .commit("slow agent");
    let mut child = repo.spawn_quiet(&["run"]);
    repo.wait_until("the agent never started", |r| {
        r.wt_exists("fix", "slow.txt")
    });
    unsafe { libc::kill(child.id() as i32, signal) };
    let _ = child.wait();
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    repo
}

#[test]
fn a_killed_agents_leftovers_are_committed_as_its_interrupted_run_not_the_next() {
    require_engine();
    for signal in [libc::SIGKILL, libc::SIGTERM] {
        let repo = interrupt_an_editing_agent(signal);
        // The killed agent's `slow.txt` is in its own commit, marked as
        // interrupted; the redone attempt's commit holds only its fix.
        assert_eq!(
            attempts(&repo, "proctor/fix"),
            [
                (
                    "proctor(fix): run 1 (interrupted)".to_string(),
                    vec!["slow.txt".to_string()]
                ),
                (
                    "proctor(fix): run 2".to_string(),
                    vec!["calc.sh".to_string()]
                ),
            ],
            "signal {signal}"
        );
        let events = repo.events();
        assert!(
            events.iter().any(|r| matches!(
                &r.event,
                Event::Interrupted { loop_id, run: 1, edits: true, commit: Some(_) } if loop_id == "fix"
            )),
            "signal {signal}: no interrupted event"
        );
        // Charged: the budget of 2 runs holds the interrupted one and the
        // redo, and the loop closed after 2.
        assert!(events
            .iter()
            .any(|r| matches!(r.event, Event::Close { runs: 2, .. })));
        assert!(repo.exists(".proctor/logs/fix.run1.interrupted.log"));
        repo.assert_no_containers();
    }
}

#[test]
fn a_killed_agent_that_left_no_edits_is_not_charged() {
    require_engine();
    // The agent leaves a note in its journal (not an edit of the tree) and
    // sleeps; the redone attempt fixes the bug.
    let agent = format!(
        "if grep -q started .proctor/journal/fix.md; then {FIX}else echo started >> .proctor/journal/fix.md; sleep 60; fi\n"
    );
    let repo = buggy("loop: fix\nagent: sh agent.sh\ndone_when: sh test.sh\nbudget: 1 run\n")
        .file("agent.sh", &agent)
        .commit("slow agent");
    let mut child = repo.spawn_quiet(&["run"]);
    repo.wait_until("the agent never started", |r| {
        r.wt_read("fix", ".proctor/journal/fix.md")
            .contains("started")
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    let out = repo.proctor(&["run"]);
    // A budget of 1 run is enough: the cut-short attempt cost nothing.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        attempts(&repo, "proctor/fix"),
        [(
            "proctor(fix): run 1".to_string(),
            vec!["calc.sh".to_string()]
        )]
    );
    assert!(repo.events().iter().any(|r| matches!(
        &r.event,
        Event::Interrupted {
            run: 1,
            edits: false,
            commit: None,
            ..
        }
    )));
    repo.assert_no_containers();
}

/// Where runs with no `TMPDIR` or `PROCTOR_TMPDIR` make their files.
fn default_host_dirs() -> Vec<PathBuf> {
    vec![
        common::private_dir(Path::new("/tmp")),
        PathBuf::from("/dev/shm"),
        PathBuf::from("/tmp"),
    ]
}

/// A dirty checkout no longer blocks a run: the run works in its own
/// worktree from the HEAD commit, names the uncommitted edits in a warning,
/// and leaves them (and untracked files) exactly as they were.
#[test]
fn a_dirty_checkout_is_named_and_left_as_it_is() {
    require_engine();
    let repo = buggy("loop: fix\nagent: sh fix.sh\ndone_when: sh test.sh\nbudget: 2 runs\n")
        .file("fix.sh", FIX)
        .commit("fix script");
    repo.write("calc.sh", "changed\n");
    repo.write("notes/new.txt", "new\n");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning: uncommitted changes in your checkout are not part of this run (it starts from your last commit): calc.sh"),
        "{err}"
    );
    assert!(!err.contains("notes/new.txt"), "{err}");
    assert_eq!(repo.head_branch(), "master");
    assert_eq!(repo.read("calc.sh"), "changed\n");
    assert_eq!(repo.read("notes/new.txt"), "new\n");
    // The run fixed the committed calc.sh, not the user's edit.
    assert!(repo
        .read_at("proctor/fix", "calc.sh")
        .unwrap()
        .contains("$1 + $2"));
    repo.assert_no_containers();
}

#[test]
fn a_misspelt_key_names_the_key_and_the_fix() {
    let repo = TestRepo::new()
        .manifest("loop: fix\nagent: 'true'\ndone_when: 'true'\nbudjet: 3 runs\n")
        .commit("typo");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    pinned!(redact(&stderr(&out), &[(&repo.path(), "[REPO]")]));
    assert!(!repo.exists(".proctor"), "nothing may be touched");
}

#[test]
fn a_missing_manifest_file_is_a_clear_error() {
    let repo = TestRepo::new().file("x", "x").commit("x");
    let out = repo.proctor(&["run", "--file", "nope.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    pinned!(redact(&stderr(&out), &[(&repo.path(), "[REPO]")]));
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    pinned!(redact(&stderr(&out), &[(&repo.path(), "[REPO]")]));
}

#[test]
fn no_engine_gives_one_line_and_touches_nothing() {
    let repo = buggy("loop: fix\nagent: 'true'\ndone_when: sh test.sh\n");
    let out = repo.proctor_env(
        &["run"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(
        err.trim()
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1,
        "{err}"
    );
    pinned!(redact(
        &err,
        &[(&repo.path(), "[REPO]"), (repo.home.path(), "[HOME]")]
    ));
    assert!(!repo.exists(".proctor"));
    assert_eq!(repo.head_branch(), "master");
    assert!(repo.log("proctor/fix").is_empty());
}

#[test]
fn lint_classifies_every_exam() {
    require_engine();
    let repo = TestRepo::new()
        .manifest(
            "loop: root\nagent: 'true'\ndone_when: 'true'\nloops:\n  - loop: failing\n    done_when: 'exit 1'\n  - loop: waiting\n    done_when: 'exit 75'\n    budget: 1h\n  - loop: broken\n    done_when: no-such-command-here\n  - loop: keyless\n    agent: claude\n    done_when: 'true'\n",
        )
        .commit("lint");
    let out = repo.proctor(&["lint"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("pass") && text.contains("root"), "{text}");
    assert!(text.contains("fail") && text.contains("failing"), "{text}");
    assert!(
        text.contains("not-yet") && text.contains("waiting"),
        "{text}"
    );
    assert!(text.contains("error") && text.contains("broken"), "{text}");
    // A preset with no key (the test's environment is clean) is named, as
    // at a run's start.
    assert!(
        stderr(&out).contains("warning: agent `claude`: none of `ANTHROPIC_API_KEY`"),
        "{}",
        stderr(&out)
    );
    // What each failing exam said, and where all of it is.
    assert!(
        text.contains("command `no-such-command-here` was not found"),
        "{text}"
    );
    assert!(
        text.contains("sh: 1: no-such-command-here: not found"),
        "{text}"
    );
    assert!(
        text.contains("output: .proctor/logs/broken.run0.exam.log (`-v` shows all of it)"),
        "{text}"
    );
    assert!(
        text.contains("output: .proctor/logs/failing.run0.exam.log"),
        "{text}"
    );
    // Nothing git would commit is left behind (the logs are excluded).
    assert!(repo.status().is_empty(), "{:?}", repo.status());
    repo.assert_no_containers();
}

/// An exam that could not run (a missing command) woke the agent ten
/// times, and the card blamed the agent: it now stops the run before any
/// agent, on Docker and on Podman, and `proctor logs` prints its output.
#[test]
fn an_exam_that_cannot_run_wakes_no_agent_on_either_engine() {
    require_engine();
    for engine in [EngineKind::Docker, EngineKind::Podman] {
        let repo = TestRepo::new()
            .engine(&common::socket(engine))
            .manifest("loop: fix\nagent: 'touch agent-ran'\ndone_when: no-such-test-runner --all\nbudget: 5 runs\n")
            .commit("exam");
        let out = repo.proctor(&["run"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", engine.as_str());
        assert!(
            err.contains("the exam of loop `fix` cannot run: command `no-such-test-runner` was not found in the container (exit 127); no agent was woken"),
            "{err}"
        );
        assert!(
            // The exam's output, a line of its own (not `\n` on the error's).
            err.contains("no run was spent\n  | ")
                && err.contains("no-such-test-runner: not found"),
            "{err}"
        );
        assert!(err.contains(".proctor/logs/fix.run0.exam.log"), "{err}");
        assert_eq!(repo.agent_starts(), 0);
        assert!(!repo.log("proctor/fix").iter().any(|c| c.contains("run 1")));
        let logs = repo.proctor(&["logs", "fix"]);
        assert_eq!(logs.status.code(), Some(0), "{}", stderr(&logs));
        assert!(
            stdout(&logs).contains("no-such-test-runner: not found"),
            "{}",
            stdout(&logs)
        );
        repo.assert_no_containers();
    }
}

/// An agent CLI that is not in the cage exits 127: the run stops there,
/// uncharged, instead of spending its budget.
#[test]
fn an_agent_that_is_not_found_spends_no_run() {
    require_engine();
    let repo = TestRepo::new()
        .manifest("loop: fix\nagent: no-such-agent-cli exec\ndone_when: 'echo still failing; exit 1'\nbudget: 5 runs\n")
        .commit("agent");
    let out = repo.proctor(&["run"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the agent of loop `fix` cannot run: command `no-such-agent-cli` was not found in the container (exit 127); run 1 was not charged"),
        "{err}"
    );
    assert!(
        !repo.log("proctor/fix").iter().any(|c| c.contains("run 1")),
        "{:?}",
        repo.log("proctor/fix")
    );
    let logs = repo.proctor(&["logs", "fix", "1", "--agent"]);
    assert!(
        stdout(&logs).contains("no-such-agent-cli: not found"),
        "{}",
        stdout(&logs)
    );
    repo.assert_no_containers();
}

/// `init` outside a git repository wrote the starter and said "commit",
/// and every verb after it refused: it now says `git init` first.
#[test]
fn init_outside_git_says_to_git_init() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Makefile"), "test:\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_proctor"))
        .arg("init")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("`git init`, commit, then `proctor lint`"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn init_writes_a_starter_that_lints_clean() {
    let repo = TestRepo::new()
        .file(
            "Cargo.toml",
            "[package]\nname = \"x\"\nversion = \"0.1.0\"\n",
        )
        .commit("cargo");
    let out = repo.proctor(&["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = repo.read("proctor.yaml");
    let m = proctor::manifest::parse(&text, std::path::Path::new("proctor.yaml")).unwrap();
    // The loop id is the temp directory's name, kebab-cased.
    pinned!(text.replace(&format!("loop: {}\n", m.root.id), "loop: [DIR-NAME]\n"));
    let out = repo.proctor(&["init"]);
    assert_eq!(out.status.code(), Some(1), "init must not overwrite");
}

#[test]
fn the_demo_shows_cheats_rejected_and_an_honest_fix_accepted() {
    require_engine();
    let repo = TestRepo::new();
    let out = repo.proctor(&["demo"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert_eq!(text.matches("  ✓ ").count(), 3, "{text}");
    assert!(
        text.contains("claims success") && text.contains("was not accepted"),
        "{text}"
    );
    assert!(
        text.contains("deletes the failing test was not accepted"),
        "{text}"
    );
    // The deletion is stopped by the quarantine of the protected test.
    assert!(
        text.contains("its edit of tests/test_add.sh (protected: `tests/**`) was quarantined"),
        "{text}"
    );
    assert!(
        text.contains("blocked (exit 3) is the good outcome"),
        "{text}"
    );
    assert!(text.contains("the loop closed"), "{text}");
    assert!(text.contains("not verified"), "{text}");
    // The demo's own exam is protected: no warning about it, to anyone.
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn ctrl_c_removes_the_runs_containers() {
    require_engine();
    let repo = TestRepo::new()
        .manifest(
            "loop: slow\nagent: 'touch started; sleep 120'\ndone_when: 'exit 1'\nbudget: 1 run\n",
        )
        .commit("slow");
    let mut child = repo.spawn_quiet(&["run"]);
    repo.wait_until("the agent never started", |r| {
        r.wt_exists("slow", "started")
    });
    let pid = child.id();
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(
        common::host_files_of(pid, &default_host_dirs()),
        Vec::<PathBuf>::new(),
        "the run's files are removed"
    );
    assert!(repo.events().iter().any(|r| matches!(
        r.event,
        Event::RunEnd {
            outcome: proctor::engine::events::Outcome::Interrupted,
            ..
        }
    )));
    assert_eq!(
        proctor::state::lock::holder(&repo.path().join(".proctor/lock")),
        None,
        "the lock is released"
    );
    repo.assert_no_containers();
}

#[test]
fn a_run_stopped_mid_exam_resumes_without_redoing_or_charging_the_attempt() {
    require_engine();
    // The exam stalls while a file outside the repository exists (a
    // read-only extra mount), so the test decides when it may finish.
    let gate = tempfile::tempdir().unwrap();
    let stall = gate.path().join("stall");
    std::fs::write(&stall, "").unwrap();
    let exam = format!(
        "while [ -f {} ] && [ -f done ]; do sleep 0.1; done\ntest -f done\n",
        stall.display()
    );
    let repo = TestRepo::new()
        .file("exam.sh", &exam)
        .file(
            ".proctor/config.yaml",
            &format!("mounts: [{}]\n", gate.path().display()),
        )
        .manifest("loop: fix\nagent: touch done\ndone_when: sh exam.sh\nbudget: 1 run\n")
        .commit("stalling exam");
    let mut child = repo.spawn_quiet(&["run"]);
    repo.wait_until("the verify exam never started", |r| {
        r.events().last().is_some_and(|e| {
            matches!(
                e.event,
                Event::CheckStart {
                    phase: Phase::Verify,
                    ..
                }
            )
        })
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    std::fs::remove_file(&stall).unwrap();
    // Run 1 was committed before its exam: the resume examines it and
    // closes, with nothing interrupted and nothing redone.
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let runs: Vec<String> = repo
        .log("proctor/fix")
        .into_iter()
        .filter(|m| m.contains(": run "))
        .collect();
    assert_eq!(runs, ["proctor(fix): run 1"]);
    assert_eq!(repo.agent_starts(), 1);
    assert!(!repo
        .events()
        .iter()
        .any(|r| matches!(r.event, Event::Interrupted { .. })));
    repo.assert_no_containers();
}
