//! Tests on throwaway repositories built with git2 only (no `git` binary).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use git2::{ObjectType, Repository, RepositoryInitOptions, Signature};
use tempfile::TempDir;

use super::*;

struct Fixture {
    _dir: TempDir,
    root: PathBuf,
    repo: GitRepo,
}

fn no_skip(_: &str) -> bool {
    false
}

/// proctor's private state, as the engine will skip it.
fn skip_state(p: &str) -> bool {
    p.starts_with(".proctor/logs/") || p == ".proctor/events.jsonl" || p.starts_with("INBOX/")
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::new_in(&std::env::temp_dir())
    }

    fn new_in(base: &Path) -> Fixture {
        let dir = tempfile::Builder::new().tempdir_in(base).unwrap();
        let root = dir.path().join("repo");
        fs::create_dir(&root).unwrap();
        let mut opts = RepositoryInitOptions::new();
        opts.initial_head("main");
        let raw = Repository::init_opts(&root, &opts).unwrap();
        let mut cfg = raw.config().unwrap();
        cfg.set_str("user.name", "Test User").unwrap();
        cfg.set_str("user.email", "test@example.com").unwrap();
        let repo = GitRepo::open(&root).unwrap();
        Fixture {
            _dir: dir,
            root,
            repo,
        }
    }

    fn write(&self, rel: &str, content: &str) -> &Self {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
        self
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.root.join(rel)).unwrap()
    }

    fn rm(&self, rel: &str) {
        fs::remove_file(self.root.join(rel)).unwrap();
    }

    fn commit(&self, msg: &str) -> Oid {
        self.repo.commit_all(msg, &no_skip).unwrap()
    }

    fn dirty(&self) -> Vec<String> {
        self.repo.dirty_paths(&no_skip).unwrap()
    }

    fn blob(&self, commit: Oid, path: &str) -> Option<String> {
        self.repo
            .read_blob_at(commit, path)
            .unwrap()
            .map(|b| String::from_utf8(b).unwrap())
    }

    /// Every blob path in a commit's tree.
    fn tree_paths(&self, commit: Oid) -> Vec<String> {
        let tree = self.repo.repo.find_commit(commit).unwrap().tree().unwrap();
        let mut out = Vec::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
            if e.kind() == Some(ObjectType::Blob) {
                out.push(format!("{dir}{}", e.name().unwrap()));
            }
            git2::TreeWalkResult::Ok
        })
        .unwrap();
        out.sort();
        out
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn open_discovers_upwards_and_canonicalises_root() {
    let f = Fixture::new();
    f.write("a/b/c.txt", "x");
    let repo = GitRepo::open(&f.root.join("a/b")).unwrap();
    assert_eq!(repo.root(), f.root.canonicalize().unwrap());
    assert_eq!(repo.head().unwrap(), None);
    assert_eq!(repo.head_branch().unwrap().as_deref(), Some("main"));
}

#[test]
fn open_rejects_non_repo_and_bare() {
    let dir = TempDir::new().unwrap();
    assert!(matches!(
        GitRepo::open(dir.path()),
        Err(GitError::NotARepo { .. })
    ));
    let bare = dir.path().join("bare.git");
    Repository::init_bare(&bare).unwrap();
    assert!(matches!(GitRepo::open(&bare), Err(GitError::Bare { .. })));
}

#[test]
fn dirty_paths_lists_every_kind_of_change() {
    let f = Fixture::new();
    f.write("keep.txt", "1")
        .write("mod.txt", "1")
        .write("del.txt", "1")
        .write("staged.txt", "1")
        .write(".gitignore", "*.tmp\nbuild/\n");
    f.commit("base");
    assert!(f.dirty().is_empty());

    f.write("mod.txt", "2");
    f.rm("del.txt");
    f.write("new.txt", "n");
    f.write("newdir/deep/file.txt", "n");
    f.write("debug.tmp", "ignored");
    f.write("build/out.bin", "ignored");
    f.write(".proctor/events.jsonl", "{}");
    f.write(".proctor/logs/a.run1.log", "log");
    // Staged, then the working copy put back: still differs from HEAD.
    f.write("staged.txt", "2");
    let mut index = f.repo.repo.index().unwrap();
    index.add_path(Path::new("staged.txt")).unwrap();
    index.write().unwrap();
    f.write("staged.txt", "1");

    let dirty = f.repo.dirty_paths(&skip_state).unwrap();
    assert_eq!(
        dirty,
        strs(&[
            "del.txt",
            "mod.txt",
            "new.txt",
            "newdir/deep/file.txt",
            "staged.txt"
        ])
    );
    let all = f.dirty();
    assert!(all.contains(&".proctor/events.jsonl".to_string()));
    assert!(all.contains(&".proctor/logs/a.run1.log".to_string()));
}

#[test]
fn branch_create_and_switch_keep_untracked_files() {
    let f = Fixture::new();
    f.write("a.txt", "main");
    let base = f.commit("base");
    assert_eq!(f.repo.branch_tip("proctor/root").unwrap(), None);
    f.repo.create_branch("proctor/root", base).unwrap();
    assert_eq!(f.repo.branch_tip("proctor/root").unwrap(), Some(base));
    // No force: an existing branch is an error, and is left where it was.
    assert!(f.repo.create_branch("proctor/root", base).is_err());

    f.repo.switch_to("proctor/root").unwrap();
    assert_eq!(
        f.repo.head_branch().unwrap().as_deref(),
        Some("proctor/root")
    );
    f.write("a.txt", "work").write("b.txt", "new");
    let work = f.commit("proctor(root): run 1");
    assert_eq!(f.repo.branch_tip("proctor/root").unwrap(), Some(work));
    assert_eq!(f.repo.branch_tip("main").unwrap(), Some(base));

    f.write("untracked.txt", "mine");
    f.write(".proctor/logs/x.log", "log");
    f.repo.switch_to("main").unwrap();
    assert_eq!(f.repo.head().unwrap(), Some(base));
    assert_eq!(f.read("a.txt"), "main");
    assert!(!f.root.join("b.txt").exists());
    assert_eq!(f.read("untracked.txt"), "mine");
    assert_eq!(f.read(".proctor/logs/x.log"), "log");
    assert_eq!(f.dirty(), strs(&[".proctor/logs/x.log", "untracked.txt"]));

    f.repo.switch_to("proctor/root").unwrap();
    assert_eq!(f.read("a.txt"), "work");
    assert_eq!(f.read("b.txt"), "new");
    assert!(matches!(
        f.repo.switch_to("nope"),
        Err(GitError::NoSuchBranch { .. })
    ));
}

#[test]
fn switch_refuses_to_clobber_local_changes() {
    let f = Fixture::new();
    f.write("f.txt", "1");
    let base = f.commit("base");
    f.repo.create_branch("other", base).unwrap();
    f.repo.switch_to("other").unwrap();
    f.write("f.txt", "2").write("g.txt", "tracked on other");
    f.commit("other");
    f.repo.switch_to("main").unwrap();
    assert!(!f.root.join("g.txt").exists());

    // A local edit to a file the target changes.
    f.write("f.txt", "local edit");
    // An untracked file where the target has a tracked one.
    f.write("g.txt", "my untracked");
    let err = f.repo.switch_to("other").unwrap_err();
    match &err {
        GitError::WouldClobber { branch, paths } => {
            assert_eq!(branch, "other");
            assert_eq!(paths, &strs(&["f.txt", "g.txt"]));
        }
        other => panic!("expected WouldClobber, got {other:?}"),
    }
    assert!(err.to_string().contains("`f.txt`"));
    assert_eq!(f.read("f.txt"), "local edit");
    assert_eq!(f.read("g.txt"), "my untracked");
    assert_eq!(f.repo.head_branch().unwrap().as_deref(), Some("main"));
    assert_eq!(f.repo.head().unwrap(), Some(base));
}

#[test]
fn switch_carries_local_change_when_target_agrees() {
    let f = Fixture::new();
    f.write("f.txt", "1").write("same.txt", "s");
    let base = f.commit("base");
    f.repo.create_branch("other", base).unwrap();
    f.write("same.txt", "edited");
    f.repo.switch_to("other").unwrap();
    assert_eq!(f.read("same.txt"), "edited");
}

#[test]
fn commit_all_stages_modified_deleted_and_new_files() {
    let f = Fixture::new();
    f.write("mod.txt", "1")
        .write("del.txt", "1")
        .write("dir/old.txt", "1")
        .write(".gitignore", "*.log\n");
    let base = f.commit("base");
    f.write("mod.txt", "2");
    f.rm("del.txt");
    f.write("new.txt", "n");
    f.write("newdir/sub/file.txt", "deep");
    f.write("noise.log", "ignored");
    // A file replaced by a directory of the same name.
    f.rm("dir/old.txt");
    fs::remove_dir(f.root.join("dir")).unwrap();
    f.write("dir", "now a file");

    let c = f.commit("attempt");
    assert_eq!(
        f.tree_paths(c),
        strs(&[
            ".gitignore",
            "dir",
            "mod.txt",
            "new.txt",
            "newdir/sub/file.txt"
        ])
    );
    assert_eq!(f.blob(c, "mod.txt").as_deref(), Some("2"));
    assert_eq!(f.repo.head().unwrap(), Some(c));
    assert_eq!(f.repo.first_parent_log(c, None).unwrap()[1].oid, base);
    // The real index was written: nothing left to report but the ignored file (not listed).
    assert!(f.dirty().is_empty());
    let commit = f.repo.repo.find_commit(c).unwrap();
    assert_eq!(commit.author().email().ok(), Some("test@example.com"));
    assert_eq!(commit.committer().name().ok(), Some("Test User"));
    assert_eq!(commit.message().ok(), Some("attempt"));
    assert_eq!(
        f.repo.changed_paths(base, c).unwrap(),
        strs(&[
            "del.txt",
            "dir",
            "dir/old.txt",
            "mod.txt",
            "new.txt",
            "newdir/sub/file.txt"
        ])
    );
}

#[test]
fn commit_all_never_stages_or_deletes_skipped_paths() {
    let f = Fixture::new();
    // A state file that was (wrongly) committed once, and one still tracked.
    f.write(".proctor/events.jsonl", "old events")
        .write(".proctor/logs/gone.log", "tracked log")
        .write("INBOX/root.md", "card")
        .write("src.txt", "1");
    let base = f.commit("base");

    f.write(".proctor/events.jsonl", "new events");
    f.rm(".proctor/logs/gone.log");
    f.write(".proctor/logs/root.run1.log", "transcript");
    f.write("INBOX/root.md", "edited card");
    // An agent that staged a skipped path itself must not get it in either.
    let mut index = f.repo.repo.index().unwrap();
    index.add_path(Path::new("INBOX/root.md")).unwrap();
    index.write().unwrap();
    f.write("src.txt", "2");

    let c = f.repo.commit_all("attempt", &skip_state).unwrap();
    assert_eq!(f.tree_paths(c), f.tree_paths(base));
    assert_eq!(
        f.blob(c, ".proctor/events.jsonl").as_deref(),
        Some("old events")
    );
    assert_eq!(
        f.blob(c, ".proctor/logs/gone.log").as_deref(),
        Some("tracked log")
    );
    assert_eq!(f.blob(c, "INBOX/root.md").as_deref(), Some("card"));
    assert_eq!(f.blob(c, "src.txt").as_deref(), Some("2"));
    assert_eq!(f.blob(c, ".proctor/logs/root.run1.log"), None);
    // The working copies are the engine's, untouched.
    assert_eq!(f.read(".proctor/events.jsonl"), "new events");
    assert!(f.repo.dirty_paths(&skip_state).unwrap().is_empty());
    // And the index still holds HEAD's version of the skipped tracked files.
    let index = f.repo.repo.index().unwrap();
    let entry = index.get_path(Path::new("INBOX/root.md"), 0).unwrap();
    let head_entry = f
        .repo
        .repo
        .find_commit(c)
        .unwrap()
        .tree()
        .unwrap()
        .get_path(Path::new("INBOX/root.md"))
        .unwrap();
    assert_eq!(entry.id, head_entry.id());
    assert!(index
        .get_path(Path::new(".proctor/logs/gone.log"), 0)
        .is_some());
}

#[test]
fn commit_all_makes_empty_commits_and_works_on_unborn_branch() {
    let f = Fixture::new();
    let first = f.commit("first: nothing at all");
    assert!(f.tree_paths(first).is_empty());
    f.write("a.txt", "a");
    let second = f.commit("second");
    let third = f.commit("third: agent changed nothing");
    assert_ne!(second, third);
    let log = f.repo.first_parent_log(third, None).unwrap();
    assert_eq!(
        log.iter().map(|c| c.oid).collect::<Vec<_>>(),
        vec![third, second, first]
    );
    let t2 = f.repo.repo.find_commit(second).unwrap().tree_id();
    let t3 = f.repo.repo.find_commit(third).unwrap().tree_id();
    assert_eq!(t2, t3);
    assert!(f.repo.changed_paths(second, third).unwrap().is_empty());
}

#[test]
fn commit_all_stores_symlinks_as_links() {
    let f = Fixture::new();
    std::os::unix::fs::symlink("/etc/passwd", f.root.join("pw")).unwrap();
    let c = f.commit("link");
    let tree = f.repo.repo.find_commit(c).unwrap().tree().unwrap();
    let e = tree.get_path(Path::new("pw")).unwrap();
    assert_eq!(e.filemode(), 0o120000);
    assert_eq!(f.blob(c, "pw").as_deref(), Some("/etc/passwd"));
}

#[test]
fn commit_all_recovers_from_a_corrupt_index() {
    let f = Fixture::new();
    f.write("a.txt", "1");
    f.commit("base");
    fs::write(f.root.join(".git/index"), b"garbage").unwrap();
    let repo = GitRepo::open(&f.root).unwrap();
    f.write("a.txt", "2");
    let c = repo.commit_all("after corruption", &no_skip).unwrap();
    assert_eq!(f.blob(c, "a.txt").as_deref(), Some("2"));
    assert!(repo.dirty_paths(&no_skip).unwrap().is_empty());
}

#[test]
fn export_tree_reproduces_files_modes_and_symlinks() {
    let f = Fixture::new();
    f.write("README", "hello")
        .write("src/lib.rs", "fn main() {}");
    f.write("bin/run.sh", "#!/bin/sh\necho hi\n");
    fs::set_permissions(f.root.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", f.root.join("pw")).unwrap();
    std::os::unix::fs::symlink("../README", f.root.join("src/readme")).unwrap();
    let c = f.commit("tree");

    let out = TempDir::new().unwrap();
    let dest = out.path().join("export");
    f.repo.export_tree(c, &dest).unwrap();

    assert_eq!(fs::read_to_string(dest.join("README")).unwrap(), "hello");
    assert_eq!(
        fs::read_to_string(dest.join("src/lib.rs")).unwrap(),
        "fn main() {}"
    );
    let mode = |p: &str| fs::metadata(dest.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("bin/run.sh"), 0o755);
    assert_eq!(mode("README"), 0o644);
    let pw = dest.join("pw");
    assert!(fs::symlink_metadata(&pw).unwrap().file_type().is_symlink());
    assert_eq!(fs::read_link(&pw).unwrap(), Path::new("/etc/passwd"));
    assert_eq!(
        fs::read_link(dest.join("src/readme")).unwrap(),
        Path::new("../README")
    );
    assert!(!dest.join(".git").exists());

    // Into an existing empty dir is fine; a non-empty one is refused.
    let empty = out.path().join("empty");
    fs::create_dir(&empty).unwrap();
    f.repo.export_tree(c, &empty).unwrap();
    assert!(matches!(
        f.repo.export_tree(c, &dest),
        Err(GitError::DestNotEmpty { .. })
    ));
}

/// Writes a raw tree object (libgit2 validates names on TreeBuilder, the
/// odb does not) and a commit of it, as a forging agent could.
fn forge_commit(f: &Fixture, entries: &[(&str, &[u8], Oid)]) -> Oid {
    let odb = f.repo.repo.odb().unwrap();
    let mut raw = Vec::new();
    for (mode, name, oid) in entries {
        raw.extend_from_slice(mode.as_bytes());
        raw.push(b' ');
        raw.extend_from_slice(name);
        raw.push(0);
        raw.extend_from_slice(oid.as_bytes());
    }
    let tree_id = odb.write(ObjectType::Tree, &raw).unwrap();
    let tree = f.repo.repo.find_tree(tree_id).unwrap();
    let sig = Signature::now("x", "x@x").unwrap();
    f.repo
        .repo
        .commit(None, &sig, &sig, "forged", &tree, &[])
        .unwrap()
}

#[test]
fn export_tree_rejects_escaping_names() {
    let f = Fixture::new();
    let blob = f.repo.repo.blob(b"payload").unwrap();
    for bad in [&b".."[..], b".git", b".GIT", b"a/b", b"."] {
        let c = forge_commit(&f, &[("100644", bad, blob)]);
        let out = TempDir::new().unwrap();
        let err = f.repo.export_tree(c, out.path()).unwrap_err();
        assert!(
            matches!(err, GitError::UnsafeTreeEntry { .. }),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn export_tree_writes_submodules_as_empty_dirs_and_never_follows_duplicates() {
    let f = Fixture::new();
    let blob = f.repo.repo.blob(b"payload").unwrap();
    let link = f.repo.repo.blob(b"/tmp").unwrap();
    let sub_commit = Oid::from_str("1111111111111111111111111111111111111111").unwrap();
    let c = forge_commit(&f, &[("160000", b"vendor", sub_commit)]);
    let out = TempDir::new().unwrap();
    f.repo.export_tree(c, out.path()).unwrap();
    let vendor = out.path().join("vendor");
    assert!(vendor.is_dir());
    assert_eq!(fs::read_dir(&vendor).unwrap().count(), 0);

    // A symlink `d -> /tmp` then a tree `d` holding a file: the second
    // entry must fail rather than write through the link.
    let inner = {
        let odb = f.repo.repo.odb().unwrap();
        let mut raw = b"100644 planted-by-test\0".to_vec();
        raw.extend_from_slice(blob.as_bytes());
        odb.write(ObjectType::Tree, &raw).unwrap()
    };
    let c = forge_commit(&f, &[("120000", b"d", link), ("40000", b"d", inner)]);
    let out = TempDir::new().unwrap();
    let err = f.repo.export_tree(c, out.path()).unwrap_err();
    assert!(matches!(err, GitError::Io { .. }), "{err:?}");
    assert!(!Path::new("/tmp/planted-by-test").exists());
}

#[test]
fn first_parent_log_is_newest_first_and_stops_before_stop_at() {
    let f = Fixture::new();
    let a = f.commit("a");
    let b = f.commit("b");
    // A side branch merged in: its commit must not appear in the log.
    f.repo.create_branch("side", b).unwrap();
    f.repo.switch_to("side").unwrap();
    f.write("side.txt", "s");
    let side = f.commit("side");
    f.repo.switch_to("main").unwrap();
    let raw = &f.repo.repo;
    let sig = Signature::now("t", "t@t").unwrap();
    let tree = raw.find_commit(side).unwrap().tree().unwrap();
    let parents = [
        &raw.find_commit(b).unwrap(),
        &raw.find_commit(side).unwrap(),
    ];
    let merge = raw
        .commit(Some("HEAD"), &sig, &sig, "merge", &tree, &parents)
        .unwrap();
    let c = f.commit("c");

    let log = f.repo.first_parent_log(c, None).unwrap();
    let oids: Vec<Oid> = log.iter().map(|i| i.oid).collect();
    assert_eq!(oids, vec![c, merge, b, a]);
    assert_eq!(log[0].message, "c");
    assert!(log[0].time > 1_600_000_000);
    let stopped = f.repo.first_parent_log(c, Some(b)).unwrap();
    assert_eq!(
        stopped.iter().map(|i| i.oid).collect::<Vec<_>>(),
        vec![c, merge]
    );
    assert!(f.repo.first_parent_log(c, Some(c)).unwrap().is_empty());

    assert!(f.repo.is_ancestor(a, c).unwrap());
    assert!(f.repo.is_ancestor(side, c).unwrap());
    assert!(f.repo.is_ancestor(c, c).unwrap());
    assert!(!f.repo.is_ancestor(c, a).unwrap());
}

#[test]
fn read_blob_at_and_user_email() {
    let f = Fixture::new();
    f.write("dir/file.txt", "content");
    let c = f.commit("c");
    assert_eq!(f.blob(c, "dir/file.txt").as_deref(), Some("content"));
    assert_eq!(f.repo.read_blob_at(c, "dir").unwrap(), None);
    assert_eq!(f.repo.read_blob_at(c, "missing/file").unwrap(), None);
    assert_eq!(f.repo.user_email().as_deref(), Some("test@example.com"));
}

#[test]
fn nothing_from_the_repo_is_ever_executed() {
    let f = Fixture::new();
    let markers = TempDir::new().unwrap();
    let marker = |name: &str| markers.path().join(name);
    let touch = |name: &str| format!("touch {}", marker(name).display());

    let hooks = f.root.join(".git/hooks");
    fs::create_dir_all(&hooks).unwrap();
    for hook in [
        "pre-commit",
        "commit-msg",
        "post-commit",
        "post-checkout",
        "prepare-commit-msg",
        "reference-transaction",
    ] {
        let p = hooks.join(hook);
        fs::write(&p, format!("#!/bin/sh\n{}\n", touch(hook))).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cfg = f.repo.repo.config().unwrap();
    cfg.set_str("filter.evil.clean", &touch("clean")).unwrap();
    cfg.set_str("filter.evil.smudge", &touch("smudge")).unwrap();
    cfg.set_str("filter.evil.process", &touch("process"))
        .unwrap();
    cfg.set_bool("filter.evil.required", true).unwrap();
    cfg.set_str("core.fsmonitor", &touch("fsmonitor")).unwrap();
    cfg.set_str("core.hooksPath", hooks.to_str().unwrap())
        .unwrap();
    f.write(".gitattributes", "* filter=evil diff=evil\n");
    cfg.set_str("diff.evil.textconv", &touch("textconv"))
        .unwrap();

    f.write("a.txt", "1");
    let base = f.commit("base");
    f.repo.create_branch("other", base).unwrap();
    f.repo.switch_to("other").unwrap();
    f.write("a.txt", "2");
    let c = f.commit("second");
    f.repo.switch_to("main").unwrap();
    f.dirty();
    f.repo.changed_paths(base, c).unwrap();
    let out = TempDir::new().unwrap();
    f.repo.export_tree(c, out.path()).unwrap();

    let fired: Vec<_> = fs::read_dir(markers.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(fired.is_empty(), "executed from the repo: {fired:?}");
    // The unknown filter was not applied either: content is stored verbatim.
    assert_eq!(f.blob(c, "a.txt").as_deref(), Some("2"));
}

/// Timing on a ~2,000-file repo. Not a pass/fail test (speed is measured,
/// never asserted: a loaded machine would fail it); run with
/// `cargo test --release -- --ignored --nocapture timing`.
/// Runs once in the temp dir and once on tmpfs, to separate proctor's own
/// cost from the disk's.
#[test]
#[ignore]
fn timing_commit_all_and_export_tree_2000_files() {
    time_2000_files(&std::env::temp_dir());
    if Path::new("/dev/shm").is_dir() {
        time_2000_files(Path::new("/dev/shm"));
    }
}

fn time_2000_files(base: &Path) {
    println!("--- in {}", base.display());
    let f = Fixture::new_in(base);
    for d in 0..40 {
        for i in 0..50 {
            f.write(
                &format!("src/mod{d}/file{i}.rs"),
                &format!("// file {d}/{i}\n{}", "fn x() {}\n".repeat(40)),
            );
        }
    }
    let t = Instant::now();
    let first = f.repo.commit_all("initial", &skip_state).unwrap();
    println!("commit_all, 2000 new files:        {:?}", t.elapsed());

    let t = Instant::now();
    f.repo.commit_all("unchanged", &skip_state).unwrap();
    println!("commit_all, nothing changed:       {:?}", t.elapsed());

    for i in 0..20 {
        f.write(&format!("src/mod{i}/file0.rs"), "changed");
    }
    f.write("src/new/added.rs", "new");
    f.write(".proctor/logs/root.run1.log", "log");
    let t = Instant::now();
    let c2 = f.repo.commit_all("20 edits", &skip_state).unwrap();
    println!("commit_all, 20 edits + 1 new file: {:?}", t.elapsed());

    let t = Instant::now();
    let dirty = f.repo.dirty_paths(&skip_state).unwrap();
    println!("dirty_paths, clean tree:           {:?}", t.elapsed());
    assert!(dirty.is_empty());

    let out = tempfile::Builder::new().tempdir_in(base).unwrap();
    for round in ["", " again"] {
        let dest = out.path().join(format!("export{round}"));
        let t = Instant::now();
        f.repo.export_tree(c2, &dest).unwrap();
        println!("export_tree, 2001 files{round:6}:     {:?}", t.elapsed());
    }
    let t = Instant::now();
    let changed = f.repo.changed_paths(first, c2).unwrap();
    println!("changed_paths:                     {:?}", t.elapsed());
    assert_eq!(changed.len(), 21);
}

#[test]
fn special_files_and_embedded_repos_do_not_block_commits() {
    let f = Fixture::new();
    f.write("a.txt", "1");
    f.commit("base");
    // Opening a FIFO to hash it would hang proctor; it must be passed over.
    let fifo = std::ffi::CString::new(f.root.join("pipe").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    assert!(f.dirty().is_empty());
    let c = f.commit("with fifo");
    assert_eq!(f.tree_paths(c), strs(&["a.txt"]));

    // A nested repository with no commit yet has nothing to record.
    let emb = Repository::init(f.root.join("emb")).unwrap();
    f.commit("with empty nested repo");
    // Once it has a commit it is recorded as a gitlink, as `git add -A` does.
    fs::write(f.root.join("emb/x"), "x").unwrap();
    let mut index = emb.index().unwrap();
    index.add_path(Path::new("x")).unwrap();
    index.write().unwrap();
    let tree = emb.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = Signature::now("a", "a@a").unwrap();
    let emb_head = emb
        .commit(Some("HEAD"), &sig, &sig, "m", &tree, &[])
        .unwrap();
    assert_eq!(f.dirty(), strs(&["emb"]));
    let c = f.commit("with nested repo");
    let entry = f
        .repo
        .repo
        .find_commit(c)
        .unwrap()
        .tree()
        .unwrap()
        .get_path(Path::new("emb"))
        .unwrap();
    assert_eq!((entry.filemode(), entry.id()), (0o160000, emb_head));
    assert!(f.dirty().is_empty());
}

#[test]
fn open_refuses_a_work_tree_redirected_by_core_worktree() {
    let f = Fixture::new();
    f.write("a.txt", "1");
    f.commit("base");
    let elsewhere = TempDir::new().unwrap();
    fs::write(elsewhere.path().join("id_rsa"), "secret").unwrap();
    let mut cfg = f.repo.repo.config().unwrap();
    cfg.set_str("core.worktree", elsewhere.path().to_str().unwrap())
        .unwrap();
    let err = GitRepo::open(&f.root).unwrap_err();
    let redirected = elsewhere.path().canonicalize().unwrap();
    assert!(
        matches!(&err, GitError::ForeignWorkTree { work_tree, .. } if *work_tree == redirected),
        "{err:?}"
    );
    assert!(err.to_string().contains("core.worktree"));
}

#[test]
fn open_accepts_a_linked_worktree() {
    let f = Fixture::new();
    f.write("a.txt", "1");
    f.commit("base");
    let dir = TempDir::new().unwrap();
    let wt_path = dir.path().join("child");
    f.repo.repo.worktree("child", &wt_path, None).unwrap();
    let wt = GitRepo::open(&wt_path).unwrap();
    assert_eq!(wt.root(), wt_path.canonicalize().unwrap());
    assert_eq!(wt.head_branch().unwrap().as_deref(), Some("child"));
    assert_eq!(
        f.repo.git_dir(),
        f.root.join(".git").canonicalize().unwrap()
    );
    fs::write(wt_path.join("b.txt"), "b").unwrap();
    let c = wt.commit_all("in worktree", &no_skip).unwrap();
    assert_eq!(
        wt.read_blob_at(c, "b.txt").unwrap().as_deref(),
        Some(&b"b"[..])
    );
    assert_eq!(f.repo.branch_tip("child").unwrap(), Some(c));
}

#[test]
fn a_stale_index_lock_is_reported_as_locked() {
    let f = Fixture::new();
    f.write("a.txt", "1");
    let base = f.commit("base");
    fs::write(f.root.join(".git/index.lock"), "").unwrap();
    f.write("a.txt", "2");
    let err = f.repo.commit_all("blocked", &no_skip).unwrap_err();
    assert!(matches!(err, GitError::Locked { .. }), "{err:?}");
    let hint = crate::exit_codes::DomainError::hint(&err).unwrap_or_default();
    assert!(hint.contains("stale `.lock` file"), "{hint}");
    assert_eq!(f.repo.head().unwrap(), Some(base));
    fs::remove_file(f.root.join(".git/index.lock")).unwrap();
    f.commit("unblocked");
}

#[test]
fn commit_all_never_reads_a_host_file_through_a_symlinked_directory() {
    let f = Fixture::new();
    f.write("conf/app.txt", "tracked\n");
    f.commit("base");
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("app.txt"), "host secret\n").unwrap();
    fs::remove_dir_all(f.root.join("conf")).unwrap();
    std::os::unix::fs::symlink(outside.path(), f.root.join("conf")).unwrap();
    let c = f.commit("swap");
    assert_eq!(f.tree_paths(c), vec!["conf".to_string()]);
    let tree = f.repo.repo.find_commit(c).unwrap().tree().unwrap();
    assert_eq!(
        tree.get_path(Path::new("conf")).unwrap().filemode(),
        0o120000,
        "the link is stored as a link, its target's files never"
    );
}

#[test]
fn blobs_matching_and_entry_at_see_modes_and_links() {
    let f = Fixture::new();
    f.write("tests/a.sh", "a\n").write("src/x", "x\n");
    fs::set_permissions(f.root.join("tests/a.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("a.sh", f.root.join("tests/link")).unwrap();
    let c = f.commit("base");
    let blobs = f
        .repo
        .blobs_matching(c, &|p| p.starts_with("tests/"))
        .unwrap();
    let seen: Vec<(&str, BlobMode)> = blobs.iter().map(|b| (b.path.as_str(), b.mode)).collect();
    assert_eq!(
        seen,
        vec![
            ("tests/a.sh", BlobMode::Exec),
            ("tests/link", BlobMode::Link)
        ]
    );
    assert_eq!(
        f.repo.entry_at(c, "tests/link").unwrap(),
        Some((BlobMode::Link, b"a.sh".to_vec()))
    );
    assert_eq!(f.repo.entry_at(c, "missing").unwrap(), None);
    assert_eq!(f.repo.entry_at(c, "tests").unwrap(), None);
    let diff = unified_diff(b"a\nb\n", b"a\nc\n", "old", "new");
    assert!(diff.contains("-b\n+c"), "{diff}");
}

// The run's own worktree (`workspace.rs`).

/// A user repository as people have them: a tracked file with an
/// uncommitted edit, an ignored secret, an untracked note.
fn user_repo() -> (Fixture, Oid) {
    let f = Fixture::new();
    f.write("a.txt", "committed\n")
        .write(".gitignore", ".env\n");
    let head = f.commit("base");
    f.write(".env", "SECRET=1\n")
        .write("note.txt", "mine\n")
        .write("a.txt", "edited by the user\n");
    (f, head)
}

fn worktree_names(f: &Fixture) -> Vec<String> {
    let names = f.repo.repo.worktrees().unwrap();
    names
        .iter()
        .flatten()
        .flatten()
        .map(str::to_string)
        .collect()
}

#[test]
fn workspace_is_made_from_the_branch_tip_with_tracked_files_only() {
    let (f, head) = user_repo();
    // As `run` does before it makes the worktree.
    f.repo.ensure_excluded(&["/.proctor/wt/"]).unwrap();
    let before = f.dirty();
    let ws = f.repo.open_workspace("fix", head).unwrap();
    assert!(!ws.reused());
    assert_eq!(ws.branch(), "proctor/fix");
    assert_eq!(ws.tip(), head);
    assert_eq!(
        ws.root(),
        f.root.join(".proctor/wt/fix").canonicalize().unwrap()
    );
    assert_eq!(f.repo.branch_tip("proctor/fix").unwrap(), Some(head));
    assert_eq!(
        fs::read_to_string(ws.root().join("a.txt")).unwrap(),
        "committed\n"
    );
    assert!(!ws.root().join(".env").exists());
    assert!(!ws.root().join("note.txt").exists());
    assert_eq!(
        ws.repo().head_branch().unwrap().as_deref(),
        Some("proctor/fix")
    );
    assert!(ws.repo().dirty_paths(&no_skip).unwrap().is_empty());
    // The user's checkout is as it was.
    assert_eq!(f.repo.head_branch().unwrap().as_deref(), Some("main"));
    assert_eq!(f.read("a.txt"), "edited by the user\n");
    assert_eq!(f.dirty(), before);
    assert_eq!(worktree_names(&f), vec!["fix".to_string()]);
}

#[test]
fn workspace_commits_extend_its_branch_and_never_the_users() {
    let (f, head) = user_repo();
    let ws = f.repo.open_workspace("fix", head).unwrap();
    fs::write(ws.root().join("b.txt"), "agent\n").unwrap();
    let c1 = ws.commit("proctor(fix): run 1", &no_skip).unwrap();
    assert_eq!(ws.tip(), c1);
    // The user commits on their own branch meanwhile.
    f.write("user.txt", "u\n");
    let user_commit = f.commit("user work");
    fs::write(ws.root().join("b.txt"), "agent 2\n").unwrap();
    let c2 = ws.commit("proctor(fix): run 2", &no_skip).unwrap();
    let log: Vec<Oid> = f
        .repo
        .first_parent_log(c2, None)
        .unwrap()
        .iter()
        .map(|c| c.oid)
        .collect();
    assert_eq!(log, vec![c2, c1, head]);
    assert_eq!(f.repo.branch_tip("proctor/fix").unwrap(), Some(c2));
    assert_eq!(f.repo.branch_tip("main").unwrap(), Some(user_commit));
    assert_eq!(f.blob(c2, "user.txt"), None);
    assert_eq!(f.blob(user_commit, "b.txt"), None);
    assert_eq!(f.blob(c2, "a.txt").as_deref(), Some("committed\n"));
}

#[test]
fn workspace_commit_refuses_when_the_branch_moved() {
    type Mover = fn(&Fixture, &Workspace, Oid, Oid);
    type Expect = fn(&Moved) -> bool;
    let cases: [(&str, Mover, Expect); 5] = [
        (
            "deleted",
            |f, _, _, _| {
                f.repo
                    .repo
                    .find_reference("refs/heads/proctor/fix")
                    .unwrap()
                    .delete()
                    .unwrap()
            },
            |m| *m == Moved::Deleted,
        ),
        (
            "reset",
            |f, _, head, _| {
                f.repo
                    .repo
                    .reference("refs/heads/proctor/fix", head, true, "reset")
                    .unwrap();
            },
            |m| matches!(m, Moved::Reset { .. }),
        ),
        (
            "advanced",
            |f, _, _, tip| {
                let parent = f.repo.repo.find_commit(tip).unwrap();
                let sig = Signature::now("someone", "s@example.com").unwrap();
                f.repo
                    .repo
                    .commit(
                        Some("refs/heads/proctor/fix"),
                        &sig,
                        &sig,
                        "theirs",
                        &parent.tree().unwrap(),
                        &[&parent],
                    )
                    .unwrap();
            },
            |m| matches!(m, Moved::Advanced { .. }),
        ),
        (
            "replaced",
            |f, _, _, _| {
                let tree = f
                    .repo
                    .repo
                    .find_commit(f.repo.head().unwrap().unwrap())
                    .unwrap()
                    .tree()
                    .unwrap();
                let sig = Signature::now("someone", "s@example.com").unwrap();
                let orphan = f
                    .repo
                    .repo
                    .commit(None, &sig, &sig, "orphan", &tree, &[])
                    .unwrap();
                f.repo
                    .repo
                    .reference("refs/heads/proctor/fix", orphan, true, "replace")
                    .unwrap();
            },
            |m| matches!(m, Moved::Replaced { .. }),
        ),
        (
            "switched",
            |_, ws, _, tip| ws.repo().repo.set_head_detached(tip).unwrap(),
            |m| matches!(m, Moved::Switched { .. }),
        ),
    ];
    for (what, mover, expect) in cases {
        let (f, head) = user_repo();
        let ws = f.repo.open_workspace("fix", head).unwrap();
        fs::write(ws.root().join("b.txt"), "1\n").unwrap();
        let tip = ws.commit("run 1", &no_skip).unwrap();
        mover(&f, &ws, head, tip);
        let ref_before = f.repo.branch_tip("proctor/fix").unwrap();
        let main_before = f.repo.branch_tip("main").unwrap();
        fs::write(ws.root().join("b.txt"), "2\n").unwrap();
        let err = ws.commit("run 2", &no_skip).unwrap_err();
        match &err {
            GitError::BranchMoved {
                branch,
                expected,
                moved,
            } => {
                assert_eq!(branch, "proctor/fix", "{what}");
                assert_eq!(*expected, tip, "{what}");
                assert!(expect(moved), "{what}: {moved:?}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert!(err.to_string().contains("`proctor/fix`"), "{what}: {err}");
        // Exit 2, and a hint that names the commit to go back to.
        use crate::exit_codes::DomainError;
        assert!(!err.is_users_to_fix(), "{what}");
        let hint = err.hint().unwrap_or_default();
        assert!(hint.contains(&tip.to_string()), "{what}: {hint}");
        assert!(hint.contains("proctor reap"), "{what}: {hint}");
        // Nothing was committed anywhere: not parentless, not on main.
        assert_eq!(
            f.repo.branch_tip("proctor/fix").unwrap(),
            ref_before,
            "{what}"
        );
        assert_eq!(f.repo.branch_tip("main").unwrap(), main_before, "{what}");
        assert_eq!(ws.tip(), tip, "{what}");
        assert!(ws.check_tip().is_err(), "{what}");
    }
}

#[test]
fn workspace_is_reused_on_resume_and_rebuilt_when_broken() {
    let (f, head) = user_repo();
    let ws = f.repo.open_workspace("fix", head).unwrap();
    fs::write(ws.root().join("b.txt"), "1\n").unwrap();
    let tip = ws.commit("run 1", &no_skip).unwrap();
    fs::write(ws.root().join("half.txt"), "interrupted attempt\n").unwrap();
    drop(ws);

    // A new process: the branch and the worktree are there, edits kept.
    let again = f.repo.open_workspace("fix", head).unwrap();
    assert!(again.reused());
    assert_eq!(again.tip(), tip);
    assert!(again.root().join("half.txt").exists());
    drop(again);

    // Its directory removed behind git's back: made again from the tip.
    fs::remove_dir_all(f.root.join(".proctor/wt/fix")).unwrap();
    let rebuilt = f.repo.open_workspace("fix", head).unwrap();
    assert!(!rebuilt.reused());
    assert_eq!(rebuilt.tip(), tip);
    assert_eq!(
        fs::read_to_string(rebuilt.root().join("b.txt")).unwrap(),
        "1\n"
    );
    assert!(!rebuilt.root().join("half.txt").exists());
    assert_eq!(worktree_names(&f), vec!["fix".to_string()]);
    drop(rebuilt);

    // The branch deleted between runs: a fresh branch at the new start and
    // a fresh worktree, not the stale files.
    f.repo
        .repo
        .find_reference("refs/heads/proctor/fix")
        .unwrap()
        .delete()
        .unwrap();
    let fresh = f.repo.open_workspace("fix", head).unwrap();
    assert!(!fresh.reused());
    assert_eq!(fresh.tip(), head);
    assert!(!fresh.root().join("b.txt").exists());
}

#[test]
fn workspace_removal_leaves_git_worktree_list_clean_and_the_branch() {
    let (f, head) = user_repo();
    let ws = f.repo.open_workspace("fix", head).unwrap();
    fs::write(ws.root().join("b.txt"), "1\n").unwrap();
    let tip = ws.commit("run 1", &no_skip).unwrap();
    drop(ws);
    f.repo.open_workspace("other", head).unwrap();
    fs::create_dir_all(f.root.join(".proctor/wt/stray")).unwrap();
    let listed: Vec<(String, bool, bool)> = f
        .repo
        .workspaces()
        .unwrap()
        .into_iter()
        .map(|w| (w.name, w.registered, w.present))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("fix".to_string(), true, true),
            ("other".to_string(), true, true),
            ("stray".to_string(), false, true),
        ]
    );
    for name in ["fix", "other", "stray"] {
        f.repo.remove_workspace(name).unwrap();
    }
    // Removing twice is fine.
    f.repo.remove_workspace("fix").unwrap();
    assert!(worktree_names(&f).is_empty());
    assert!(f.repo.workspaces().unwrap().is_empty());
    assert_eq!(f.repo.branch_tip("proctor/fix").unwrap(), Some(tip));
    assert_eq!(f.read("a.txt"), "edited by the user\n");
    assert!(f.root.join(".env").exists());
}

#[test]
fn workspace_clears_stale_locks_a_killed_process_left() {
    let (f, head) = user_repo();
    let ws = f.repo.open_workspace("fix", head).unwrap();
    let admin = ws.repo().git_dir().to_path_buf();
    fs::write(admin.join("index.lock"), "").unwrap();
    fs::write(f.root.join(".git/refs/heads/proctor/fix.lock"), "").unwrap();
    fs::write(ws.root().join("b.txt"), "1\n").unwrap();
    let err = ws.commit("run 1", &no_skip).unwrap_err();
    assert!(matches!(err, GitError::Locked { .. }), "{err:?}");
    let removed = ws.clear_stale_locks().unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(!admin.join("index.lock").exists());
    assert!(!f.root.join(".git/refs/heads/proctor/fix.lock").exists());
    let c = ws.commit("run 1", &no_skip).unwrap();
    assert_eq!(f.repo.branch_tip("proctor/fix").unwrap(), Some(c));
    assert!(ws.clear_stale_locks().unwrap().is_empty());
}

#[test]
fn workspace_refuses_a_branch_the_user_has_checked_out_and_bad_names() {
    let f = Fixture::new();
    f.write("a.txt", "1\n");
    let head = f.commit("base");
    f.repo.create_branch("proctor/fix", head).unwrap();
    f.repo.switch_to("proctor/fix").unwrap();
    let err = f.repo.open_workspace("fix", head).unwrap_err();
    assert!(matches!(err, GitError::BranchCheckedOut { .. }), "{err:?}");
    assert!(err.to_string().contains("`proctor/fix`"), "{err}");
    assert!(worktree_names(&f).is_empty());
    for bad in ["", "../x", "a/b", ".hidden", "x.lock", "a..b"] {
        let err = f.repo.open_workspace(bad, head).unwrap_err();
        assert!(
            matches!(err, GitError::BadWorkspaceName { .. }),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn exclusions_written_from_a_workspace_reach_the_common_dir() {
    let (f, head) = user_repo();
    let ws = f.repo.open_workspace("fix", head).unwrap();
    ws.repo().ensure_excluded(&["/.proctor/wt/"]).unwrap();
    let exclude = fs::read_to_string(f.root.join(".git/info/exclude")).unwrap();
    assert!(exclude.contains("/.proctor/wt/"), "{exclude}");
    assert!(!f.dirty().iter().any(|p| p.starts_with(".proctor")));
}

/// Creating the run's worktree for a repository of 10,000 tracked files,
/// and the peak RSS of the test process afterwards (a benchmark, not an
/// assertion): `cargo test --lib timing_workspace -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing_workspace_10000_files() {
    let f = Fixture::new();
    for d in 0..100 {
        for i in 0..100 {
            f.write(
                &format!("src/mod{d}/file{i}.rs"),
                &format!("// file {d}/{i}\n{}", "fn x() {}\n".repeat(20)),
            );
        }
    }
    let head = f.commit("initial");
    let rss_before = peak_rss_kib();
    let t = Instant::now();
    let ws = f.repo.open_workspace("bench", head).unwrap();
    println!("open_workspace, 10000 files (create): {:?}", t.elapsed());
    drop(ws);
    let t = Instant::now();
    let ws = f.repo.open_workspace("bench", head).unwrap();
    println!("open_workspace, 10000 files (reuse):  {:?}", t.elapsed());
    assert!(ws.reused());
    let t = Instant::now();
    ws.commit("unchanged", &no_skip).unwrap();
    println!("Workspace::commit, nothing changed:   {:?}", t.elapsed());
    drop(ws);
    let t = Instant::now();
    f.repo.remove_workspace("bench").unwrap();
    println!("remove_workspace:                     {:?}", t.elapsed());
    println!(
        "peak RSS (VmHWM): {} KiB before creating, {} KiB after",
        rss_before,
        peak_rss_kib()
    );
}

fn peak_rss_kib() -> u64 {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ---- sizes, streaming export, restoring an attempt -------------------------

/// Bytes the filesystem really holds for `path`.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn copy_sparse_keeps_the_content_and_leaves_zero_chunks_as_holes() {
    let chunk = 64 * 1024;
    let mut data = vec![0u8; chunk * 40 + 123];
    data[5] = 1;
    data[chunk * 20 + 7] = 2;
    // A trailing run of zeros, shorter than a chunk, past the last write.
    let out = TempDir::new().unwrap();
    let path = out.path().join("f");
    let mut file = fs::File::create_new(&path).unwrap();
    let copied = super::export::copy_sparse(&mut data.as_slice(), &mut file).unwrap();
    drop(file);
    assert_eq!(copied, data.len() as u64);
    assert_eq!(fs::read(&path).unwrap(), data);
    assert!(
        allocated(&path) < data.len() as u64 / 4,
        "{} bytes allocated",
        allocated(&path)
    );
    // All zeros: nothing but a hole, still the full length.
    let path = out.path().join("zeros");
    let mut file = fs::File::create_new(&path).unwrap();
    super::export::copy_sparse(&mut vec![0u8; chunk * 3].as_slice(), &mut file).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), chunk as u64 * 3);
    // Empty stays empty.
    let path = out.path().join("empty");
    let mut file = fs::File::create_new(&path).unwrap();
    assert_eq!(
        super::export::copy_sparse(&mut [].as_slice(), &mut file).unwrap(),
        0
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn a_committed_sparse_file_is_exported_sparse_and_whole() {
    let f = Fixture::new();
    let big = f.root.join("big.bin");
    let file = fs::File::create(&big).unwrap();
    file.set_len(32 << 20).unwrap();
    drop(file);
    f.write("small.txt", "hi\n");
    let c = f.commit("sparse");
    let out = TempDir::new().unwrap();
    let dest = out.path().join("t");
    f.repo.export_tree(c, &dest).unwrap();
    let exported = dest.join("big.bin");
    assert_eq!(fs::metadata(&exported).unwrap().len(), 32 << 20);
    assert!(allocated(&exported) < 1 << 20, "{}", allocated(&exported));
    assert_eq!(fs::read_to_string(dest.join("small.txt")).unwrap(), "hi\n");
}

#[test]
fn pending_size_measures_the_next_commit_without_writing_a_blob() {
    let f = Fixture::new();
    f.write("keep.txt", "12345")
        .write("edit.txt", "1")
        .write("gone.txt", "123");
    let c = f.commit("start");
    assert_eq!(
        f.repo.tree_size(c).unwrap(),
        TreeSize {
            files: 3,
            bytes: 9,
            largest: Some(("keep.txt".into(), 5)),
        }
    );
    f.write("edit.txt", "1234567890")
        .write("new/one.txt", "abc");
    fs::remove_file(f.root.join("gone.txt")).unwrap();
    f.write(".proctor/logs/x.log", "skipped, however big");
    let size = f.repo.pending_size(&skip_state).unwrap();
    assert_eq!(
        size,
        TreeSize {
            files: 3,
            bytes: 18,
            largest: Some(("edit.txt".into(), 10)),
        }
    );
    assert!(!f.repo.contains_blob(b"1234567890").unwrap());
    assert!(!f.repo.contains_blob(b"abc").unwrap());
    assert!(f.repo.contains_blob(b"12345").unwrap());
    // Putting the tree back to HEAD writes nothing either, and leaves
    // ignored files alone.
    f.repo.ensure_excluded(&["/ignored"]).unwrap();
    f.write("ignored", "mine");
    f.repo.restore_head().unwrap();
    assert_eq!(f.read("edit.txt"), "1");
    assert_eq!(f.read("gone.txt"), "123");
    assert!(!f.root.join("new/one.txt").exists());
    assert_eq!(f.read("ignored"), "mine");
    assert!(f.dirty().is_empty(), "{:?}", f.dirty());
    assert!(!f.repo.contains_blob(b"1234567890").unwrap());
}
