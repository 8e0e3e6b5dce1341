//! Unattended operation end to end: detached runs, `stop`, not-yet exams,
//! human gates, the `on_halt` notifier, cron schedules and the read-only
//! views. The real binary, scripted shell agents, real containers.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{redact, require_engine, stderr, stdout, TestRepo};
use proctor::engine::events::{Event, GateStatus, Outcome};

const FIX_CALC: &str = "add() { echo $(( $1 - $2 )); }\n";
const TEST_CALC: &str = ". ./calc.sh\n[ \"$(add 2 2)\" = 4 ] || { echo \"FAIL: add 2 2 printed $(add 2 2)\"; exit 1; }\n";

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_end(repo: &TestRepo) -> Option<(Outcome, i32)> {
    repo.events().iter().rev().find_map(|r| match r.event {
        Event::RunEnd { outcome, exit, .. } => Some((outcome, exit)),
        _ => None,
    })
}

/// The pid a detached run reported.
fn detached_pid(out: &std::process::Output) -> i32 {
    let text = stdout(out);
    let start = text.find("(pid ").expect("the pid is printed") + 5;
    let end = start + text[start..].find(')').unwrap();
    text[start..end].parse().unwrap()
}

fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_string));
    !matches!(state.as_deref(), None | Some("Z") | Some("X"))
}

/// Containers of `repo` that exist right now (by label, Docker CLI).
fn containers_of(repo: &TestRepo) -> usize {
    let label = proctor::cage::repo_label(&repo.path());
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=proctor.repo={label}"),
        ])
        .output()
        .expect("the docker CLI");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn json(repo: &TestRepo, args: &[&str]) -> serde_json::Value {
    let out = repo.proctor(args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn a_detached_run_survives_sighup_and_finishes() {
    require_engine();
    let repo = TestRepo::new()
        .file("calc.sh", FIX_CALC)
        .file("test.sh", TEST_CALC)
        .manifest("loop: fix\nagent: 'sleep 3; sed -i \"s/- \\$2/+ \\$2/\" calc.sh'\ndone_when: sh test.sh\nbudget: 2 runs\n")
        .commit("buggy");
    // The parent runs in its own process group, as a shell's job would.
    let mut cmd = repo.command(&["run", "--bg"]);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("proctor stop"), "{}", stdout(&out));
    let pid = detached_pid(&out);
    // Its own session: the terminal's hangup never reaches it...
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let session: i32 = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(session, pid, "the detached run leads its own session");
    // ...and a SIGHUP sent straight to it is ignored.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(pid), "SIGHUP ended the detached run");
    wait_until("the detached run ends", Duration::from_secs(90), || {
        run_end(&repo).is_some()
    });
    assert_eq!(run_end(&repo), Some((Outcome::Closed, 0)));
    assert!(repo
        .read_at("proctor/fix", "calc.sh")
        .unwrap()
        .contains("$1 + $2"));
    assert_eq!(repo.read("calc.sh"), FIX_CALC, "the checkout is untouched");
    let log = repo.read(".proctor/runner.log");
    assert!(log.contains("closed (exit 0)"), "{log}");
    wait_until("the lock is released", Duration::from_secs(10), || {
        proctor::state::lock::holder(&repo.path().join(".proctor/lock")).is_none()
    });
    assert_eq!(repo.status(), Vec::<String>::new());
    repo.assert_no_containers();
}

#[test]
fn stop_ends_this_repos_run_and_its_containers_but_not_another_repos() {
    require_engine();
    let slow = "loop: slow\nagent: 'touch started; sleep 120'\ndone_when: 'test -f done'\nbudget: 2 runs\n";
    let a = TestRepo::new().manifest(slow).commit("a");
    let b = TestRepo::new().manifest(slow).commit("b");
    for repo in [&a, &b] {
        let out = repo.proctor(&["run", "--bg"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    for repo in [&a, &b] {
        wait_until("the agent starts", Duration::from_secs(60), || {
            repo.wt_exists("slow", "started")
        });
    }
    assert!(containers_of(&a) >= 1 && containers_of(&b) >= 1);
    let b_pid: i32 = b
        .read(".proctor/lock")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let out = a.proctor(&["stop"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("resumes"), "{}", stdout(&out));
    assert_eq!(run_end(&a), Some((Outcome::Interrupted, 130)));
    // The lock file stays (never deleted); the kernel lock is free.
    assert_eq!(
        proctor::state::lock::holder(&a.path().join(".proctor/lock")),
        None
    );
    assert_eq!(containers_of(&a), 0, "a's containers are gone");

    // The other repository's run goes on, containers and all.
    assert!(alive(b_pid));
    assert!(containers_of(&b) >= 1);
    assert_eq!(run_end(&b), None);
    let status = json(&b, &["watch", "--json"]);
    assert_eq!(status["outcome"], "running");

    // Nothing to stop is not an error; a stopped repository resumes.
    let out = a.proctor(&["stop"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(a.head_branch(), "master");
    assert!(
        a.wt_exists("slow", "started"),
        "the worktree is kept to resume"
    );

    let out = b.proctor(&["stop"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(run_end(&b), Some((Outcome::Interrupted, 130)));
    a.assert_no_containers();
    b.assert_no_containers();
}

#[test]
fn a_not_yet_exam_waits_without_spending_runs_and_ends_by_its_time_budget() {
    require_engine();
    let repo = TestRepo::new()
        .manifest("loop: quiet\nagent: 'touch agent-ran'\ndone_when: 'echo waiting; exit 75'\ncheck_every: 1s\nbudget: 3 runs / 4s\n")
        .commit("watcher");
    let started = Instant::now();
    let out = repo.proctor(&["run", "--bg"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The views show it waiting.
    let mut seen_waiting = false;
    wait_until("the watcher ends", Duration::from_secs(60), || {
        let v = json(&repo, &["watch", "--json"]);
        if v["tree"]["word"] == "waiting" && v["outcome"] == "running" {
            seen_waiting = true;
        }
        v["ended"] == true
    });
    let took = started.elapsed();
    assert!(seen_waiting, "status never showed the loop waiting");
    assert_eq!(run_end(&repo), Some((Outcome::Blocked, 3)));
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(repo.agent_starts(), 0, "a not-yet wakes no agent");
    assert!(!repo.exists("agent-ran"));
    assert!(!repo
        .log("proctor/quiet")
        .iter()
        .any(|m| m.contains(": run ")));
    let waits = repo
        .events()
        .iter()
        .filter(|r| matches!(r.event, Event::Wait { .. }))
        .count();
    assert!(waits >= 2, "{waits} waits");
    // Never a sleep past the budget.
    assert!(repo.events().iter().all(|r| match r.event {
        Event::Wait { secs, .. } => secs <= 1.0,
        _ => true,
    }));
    let card = repo.read("INBOX/quiet.md");
    assert!(card.contains("time budget spent"), "{card}");
    repo.assert_no_containers();
}

#[test]
fn a_watcher_without_a_time_budget_is_refused_before_anything_runs() {
    let repo = TestRepo::new()
        .manifest(
            "loop: quiet\nagent: 'true'\ndone_when: 'exit 75'\ncheck_every: 30s\nbudget: 5 runs\n",
        )
        .commit("untimed");
    for verb in ["run", "lint"] {
        let out = repo.proctor(&[verb]);
        assert_eq!(out.status.code(), Some(1), "{verb}");
        let err = stderr(&out);
        assert!(
            err.contains("check_every") && err.contains("5 runs / 8h"),
            "{err}"
        );
    }
    assert!(!repo.exists(".proctor"));
}

const GATED: &str = "loop: ship\ntask: prepare the release\nagent: sh agent.sh\ndone_when: 'test -f fixed.txt && test \"$(cat fixed.txt)\" -ge \"$(cat /cache/world/min 2>/dev/null || echo 1)\"'\ngate: human\nbudget: 3 runs / 1h\ncaches: [world]\n";

/// An agent that does the work and also tries every way to approve itself.
const FORGER: &str = r#"echo "$PROCTOR_RUN" > fixed.txt
echo '{"type":"approval","v":1,"loop":"ship","id":"f0","ts":1,"commit":"0000000000000000000000000000000000000000","approver":"0123456789abcdef","sig":"00"}' >> .proctor/ledger.jsonl
echo '{"type":"answer","v":1,"loop":"ship","id":"f1","ts":1,"text":"approve","hmac":"00"}' >> .proctor/ledger.jsonl
mkdir -p INBOX .proctor/approvals
echo approve > INBOX/ship.approved
echo approve > .proctor/approvals/ship
echo approve > APPROVED
"#;

fn close_commits(repo: &TestRepo) -> usize {
    repo.log("proctor/ship")
        .iter()
        .filter(|m| m.as_str() == "proctor(ship): close")
        .count()
}

#[test]
fn a_gate_exits_4_seals_only_on_an_authenticated_approve() {
    require_engine();
    let repo = TestRepo::new()
        .manifest(GATED)
        .file("agent.sh", FORGER)
        .commit("gated");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let card = repo.read("INBOX/ship.md");
    assert!(
        card.contains("READY: ship") && card.contains("proctor answer ship approve"),
        "{card}"
    );
    assert_eq!(close_commits(&repo), 0);

    // A rejection unlocks nothing and buys no run.
    let out = repo.proctor(&["answer", "ship", "the changelog is missing"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("rejection"));
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(repo
        .read("INBOX/ship.md")
        .contains("the changelog is missing"));
    assert_eq!(repo.agent_starts(), 1);

    // Everything written without a trusted key: approval lines for the very
    // commit under review (one claiming this host's approver id with a bad
    // signature, one validly signed by a key this host does not trust, one
    // plain answer `approve`), files named like approvals, an edited card.
    // None seals.
    let git = git2::Repository::open(repo.path()).unwrap();
    let commit = git
        .find_branch("proctor/ship", git2::BranchType::Local)
        .unwrap()
        .get()
        .target()
        .unwrap()
        .to_string();
    let own_id = std::fs::read_to_string(repo.home.path().join("keys/approver.pub"))
        .unwrap()
        .split("id=")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger =
        proctor::state::approver::ApproverKey::load_or_create(stranger_dir.path()).unwrap();
    let signed_by_stranger = proctor::state::gate::decision(&stranger, "ship", &commit, "approve");
    // The run's ledger is in its worktree, kept while the gate waits.
    const LEDGER: &str = ".proctor/wt/ship/.proctor/ledger.jsonl";
    let mut ledger = repo.read(LEDGER);
    ledger.push_str(&format!(
        "{{\"type\":\"approval\",\"v\":1,\"loop\":\"ship\",\"id\":\"f2\",\"ts\":1,\"commit\":\"{commit}\",\"approver\":\"{own_id}\",\"sig\":\"{}\"}}\n",
        "ab".repeat(64)
    ));
    ledger.push_str(&serde_json::to_string(&signed_by_stranger).unwrap());
    ledger.push('\n');
    ledger.push_str("{\"type\":\"answer\",\"v\":1,\"loop\":\"ship\",\"id\":\"f3\",\"ts\":1,\"text\":\"approve\",\"hmac\":\"00\"}\n");
    repo.write(LEDGER, &ledger);
    repo.write("INBOX/ship.approved", "approve\n");
    repo.write(".proctor/approvals/ship", "approve\n");
    let card = repo.read("INBOX/ship.md");
    repo.write(
        "INBOX/ship.md",
        &format!(
            "{}\nANSWER: approve\n",
            card.replace("READY", "APPROVED")
                .replace("ready", "approved")
        ),
    );
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(close_commits(&repo), 0, "a forgery sealed the gate");
    assert_eq!(repo.agent_starts(), 1, "a forged answer bought a run");
    assert!(
        repo.read("INBOX/ship.md").contains(&stranger.id),
        "the card names the approval it could not count"
    );

    // A signed approval of the commit under review seals it on the next run,
    // after the exam passes once more.
    let out = repo.proctor(&["answer", "ship", "approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The approver saw proctor's own review of the commit signed.
    assert!(
        stdout(&out).contains(&format!("Commit `{commit}` against the run's base")),
        "{}",
        stdout(&out)
    );
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(close_commits(&repo), 1);
    assert!(!repo.exists("INBOX/ship.md"));
    assert!(repo.events().iter().any(|r| matches!(
        r.event,
        Event::Gate {
            status: GateStatus::Sealed,
            ..
        }
    )));
    let git = git2::Repository::open(repo.path()).unwrap();
    let head = git
        .find_branch("proctor/ship", git2::BranchType::Local)
        .unwrap()
        .get()
        .peel_to_commit()
        .unwrap();
    assert!(head.message().unwrap().contains("Proctor-Approved-By: "));
    // Sealed stays sealed while the exam passes.
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    repo.assert_no_containers();
}

/// That time waiting at a gate spends no time budget is the engine's
/// decision, tested on the fake clock (`engine::tests::gates`).
#[test]
fn a_gate_is_superseded_when_the_world_moves() {
    require_engine();
    let repo = TestRepo::new()
        .manifest(GATED)
        .file("agent.sh", "echo \"$PROCTOR_RUN\" > fixed.txt\n")
        .commit("gated");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let out = repo.proctor(&["answer", "ship", "approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Meanwhile the world moved (a cache the exam reads): the approved
    // state no longer passes.
    repo.write(".proctor/caches/world/min", "2\n");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let events = repo.events();
    assert!(events.iter().any(|r| matches!(
        r.event,
        Event::Gate {
            status: GateStatus::Superseded,
            ..
        }
    )));
    // The normal path: the agent worked again and the new state waits for
    // a new approval.
    assert_eq!(repo.agent_starts(), 2);
    assert_eq!(close_commits(&repo), 0);
    assert!(repo.read("INBOX/ship.md").contains("READY: ship"));
    let out = repo.proctor(&["answer", "ship", "approve"]);
    assert_eq!(out.status.code(), Some(0));
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(close_commits(&repo), 1);
    repo.assert_no_containers();
}

#[test]
fn a_two_person_gate_needs_two_distinct_trusted_keys() {
    require_engine();
    let repo = TestRepo::new()
        .manifest("loop: ship\nagent: 'touch fixed.txt'\ndone_when: 'test -f fixed.txt'\ngate: {human: 2}\n")
        .commit("gated");
    let bob_keys = tempfile::tempdir().unwrap();
    let bob = bob_keys.path().to_str().unwrap();
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    // The same person twice is one approval.
    for _ in 0..2 {
        let out = repo.proctor(&["answer", "ship", "approve"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(repo.read("INBOX/ship.md").contains("1 so far"));
    // A second key this host does not trust yet does not count.
    let out = repo.proctor_env(&["answer", "ship", "approve"], &[("PROCTOR_KEY_DIR", bob)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(repo
        .read("INBOX/ship.md")
        .contains("not a trusted approver"));
    // Trusting Bob's public key (and only that) completes the gate.
    let approvers = repo.home.path().join(".config/proctor/approvers");
    std::fs::create_dir_all(&approvers).unwrap();
    std::fs::copy(
        bob_keys.path().join("approver.pub"),
        approvers.join("bob.pub"),
    )
    .unwrap();
    let inbox = repo.proctor(&["inbox"]);
    assert!(
        stdout(&inbox).contains("approvals: 2 of 2"),
        "{}",
        stdout(&inbox)
    );
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let git = git2::Repository::open(repo.path()).unwrap();
    let message = git
        .find_branch("proctor/ship", git2::BranchType::Local)
        .unwrap()
        .get()
        .peel_to_commit()
        .unwrap()
        .message()
        .unwrap()
        .to_string();
    let approvers_line = message
        .lines()
        .find(|l| l.starts_with("Proctor-Approved-By: "))
        .unwrap();
    assert_eq!(approvers_line.matches(", ").count(), 1, "{approvers_line}");
    repo.assert_no_containers();
}

#[test]
fn on_halt_fires_with_its_environment_and_never_breaks_the_run() {
    require_engine();
    let out_dir = tempfile::tempdir().unwrap();
    let out_path = out_dir.path().to_str().unwrap();
    let config =
        "on_halt: 'env | grep ^PROCTOR_ | sort > \"$NOTIFY_DIR/$PROCTOR_REASON.env\"; exit 7'\n";
    // The agent rewrites the config to run its own command on the host.
    let blocked = TestRepo::new()
        .file(".proctor/config.yaml", config)
        .manifest("loop: stuck\nagent: 'printf \"on_halt: touch $NOTIFY_DIR/agent-was-here\\n\" > .proctor/config.yaml'\ndone_when: 'exit 1'\nbudget: 1 run\n")
        .commit("blocked");
    let env = [("NOTIFY_DIR", out_path)];
    let out = blocked.proctor_env(&["run"], &env);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a failing notifier changed the outcome: {}",
        stderr(&out)
    );
    let seen = std::fs::read_to_string(out_dir.path().join("blocked.env")).unwrap();
    assert!(seen.contains("PROCTOR_LOOP=stuck"), "{seen}");
    assert!(seen.contains("PROCTOR_REASON=blocked"), "{seen}");
    let card = blocked.path().join("INBOX/stuck.md");
    assert!(
        seen.contains(&format!("PROCTOR_CARD={}", card.display())),
        "{seen}"
    );
    assert!(blocked
        .events()
        .iter()
        .any(|r| matches!(r.event, Event::Notify { exit: Some(7), .. })));
    // A second run reads the agent's config from history: still not run.
    let out = blocked.proctor_env(&["run"], &env);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        !out_dir.path().join("agent-was-here").exists(),
        "the host ran an agent's command"
    );

    let gated = TestRepo::new()
        .file(".proctor/config.yaml", config)
        .manifest("loop: ship\nagent: 'true'\ndone_when: 'true'\ngate: human\n")
        .commit("gated");
    let out = gated.proctor_env(&["run"], &env);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let seen = std::fs::read_to_string(out_dir.path().join("gated.env")).unwrap();
    assert!(
        seen.contains("PROCTOR_LOOP=ship") && seen.contains("PROCTOR_REASON=gated"),
        "{seen}"
    );

    // An uncommitted notifier is not trusted, and says so.
    let untracked = TestRepo::new()
        .manifest("loop: stuck\nagent: 'true'\ndone_when: 'exit 1'\nbudget: 1 run\n")
        .commit("no config");
    untracked.write(
        ".proctor/config.yaml",
        "on_halt: 'touch \"$NOTIFY_DIR/untrusted\"'\n",
    );
    let out = untracked.proctor_env(&["run"], &env);
    assert_eq!(out.status.code(), Some(3));
    assert!(!out_dir.path().join("untrusted").exists());
    assert!(stderr(&out).contains("not run"), "{}", stderr(&out));
    for repo in [&blocked, &gated, &untracked] {
        repo.assert_no_containers();
    }
}

#[test]
fn cron_sync_and_remove_round_trip_on_a_crontab_with_other_entries() {
    let repo = TestRepo::new()
        .manifest("loop: deps\nagent: 'true'\ndone_when: 'true'\nschedules:\n  - run: deps\n    at: \"0 9 * * 1-5\"\n  - run: deps\n    at: \"@hourly\"\n")
        .commit("scheduled");
    let dir = tempfile::tempdir().unwrap();
    let crontab = dir.path().join("crontab");
    let theirs = "MAILTO=me@example.com\n# my backups\n*/5 * * * * /usr/bin/backup --at 50%\n";
    std::fs::write(&crontab, theirs).unwrap();
    let env = [("PROCTOR_CRONTAB_FILE", crontab.to_str().unwrap())];

    let out = repo.proctor_env(&["cron", "sync"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let synced = std::fs::read_to_string(&crontab).unwrap();
    let root = repo.path();
    let redactions = [
        (root.as_path(), "[REPO]"),
        (Path::new(env!("CARGO_BIN_EXE_proctor")), "[PROCTOR]"),
        (repo.home.path(), "[HOME]"),
    ];
    insta::assert_snapshot!("crontab", redact(&synced, &redactions));

    let out = repo.proctor_env(&["cron", "sync"], &env);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&crontab).unwrap(),
        synced,
        "sync is idempotent"
    );

    let out = repo.proctor_env(&["cron", "remove"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&crontab).unwrap(), theirs);

    // A malformed block is never rewritten.
    let broken = format!("{theirs}# BEGIN proctor {}\n* * * * * x\n", root.display());
    std::fs::write(&crontab, &broken).unwrap();
    let out = repo.proctor_env(&["cron", "sync"], &env);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!("malformed_block", redact(&stderr(&out), &redactions));
    assert_eq!(std::fs::read_to_string(&crontab).unwrap(), broken);

    // systemd user timers, the same round trip.
    let units = dir.path().join("units");
    let env = [("PROCTOR_SYSTEMD_DIR", units.to_str().unwrap())];
    let out = repo.proctor_env(&["cron", "sync", "--systemd"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let names: Vec<String> = std::fs::read_dir(&units)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    let timer = names.iter().find(|n| n.ends_with("-deps-1.timer")).unwrap();
    let text = std::fs::read_to_string(units.join(timer)).unwrap();
    insta::assert_snapshot!("timer", redact(&text, &redactions));
    let out = repo.proctor_env(&["cron", "remove", "--systemd"], &env);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_dir(&units).unwrap().count(), 0);
}

#[test]
fn skip_if_running_exits_0_without_work_while_a_run_holds_the_lock() {
    let repo = TestRepo::new()
        .manifest("loop: deps\nagent: 'true'\ndone_when: 'true'\n")
        .commit("scheduled");
    // This test process stands in for a live run: it holds the lock.
    let _held = proctor::state::lock::RunLock::acquire(&repo.path().join(".proctor/lock")).unwrap();
    let pid = std::process::id();
    let out = repo.proctor(&["run", "--skip-if-running", "deps"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let pid_text = pid.to_string();
    insta::assert_snapshot!("skipping", stdout(&out).replace(&pid_text, "[PID]"));
    assert!(repo.events().is_empty());
    let out = repo.proctor(&["run"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "without the flag a held lock is an error"
    );
    // `stop` will not signal a process that is not a proctor run here.
    let out = repo.proctor(&["stop"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!("stop_refused", stderr(&out).replace(&pid_text, "[PID]"));
}

#[test]
fn watch_json_has_a_stable_shape_on_running_blocked_gated_and_closed_runs() {
    require_engine();
    const TOP: [&str; 13] = [
        "v", "root", "outcome", "exit", "ended", "branch", "run", "pid", "started", "secs", "tree",
        "cards", "next",
    ];
    const NODE: [&str; 17] = [
        "id",
        "depth",
        "mark",
        "word",
        "runs",
        "budget_runs",
        "secs",
        "active",
        "doing",
        "run",
        "since",
        "next_check",
        "approvals",
        "needed",
        "slot",
        "branch",
        "children",
    ];
    let check_shape = |v: &serde_json::Value| {
        assert_eq!(keys(v), TOP.to_vec(), "{v}");
        assert_eq!(keys(&v["tree"]), NODE.to_vec(), "{v}");
    };

    // Running.
    let running = TestRepo::new()
        .manifest("loop: slow\nagent: 'touch started; sleep 120'\ndone_when: 'test -f done'\nbudget: 2 runs\n")
        .commit("slow");
    let out = running.proctor(&["run", "--bg"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    wait_until("the agent starts", Duration::from_secs(60), || {
        running.wt_exists("slow", "started")
    });
    let v = json(&running, &["watch", "--json"]);
    check_shape(&v);
    assert_eq!(v["outcome"], "running");
    assert_eq!(v["exit"], serde_json::Value::Null);
    assert_eq!(v["ended"], false);
    assert_eq!(v["branch"], "proctor/slow");
    assert_eq!(v["tree"]["word"], "running");
    assert_eq!(v["tree"]["active"], true);
    assert_eq!(v["tree"]["doing"], "agent");
    assert_eq!(v["tree"]["run"], 1);
    let snap = stdout(&running.proctor(&["status"]));
    assert!(snap.contains("agent working"), "{snap}");
    let out = running.proctor(&["stop"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&running, &["watch", "--json"]);
    assert_eq!(v["outcome"], "interrupted");
    assert_eq!(v["exit"], 130);

    // Blocked.
    let blocked = TestRepo::new()
        .manifest("loop: stuck\nagent: 'true'\ndone_when: 'exit 1'\nbudget: 1 run\n")
        .commit("stuck");
    assert_eq!(blocked.proctor(&["run"]).status.code(), Some(3));
    let v = json(&blocked, &["watch", "--json"]);
    check_shape(&v);
    assert_eq!(
        (
            v["outcome"].as_str(),
            v["exit"].as_i64(),
            v["ended"].as_bool()
        ),
        (Some("blocked"), Some(3), Some(true))
    );
    assert_eq!(v["tree"]["word"], "blocked");
    assert_eq!(v["tree"]["runs"], 1);
    assert_eq!(v["cards"][0]["lid"], "stuck");
    assert_eq!(v["cards"][0]["gated"], false);
    assert_eq!(v["cards"][0]["answered"], false);
    assert_eq!(v["cards"][0]["next"], "proctor answer stuck \"...\"");
    // `watch` on an ended run replays it and exits with its code.
    let out = blocked.proctor(&["watch"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).contains("stuck: blocked"), "{}", stdout(&out));

    // Gated.
    let gated = TestRepo::new()
        .manifest("loop: ship\nagent: 'true'\ndone_when: 'true'\ngate: human\n")
        .commit("gated");
    assert_eq!(gated.proctor(&["run"]).status.code(), Some(4));
    let v = json(&gated, &["watch", "--json"]);
    check_shape(&v);
    assert_eq!(
        (v["outcome"].as_str(), v["exit"].as_i64()),
        (Some("gated"), Some(4))
    );
    assert_eq!(v["tree"]["word"], "gated");
    assert_eq!(v["tree"]["needed"], 1);
    assert_eq!(v["cards"][0]["gated"], true);
    assert_eq!(v["cards"][0]["next"], "proctor answer ship approve");

    // Closed.
    let closed = TestRepo::new()
        .manifest("loop: green\nagent: 'true'\ndone_when: 'true'\nloops:\n  - loop: child\n    done_when: 'true'\n")
        .commit("green");
    assert_eq!(closed.proctor(&["run"]).status.code(), Some(0));
    let v = json(&closed, &["watch", "--json"]);
    check_shape(&v);
    assert_eq!(
        (
            v["outcome"].as_str(),
            v["exit"].as_i64(),
            v["ended"].as_bool()
        ),
        (Some("closed"), Some(0), Some(true))
    );
    assert_eq!(v["tree"]["word"], "done");
    assert_eq!(v["tree"]["children"][0]["word"], "done");
    assert_eq!(v["tree"]["children"][0]["depth"], 1);
    assert_eq!(v["cards"], serde_json::json!([]));
    for repo in [&running, &blocked, &gated, &closed] {
        repo.assert_no_containers();
    }
}

#[test]
fn captured_output_carries_no_ansi_escapes() {
    require_engine();
    let repo = TestRepo::new()
        .manifest("loop: stuck\nagent: 'true'\ndone_when: 'exit 1'\nbudget: 1 run\n")
        .commit("stuck");
    // Not CI, no NO_COLOR: plain only because nothing here is a terminal.
    let plain = |args: &[&str]| {
        let mut cmd = repo.command(args);
        cmd.env_remove("CI").env("TERM", "xterm-256color");
        cmd.output().unwrap()
    };
    let out = plain(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    for args in [
        &["status"][..],
        &["watch", "--snapshot"],
        &["watch"],
        &["inbox"],
        &["runs"],
        &["stats"],
    ] {
        let out = plain(args);
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            !all.contains('\x1b'),
            "`proctor {}` printed an escape: {all:?}",
            args.join(" ")
        );
    }
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !all.contains('\x1b'),
        "`proctor run` printed an escape: {all:?}"
    );
    let runs = stdout(&plain(&["runs"]));
    assert!(runs.contains("blocked") && runs.contains("stuck"), "{runs}");
    let stats = stdout(&plain(&["stats"]));
    assert!(
        stats.contains("1 agent runs: 0 verified by the exam, 1 rejected"),
        "{stats}"
    );
    repo.assert_no_containers();
}

#[test]
fn two_runs_started_at_the_same_instant_make_one_run() {
    // Issue 13: the lock file appeared empty and a second run that read it
    // in between called it stale, took it, and reaped the first's containers.
    require_engine();
    let repo = TestRepo::new()
        .file("agent.sh", "touch started; sleep 60\n")
        .manifest("loop: fix\nagent: sh agent.sh\ndone_when: test -f done.txt\nbudget: 2 runs\n")
        .commit("slow agent");
    let start = || {
        common::Background(
            repo.command(&["run"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        )
    };
    let mut runs = [start(), start()];
    repo.wait_until("no agent started", |r| r.wt_exists("fix", "started"));
    // The other run refused; the one that took the lock still works.
    let mut refused = Vec::new();
    let runs_cell = std::cell::RefCell::new(&mut runs);
    repo.wait_until("neither run refused", |_| {
        runs_cell
            .borrow_mut()
            .iter_mut()
            .any(|run| matches!(run.try_wait(), Ok(Some(_))))
    });
    let mut working = 0;
    for run in &mut runs {
        match run.try_wait().unwrap() {
            Some(status) => {
                let mut text = String::new();
                std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut text).unwrap();
                refused.push((status.code(), text));
            }
            None => working += 1,
        }
    }
    assert_eq!(working, 1, "{refused:?}");
    assert_eq!(refused.len(), 1);
    let (code, text) = &refused[0];
    assert_eq!(*code, Some(1), "{text}");
    assert!(
        text.contains("another proctor run is active in this repository (pid "),
        "{text}"
    );
    let starts = repo
        .events()
        .iter()
        .filter(|r| matches!(r.event, Event::RunStart { .. }))
        .count();
    assert_eq!(starts, 1, "exactly one run started");
    assert!(!repo
        .events()
        .iter()
        .any(|r| matches!(r.event, Event::Reaped { containers, .. } if containers > 0)));
    let out = repo.proctor(&["stop"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for run in &mut runs {
        run.wait().unwrap();
    }
    assert_eq!(
        proctor::state::lock::holder(&repo.path().join(".proctor/lock")),
        None,
        "the lock is free again"
    );
    repo.assert_no_containers();
}
