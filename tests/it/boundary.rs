//! The trust boundary end to end: quarantine and restore, tampers committed
//! earlier, the exam's materials changing under a running exam, the
//! test-count audit against the base commit, state the agent cannot forge,
//! and the audit trail. Real binary, scripted agents, real containers.

use crate::common;

use common::{require_engine, stderr, stdout, TestRepo};
use proctor::engine::events::{Event, Phase};

const CALC: &str = "add() { echo $(( $1 - $2 )); }\n";
const TEST: &str = r#". ./calc.sh
[ "$(add 2 2)" = 4 ] || { echo "FAIL: add 2 2 printed $(add 2 2)"; exit 1; }
echo ok
"#;
const FIX: &str = "sed -i 's/\\$1 - \\$2/$1 + $2/' calc.sh\n";

/// `path` as committed at the tip of the run's branch `proctor/fix`.
fn head_blob(repo: &TestRepo, path: &str) -> Option<String> {
    repo.read_at("proctor/fix", path)
}

#[test]
fn a_protected_edit_is_quarantined_restored_and_named_in_the_next_prompt() {
    require_engine();
    // Run 1 weakens the test; run 2 fixes the code.
    let agent =
        format!("cat\nif [ \"$PROCTOR_RUN\" = 1 ]; then echo 'echo ok' > test.sh; else {FIX}fi\n");
    let repo = TestRepo::new()
        .file("calc.sh", CALC)
        .file("test.sh", TEST)
        .file("agent.sh", &agent)
        .manifest("loop: fix\nagent: sh agent.sh\ndone_when: sh test.sh\nbudget: 2 runs\nprotected: [test.sh]\n")
        .commit("buggy");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(repo.agent_starts(), 2);

    let (id, files) = repo
        .events()
        .into_iter()
        .find_map(|r| match r.event {
            Event::Quarantine {
                id, files, run: 1, ..
            } => Some((id, files)),
            _ => None,
        })
        .expect("a quarantine event for run 1");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].path, "test.sh");
    assert_eq!(files[0].rule, "protected: `test.sh`");
    // The trusted copy is back and in every commit.
    assert_eq!(repo.read("test.sh"), TEST);
    assert_eq!(head_blob(&repo, "test.sh").as_deref(), Some(TEST));
    // The next prompt names the record.
    let prompt = repo.read(".proctor/logs/fix.run2.log");
    assert!(prompt.contains(&id), "{prompt}");
    assert!(prompt.contains("proctor quarantine diff"), "{prompt}");
    // The report lists the decision.
    let report = stdout(&out);
    assert!(report.contains("guarded:"), "{report}");
    assert!(report.contains(&format!("record `{id}`")), "{report}");

    let listed = stdout(&repo.proctor(&["quarantine"]));
    assert!(
        listed.contains(&id) && listed.contains("test.sh (modified)"),
        "{listed}"
    );
    let diff = stdout(&repo.proctor(&["quarantine", "diff", &id]));
    assert!(diff.contains("-[ \"$(add 2 2)\" = 4 ]"), "{diff}");
    assert!(diff.contains("-. ./calc.sh"), "{diff}");
    assert!(diff.contains("rule: protected: `test.sh`"), "{diff}");

    let trail = stdout(&repo.proctor(&["audit"]));
    assert!(trail.contains("boundary decisions:"), "{trail}");
    assert!(trail.contains(&format!("record `{id}`")), "{trail}");
    let json = stdout(&repo.proctor(&["audit", "--json"]));
    let parsed = proctor::engine::events::parse(&json);
    assert_eq!(parsed.len(), json.lines().count());
    assert!(parsed
        .iter()
        .any(|r| matches!(r.event, Event::Quarantine { .. })));

    let out = repo.proctor(&["quarantine", "drop", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&repo.proctor(&["quarantine"])).contains("no quarantine records"));
    repo.assert_no_containers();
}

#[test]
fn a_tamper_committed_earlier_is_caught_on_a_later_run() {
    require_engine();
    let repo = TestRepo::new()
        .file("calc.sh", CALC)
        .file("test.sh", TEST)
        .manifest("loop: fix\nagent: 'true'\ndone_when: sh test.sh\nbudget: 1 run\nprotected: [test.sh]\n")
        .commit("buggy");
    // A `proctor run` commit that already carries a weakened exam (as an
    // older version, or a crash, could have left it).
    {
        let git = git2::Repository::open(repo.path()).unwrap();
        let base = git.head().unwrap().peel_to_commit().unwrap();
        git.branch("proctor/fix", &base, false).unwrap();
        git.set_head("refs/heads/proctor/fix").unwrap();
    }
    repo.write("test.sh", "echo ok\n");
    let repo = repo.commit("proctor(fix): run 1\n\nProctor-Loop: fix\nProctor-Run: 1\n");
    // Back on the user's branch: the run works on `proctor/fix` in its own
    // worktree.
    {
        let git = git2::Repository::open(repo.path()).unwrap();
        git.set_head("refs/heads/master").unwrap();
        git.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
            .unwrap();
    }
    let out = repo.proctor(&["run"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the weakened exam must not pass: {}",
        stderr(&out)
    );
    let restored = repo.events().into_iter().find_map(|r| match r.event {
        Event::Quarantine {
            phase,
            commit: Some(c),
            files,
            ..
        } => Some((phase, c, files)),
        _ => None,
    });
    let (phase, _, files) = restored.expect("a quarantine that committed the trusted copy");
    assert_eq!(phase, "exam");
    assert_eq!(files[0].path, "test.sh");
    assert!(repo
        .log("proctor/fix")
        .contains(&"proctor(fix): restore protected files".to_string()));
    assert_eq!(head_blob(&repo, "test.sh").as_deref(), Some(TEST));
    repo.assert_no_containers();
}

#[test]
fn an_exam_cannot_repoint_a_protected_link() {
    require_engine();
    // `check.sh` is a protected symlink (a link cannot be mounted read-only):
    // the exam tries to re-point it and then runs it. The link is sealed,
    // so the re-point fails and the real check decides.
    let repo = TestRepo::new()
        .file("real.sh", "exit 1\n")
        .manifest("loop: fix\nagent: cat\ndone_when: 'ln -sfn /dev/null check.sh; sh check.sh'\nbudget: 1 run\nprotected: [check.sh, real.sh]\n");
    std::os::unix::fs::symlink("real.sh", repo.path().join("check.sh")).unwrap();
    let repo = repo.commit("linked exam");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let exits: Vec<i64> = repo
        .events()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::CheckResult { exit, .. } => Some(exit),
            _ => None,
        })
        .collect();
    assert_eq!(exits, [1, 1], "the real check failed both times");
    let log = repo.read(".proctor/logs/fix.run1.exam.log");
    assert!(log.contains("ln:"), "the re-point was refused: {log}");
    repo.assert_no_containers();
}

#[test]
fn the_test_audit_compares_with_the_base_commit_on_a_resumed_run() {
    require_engine();
    // The exam writes one JUnit test case per line of cases.txt, and passes
    // when fixed.txt exists. The agent fixes it but drops a case.
    let exam = r#"mkdir -p out; { echo '<testsuite>'; while read c; do echo "<testcase name=\"$c\"/>"; done < cases.txt; echo '</testsuite>'; } > out/r.xml; test -f fixed.txt"#;
    let agent = "if [ \"$PROCTOR_RUN\" -ge 2 ]; then touch fixed.txt; sed -i 1d cases.txt; fi\n";
    let repo = TestRepo::new()
        .file("cases.txt", "a\nb\nc\n")
        .file("exam.sh", exam)
        .file("agent.sh", agent)
        .manifest("loop: fix\nagent: sh agent.sh\ndone_when: sh exam.sh\nbudget: 1 run\ntests: {junit: out, expect_delta: 0}\n")
        .commit("three cases");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = repo.proctor(&["answer", "fix", "keep going"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The second run starts on a commit that is not the base: the base's
    // count comes from administering the exam there once.
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let events = repo.events();
    assert!(events.iter().any(|r| matches!(
        r.event,
        Event::CheckResult {
            phase: Phase::Baseline,
            ..
        }
    )));
    let failed = events.iter().find_map(|r| match &r.event {
        Event::TestAudit {
            passed: false,
            reason: Some(reason),
            baseline,
            ..
        } => Some((reason.clone(), *baseline)),
        _ => None,
    });
    let (reason, baseline) = failed.expect("a failed test audit");
    assert_eq!(baseline, Some(3));
    assert!(reason.contains("base commit had 3"), "{reason}");
    repo.assert_no_containers();
}

#[test]
fn a_journal_link_to_a_host_file_is_repaired_and_never_read() {
    require_engine();
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("secret.txt");
    std::fs::write(&secret, "host secret 7f3a\n").unwrap();
    let agent = format!(
        "ln -sfn {} .proctor/journal/fix.md\n",
        secret.canonicalize().unwrap().display()
    );
    let repo = TestRepo::new()
        .file("agent.sh", &format!("cat\n{agent}"))
        .manifest("loop: fix\nagent: sh agent.sh\ndone_when: 'exit 1'\nbudget: 2 runs\n")
        .commit("journal");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let prompt = repo.read(".proctor/logs/fix.run2.log");
    assert!(
        prompt.contains("## Journal"),
        "the agent echoes its prompt: {prompt}"
    );
    assert!(!prompt.contains("host secret"), "{prompt}");
    assert!(repo.events().iter().any(|r| matches!(
        &r.event,
        Event::Repaired { path, .. } if path == ".proctor/journal/fix.md"
    )));
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "host secret 7f3a\n"
    );
    repo.assert_no_containers();
}

/// The user's uncommitted edit to the manifest in their checkout is
/// neither obeyed nor undone: the run follows the manifest its branch
/// has, says so, and never touches the checkout.
#[test]
fn a_users_uncommitted_edit_to_the_manifest_is_left_alone_and_not_obeyed() {
    require_engine();
    let repo = TestRepo::new()
        .manifest("loop: stuck\nagent: 'true'\ndone_when: 'exit 1'\nbudget: 1 run\n")
        .commit("stuck");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // The user raises the budget without committing.
    let edited = "loop: stuck\nagent: 'true'\ndone_when: 'exit 1'\nbudget: 2 runs\n";
    repo.write("proctor.yaml", edited);
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the manifest you ran differs from the one on `proctor/stuck`"),
        "{err}"
    );
    assert_eq!(repo.agent_starts(), 1, "the branch's budget of 1 run holds");
    assert_eq!(repo.read("proctor.yaml"), edited, "the user's edit is kept");
    assert!(!repo.exists(".proctor/quarantine"));
    repo.assert_no_containers();
}

#[test]
fn an_agents_edit_left_by_a_killed_run_is_quarantined_on_resume() {
    require_engine();
    let agent = "if [ ! -f started ]; then touch started; echo 'echo ok' > test.sh; sleep 60; fi\n";
    let repo = TestRepo::new()
        .file("calc.sh", CALC)
        .file("test.sh", TEST)
        .file("agent.sh", agent)
        .manifest("loop: fix\nagent: sh agent.sh\ndone_when: sh test.sh\nbudget: 2 runs\nprotected: [test.sh]\n")
        .commit("buggy");
    let mut child = repo.spawn_quiet(&["run"]);
    repo.wait_until("the agent never started", |r| {
        r.wt_exists("fix", "started") && r.wt_read("fix", "test.sh") == "echo ok\n"
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    let out = repo.proctor(&["run"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the weakened exam must not pass: {}",
        stderr(&out)
    );
    // Settled as the killed agent's attempt: its edit to the exam is
    // quarantined like any agent's, and the rest is committed as run 1.
    assert!(repo.events().iter().any(|r| matches!(
        &r.event,
        Event::Quarantine { phase, run: 1, files, .. } if phase == "agent" && files[0].path == "test.sh"
    )));
    assert!(repo.events().iter().any(|r| matches!(
        &r.event,
        Event::Interrupted {
            run: 1,
            edits: true,
            ..
        }
    )));
    assert_eq!(repo.wt_read("fix", "test.sh"), TEST);
    assert_eq!(head_blob(&repo, "test.sh").as_deref(), Some(TEST));
    assert_eq!(repo.read("test.sh"), TEST, "the checkout never changed");
    repo.assert_no_containers();
}

/// Regression (issue 12): `once --until "sh run-tests.sh"` protected
/// nothing, so an agent that wrote `exit 0` into run-tests.sh closed the
/// loop. The files the exam names are protected by default, `--protect`
/// adds more, and the report lists both.
fn once_protects_the_files_its_exam_names(engine: proctor::cage::EngineKind) {
    require_engine();
    let agent = "cat >/dev/null\necho 'exit 0' > run-tests.sh\necho 'true' > tests/extra.sh\n";
    let repo = TestRepo::new()
        .engine(&common::socket(engine))
        .file("calc.sh", CALC)
        .file("run-tests.sh", TEST)
        .file("tests/keep.sh", "true\n")
        .file("agent.sh", agent)
        .commit("buggy");
    let out = repo.proctor(&[
        "once",
        "--until",
        "sh run-tests.sh",
        "--agent",
        "sh agent.sh",
        "--budget",
        "1 run",
        "--protect",
        "tests/**",
        "--",
        "make run-tests.sh pass",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(!repo
        .events()
        .iter()
        .any(|r| matches!(r.event, Event::Close { .. })));
    let files: Vec<(String, String)> = repo
        .events()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::Quarantine { files, .. } => Some(files),
            _ => None,
        })
        .flatten()
        .map(|f| (f.path, f.rule))
        .collect();
    assert!(
        files.contains(&("run-tests.sh".into(), "protected: `run-tests.sh`".into())),
        "{files:?}"
    );
    assert!(
        files.contains(&("tests/extra.sh".into(), "protected: `tests/**`".into())),
        "{files:?}"
    );
    assert_eq!(
        repo.read_at("proctor/once", "run-tests.sh").as_deref(),
        Some(TEST)
    );
    assert!(
        stdout(&out).contains("`protected:` `run-tests.sh`, `tests/**`"),
        "{}",
        stdout(&out)
    );
    repo.assert_no_containers();
}

common::on_both_engines!(
    once_protects_the_files_its_exam_names,
    agent_and_exam_text_reaches_no_surface_raw,
    a_protected_file_rewritten_and_restored_during_the_exam_is_caught,
    an_agents_exam_cannot_poison_the_cache_the_base_commits_exam_fills
);

/// `caches:`: the exam on the base commit (the user's code) fills the
/// cache; the exam of an agent's commit reads it warm, and what it plants,
/// rewrites or deletes there reaches neither the next exam nor the host.
fn an_agents_exam_cannot_poison_the_cache_the_base_commits_exam_fills(
    engine: proctor::cage::EngineKind,
) {
    require_engine();
    // What the code under test does depends on the agent's `stage` file:
    // none on the base commit, `poison` after run 1, `check` after run 2.
    let exam = r#"c=/cache/c
case "$(cat stage 2>/dev/null)" in
  "") echo warm > $c/artifact; echo keep > $c/keep; mkdir -p $c/deps; echo dep > $c/deps/lib; exit 1 ;;
  poison)
    [ "$(cat $c/artifact)" = warm ] && echo "read the cache warm"
    echo planted > $c/planted; echo poisoned > $c/artifact; rm $c/keep
    echo poisoned > $c/deps/lib; mkdir $c/more
    echo "planted: $(ls $c | tr '\n' ' ')"; exit 1 ;;
  check)
    echo "sees: $(ls $c | tr '\n' ' ')$(cat $c/artifact $c/deps/lib | tr '\n' ' ')"
    [ ! -e $c/planted ] && [ ! -e $c/more ] && [ -f $c/keep ] && [ "$(cat $c/artifact)" = warm ] && [ "$(cat $c/deps/lib)" = dep ] ;;
esac
"#;
    let agent = "cat >/dev/null
if [ -f stage ]; then echo check > stage; else echo poison > stage; fi
";
    let scratch = tempfile::tempdir().unwrap();
    let repo = TestRepo::new()
        .engine(&common::socket(engine))
        .env("PROCTOR_TMPDIR", scratch.path())
        .file("exam.sh", exam)
        .file("agent.sh", agent)
        .manifest("loop: fix\nagent: sh agent.sh\ndone_when: sh exam.sh\nbudget: 3 runs\nnetwork: none\ncaches: [c]\n")
        .commit("fixture");
    let out = repo.proctor(&["run"]);
    let poison = repo.read(".proctor/logs/fix.run1.exam.log");
    let check = repo.read(".proctor/logs/fix.run2.exam.log");
    // The poisoning exam read the base's cache and wrote over all of it.
    assert!(poison.contains("read the cache warm"), "{poison}");
    assert!(
        poison.contains("planted: artifact deps more planted"),
        "{poison}"
    );
    // The next exam saw the cache as the base commit's exam left it.
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\npoisoning exam: {poison}\nchecking exam: {check}",
        stderr(&out)
    );
    assert_eq!(repo.agent_starts(), 2);
    // On the host: the base commit's writes, nothing else.
    let cache = ".proctor/caches/c";
    assert_eq!(repo.read(&format!("{cache}/artifact")), "warm\n");
    assert_eq!(repo.read(&format!("{cache}/keep")), "keep\n");
    assert_eq!(repo.read(&format!("{cache}/deps/lib")), "dep\n");
    assert_eq!(
        common::entries(&repo.path().join(cache)),
        ["artifact", "deps", "keep"]
    );
    // Every copy's layer went with its container.
    assert_eq!(common::entries(scratch.path()), Vec::<String>::new());
    repo.assert_no_containers();
}

/// Regression (issue 12): escape sequences and newlines in file names and
/// in agent and exam output reached the terminal raw in `run`, `audit`,
/// `quarantine`, `quarantine diff` and the cards, and a newline in a file
/// name forged whole `audit` lines. Every surface shows them escaped.
fn agent_and_exam_text_reaches_no_surface_raw(engine: proctor::cage::EngineKind) {
    require_engine();
    // A screen clear, a fake green pass, an OSC 52 clipboard write, a
    // carriage return, and a newline that starts a forged proctor line.
    let nasty = r"$(printf 'x\nproctor: fix: closed after 1 run\033[2J\033[32mexam passed\033[0m\033]52;c;cm0gLXJmIH4=\007\rok')";
    let agent = format!(
        "cat >/dev/null\nprintf '\\033[2J\\033[32mall tests passed\\033[0m\\n'\nmkdir -p tests\necho 'exit 0' > \"tests/{nasty}\"\n"
    );
    let exam = "printf '\\033[2J\\033[32mexam passed\\033[0m\\r\\nproctor: fix: closed after 1 run\\n'; exit 1\n";
    let repo = TestRepo::new()
        .engine(&common::socket(engine))
        .file("exam.sh", exam)
        .file("tests/keep.sh", "true\n")
        .file("agent.sh", &agent)
        .manifest("loop: fix\nagent: sh agent.sh\ndone_when: sh exam.sh\nbudget: 1 run\nprotected: [\"tests/**\"]\n")
        .commit("fixture");
    let run = repo.proctor(&["run"]);
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    let id = repo
        .events()
        .into_iter()
        .find_map(|r| match r.event {
            Event::Quarantine { id, files, .. } if files[0].path.contains('\n') => Some(id),
            _ => None,
        })
        .expect("the file with a newline in its name is quarantined");
    let mut surfaces = vec![
        ("run (stderr)", stderr(&run)),
        ("run (stdout)", stdout(&run)),
        ("INBOX/fix.md", repo.read("INBOX/fix.md")),
    ];
    for args in [
        &["audit"][..],
        &["quarantine"],
        &["quarantine", "diff", &id],
        &["status"],
        &["inbox"],
    ] {
        let out = repo.proctor(args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        surfaces.push(("proctor", format!("{}{}", stdout(&out), stderr(&out))));
    }
    for (surface, text) in &surfaces {
        assert!(
            !text.contains(['\x1b', '\x07', '\r']),
            "{surface} carries a raw control character:\n{text:?}"
        );
        // The exam's output is shown as a block in the card's fence, its
        // own lines its own; everywhere else a line is proctor's.
        let lines = match text.split_once("## Last failure") {
            Some((before, after)) => {
                format!("{before}{}", after.split_once("## What to do").unwrap().1)
            }
            None => text.clone(),
        };
        for line in lines.lines() {
            let line = line.trim_start();
            assert!(
                !line.contains("proctor: fix: closed after 1 run") || line.contains("\\n"),
                "{surface}: a forged line `{line}`"
            );
        }
    }
    let audit = &surfaces[3].1;
    assert!(
        audit.contains("tests/x\\nproctor: fix: closed after 1 run\\x1b[2J"),
        "{audit}"
    );
    repo.assert_no_containers();
}

/// A repository with 1,000 protected tests next to an unprotected file in
/// the same directory (more than read-only mounts could cover), whose
/// exam is `exam`.
fn thousand_protected(engine: proctor::cage::EngineKind, exam: &str) -> TestRepo {
    let mut repo = TestRepo::new()
        .engine(&common::socket(engine))
        .file("tests/notes.txt", "unprotected\n")
        .file("exam.sh", exam)
        .manifest("loop: many\nagent: cat\ndone_when: sh exam.sh\nbudget: 1 run\nprotected: [\"tests/t*.sh\", exam.sh]\n");
    for n in 0..1000 {
        repo = repo.file(&format!("tests/t{n:04}.sh"), "exit 1\n");
    }
    repo.commit("a thousand tests")
}

/// Regression (issue 12): past 200 protected paths the verifier mounted no
/// more read-only, and an exam that rewrote an unmounted test and put it
/// back (content and mtime) before exiting 0 passed the after-exam hash.
/// Now every one of 1,000 protected files is unwritable inside the
/// verifier (write, append, replace, rename, remove, chmod all refused)
/// while the unprotected file next to them stays writable; the real test
/// decides. The honest twin, which writes only that file, closes.
fn a_protected_file_rewritten_and_restored_during_the_exam_is_caught(
    engine: proctor::cage::EngineKind,
) {
    require_engine();
    let cheat = thousand_protected(
        engine,
        concat!(
            "n=0\n",
            "for f in tests/t*.sh; do\n",
            "  (echo 'exit 0' > \"$f\") 2>/dev/null && n=$((n+1))\n",
            "done\n",
            "f=tests/t0999.sh\n",
            "(echo 'exit 0' >> $f) 2>/dev/null && n=$((n+1))\n",
            "(echo 'exit 0' > /tmp/t && mv -f /tmp/t $f) 2>/dev/null && n=$((n+1))\n",
            "(cp -p $f /tmp/keep && rm -f $f && echo 'exit 0' > $f) 2>/dev/null && n=$((n+1))\n",
            "(mv $f tests/moved.sh) 2>/dev/null && n=$((n+1))\n",
            "(chmod u+w $f) 2>/dev/null && n=$((n+1))\n",
            "(ln -sf /dev/null $f) 2>/dev/null && n=$((n+1))\n",
            "echo \"protected writes that succeeded: $n\"\n",
            "echo seen > tests/notes.txt && echo 'unprotected write: ok'\n",
            "echo fresh > tests/new.txt && echo 'new file: ok'\n",
            "sh $f\n",
        ),
    );
    let out = cheat.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let log = cheat.read(".proctor/logs/many.run1.exam.log");
    assert!(log.contains("protected writes that succeeded: 0"), "{log}");
    assert!(log.contains("unprotected write: ok"), "{log}");
    assert!(log.contains("new file: ok"), "{log}");
    let exits: Vec<i64> = cheat
        .events()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::CheckResult { exit, .. } => Some(exit),
            _ => None,
        })
        .collect();
    assert_eq!(exits, [1, 1], "the real test decided both exams");
    cheat.assert_no_containers();

    let twin = thousand_protected(engine, "echo seen > tests/notes.txt\nexit 0\n");
    let out = twin.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    twin.assert_no_containers();
}
