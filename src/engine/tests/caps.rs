//! The caps on what one attempt may commit (`resources: {tree, files,
//! file}`): an attempt over one is undone before anything reaches `.git`,
//! named in an event, counted, and explained in the next prompt.

use super::{make_done, prompts, write, Repo, Run};
use crate::cage::fake::Scripted;
use crate::engine::events::Event;
use crate::engine::Ending;

fn cap_events(run: &Run) -> Vec<(String, u64, u64, Option<String>)> {
    run.events
        .iter()
        .filter_map(|e| match e {
            Event::CapExceeded {
                cap,
                limit,
                size,
                path,
                ..
            } => Some((cap.clone(), *limit, *size, path.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_sparse_2_gib_file_is_over_the_default_file_cap_and_nothing_of_the_attempt_is_kept() {
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: test -f done\nbudget: 2 runs\n",
        &[("src/a.txt", "original\n")],
    );
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent_edits(|work| {
            // Costs the agent nothing on disk; 2 GiB in a blob.
            let big = std::fs::File::create(work.join("big.bin")).expect("create");
            big.set_len(2 << 30).expect("sparse");
            write(work, "src/a.txt", "changed by the rejected attempt\n");
            write(work, "src/new.txt", "new in the rejected attempt\n");
            make_done(work);
        }),
        Scripted::exam(1),
        Scripted::agent_edits(make_done),
        Scripted::exam(0),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(
        cap_events(&run),
        [(
            "file".to_string(),
            100 << 20,
            2 << 30,
            Some("big.bin".to_string())
        )]
    );
    // Undone on disk, absent from history, never written to `.git`.
    assert!(!repo.root().join("big.bin").exists());
    assert!(!repo.root().join("src/new.txt").exists());
    assert_eq!(repo.read("src/a.txt").as_deref(), Some("original\n"));
    assert!(!repo
        .git
        .contains_blob(b"changed by the rejected attempt\n")
        .unwrap());
    assert!(!repo
        .git
        .contains_blob(b"new in the rejected attempt\n")
        .unwrap());
    // The rejected attempt counted: run 2 closed the loop.
    assert_eq!(
        repo.log(),
        [
            "proctor(fix): run 1",
            "proctor(fix): run 2",
            "proctor(fix): close"
        ]
    );
    let tip = repo.git.head().unwrap().unwrap();
    let log = repo.git.first_parent_log(tip, None).unwrap();
    assert!(log[2]
        .message
        .contains("Proctor-Rejected: over the `file` cap"));
    let prompts = prompts(&cage);
    assert!(
        prompts[1].contains("run 1 was rejected and none of its edits were kept: `big.bin` is 2.0 GiB, over the `file` cap of 100.0 MiB"),
        "{}",
        prompts[1]
    );
    assert!(run
        .report
        .boundary
        .iter()
        .any(|l| l.starts_with("loop `fix`: run 1 was rejected before its commit")));
}

#[test]
fn the_files_cap_counts_the_whole_tree_and_an_honest_run_under_it_commits() {
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: test -f done\nbudget: 3 runs\nresources: {files: 6, tree: 1m}\n",
        &[("a.txt", "a\n"), ("b.txt", "b\n")],
    );
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent_edits(|work| {
            for i in 0..5 {
                write(work, &format!("gen/{i}.txt"), &format!("{i}\n"));
            }
        }),
        Scripted::exam(1),
        // proctor.yaml, a.txt, b.txt, the journal, done: 5 files, under 6.
        Scripted::agent_edits(make_done),
        Scripted::exam(0),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    let events = cap_events(&run);
    assert_eq!(events.len(), 1, "{events:?}");
    // Counting stops once over the cap: at least 7 of proctor.yaml, a.txt,
    // b.txt, the journal and 5 generated files.
    assert_eq!(events[0], ("files".to_string(), 6, 7, None));
    assert!(!repo.root().join("gen").join("0.txt").exists());
    assert!(repo.root().join("done").exists());
    assert!(prompts(&cage)[1].contains("the tree would hold more than 6 files, the `files` cap"));
}

#[test]
fn the_tree_cap_counts_bytes_already_committed() {
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: test -f done\nbudget: 1 runs\nresources: {tree: 2k}\n",
        &[("old.txt", &"x".repeat(1500))],
    );
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent_edits(|work| write(work, "more.txt", &"y".repeat(1000))),
        Scripted::exam(1),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("fix"));
    let events = cap_events(&run);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "tree");
    assert_eq!(events[0].1, 2048);
    assert!(events[0].2 > 2500, "{events:?}");
    assert!(!repo.root().join("more.txt").exists());
}

#[test]
fn a_tree_over_the_shm_cap_is_exported_to_disk_and_a_small_one_to_memory() {
    use super::super::exam::{exam_scratch_dir, SHM_TREE_CAP};
    if let Some(dir) = std::env::var_os("PROCTOR_TMPDIR").filter(|d| !d.is_empty()) {
        // The override wins whatever the size.
        assert_eq!(exam_scratch_dir(u64::MAX), std::path::PathBuf::from(dir));
        return;
    }
    assert_eq!(exam_scratch_dir(SHM_TREE_CAP + 1), std::env::temp_dir());
    assert_eq!(exam_scratch_dir(u64::MAX), std::env::temp_dir());
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        assert_eq!(exam_scratch_dir(4096), shm);
    }
}
