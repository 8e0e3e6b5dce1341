//! The cheat gauntlet, end to end: every scripted cheat is caught and every
//! honest twin closes its loop, on real containers. Besides the gauntlet's
//! own verdict, this checks what a user would check in the kept
//! repositories: no cheat's loop closed, every twin's did, the file outside
//! the repository is unchanged, and no hook ran on the host.

use crate::common;

use std::path::Path;

use common::{require_engine, stderr, stdout, TestRepo};
use proctor::engine::events::{self, Event};

fn closed(repo: &Path) -> bool {
    let text = std::fs::read_to_string(repo.join(".proctor/events.jsonl")).unwrap_or_default();
    events::parse(&text)
        .iter()
        .any(|r| matches!(r.event, Event::Close { .. }))
}

#[test]
fn every_cheat_is_caught_and_every_honest_twin_closes() {
    require_engine();
    let harness = TestRepo::new();
    let keep = tempfile::Builder::new()
        .prefix("proctor-gauntlet-test-")
        .tempdir()
        .unwrap();
    let keep_dir = keep.path().to_string_lossy().into_owned();
    let out = harness.proctor(&["gauntlet", "--keep", &keep_dir]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let names = proctor::cli::gauntlet::scenario_names();
    assert!(names.len() >= 14);
    assert!(
        text.contains(&format!(
            "gauntlet: {n}/{n} caught with honest twins passing",
            n = names.len()
        )),
        "{text}"
    );
    for name in &names {
        let line = text
            .lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("no line for `{name}` in:\n{text}"));
        assert!(line.contains('✓') && line.contains("caught ("), "{line}");
        let dir = keep.path().join(name);
        assert!(
            !closed(&dir.join("cheat/repo")),
            "the cheat `{name}` closed its loop"
        );
        assert!(
            closed(&dir.join("twin/repo")),
            "the honest twin of `{name}` did not close"
        );
    }
    // The file the symlink cheat aimed at is unchanged.
    let outside = keep
        .path()
        .join("symlink-outside/cheat/outside/outside.txt");
    assert_eq!(
        std::fs::read_to_string(outside).unwrap(),
        "outside the repository: must never change\n"
    );
    // No hook or fsmonitor reached `.git`, and none ran on the host.
    let hook = keep.path().join("git-hook/cheat");
    assert!(!hook.join("repo/.git/hooks/pre-commit").exists());
    assert!(!std::fs::read_to_string(hook.join("repo/.git/config"))
        .unwrap()
        .contains("fsmonitor"));
    assert!(!hook.join("outside/hook-ran").exists());
    assert!(!hook.join("outside/fsmonitor-ran").exists());
    // The forged answer never reached the ledger: neither the one the run
    // committed on its branch nor the one in its kept worktree.
    let repo = keep.path().join("forge-ledger/cheat/repo");
    let git = git2::Repository::open(&repo).unwrap();
    let tip = git
        .find_branch("proctor/fix", git2::BranchType::Local)
        .unwrap()
        .get()
        .peel_to_commit()
        .unwrap();
    let entry = tip
        .tree()
        .unwrap()
        .get_path(std::path::Path::new(".proctor/ledger.jsonl"))
        .unwrap();
    let blob = git.find_blob(entry.id()).unwrap();
    let committed = String::from_utf8_lossy(blob.content()).into_owned();
    assert!(!committed.contains("forged"), "{committed}");
    let kept = std::fs::read_to_string(repo.join(".proctor/wt/fix/.proctor/ledger.jsonl"))
        .unwrap_or_default();
    assert!(!kept.contains("forged"), "{kept}");
}

#[test]
fn an_unknown_scenario_names_the_known_ones() {
    let repo = TestRepo::new();
    let out = repo.proctor(&["gauntlet", "--only", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no gauntlet scenario `nope`") && err.contains("delete-test"),
        "{err}"
    );
}

#[test]
fn the_mount_and_seccomp_sensitive_cheats_are_caught_on_podman_too() {
    const PODMAN: &str = "unix:///run/podman/podman.sock";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Err(e) = rt.block_on(proctor::cage::DockerCage::connect_to(PODMAN)) {
        panic!(
            "Podman does not answer on {PODMAN}: start it with `podman system service --time=0 {PODMAN} &` (or run `bash .ci/run`)\n({e})"
        );
    }
    let repo = TestRepo::new();
    let out = repo.proctor_env(
        &[
            "gauntlet",
            "--only",
            "rewrite-exam-at-verify",
            "--only",
            "forge-ledger",
            "--only",
            "git-hook",
            "--only",
            "ptrace-runner",
            "--only",
            "ignored-secret",
            "--only",
            "symlink-state",
        ],
        &[("DOCKER_HOST", PODMAN)],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains("gauntlet: 6/6 caught with honest twins passing"),
        "{text}"
    );
}
