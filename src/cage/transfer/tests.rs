use super::*;

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// The agent's mounts, as `attempt.rs` builds them, over `host`.
fn agent_plan(host: &Path, journal: &Path) -> TransferPlan {
    let mounts = vec![
        (host.to_path_buf(), "/work".to_string(), false),
        (host.join(".git"), "/work/.git".to_string(), true),
        (host.join(".proctor"), "/work/.proctor".to_string(), true),
        (
            journal.to_path_buf(),
            "/work/.proctor/journal".to_string(),
            false,
        ),
        (host.join("INBOX"), "/work/INBOX".to_string(), true),
    ];
    TransferPlan::new(&mounts, Some((1000, 1000))).unwrap()
}

/// What the engine does with an upload: unpacks it under `dir`.
fn unpack(bytes: &[u8], dir: &Path) {
    let mut archive = tar::Archive::new(bytes);
    archive.set_preserve_permissions(true);
    archive.unpack(dir).unwrap();
}

/// What the engine sends back for `dir`: its tree under `name/`.
fn archive_of(dir: &Path, name: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(name, dir).unwrap();
    builder.into_inner().unwrap()
}

/// A tar with one entry whose name is written raw (the tar crate refuses
/// to build `..` paths itself).
fn raw_entry(name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link) = link {
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    let mut out = Vec::new();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn finish(mut parts: Vec<u8>) -> Vec<u8> {
    parts.extend_from_slice(&[0u8; 1024]);
    parts
}

#[test]
fn plan_groups_nested_mounts_under_their_outermost_target() {
    let host = Path::new("/h");
    let plan = agent_plan(host, Path::new("/j"));
    assert_eq!(plan.volume_targets(), ["/work"]);
    let root = &plan.roots[0];
    let rels: Vec<String> = root.mounts.iter().map(|m| m.rel.join("/")).collect();
    assert_eq!(rels, ["", ".git", ".proctor", "INBOX", ".proctor/journal"]);
    assert!(root.writable());

    let plan = TransferPlan::new(
        &[
            ("/a".into(), "/cache/x".into(), false),
            ("/b".into(), "/etc/ssl/certs".into(), true),
        ],
        None,
    )
    .unwrap();
    assert_eq!(plan.volume_targets(), ["/cache/x", "/etc/ssl/certs"]);
    assert!(!plan.roots[1].writable());
    assert!(TransferPlan::new(&[("/a".into(), "/w/../etc".into(), false)], None).is_err());
    assert!(TransferPlan::new(&[("/a".into(), "/".into(), false)], None).is_err());
}

#[test]
fn upload_then_download_takes_back_only_writable_paths() {
    let host = tempfile::tempdir().unwrap();
    let host = host.path();
    let journal_dir = tempfile::tempdir().unwrap();
    let journal = journal_dir.path();
    write(&host.join("src/lib.rs"), "fn broken() {}\n");
    write(&host.join("gone.txt"), "delete me\n");
    write(&host.join("keep.txt"), "same\n");
    write(&host.join(".git/HEAD"), "ref: refs/heads/main\n");
    write(&host.join(".proctor/ledger.jsonl"), "{}\n");
    write(&host.join("INBOX/card.md"), "card\n");
    write(&journal.join("notes.md"), "run 1\n");
    std::os::unix::fs::symlink("src/lib.rs", host.join("link")).unwrap();
    let keep_mtime = fs::metadata(host.join("keep.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let plan = agent_plan(host, journal);
    let root = &plan.roots[0];

    let mut upload = Vec::new();
    let sent = write_tree(&mut upload, root, plan.owner).unwrap();
    assert!(sent.entries >= 10, "{sent:?}");
    // Every entry is owned by the container's user.
    let mut archive = tar::Archive::new(upload.as_slice());
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        assert_eq!(entry.header().uid().unwrap(), 1000);
        assert_eq!(entry.header().gid().unwrap(), 1000);
    }

    // The container: the tree arrived whole, journal included.
    let container = tempfile::tempdir().unwrap();
    let work = container.path().join("work");
    fs::create_dir(&work).unwrap();
    unpack(&upload, &work);
    assert_eq!(
        fs::read_to_string(work.join("src/lib.rs")).unwrap(),
        "fn broken() {}\n"
    );
    assert_eq!(
        fs::read_to_string(work.join(".proctor/journal/notes.md")).unwrap(),
        "run 1\n"
    );
    assert_eq!(
        fs::read_to_string(work.join(".git/HEAD")).unwrap(),
        "ref: refs/heads/main\n"
    );
    assert_eq!(
        fs::read_link(work.join("link")).unwrap(),
        Path::new("src/lib.rs")
    );

    // The agent: edits, adds, deletes, and tries proctor's own paths.
    write(&work.join("src/lib.rs"), "fn fixed() {}\n");
    write(&work.join("src/new.rs"), "new\n");
    fs::remove_file(work.join("gone.txt")).unwrap();
    fs::remove_file(work.join("link")).unwrap();
    std::os::unix::fs::symlink("src/new.rs", work.join("link")).unwrap();
    write(&work.join(".git/hooks/pre-commit"), "evil\n");
    write(&work.join(".git/HEAD"), "evil\n");
    write(&work.join(".proctor/ledger.jsonl"), "forged\n");
    write(&work.join("INBOX/card.md"), "forged\n");
    write(&work.join(".proctor/journal/notes.md"), "run 1\nrun 2\n");

    let applied = apply_tree(archive_of(&work, "work").as_slice(), root).unwrap();
    assert_eq!(
        fs::read_to_string(host.join("src/lib.rs")).unwrap(),
        "fn fixed() {}\n"
    );
    assert_eq!(
        fs::read_to_string(host.join("src/new.rs")).unwrap(),
        "new\n"
    );
    assert!(!host.join("gone.txt").exists());
    assert_eq!(
        fs::read_link(host.join("link")).unwrap(),
        Path::new("src/new.rs")
    );
    assert_eq!(
        fs::read_to_string(journal.join("notes.md")).unwrap(),
        "run 1\nrun 2\n"
    );
    // Read-only mounts: nothing came back.
    assert_eq!(
        fs::read_to_string(host.join(".git/HEAD")).unwrap(),
        "ref: refs/heads/main\n"
    );
    assert!(!host.join(".git/hooks").exists());
    assert_eq!(
        fs::read_to_string(host.join(".proctor/ledger.jsonl")).unwrap(),
        "{}\n"
    );
    assert_eq!(
        fs::read_to_string(host.join("INBOX/card.md")).unwrap(),
        "card\n"
    );
    // An unchanged file is left alone.
    assert_eq!(
        fs::metadata(host.join("keep.txt"))
            .unwrap()
            .modified()
            .unwrap(),
        keep_mtime
    );
    assert_eq!(applied.deleted, 1, "{applied:?}");
    // No temporary file is left behind.
    let names: Vec<String> = fs::read_dir(host.join("src"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".proctor-incoming")),
        "{names:?}"
    );
}

#[test]
fn podmans_rooted_layout_is_applied() {
    let host = tempfile::tempdir().unwrap();
    write(&host.path().join("old.txt"), "old\n");
    let plan = TransferPlan::new(&[(host.path().into(), "/work".into(), false)], None).unwrap();
    let mut tar = raw_entry("/", tar::EntryType::Directory, None, b"");
    tar.extend(raw_entry("/sub/", tar::EntryType::Directory, None, b""));
    tar.extend(raw_entry("/sub/f", tar::EntryType::Regular, None, b"hi"));
    let moved = apply_tree(finish(tar).as_slice(), &plan.roots[0]).unwrap();
    assert_eq!(fs::read_to_string(host.path().join("sub/f")).unwrap(), "hi");
    assert!(!host.path().join("old.txt").exists());
    assert_eq!(moved.deleted, 1);
}

#[test]
fn a_file_replacing_a_directory_and_back_is_applied() {
    let host = tempfile::tempdir().unwrap();
    write(&host.path().join("d/inner.txt"), "x\n");
    write(&host.path().join("f"), "file\n");
    let plan = TransferPlan::new(&[(host.path().into(), "/work".into(), false)], None).unwrap();
    let container = tempfile::tempdir().unwrap();
    let work = container.path().join("work");
    write(&work.join("d"), "now a file\n");
    write(&work.join("f/inner.txt"), "now a dir\n");
    apply_tree(archive_of(&work, "work").as_slice(), &plan.roots[0]).unwrap();
    assert_eq!(
        fs::read_to_string(host.path().join("d")).unwrap(),
        "now a file\n"
    );
    assert_eq!(
        fs::read_to_string(host.path().join("f/inner.txt")).unwrap(),
        "now a dir\n"
    );
}

#[test]
fn entries_that_leave_the_tree_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let plan = TransferPlan::new(&[(host.path().into(), "/work".into(), false)], None).unwrap();
    let root = &plan.roots[0];

    for name in [
        "work/../evil",
        "work/a/../../evil",
        "../evil",
        "/../evil",
        "/a/../../evil",
    ] {
        let tar = finish(raw_entry(name, tar::EntryType::Regular, None, b"x"));
        let error = apply_tree(tar.as_slice(), root).unwrap_err().to_string();
        assert!(error.contains("leaves the tree"), "{name}: {error}");
    }
    // An absolute name in Docker's layout, a relative one in Podman's.
    let mut tar = raw_entry("work/", tar::EntryType::Directory, None, b"");
    tar.extend(raw_entry("/etc/evil", tar::EntryType::Regular, None, b"x"));
    let error = apply_tree(finish(tar).as_slice(), root)
        .unwrap_err()
        .to_string();
    assert!(error.contains("leaves the tree"), "{error}");
    let mut tar = raw_entry("/", tar::EntryType::Directory, None, b"");
    tar.extend(raw_entry("etc/evil", tar::EntryType::Regular, None, b"x"));
    let error = apply_tree(finish(tar).as_slice(), root)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("not below the archived directory"),
        "{error}"
    );
    assert!(!host.path().join("etc").exists());
    // A hard link may not point outside either.
    let tar = finish(raw_entry(
        "work/h",
        tar::EntryType::Link,
        Some("../../etc/passwd"),
        b"",
    ));
    assert!(apply_tree(tar.as_slice(), root).is_err());

    // A symlink to outside is fine as a symlink, never as a way through.
    let link_target = outside.path().to_string_lossy().into_owned();
    let mut tar = raw_entry(
        "work/link",
        tar::EntryType::Symlink,
        Some(&link_target),
        b"",
    );
    tar.extend(raw_entry(
        "work/link/planted",
        tar::EntryType::Regular,
        None,
        b"x",
    ));
    let error = apply_tree(finish(tar).as_slice(), root)
        .unwrap_err()
        .to_string();
    assert!(error.contains("through the symlink"), "{error}");
    assert!(!outside.path().join("planted").exists());
    assert!(fs::symlink_metadata(host.path().join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_host_symlink_is_replaced_not_followed() {
    let outside = tempfile::tempdir().unwrap();
    write(&outside.path().join("target.txt"), "outside\n");
    let host = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path().join("target.txt"), host.path().join("f")).unwrap();
    let plan = TransferPlan::new(&[(host.path().into(), "/work".into(), false)], None).unwrap();
    let tar = finish(raw_entry(
        "work/f",
        tar::EntryType::Regular,
        None,
        b"inside\n",
    ));
    apply_tree(tar.as_slice(), &plan.roots[0]).unwrap();
    assert_eq!(
        fs::read_to_string(outside.path().join("target.txt")).unwrap(),
        "outside\n"
    );
    assert_eq!(
        fs::read_to_string(host.path().join("f")).unwrap(),
        "inside\n"
    );
    assert!(fs::symlink_metadata(host.path().join("f"))
        .unwrap()
        .is_file());
}

#[test]
fn deletion_never_reaches_into_read_only_mounts() {
    let host = tempfile::tempdir().unwrap();
    write(&host.path().join(".git/HEAD"), "head\n");
    write(&host.path().join("exam/check.sh"), "exit 0\n");
    write(&host.path().join("a.txt"), "a\n");
    let plan = TransferPlan::new(
        &[
            (host.path().into(), "/work".into(), false),
            (host.path().join(".git"), "/work/.git".into(), true),
            (
                host.path().join("exam/check.sh"),
                "/work/exam/check.sh".into(),
                true,
            ),
        ],
        None,
    )
    .unwrap();
    // The container deleted everything it could.
    let container = tempfile::tempdir().unwrap();
    let work = container.path().join("work");
    fs::create_dir(&work).unwrap();
    apply_tree(archive_of(&work, "work").as_slice(), &plan.roots[0]).unwrap();
    assert!(!host.path().join("a.txt").exists());
    assert!(host.path().join(".git/HEAD").exists());
    assert!(host.path().join("exam/check.sh").exists());
}
