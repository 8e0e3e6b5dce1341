//! Resource caps end to end (issue 12, item 4): an attempt over a cap of
//! `resources:` is rejected before its commit, undone and counted; the
//! container's `/tmp` and `$HOME` are size-limited (writing past the cap
//! fails with ENOSPC). Real binary, scripted agent, both engines.

use crate::common;

use common::{require_engine, stderr, TestRepo};
use proctor::engine::events::Event;

const CALC: &str = "add() { echo $(( $1 - $2 )); }\n";
const TEST: &str = r#". ./calc.sh
[ "$(add 2 2)" = 4 ] || { echo "FAIL: add 2 2 printed $(add 2 2)"; exit 1; }
echo ok
"#;

/// Run 1 writes a 2 GiB sparse file, run 2 writes 80 files into a tree
/// capped at 50, run 3 fixes the bug and tries to write 4 MiB into each of
/// its 1 MiB tmpfs mounts, `/tmp` and `$HOME`, recording how each failed.
const AGENT: &str = r#"cat >/dev/null
case "$PROCTOR_RUN" in
1) truncate -s 2G big.bin
   echo 'add() { echo $(( $1 + $2 )); }' > calc.sh ;;
2) mkdir -p gen; i=0; while [ $i -lt 80 ]; do echo $i > gen/$i; i=$((i+1)); done ;;
*) sed -i 's/\$1 - \$2/$1 + $2/' calc.sh
   for d in /tmp "$HOME"; do
     if out=$(dd if=/dev/zero of="$d/fill" bs=64k count=64 2>&1); then echo "$d: uncapped"
     else case "$out" in *"No space left on device"*) echo "$d: ENOSPC" ;; *) echo "$d: $out" ;; esac; fi
     rm -f "$d/fill"
   done > tmp-check ;;
esac
"#;

/// Bytes under `.git/objects`.
fn objects_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.join(".git/objects")];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

fn over_caps_are_rejected_undone_and_counted(engine: proctor::cage::EngineKind) {
    require_engine();
    let repo = TestRepo::new()
        .engine(&common::socket(engine))
        .file("calc.sh", CALC)
        .file("test.sh", TEST)
        .file("agent.sh", AGENT)
        .manifest("loop: fix\nagent: sh agent.sh\ndone_when: sh test.sh\nbudget: 3 runs\nprotected: [test.sh]\nresources: {files: 50, tmp: 1m}\n")
        .commit("buggy");
    let before = objects_bytes(&repo.path());
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let caps: Vec<(u32, String, u64, u64, Option<String>)> = repo
        .events()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::CapExceeded {
                run,
                cap,
                limit,
                size,
                path,
                ..
            } => Some((run, cap, limit, size, path)),
            _ => None,
        })
        .collect();
    assert_eq!(caps.len(), 2, "{caps:?}");
    assert_eq!(
        caps[0],
        (1, "file".into(), 100 << 20, 2 << 30, Some("big.bin".into()))
    );
    assert_eq!((caps[1].0, caps[1].1.as_str(), caps[1].2), (2, "files", 50));
    assert!(caps[1].3 > 50, "{caps:?}");
    // Both rejected runs counted; the third closed the loop.
    assert_eq!(
        repo.log("proctor/fix"),
        [
            "proctor(fix): close",
            "proctor(fix): run 3",
            "proctor(fix): run 2",
            "proctor(fix): run 1",
            "buggy"
        ]
    );
    // Nothing of the rejected attempts is in the branch, nor in `.git`
    // (run 1's fix of calc.sh was undone with the rest of it).
    let git = git2::Repository::open(repo.path()).unwrap();
    let tip = git
        .find_branch("proctor/fix", git2::BranchType::Local)
        .unwrap()
        .get()
        .peel_to_tree()
        .unwrap();
    assert!(tip.get_path(std::path::Path::new("big.bin")).is_err());
    assert!(tip.get_path(std::path::Path::new("gen")).is_err());
    let grown = objects_bytes(&repo.path()) - before;
    assert!(grown < 1 << 20, ".git/objects grew by {grown} bytes");
    // The agent's /tmp and $HOME are capped tmpfs mounts: writing past
    // the limit fails with ENOSPC inside the container (run 3 wrote what
    // it found).
    let check = tip
        .get_path(std::path::Path::new("tmp-check"))
        .expect("run 3 committed tmp-check");
    let blob = git.find_blob(check.id()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(blob.content()),
        "/tmp: ENOSPC\n/tmp/home: ENOSPC\n"
    );
    repo.assert_no_containers();
}

common::on_both_engines!(over_caps_are_rejected_undone_and_counted);
