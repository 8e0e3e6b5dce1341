//! Which containers start prepared ahead of need (`engine/warm.rs`): the
//! fake cage serves a step from a prepared container exactly when the real
//! one would (an equal invocation), so these tests show which steps of a
//! loop start cold.

use super::*;
use crate::cage::Access;

/// A loop of three attempts whose exam passes on the third, with protected
/// exam files, a test-count audit (its report directory is made in each
/// exported tree) and a cache: what `proctor run` examines.
const LOOP: &str = "loop: fix\nagent: fix-it\ndone_when: sh tests/exam.sh\nbudget: 3 runs\nprotected: [\"tests/**\"]\ntests:\n  junit: reports/\ncaches: [target]\n";

fn appends() -> Scripted {
    Scripted::agent_edits(|work| {
        let path = work.join("counter");
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str("line\n");
        std::fs::write(path, text).expect("write counter");
    })
}

/// An exam that passes once `counter` has `lines` lines, writing the JUnit
/// report the audit reads.
fn counts(lines: usize) -> Scripted {
    Scripted::exam_of(move |tree| {
        let have = std::fs::read_to_string(tree.join("counter"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        write(
            tree,
            "reports/junit.xml",
            "<testsuite tests=\"1\" failures=\"0\"><testcase name=\"t\"/></testsuite>",
        );
        i64::from(have < lines)
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn a_runs_exams_start_in_containers_prepared_ahead_when_proctor_can_seal() {
    let repo = Repo::new(LOOP, &[("tests/exam.sh", "exit 0\n")]);
    let cage = repo.cage([
        counts(3),
        appends(),
        counts(3),
        appends(),
        counts(3),
        appends(),
        counts(3),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed, "{:?}", run.trace());
    let calls = cage.calls();
    let warm = cage.started_warm();
    let started = |role: Role| -> Vec<bool> {
        calls
            .iter()
            .zip(&warm)
            .filter(|(c, _)| c.labels.role == role)
            .map(|(_, w)| *w)
            .collect()
    };
    // Every agent was prepared while the step before it ran.
    assert_eq!(started(Role::Agent), [true, true, true]);
    if is_root() {
        // Sealed by ownership: no mount inside the tree, so every exam is
        // prepared, the first (before any agent) included, the audit's
        // report directory and the cache notwithstanding.
        assert_eq!(started(Role::Verifier), [true, true, true, true]);
        let exams = cage.calls_of(Role::Verifier);
        assert!(
            exams
                .iter()
                .all(|c| c.mounts.iter().all(|m| m.access != Access::ReadOnly)),
            "{exams:?}"
        );
    } else {
        // Not root: the materials are mounted read-only from inside each
        // exported tree, which a container made ahead cannot have.
        assert_eq!(started(Role::Verifier), [false, false, false, false]);
    }
    // A prepared exam sees only the tree it examines: its `/work` is the
    // directory the commit was exported to, never another exam's.
    let works: Vec<_> = cage
        .calls_of(Role::Verifier)
        .iter()
        .map(|c| crate::cage::fake::work_dir(c).expect("a /work mount"))
        .collect();
    let distinct: std::collections::HashSet<_> = works.iter().collect();
    assert_eq!(distinct.len(), works.len(), "{works:?}");
}
