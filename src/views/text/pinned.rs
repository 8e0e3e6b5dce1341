//! Snapshots of the text views (`status`, `watch --snapshot`, `inbox`,
//! `runs`, `stats`) on fixed events: three runs of one loop tree, with
//! fixed timestamps, a fixed "now", a fixed repository path and no colour,
//! so a snapshot changes only when a view's wording or layout does.

use std::path::Path;

use super::{inbox, runs_table, stats_summary, tree};
use crate::engine::events;
use crate::manifest::{self, Manifest};
use crate::state::Paths;
use crate::views::{history, raw_types, CardFile, Context, View};

pub(crate) const MANIFEST: &str = "loop: release
done_when: make release-check
gate: {human: 2}
loops:
  - loop: fix-tests
    done_when: cargo test
    budget: 5 runs
  - loop: docs
    done_when: make docs
    budget: 2 runs
  - loop: deploy-ready
    done_when: sh ready.sh
    check_every: 5m
    budget: 2h
";

/// Run 1: `fix-tests` closes, `docs` spends its budget and blocks,
/// `deploy-ready` is not yet ready; the run ends blocked (exit 3).
pub(crate) const RUN_1: &str = r#"{"v":1,"ts":1764900000.0,"run":"5e1f0a2b","type":"run_start","root":"release","branch":"proctor/release","base":"0123456789abcdef0123456789abcdef01234567","manifest":"proctor.yaml","engine":"docker 27.5.1","pid":4242}
{"v":1,"ts":1764900005.0,"run":"5e1f0a2b","type":"check_result","loop":"fix-tests","phase":"precheck","verdict":"fail","exit":101,"timed_out":false,"secs":3.5,"commit":"0123456789abcdef0123456789abcdef01234567","container":"c1","image":"host","log":".proctor/logs/fix-tests/check-0.log"}
{"v":1,"ts":1764900010.0,"run":"5e1f0a2b","type":"agent_start","loop":"fix-tests","n":1,"of":5,"log":".proctor/logs/fix-tests/agent-1.log","image":"host"}
{"v":1,"ts":1764900052.0,"run":"5e1f0a2b","type":"agent_end","loop":"fix-tests","n":1,"exit":0,"timed_out":false,"secs":42.0,"edits":true,"container":"c2","image":"sha256:0123"}
{"v":1,"ts":1764900053.0,"run":"5e1f0a2b","type":"commit","loop":"fix-tests","n":1,"commit":"1111111111111111111111111111111111111111"}
{"v":1,"ts":1764900058.0,"run":"5e1f0a2b","type":"check_result","loop":"fix-tests","phase":"verify","verdict":"pass","exit":0,"timed_out":false,"secs":4.0,"commit":"1111111111111111111111111111111111111111","container":"c3","image":"host","log":".proctor/logs/fix-tests/verify-1.log"}
{"v":1,"ts":1764900058.5,"run":"5e1f0a2b","type":"close","loop":"fix-tests","runs":1,"commit":"1111111111111111111111111111111111111111"}
{"v":1,"ts":1764900060.0,"run":"5e1f0a2b","type":"check_result","loop":"docs","phase":"precheck","verdict":"fail","exit":2,"timed_out":false,"secs":1.0,"commit":"1111111111111111111111111111111111111111","container":"c4","image":"host","log":".proctor/logs/docs/check-0.log"}
{"v":1,"ts":1764900061.0,"run":"5e1f0a2b","type":"agent_start","loop":"docs","n":1,"of":2,"log":".proctor/logs/docs/agent-1.log","image":"host"}
{"v":1,"ts":1764900091.0,"run":"5e1f0a2b","type":"agent_end","loop":"docs","n":1,"exit":0,"timed_out":false,"secs":30.0,"edits":true,"container":"c5","image":"sha256:0123"}
{"v":1,"ts":1764900092.0,"run":"5e1f0a2b","type":"quarantine","loop":"docs","n":1,"phase":"agent","id":"docs-run1-ab12","path":".proctor/quarantine/docs-run1-ab12","files":[{"path":"Makefile","change":"modified","rule":"protected: `Makefile`"}]}
{"v":1,"ts":1764900092.5,"run":"5e1f0a2b","type":"commit","loop":"docs","n":1,"commit":"2222222222222222222222222222222222222222"}
{"v":1,"ts":1764900097.0,"run":"5e1f0a2b","type":"check_result","loop":"docs","phase":"verify","verdict":"fail","exit":2,"timed_out":false,"secs":1.5,"commit":"2222222222222222222222222222222222222222","container":"c6","image":"host","log":".proctor/logs/docs/verify-1.log"}
{"v":1,"ts":1764900098.0,"run":"5e1f0a2b","type":"agent_start","loop":"docs","n":2,"of":2,"log":".proctor/logs/docs/agent-2.log","image":"host"}
{"v":1,"ts":1764900118.0,"run":"5e1f0a2b","type":"agent_end","loop":"docs","n":2,"exit":1,"timed_out":false,"secs":20.0,"edits":false,"container":"c7","image":"sha256:0123"}
{"v":1,"ts":1764900121.0,"run":"5e1f0a2b","type":"check_result","loop":"docs","phase":"verify","verdict":"fail","exit":2,"timed_out":false,"secs":1.5,"commit":"2222222222222222222222222222222222222222","container":"c8","image":"host","log":".proctor/logs/docs/verify-2.log"}
{"v":1,"ts":1764900122.0,"run":"5e1f0a2b","type":"card","loop":"docs","kind":"blocked","path":"INBOX/docs.md","reason":"the run budget (2 runs) is spent"}
{"v":1,"ts":1764900125.0,"run":"5e1f0a2b","type":"check_result","loop":"deploy-ready","phase":"precheck","verdict":"not_yet","exit":75,"timed_out":false,"secs":0.5,"commit":"2222222222222222222222222222222222222222","container":"c9","image":"host","log":".proctor/logs/deploy-ready/check-0.log"}
{"v":1,"ts":1764900126.0,"run":"5e1f0a2b","type":"wait","loop":"deploy-ready","secs":300.0}
{"v":1,"ts":1764900130.0,"run":"5e1f0a2b","type":"run_end","outcome":"blocked","exit":3,"secs":130.0}
"#;

/// Run 2, an hour later, after an answer: `docs` and `deploy-ready` close,
/// the root's exam passes and its gate waits for two approvals (exit 4).
pub(crate) const RUN_2: &str = r#"{"v":1,"ts":1764903600.0,"run":"9c3d7e10","type":"run_start","root":"release","branch":"proctor/release","base":"0123456789abcdef0123456789abcdef01234567","manifest":"proctor.yaml","engine":"docker 27.5.1","pid":4343}
{"v":1,"ts":1764903604.0,"run":"9c3d7e10","type":"check_result","loop":"docs","phase":"precheck","verdict":"fail","exit":2,"timed_out":false,"secs":1.0,"commit":"2222222222222222222222222222222222222222","container":"d1","image":"host","log":".proctor/logs/docs/check-2.log"}
{"v":1,"ts":1764903605.0,"run":"9c3d7e10","type":"agent_start","loop":"docs","n":3,"of":4,"log":".proctor/logs/docs/agent-3.log","image":"host"}
{"v":1,"ts":1764903680.0,"run":"9c3d7e10","type":"agent_end","loop":"docs","n":3,"exit":0,"timed_out":false,"secs":75.0,"edits":true,"container":"d2","image":"sha256:0123"}
{"v":1,"ts":1764903681.0,"run":"9c3d7e10","type":"commit","loop":"docs","n":3,"commit":"3333333333333333333333333333333333333333"}
{"v":1,"ts":1764903684.0,"run":"9c3d7e10","type":"check_result","loop":"docs","phase":"verify","verdict":"pass","exit":0,"timed_out":false,"secs":1.5,"commit":"3333333333333333333333333333333333333333","container":"d3","image":"host","log":".proctor/logs/docs/verify-3.log"}
{"v":1,"ts":1764903684.5,"run":"9c3d7e10","type":"close","loop":"docs","runs":3,"commit":"3333333333333333333333333333333333333333"}
{"v":1,"ts":1764903686.0,"run":"9c3d7e10","type":"check_result","loop":"deploy-ready","phase":"precheck","verdict":"pass","exit":0,"timed_out":false,"secs":0.5,"commit":"3333333333333333333333333333333333333333","container":"d4","image":"host","log":".proctor/logs/deploy-ready/check-1.log"}
{"v":1,"ts":1764903686.5,"run":"9c3d7e10","type":"close","loop":"deploy-ready","runs":0,"commit":"3333333333333333333333333333333333333333"}
{"v":1,"ts":1764903700.0,"run":"9c3d7e10","type":"check_result","loop":"release","phase":"precheck","verdict":"pass","exit":0,"timed_out":false,"secs":12.0,"commit":"3333333333333333333333333333333333333333","container":"d5","image":"host","log":".proctor/logs/release/check-0.log"}
{"v":1,"ts":1764903701.0,"run":"9c3d7e10","type":"gate","loop":"release","status":"ready","commit":"3333333333333333333333333333333333333333","approvals":[],"needed":2}
{"v":1,"ts":1764903701.5,"run":"9c3d7e10","type":"card","loop":"release","kind":"ready","path":"INBOX/release.md","reason":"the exam passes; 2 approvals are needed"}
{"v":1,"ts":1764903702.0,"run":"9c3d7e10","type":"run_end","outcome":"gated","exit":4,"secs":102.0}
"#;

/// Run 3, live (its pid holds the lock): `fix-tests` is rechecked and its
/// agent is at work.
pub(crate) const RUN_3: &str = r#"{"v":1,"ts":1764910800.0,"run":"c0ffee01","type":"run_start","root":"release","branch":"proctor/release","base":"0123456789abcdef0123456789abcdef01234567","manifest":"proctor.yaml","engine":"podman 5.4.2","pid":4444}
{"v":1,"ts":1764910804.0,"run":"c0ffee01","type":"check_result","loop":"fix-tests","phase":"precheck","verdict":"fail","exit":101,"timed_out":false,"secs":3.0,"commit":"3333333333333333333333333333333333333333","container":"e1","image":"host","log":".proctor/logs/fix-tests/check-1.log"}
{"v":1,"ts":1764910808.0,"run":"c0ffee01","type":"agent_start","loop":"fix-tests","n":2,"of":5,"log":".proctor/logs/fix-tests/agent-2.log","image":"host"}
"#;

/// The repository the views read; it does not exist, so there is no ledger
/// and no card is answered.
const ROOT: &str = "/nonexistent/proctor-views-repo";

fn card(loop_id: &str, kind: &str, title: &str, reason: &str) -> CardFile {
    CardFile {
        loop_id: loop_id.into(),
        kind: kind.into(),
        title: title.into(),
        reason: reason.into(),
        path: format!("INBOX/{loop_id}.md"),
        mtime: 1_764_900_122.0,
    }
}

fn blocked_docs() -> CardFile {
    card(
        "docs",
        "blocked",
        "BLOCKED: docs",
        "The run budget (2 runs) is spent and the exam still fails.",
    )
}

fn ready_release() -> CardFile {
    card(
        "release",
        "ready",
        "READY: release",
        "The exam passes on 333333333333; it needs 2 approvals to close.",
    )
}

pub(crate) fn manifest() -> Manifest {
    match manifest::parse(MANIFEST, Path::new("proctor.yaml")) {
        Ok(m) => m,
        Err(e) => panic!("the fixture manifest does not parse: {e}"),
    }
}

/// A view context as `Context::load` would build it from these files.
fn context(
    runs: &[&str],
    manifest: Option<Manifest>,
    holder: Option<i32>,
    cards: Vec<CardFile>,
    now: f64,
) -> Context {
    let text = runs.concat();
    Context {
        paths: Paths::new(Path::new(ROOT)),
        manifest,
        records: events::parse(&text),
        raw: raw_types(&text),
        holder,
        cards,
        now,
    }
}

fn status(ctx: &Context) -> String {
    tree(&View::build(ctx), "proctor status", false)
}

#[test]
fn status_with_no_run_yet() {
    let ctx = context(&[], Some(manifest()), None, vec![], 1_764_900_000.0);
    insta::assert_snapshot!(status(&ctx));
}

#[test]
fn status_of_a_blocked_run() {
    let ctx = context(
        &[RUN_1],
        Some(manifest()),
        None,
        vec![blocked_docs()],
        1_764_900_200.0,
    );
    insta::assert_snapshot!(status(&ctx));
}

#[test]
fn status_of_a_blocked_run_without_a_manifest() {
    let ctx = context(&[RUN_1], None, None, vec![blocked_docs()], 1_764_900_200.0);
    insta::assert_snapshot!(status(&ctx));
}

#[test]
fn status_of_a_gated_run() {
    let ctx = context(
        &[RUN_1, RUN_2],
        Some(manifest()),
        None,
        vec![ready_release()],
        1_764_903_800.0,
    );
    insta::assert_snapshot!(status(&ctx));
}

#[test]
fn status_of_a_running_run() {
    let ctx = context(
        &[RUN_1, RUN_2, RUN_3],
        Some(manifest()),
        Some(4444),
        vec![],
        1_764_910_875.0,
    );
    insta::assert_snapshot!(status(&ctx));
}

#[test]
fn status_of_a_run_killed_without_a_final_event() {
    let ctx = context(
        &[RUN_1, RUN_2, RUN_3],
        Some(manifest()),
        None,
        vec![],
        1_764_910_875.0,
    );
    insta::assert_snapshot!(status(&ctx));
}

#[test]
fn watch_snapshot_of_a_running_run() {
    let ctx = context(
        &[RUN_1, RUN_2, RUN_3],
        Some(manifest()),
        Some(4444),
        vec![],
        1_764_910_875.0,
    );
    insta::assert_snapshot!(tree(
        &View::build(&ctx),
        "proctor watch · replayed from events (no exam re-run)",
        false
    ));
}

#[test]
fn inbox_with_a_blocked_and_a_gated_loop() {
    let ctx = context(
        &[RUN_1, RUN_2],
        Some(manifest()),
        None,
        vec![blocked_docs(), ready_release()],
        1_764_903_800.0,
    );
    insta::assert_snapshot!(inbox(&View::build(&ctx), false));
}

#[test]
fn inbox_with_nothing_waiting() {
    let ctx = context(&[RUN_1], Some(manifest()), None, vec![], 1_764_900_200.0);
    insta::assert_snapshot!(inbox(&View::build(&ctx), false));
}

#[test]
fn runs_of_three_runs_one_live() {
    let ctx = context(&[RUN_1, RUN_2, RUN_3], None, Some(4444), vec![], 0.0);
    insta::assert_snapshot!(runs_table(&history::runs(&ctx.records, ctx.holder)));
}

#[test]
fn runs_with_none_recorded() {
    insta::assert_snapshot!(runs_table(&[]));
}

#[test]
fn stats_of_three_runs_one_live() {
    let ctx = context(&[RUN_1, RUN_2, RUN_3], None, Some(4444), vec![], 0.0);
    insta::assert_snapshot!(stats_summary(&history::stats(
        &ctx.records,
        &ctx.raw,
        ctx.holder
    )));
}

#[test]
fn stats_with_none_recorded() {
    insta::assert_snapshot!(stats_summary(&history::stats(&[], &[], None)));
}

/// A `once` run (loop `once`, no manifest of its own), blocked, in a
/// repository whose `proctor.yaml` has another tree.
const ONCE_RUN: &str = r#"{"v":1,"ts":1764920000.0,"run":"0ce0ce01","type":"run_start","root":"once","branch":"proctor/once","base":"0123456789abcdef0123456789abcdef01234567","manifest":"proctor once","engine":"docker 27.5.1","pid":4545}
{"v":1,"ts":1764920003.0,"run":"0ce0ce01","type":"check_result","loop":"once","phase":"precheck","verdict":"fail","exit":1,"timed_out":false,"secs":1.0,"commit":"0123456789abcdef0123456789abcdef01234567","container":"f1","image":"host","log":".proctor/logs/once.run0.exam.log"}
{"v":1,"ts":1764920004.0,"run":"0ce0ce01","type":"agent_start","loop":"once","n":1,"of":1,"log":".proctor/logs/once.run1.log","image":"host"}
{"v":1,"ts":1764920010.0,"run":"0ce0ce01","type":"agent_end","loop":"once","n":1,"exit":0,"timed_out":false,"secs":6.0,"edits":true,"container":"f2","image":"sha256:0123"}
{"v":1,"ts":1764920011.0,"run":"0ce0ce01","type":"commit","loop":"once","n":1,"commit":"4444444444444444444444444444444444444444"}
{"v":1,"ts":1764920013.0,"run":"0ce0ce01","type":"check_result","loop":"once","phase":"verify","verdict":"fail","exit":1,"timed_out":false,"secs":1.0,"commit":"4444444444444444444444444444444444444444","container":"f3","image":"host","log":".proctor/logs/once.run1.exam.log"}
{"v":1,"ts":1764920014.0,"run":"0ce0ce01","type":"card","loop":"once","kind":"blocked","path":"INBOX/once.md","reason":"the run budget (1 run) is spent"}
{"v":1,"ts":1764920015.0,"run":"0ce0ce01","type":"run_end","outcome":"blocked","exit":3,"secs":15.0}
"#;

/// A run of `run --file other.yaml` (loop `other`), killed mid-agent.
const OTHER_FILE_RUN: &str = r#"{"v":1,"ts":1764930000.0,"run":"07e2f11e","type":"run_start","root":"other","branch":"proctor/other","base":"0123456789abcdef0123456789abcdef01234567","manifest":"other.yaml","engine":"docker 27.5.1","pid":4646}
{"v":1,"ts":1764930003.0,"run":"07e2f11e","type":"check_result","loop":"other","phase":"precheck","verdict":"fail","exit":1,"timed_out":false,"secs":1.0,"commit":"0123456789abcdef0123456789abcdef01234567","container":"g1","image":"host","log":".proctor/logs/other.run0.exam.log"}
{"v":1,"ts":1764930004.0,"run":"07e2f11e","type":"agent_start","loop":"other","n":1,"of":3,"log":".proctor/logs/other.run1.log","image":"host"}
"#;

#[test]
fn status_and_inbox_after_once_show_the_once_loop_not_the_manifests_tree() {
    let ctx = context(
        &[RUN_1, ONCE_RUN],
        // The repository's proctor.yaml, which the `once` run did not use.
        Some(manifest()),
        None,
        vec![card(
            "once",
            "blocked",
            "BLOCKED: once",
            "The run budget (1 run) is spent and the exam still fails.",
        )],
        1_764_920_100.0,
    );
    let status = status(&ctx);
    assert!(!status.contains("fix-tests"), "{status}");
    insta::assert_snapshot!(status);
    insta::assert_snapshot!(inbox(&View::build(&ctx), false));
}

#[test]
fn status_after_a_killed_run_of_another_file_names_that_file() {
    let ctx = context(
        &[RUN_1, OTHER_FILE_RUN],
        None,
        None,
        vec![],
        1_764_930_100.0,
    );
    let status = status(&ctx);
    assert!(
        status.contains("`proctor run --file other.yaml` resumes it"),
        "{status}"
    );
    assert!(
        status.contains("next: proctor run --file other.yaml"),
        "{status}"
    );
    insta::assert_snapshot!(status);
}

/// A `once` run at work after a `proctor run` that left a card: status's
/// `next:` named the old card (`proctor answer docs`), and inbox told to
/// resume it with the same `proctor once` again. The once run's next is
/// its own (`proctor watch`), the card keeps its own run's command.
#[test]
fn a_card_of_an_older_run_keeps_its_own_resume_and_is_not_this_runs_next() {
    let once = r#"{"v":1,"ts":1764903600.0,"run":"0ce0ce00","type":"run_start","root":"once","branch":"proctor/once","base":"0123456789abcdef0123456789abcdef01234567","manifest":"proctor once","engine":"docker 27.5.1","pid":4343}
{"v":1,"ts":1764903601.0,"run":"0ce0ce00","type":"agent_start","loop":"once","n":1,"of":10,"log":".proctor/logs/once.run1.log","image":"host"}
"#;
    let ctx = context(
        &[RUN_1, once],
        None,
        Some(4343),
        vec![blocked_docs()],
        1_764_903_610.0,
    );
    let view = View::build(&ctx);
    assert_eq!(view.next(), "proctor watch");
    let text = inbox(&view, false);
    assert!(text.contains("    then: proctor run\n"), "{text}");
    assert!(!text.contains("proctor once"), "{text}");
}
