//! Creating a run's worktree (`.proctor/wt/<name>` on `proctor/<name>`,
//! git2, tracked files only) in the repository at PATH, timed: the
//! worktree side of `benches/parallel.sh`.
//!
//! `cargo run --example worktree_create -- PATH [RUNS]` creates and
//! removes the worktree RUNS times (default 5) and prints one JSON object
//! on stdout: the median, min and max milliseconds of a creation, and the
//! process's peak resident memory (VmHWM) before the first creation and
//! after the last, in KiB.

use std::time::Instant;

use proctor::git::{GitError, GitRepo};

/// The process's peak resident set so far, in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<(), GitError> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| ".".into());
    let runs: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(5).max(1);
    let repo = GitRepo::open(std::path::Path::new(&path))?;
    let Some(head) = repo.head()? else {
        eprintln!("worktree_create: `{path}` has no commit");
        std::process::exit(1);
    };
    let before = peak_rss_kib();
    let mut ms = Vec::new();
    let mut files = 0usize;
    for _ in 0..runs {
        let started = Instant::now();
        let ws = repo.open_workspace("bench", head)?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
        if files == 0 {
            files = count_files(ws.root());
        }
        drop(ws);
        repo.remove_workspace("bench")?;
    }
    ms.sort_by(f64::total_cmp);
    let after = peak_rss_kib();
    eprintln!(
        "worktree of {files} files: median {:.0} ms (min {:.0}, max {:.0}); peak RSS {before} KiB before, {after} KiB after",
        ms[ms.len() / 2],
        ms[0],
        ms[ms.len() - 1]
    );
    println!(
        "{{\"files\":{files},\"runs\":{runs},\"median_ms\":{:.1},\"min_ms\":{:.1},\"max_ms\":{:.1},\"peak_rss_kib_before\":{before},\"peak_rss_kib_after\":{after}}}",
        ms[ms.len() / 2],
        ms[0],
        ms[ms.len() - 1]
    );
    Ok(())
}

/// Files in the worktree, `.git` aside.
fn count_files(root: &std::path::Path) -> usize {
    let mut stack = vec![root.to_path_buf()];
    let mut n = 0;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name() == ".git" {
                continue;
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(_) => n += 1,
                Err(_) => {}
            }
        }
    }
    n
}
