//! The judge end to end (issue 15): a scripted judge (a shell script, no
//! model) in its own container vetoes passes for a wrong first line, an
//! error and a timeout, never turns a failing exam into a pass, sees no
//! tree and no host variable it was not given, and lets the loop close
//! with `PASS`. Real binary, both engines.

use crate::common;

use common::{require_engine, stderr, TestRepo};
use proctor::engine::events::Event;

const CALC: &str = "add() { echo $(( $1 - $2 )); }\n";
const TEST: &str = r#". ./calc.sh
[ "$(add 2 2)" = 4 ] || { echo "FAIL: add 2 2 printed $(add 2 2)"; exit 1; }
echo ok
"#;

/// Run 1 leaves the bug (the exam fails); every later run fixes it. Each
/// run writes its number into `mode`, which steers the judge.
const AGENT: &str = r#"cat
echo "mode=$PROCTOR_RUN" > mode
if [ "$PROCTOR_RUN" -ge 2 ]; then sed -i 's/\$1 - \$2/$1 + $2/' calc.sh; fi
"#;

/// What the judge does, by the run number in the diff: run 1 it would
/// pass (it is never asked: the exam fails), run 2 `PASS` on the wrong
/// line, run 3 an error, run 4 no answer before its timeout, run 5 `PASS`
/// with what it could see.
const JUDGE: &str = r#"diff=$(cat)
case "$diff" in
*"+mode=1"*) echo PASS ;;
*"+mode=2"*) printf 'Looks fine to me.\nPASS\n' ;;
*"+mode=3"*) echo "cannot reach the model" >&2; exit 3 ;;
*"+mode=4"*) sleep 300 ;;
*"+mode=5"*)
  echo PASS
  echo "entries=$(ls -A | wc -l)"
  if [ -e /work ] || [ -e calc.sh ]; then echo tree=yes; else echo tree=no; fi
  echo "token=${JUDGE_TOKEN:-none} secret=${HOST_SECRET:-none}"
  nl='
'
  case "$diff" in
  *"${nl}RUBRIC:${nl}the fix is minimal${nl}"*"${nl}BEGIN UNTRUSTED DIFF "*"${nl}+add() { echo \$(( \$1 + \$2 )); }${nl}"*"${nl}END UNTRUSTED DIFF "*) echo order=ok ;;
  *) echo order=bad ;;
  esac ;;
*) echo "no mode"; exit 1 ;;
esac
"#;

fn a_judge_vetoes_until_its_first_line_is_pass(engine: proctor::cage::EngineKind) {
    require_engine();
    let scripts = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(scripts.path()).unwrap();
    std::fs::write(dir.join("judge.sh"), JUDGE).unwrap();
    let config = format!(
        "mounts: [\"{d}\"]\njudge:\n  command: sh {d}/judge.sh\n  env: [JUDGE_TOKEN]\n  timeout: 15s\n",
        d = dir.display()
    );
    let repo = TestRepo::new()
        .engine(&common::socket(engine))
        .file("calc.sh", CALC)
        .file("test.sh", TEST)
        .file("agent.sh", AGENT)
        .file(".proctor/config.yaml", &config)
        .manifest(
            "loop: fix\nagent: sh agent.sh\ndone_when: sh test.sh\njudge: the fix is minimal\nbudget: 6 runs\n",
        )
        .commit("buggy");
    let out = repo.proctor_env(
        &["run"],
        &[("JUDGE_TOKEN", "t0k"), ("HOST_SECRET", "s3cret")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rulings: Vec<(u32, bool, String)> = repo
        .events()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::Judged {
                run, pass, reason, ..
            } => Some((run, pass, reason)),
            _ => None,
        })
        .collect();
    let runs: Vec<u32> = rulings.iter().map(|r| r.0).collect();
    // The failing exam of run 1 was never put to the (passing) judge.
    assert_eq!(runs, [2, 3, 4, 5], "{rulings:?}");
    assert!(!rulings[0].1);
    assert_eq!(rulings[0].2, "Looks fine to me.\nPASS");
    assert!(!rulings[1].1);
    assert_eq!(rulings[1].2, "the judge exited 3: cannot reach the model");
    assert!(!rulings[2].1);
    assert_eq!(
        rulings[2].2,
        "the judge gave no answer within its 15s timeout"
    );
    assert!(rulings[3].1, "{rulings:?}");
    // An empty working directory, no tree, only the variable it was given,
    // and the diff between its markers after the rubric.
    assert_eq!(
        rulings[3].2,
        "entries=0\ntree=no\ntoken=t0k secret=none\norder=ok"
    );
    assert_eq!(repo.agent_starts(), 5);
    // Each veto's reason reached the next agent's prompt.
    let prompt = repo.read(".proctor/logs/fix.run3.log");
    assert!(
        prompt.contains("the judge vetoed it: Looks fine to me."),
        "{prompt}"
    );
    let prompt = repo.read(".proctor/logs/fix.run5.log");
    assert!(
        prompt.contains("no answer within its 15s timeout"),
        "{prompt}"
    );
    repo.assert_no_containers();
}

#[test]
fn a_rubric_without_a_judge_is_a_lint_and_run_error_naming_the_field() {
    let repo = TestRepo::new()
        .file("test.sh", "exit 0\n")
        .manifest(
            "loop: fix\nagent: sh agent.sh\ndone_when: sh test.sh\njudge: the fix is minimal\n",
        )
        .commit("start");
    for verb in ["lint", "run"] {
        let out = repo.proctor(&[verb]);
        assert_eq!(out.status.code(), Some(1), "{verb}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("error: loop `fix` has `judge:` (a rubric that may veto a pass) but `.proctor/config.yaml` names no `judge` command"),
            "{verb}: {}",
            stderr(&out)
        );
    }
    assert!(!repo.exists(".proctor/events.jsonl"));
}

/// Lute's judge: passes a diff that adds `docs.md`, vetoes anything else.
const LUTE_JUDGE: &str = r#"case "$(cat)" in
*"+++ b/docs.md"*) echo PASS ;;
*) echo "FAIL: docs.md is missing"; exit 0 ;;
esac
"#;

fn a_lute_manifest_judged_by_its_rubric_runs_unchanged(engine: proctor::cage::EngineKind) {
    require_engine();
    let scripts = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(scripts.path()).unwrap();
    std::fs::write(dir.join("judge.sh"), LUTE_JUDGE).unwrap();
    let config = format!(
        "mounts: [\"{d}\"]\njudge: sh {d}/judge.sh\n",
        d = dir.display()
    );
    let repo = TestRepo::new()
        .engine(&common::socket(engine))
        .file(
            "agent.sh",
            "cat >/dev/null\necho '# Flags' > docs.md\n",
        )
        .file(".proctor/config.yaml", &config)
        .file(
            "lute.yaml",
            "loop: docs\ntask: document the flags\nagent: sh agent.sh\ndone_when: \"judge: the docs explain every flag\"\nbudget: 3 runs\n",
        )
        .commit("start");
    // `lint` warns, and asks the judge only with `--judges`.
    let out = repo.proctor(&["lint"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: loop `docs` is judged, not examined"),
        "{}",
        stderr(&out)
    );
    assert!(common::stdout(&out).contains("not asked: `proctor lint --judges`"));
    let out = repo.proctor(&["lint", "--judges"]);
    assert!(
        common::stdout(&out).contains("judge: veto: FAIL: docs.md is missing"),
        "{}",
        common::stdout(&out)
    );
    // `proctor judge` on HEAD's diff, by hand: a veto exits 3.
    let out = repo.proctor(&["judge", "--", "the docs explain every flag"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(common::stdout(&out).contains("FAIL: docs.md is missing"));
    // The run: the judge is the exam; no verifier runs.
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(repo.agent_starts(), 1);
    let events = repo.events();
    let judged: Vec<bool> = events
        .iter()
        .filter_map(|r| match &r.event {
            Event::Judged { pass, .. } => Some(*pass),
            _ => None,
        })
        .collect();
    assert_eq!(judged, [false, true]);
    assert!(events.iter().all(|r| !matches!(
        &r.event,
        Event::CheckResult { container, .. } if !container.is_empty()
    )));
    assert!(
        common::stdout(&out).contains("loop `docs` is judged, not examined"),
        "{}",
        common::stdout(&out)
    );
    // By hand on a commit that adds the docs: exit 0.
    repo.write("docs.md", "# Flags\n");
    let repo = repo.commit("docs");
    let out = repo.proctor(&["judge", "--", "the docs explain every flag"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(common::stdout(&out).starts_with("PASS"));
    repo.assert_no_containers();
}

common::on_both_engines!(
    a_judge_vetoes_until_its_first_line_is_pass,
    a_lute_manifest_judged_by_its_rubric_runs_unchanged
);
