use std::fs;
use std::path::Path;

use super::*;

fn repo_with(files: &[(&str, &str)]) -> (tempfile::TempDir, GitRepo, Oid) {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let path = dir.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    let git = GitRepo::init_with_commit(dir.path(), "base").unwrap();
    let base = git.head().unwrap().unwrap();
    (dir, git, base)
}

fn rules() -> Rules {
    Rules::new(
        vec!["tests/**".into(), "exam.sh".into()],
        Some("proctor.yaml"),
    )
}

fn changes(tampers: &[Tamper]) -> Vec<(String, Change)> {
    tampers.iter().map(|t| (t.path.clone(), t.change)).collect()
}

#[test]
fn an_untouched_tree_has_no_tampers() {
    let (dir, git, base) = repo_with(&[
        ("tests/a.sh", "a"),
        ("exam.sh", "e"),
        ("proctor.yaml", "loop: x"),
        ("src/x", "x"),
    ]);
    let watch = Watch::new(&git, base, &rules()).unwrap();
    assert_eq!(watch.trusted_paths().count(), 3);
    assert!(watch.scan(dir.path(), &[]).unwrap().is_empty());
}

#[test]
fn modified_deleted_added_and_linked_files_are_found() {
    let (dir, git, base) = repo_with(&[
        ("tests/a.sh", "a"),
        ("tests/b.sh", "b"),
        ("exam.sh", "e"),
        ("proctor.yaml", "loop: x"),
    ]);
    let watch = Watch::new(&git, base, &rules()).unwrap();
    let root = dir.path();
    fs::write(root.join("tests/a.sh"), "weakened").unwrap();
    fs::remove_file(root.join("tests/b.sh")).unwrap();
    fs::write(root.join("tests/new.sh"), "new").unwrap();
    fs::remove_file(root.join("exam.sh")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("exam.sh")).unwrap();
    fs::write(root.join("lute.yaml"), "loop: y").unwrap();
    let found = watch
        .scan(
            root,
            &["tests/new.sh".into(), "lute.yaml".into(), "src/x".into()],
        )
        .unwrap();
    assert_eq!(
        changes(&found),
        vec![
            ("exam.sh".into(), Change::Symlink),
            ("lute.yaml".into(), Change::Added),
            ("tests/a.sh".into(), Change::Modified),
            ("tests/b.sh".into(), Change::Deleted),
            ("tests/new.sh".into(), Change::Added),
        ]
    );
    assert_eq!(found[1].rule, "control file `lute.yaml`");
    assert_eq!(found[2].rule, "protected: `tests/**`");
}

#[test]
fn a_mode_change_is_a_modification() {
    let (dir, git, base) = repo_with(&[("exam.sh", "e")]);
    let watch = Watch::new(&git, base, &rules()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(
        dir.path().join("exam.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    assert_eq!(
        changes(&watch.scan(dir.path(), &[]).unwrap()),
        vec![("exam.sh".into(), Change::Modified)]
    );
}

#[test]
fn a_directory_swapped_for_a_link_is_one_tamper() {
    let (dir, git, base) = repo_with(&[("tests/a.sh", "a"), ("tests/b.sh", "b")]);
    let watch = Watch::new(&git, base, &rules()).unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("a.sh"), "outside").unwrap();
    fs::remove_dir_all(dir.path().join("tests")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("tests")).unwrap();
    assert_eq!(
        changes(&watch.scan(dir.path(), &[]).unwrap()),
        vec![("tests".into(), Change::Symlink)]
    );
}

#[test]
fn the_readonly_cover_mounts_whole_directories_only_when_fully_watched() {
    let (_dir, git, base) = repo_with(&[
        ("tests/a.sh", "a"),
        ("tests/deep/b.sh", "b"),
        ("exam.sh", "e"),
        ("src/x", "x"),
    ]);
    let watch = Watch::new(&git, base, &rules()).unwrap();
    let export = tempfile::tempdir().unwrap();
    git.export_tree(base, &export.path().join("t")).unwrap();
    let root = export.path().join("t");
    assert_eq!(
        watch.readonly_cover(&root),
        (vec!["exam.sh".to_string(), "tests".to_string()], false)
    );
    // An unwatched file inside `tests/` (a results dir) splits the cover.
    fs::create_dir(root.join("tests/out")).unwrap();
    assert_eq!(
        watch.readonly_cover(&root).0,
        vec!["exam.sh", "tests/a.sh", "tests/deep"]
    );
}

#[test]
fn the_allow_list_names_its_rule_and_leaves_proctor_state_alone() {
    let allow = Allow::new(&["src/**".into(), "notes.md".into()]);
    assert!(allow.allows("src/a/b.rs"));
    assert!(allow.allows("notes.md"));
    assert!(allow.allows(".proctor/journal/fix.md"));
    assert!(!allow.allows("tests/a.sh"));
    assert_eq!(allow.rule(), "writes: [`src/**`, `notes.md`]");
    assert!(Allow::new(&[]).allows("anything"));
    assert!(!Allow::new(&[]).active());
}

#[test]
fn restoring_from_the_base_puts_back_the_trusted_state() {
    let (dir, git, base) = repo_with(&[("tests/a.sh", "a"), ("exam.sh", "e")]);
    let watch = Watch::new(&git, base, &rules()).unwrap();
    let root = dir.path();
    fs::write(root.join("tests/a.sh"), "weakened").unwrap();
    fs::write(root.join("tests/extra.sh"), "extra").unwrap();
    let tampers = watch.scan(root, &["tests/extra.sh".into()]).unwrap();
    for t in &tampers {
        let trusted = git.entry_at(base, &t.path).unwrap();
        fsafe::restore(
            root,
            &t.path,
            trusted.as_ref().map(|(m, c)| (*m, c.as_slice())),
        )
        .unwrap();
    }
    assert!(watch
        .scan(root, &["tests/extra.sh".into()])
        .unwrap()
        .is_empty());
    assert!(!Path::new(&root.join("tests/extra.sh")).exists());
}

#[test]
fn under_the_journal_directory_only_the_loops_own_capped_journal_is_the_agents() {
    use super::{journal_rule, JOURNAL_CAP};
    assert_eq!(
        journal_rule("fix", ".proctor/journal/fix.md", Some(10)),
        None
    );
    assert_eq!(journal_rule("fix", ".proctor/journal/fix.md", None), None);
    assert_eq!(journal_rule("fix", "calc.sh", Some(10)), None);
    let over = journal_rule("fix", ".proctor/journal/fix.md", Some(JOURNAL_CAP + 1));
    assert!(over.unwrap().starts_with("journal: at most 256 KiB"));
    for other in [
        ".proctor/journal/node_modules/.bin/jest",
        ".proctor/journal/helper.sh",
        ".proctor/journal/other-loop.md",
        ".proctor/journal/fix.md.bak",
    ] {
        assert_eq!(
            journal_rule("fix", other, Some(1)).as_deref(),
            Some("journal: only `.proctor/journal/fix.md` is the agent's to write"),
            "{other}"
        );
    }
}
