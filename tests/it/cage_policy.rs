//! What the cage promises about an agent, end to end: the real `proctor`
//! binary, scripted shell agents, real containers, on Docker and on Podman.
//!
//! Each scripted agent tries to cheat (read a host secret, reach an
//! unlisted host, plant a git hook, leave a daemon, fork without end, run
//! forever) and writes what it saw into the working tree; the test then
//! asserts on the tree, the events and the host. After every test no
//! container or network with the repository's labels remains.
//!
//! The sockets default to the rootful ones and can be pointed elsewhere
//! with `PROCTOR_TEST_DOCKER` / `PROCTOR_TEST_PODMAN`. An engine that does
//! not answer fails the test with how to start it; nothing is skipped.
//! Network tests talk only to containers the test itself starts, on a
//! network it creates.

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::testnet::{default_bridge, TestNet, PORT};
use bollard::query_parameters::InspectContainerOptions;
use common::{cage, on_both_engines, runtime, socket, stderr, TestRepo};
use proctor::cage::{Cage, CageError, EngineKind, Invocation, Labels, Role, RuntimeChoice};
use proctor::engine::events::Event;

/// A committed repository whose binary runs against `engine`.
fn repo(engine: EngineKind, files: &[(&str, &str)]) -> TestRepo {
    runtime().block_on(cage(engine));
    let mut repo = TestRepo::new().engine(&socket(engine));
    for (path, text) in files {
        repo = repo.file(path, text);
    }
    repo.commit("fixture")
}

/// A string that appears in no command line on this host but the ones a
/// test's agent starts.
fn marker(test: &str, engine: EngineKind) -> String {
    format!("pmark{test}{}{}", engine.as_str(), std::process::id())
}

/// Command lines of host processes that contain `marker`.
fn host_processes_with(marker: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| e.file_name().to_string_lossy() != me)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(marker))
        .collect()
}

/// Waits briefly for processes that are being torn down, then asserts none
/// carrying `marker` is left on the host.
fn assert_no_host_processes(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = host_processes_with(marker);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes of the agent outlived its container: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn events(repo: &TestRepo) -> Vec<Event> {
    repo.events().into_iter().map(|r| r.event).collect()
}

on_both_engines!(
    agent_cannot_read_host_secrets_or_the_answer_key,
    agent_home_is_writable_and_does_not_persist,
    agent_with_network_none_has_only_loopback,
    agent_reaches_only_listed_hosts,
    open_agents_of_a_loop_share_one_holder_and_loops_do_not,
    a_killed_run_leaves_its_containers_and_files_to_the_reaper,
    a_killed_runs_agent_stops_at_its_own_deadline,
    a_killed_runs_holder_and_egress_proxy_stop_without_it,
    a_time_budget_stops_an_agent_that_ignores_signals,
    a_time_budget_stops_an_exam_that_ignores_signals,
    an_interrupted_run_leaves_no_files,
    agent_cannot_write_git,
    agent_daemons_die_with_the_container,
    agent_timeout_is_recorded_and_the_run_goes_on,
    fork_bomb_is_contained_by_the_pids_limit,
    resources_and_hardening_reach_both_containers,
    ptrace_and_namespaces_are_denied_to_agent_and_exam,
    a_runtime_the_engine_would_ignore_is_refused,
);

fn agent_cannot_read_host_secrets_or_the_answer_key(engine: EngineKind) {
    let env_secret = marker("envsecret", engine);
    let home_secret = marker("homesecret", engine);
    let repo = TestRepo::new().engine(&socket(engine));
    let host_home = repo.home.path().to_path_buf();
    std::fs::write(host_home.join(".secret"), &home_secret).expect("home secret");
    let key_dir = host_home.join("keys");
    let agent = format!(
        r#"mkdir -p seen
env | sort > seen/env.txt
tr '\0' '\n' < /proc/1/environ > seen/pid1-environ.txt 2>&1
for p in "{home}" "{home}/.secret" "{keys}" /root /home /etc/shadow /var/run/docker.sock /run/podman/podman.sock; do
  echo "== $p"; ls -la "$p"; cat "$p" "$p"/* | head -c 4096
done > seen/paths.txt 2>&1
ls -la "$HOME" /tmp > seen/home.txt 2>&1
find / -xdev \( -name 'answer*' -o -name '*.key' -o -name 'keys' \) 2>/dev/null | head -50 > seen/find.txt
true
"#,
        home = host_home.display(),
        keys = key_dir.display()
    );
    let repo = repo
        .file("agent.sh", &agent)
        .manifest(
            "loop: secrets\nagent: sh agent.sh\ndone_when: test -s seen/env.txt\nbudget: 1 run\nenv: [LISTED_VAR, UNSET_VAR]\n",
        )
        .commit("fixture");
    let out = repo.proctor_env(
        &["run"],
        &[
            ("PROCTOR_TEST_HOST_SECRET", &env_secret),
            ("LISTED_VAR", "listed-value"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let key_texts: Vec<String> = std::fs::read_dir(&key_dir)
        .expect("proctor created its key")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    assert!(
        !key_texts.is_empty(),
        "no answer key in {}",
        key_dir.display()
    );
    let mut seen = String::new();
    for name in ["env", "pid1-environ", "paths", "home", "find"] {
        seen.push_str(&repo.work(&format!("seen/{name}.txt")));
    }
    assert!(repo
        .work("seen/env.txt")
        .contains("LISTED_VAR=listed-value"));
    assert!(
        !seen.contains("UNSET_VAR"),
        "an unset listed variable appeared"
    );
    for secret in [&env_secret, &home_secret]
        .into_iter()
        .chain(key_texts.iter())
    {
        assert!(
            !seen.contains(secret.as_str()),
            "the agent saw `{secret}`:\n{seen}"
        );
    }
    assert!(!seen.contains("PROCTOR_TEST_HOST_SECRET"), "{seen}");
    assert!(!seen.contains("PROCTOR_KEY_DIR"), "{seen}");
    // Nothing of the host's home, the key directory or the engine sockets
    // exists in the container at all.
    let paths = repo.work("seen/paths.txt");
    assert!(
        paths
            .lines()
            .all(|l| l.starts_with("== ") || l.contains("No such file or directory")),
        "a host path was visible:\n{paths}"
    );
    repo.assert_no_containers();
}

fn agent_home_is_writable_and_does_not_persist(engine: EngineKind) {
    let agent = r#"mkdir -p seen
{ echo "home=$HOME"; ls -A "$HOME"; } > seen/home-run$PROCTOR_RUN.txt 2>&1
echo "run $PROCTOR_RUN" > "$HOME/left-by-run$PROCTOR_RUN" && echo wrote >> seen/home-run$PROCTOR_RUN.txt
stat -c '%a %u' "$HOME" >> seen/home-run$PROCTOR_RUN.txt
"#;
    let repo = repo(
        engine,
        &[
            ("agent.sh", agent),
            (
                "proctor.yaml",
                "loop: home\nagent: sh agent.sh\ndone_when: test -f seen/home-run2.txt\nbudget: 2 runs\n",
            ),
        ],
    );
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let first = repo.work("seen/home-run1.txt");
    let second = repo.work("seen/home-run2.txt");
    assert!(first.starts_with("home=/tmp/home\n"), "{first}");
    assert!(first.contains("wrote\n"), "{first}");
    // Private to the container's user (the repository's owner).
    let owner = proctor::cage::container_user(&repo.path());
    let uid = owner.split(':').next().unwrap_or_default();
    assert!(first.contains(&format!("700 {uid}\n")), "{first}");
    assert!(second.contains("wrote\n"), "{second}");
    assert!(
        !second.contains("left-by-run1"),
        "run 1's home survived: {second}"
    );
    repo.assert_no_containers();
}

fn agent_with_network_none_has_only_loopback(engine: EngineKind) {
    let repo = repo(
        engine,
        &[(
            "proctor.yaml",
            "loop: offline\nagent: ls /sys/class/net > ifaces.txt\ndone_when: test -s ifaces.txt\nbudget: 1 run\nnetwork: none\n",
        )],
    );
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(repo.work("ifaces.txt"), "lo\n");
    repo.assert_no_containers();
}

/// Starts `python3 -m http.server` serving `body` as `/` on `network`;
/// returns its address there.
fn http_server(
    net: &mut TestNet,
    engine: EngineKind,
    name: &str,
    body: &str,
    network: &str,
) -> String {
    let script = format!(
        "mkdir -p /tmp/www && echo '{body}' > /tmp/www/index.html && cd /tmp/www && exec python3 -m http.server {PORT}"
    );
    net.serve(
        engine,
        name,
        network,
        vec!["/bin/sh".into(), "-c".into(), script],
        vec!["PATH=/usr/bin:/bin".into()],
    )
}

fn agent_reaches_only_listed_hosts(engine: EngineKind) {
    let mut net = TestNet::new(engine, "egress");
    let allowed = format!(
        "proctor-test-allowed-{}-{}",
        engine.as_str(),
        std::process::id()
    );
    let denied = format!(
        "proctor-test-denied-{}-{}",
        engine.as_str(),
        std::process::id()
    );
    let allowed_body = marker("allowedbody", engine);
    let denied_body = marker("deniedbody", engine);
    let network = net.name.clone();
    let allowed_ip = http_server(&mut net, engine, &allowed, &allowed_body, &network);
    let denied_ip = http_server(&mut net, engine, &denied, &denied_body, &network);

    let agent = format!(
        r#"mkdir -p seen
ls /sys/class/net > seen/ifaces.txt
env | grep -i _proxy | sort > seen/proxy-env.txt
curl -fsS -m 20 http://{allowed}:8000/ > seen/allowed-http.txt 2>&1
curl -fsS -m 20 --proxytunnel http://{allowed}:8000/ > seen/allowed-connect.txt 2>&1
curl -fsS -m 20 http://{denied}:8000/ > seen/denied-http.txt 2>&1; echo "exit $?" >> seen/denied-http.txt
curl -fsS -m 20 --proxytunnel http://{denied}:8000/ > seen/denied-connect.txt 2>&1; echo "exit $?" >> seen/denied-connect.txt
curl -sS -m 5 --noproxy '*' http://{allowed_ip}:8000/ > seen/direct.txt 2>&1; echo "exit $?" >> seen/direct.txt
curl -sS -m 5 --noproxy '*' http://{denied_ip}:8000/ >> seen/direct.txt 2>&1; echo "exit $?" >> seen/direct.txt
{{ ls -la /proctor-egress; find / \( -path /proc -o -path /sys -o -path /usr \) -prune -o -type s -print; grep proxy.sock /proc/net/unix; }} > seen/socket.txt 2>&1
python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); s.connect("/proctor-egress/proxy.sock")' >> seen/socket.txt 2>&1; echo "connect exit $?" >> seen/socket.txt
true
"#
    );
    // The verifier has the same list, so its exam can fetch from it too.
    let manifest = format!(
        "loop: egress\nagent: sh agent.sh\ndone_when: curl -sS -m 20 http://{allowed}:8000/ | grep -q {allowed_body} && test -s seen/allowed-http.txt\nbudget: 1 run\nnetwork:\n  agent: [\"{allowed}:8000\"]\n  verifier: [\"{allowed}\"]\n"
    );
    let config = format!("egress_network: {}\n", net.name);
    let repo = repo(
        engine,
        &[
            ("agent.sh", &agent),
            ("proctor.yaml", &manifest),
            (".proctor/config.yaml", &config),
        ],
    );
    let out = repo.proctor(&["run"]);
    let seen = |name: &str| repo.work(&format!("seen/{name}.txt"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\nallowed-http: {}\nexam: {}",
        stderr(&out),
        seen("allowed-http"),
        repo.read(".proctor/logs/egress.run1.exam.log")
    );
    // Loopback only: the holder's relay, named in the environment, is the
    // only way out.
    assert_eq!(seen("ifaces"), "lo\n");
    let proxy_env = seen("proxy-env");
    assert!(
        proxy_env.contains("HTTPS_PROXY=http://127.0.0.1:3128\n"),
        "{proxy_env}"
    );
    assert!(
        proxy_env.contains("http_proxy=http://127.0.0.1:3128\n"),
        "{proxy_env}"
    );
    assert!(proxy_env.contains("NO_PROXY=\n"), "{proxy_env}");
    assert!(
        seen("allowed-http").contains(&allowed_body),
        "{}",
        seen("allowed-http")
    );
    assert!(
        seen("allowed-connect").contains(&allowed_body),
        "{}",
        seen("allowed-connect")
    );
    for name in ["denied-http", "denied-connect"] {
        let text = seen(name);
        assert!(!text.contains(&denied_body), "{name}: {text}");
        assert!(text.contains("403"), "{name}: {text}");
        assert!(!text.contains("exit 0"), "{name}: {text}");
    }
    let direct = seen("direct");
    assert!(
        !direct.contains(&allowed_body) && !direct.contains(&denied_body),
        "{direct}"
    );
    assert!(!direct.contains("exit 0"), "{direct}");
    // The proxy's socket is mounted into the holder and the proxy, never
    // into the agent, and no socket of the namespace is bound to it.
    let socket = seen("socket");
    assert!(
        socket.contains("/proctor-egress': No such file or directory"),
        "{socket}"
    );
    assert!(!socket.contains("proxy.sock\n"), "{socket}");
    assert!(!socket.contains("connect exit 0"), "{socket}");
    assert!(socket.contains("connect exit 1"), "{socket}");

    let denials: Vec<(String, u16, String)> = events(&repo)
        .into_iter()
        .filter_map(|e| match e {
            Event::NetworkDenied {
                host, port, role, ..
            } => Some((host, port, role)),
            _ => None,
        })
        .collect();
    assert_eq!(
        denials,
        [
            (denied.clone(), 8000, "agent".to_string()),
            (denied.clone(), 8000, "agent".to_string())
        ],
        "{denials:?}"
    );
    let report = common::stdout(&out);
    assert!(report.contains(&format!("`{denied}:8000`")), "{report}");
    repo.assert_no_containers();
}

/// Names of the network holders of `repo` that exist now, by loop.
async fn holders_now(docker: &bollard::Docker, repo: &str) -> Vec<(String, String)> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("proctor.repo={repo}"),
            "proctor.role=netns".to_string(),
        ],
    )]);
    let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(options))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| {
            let name = c.names?.first()?.trim_start_matches('/').to_string();
            let loop_id = c.labels?.get("proctor.loop")?.clone();
            Some((loop_id, name))
        })
        .collect()
}

fn open_agents_of_a_loop_share_one_holder_and_loops_do_not(engine: EngineKind) {
    let mut net = TestNet::new(engine, "open");
    let body = marker("openbody", engine);
    let server = format!(
        "proctor-test-open-{}-{}",
        engine.as_str(),
        std::process::id()
    );
    let ip = http_server(&mut net, engine, &server, &body, default_bridge(engine));
    let agent = format!(
        "mkdir -p seen\n{{ readlink /proc/self/ns/net; curl -fsS -m 20 http://{ip}:8000/; }} > seen/$PROCTOR_LOOP-run$PROCTOR_RUN.txt 2>&1\n"
    );
    let manifest = "loop: root\nagent: 'true'\ndone_when: test -f seen/a-run3.txt && test -f seen/b-run2.txt\nloops:\n  - loop: a\n    agent: sh agent.sh\n    done_when: test -f seen/a-run3.txt\n    budget: 3 runs\n  - loop: b\n    agent: sh agent.sh\n    done_when: test -f seen/b-run2.txt\n    budget: 2 runs\n";
    let repo = repo(engine, &[("agent.sh", &agent), ("proctor.yaml", manifest)]);
    let label = proctor::cage::repo_label(&repo.path());
    let mut child = repo.spawn_quiet(&["run"]);
    // Which holders exist while the run goes on, sampled.
    let mut seen: Vec<(String, String)> = Vec::new();
    let status = net.rt.block_on(async {
        loop {
            for holder in holders_now(&net.docker, &label).await {
                if !seen.contains(&holder) {
                    seen.push(holder);
                }
            }
            if let Some(status) = child.try_wait().expect("wait for the run") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert_eq!(status.code(), Some(0));
    let netns = |file: &str| {
        let text = repo.work(&format!("seen/{file}.txt"));
        assert!(text.contains(&body), "{file}: {text}");
        text.lines().next().unwrap_or_default().to_string()
    };
    assert_eq!(netns("a-run1"), netns("a-run2"));
    assert_eq!(netns("a-run1"), netns("a-run3"));
    assert_eq!(netns("b-run1"), netns("b-run2"));
    // One holder per loop for the whole loop, each loop its own. (The
    // root's exam passed at once; its agent, prepared ahead of need, may
    // have had a holder made for it too.)
    seen.sort();
    seen.retain(|(l, _)| l != "root");
    let loops: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(loops, ["a", "b"], "{seen:?}");
    assert_ne!(seen[0].1, seen[1].1);
    repo.assert_no_containers();
}

/// A host-list loop whose agent parks (its first run) until `go.txt`
/// appears, then passes.
const PARKED_AGENT: &str =
    "touch started.txt\nwhile [ ! -f go.txt ]; do sleep 0.1; done\necho ok > done.txt\n";
const PARKED_MANIFEST: &str = "loop: parked\nagent: sh agent.sh\ndone_when: test -f done.txt\nbudget: 2 runs\nnetwork: [proctor-test.invalid]\n";

/// A repository of the parked loop.
fn parked_repo(engine: EngineKind) -> TestRepo {
    repo(
        engine,
        &[
            ("agent.sh", PARKED_AGENT),
            ("proctor.yaml", PARKED_MANIFEST),
        ],
    )
}

/// `repo` with its own temp directory (`TMPDIR`, home of the cage's private
/// directory) and exam scratch directory (`PROCTOR_TMPDIR`).
fn with_temp_dirs(repo: TestRepo, tmp: &std::path::Path, scratch: &std::path::Path) -> TestRepo {
    repo.env("TMPDIR", tmp).env("PROCTOR_TMPDIR", scratch)
}

/// The containers of `repo_label` (only the running ones with `running`):
/// id and role label. A listing fails while a Podman container passes
/// through its `stopped` state, which bollard cannot parse (see
/// `libpod.rs`): the caller asks again.
async fn containers_of(
    docker: &bollard::Docker,
    repo_label: &str,
    running: bool,
) -> Result<Vec<(String, String)>, String> {
    let mut filters = HashMap::from([(
        "label".to_string(),
        vec![format!("proctor.repo={repo_label}")],
    )]);
    if running {
        filters.insert("status".to_string(), vec!["running".to_string()]);
    }
    let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let found = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| format!("list containers: {e}"))?;
    Ok(found
        .into_iter()
        .filter_map(|c| {
            let role = c.labels?.get("proctor.role")?.clone();
            Some((c.id?, role))
        })
        .collect())
}

/// Role and exit code of each container of `repo_label` that started.
async fn exits_of(
    docker: &bollard::Docker,
    repo_label: &str,
) -> Result<Vec<(String, Option<i64>)>, String> {
    let mut exits = Vec::new();
    for (id, role) in containers_of(docker, repo_label, false).await? {
        let inspect = docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| format!("inspect: {e}"))?;
        let Some(state) = inspect.state else { continue };
        // A start ahead of need that proctor's death cut short may have
        // left a container that never started.
        let never_started = state
            .started_at
            .as_deref()
            .is_none_or(|t| t.starts_with("0001-"));
        if !never_started {
            exits.push((role, state.exit_code));
        }
    }
    Ok(exits)
}

/// After `kill -9` of proctor its agent still dies at its own deadline:
/// the container kills the command itself at the timeout plus 5 s
/// (docs/design.md, "Deadlines without proctor"), and the stopped
/// container waits for the next `reap` or run. The agent's network
/// holder (`open`) ends with proctor: its stdin closes.
fn a_killed_runs_agent_stops_at_its_own_deadline(engine: EngineKind) {
    a_killed_run_stops_everything(engine, "open");
}

/// After `kill -9` of proctor a loop's egress proxy and its holder (the
/// relay) stop as soon as proctor's end of their stdin goes away: none of
/// the run's containers is left running (regression: they ran until the
/// next `run`, `stop` or `reap`).
fn a_killed_runs_holder_and_egress_proxy_stop_without_it(engine: EngineKind) {
    a_killed_run_stops_everything(engine, "[proctor-test.invalid]");
}

/// Kills `proctor run` with SIGKILL while its agent (`network`) hangs, and
/// waits (with a bound, never a fixed sleep) until none of the run's
/// containers runs: the agent killed by its own deadline (137), prepared
/// containers closed at their gate (125), holders and proxies ended (0).
fn a_killed_run_stops_everything(engine: EngineKind, network: &str) {
    let manifest = format!(
        "loop: hang\nagent: sh agent.sh\ndone_when: exit 1\nbudget: 3 runs\ntimeout: 8s\nnetwork: {network}\n"
    );
    let repo = repo(
        engine,
        &[
            ("agent.sh", "echo started; exec sleep 1000\n"),
            ("proctor.yaml", &manifest),
        ],
    );
    let label = proctor::cage::repo_label(&repo.path());
    let mut child = repo.spawn_quiet(&["run"]);
    // The live log, not the tree: it stays in the checkout wherever the
    // agent's `/work` is.
    repo.wait_until("the agent never started", |r| {
        r.read(".proctor/logs/hang.run1.log").contains("started")
    });
    let rt = runtime();
    let docker = rt.block_on(common::engine_client(engine));
    let roles: Vec<String> = rt
        .block_on(containers_of(&docker, &label, true))
        .unwrap_or_default()
        .into_iter()
        .map(|(_, role)| role)
        .collect();
    assert!(
        roles.iter().any(|r| r == "netns"),
        "the agent should have a network holder: {roles:?}"
    );
    // SIGKILL: proctor cannot kill the agent at its timeout any more.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    let killed_at = Instant::now();
    // The documented bound from the agent's start (8 s + 5 s), counted
    // from the kill (later), plus what a loaded engine takes to stop it.
    let bound = Duration::from_secs(8 + 5 + 30);
    loop {
        let running = match rt.block_on(containers_of(&docker, &label, true)) {
            Ok(running) if running.is_empty() => break,
            Ok(running) => format!("{running:?}"),
            Err(error) => error,
        };
        assert!(
            killed_at.elapsed() < bound,
            "still running {bound:?} after proctor was killed: {running}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // They were stopped, not removed, since proctor was gone.
    let exits = loop {
        match rt.block_on(exits_of(&docker, &label)) {
            Ok(exits) => break exits,
            Err(error) => assert!(killed_at.elapsed() < bound, "{error}"),
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let ran: Vec<_> = exits
        .iter()
        .filter(|(role, e)| *e != Some(125) && role != "netns" && role != "proxy")
        .collect();
    assert_eq!(ran, [&("agent".to_string(), Some(137))], "{exits:?}");
    let sidecars: Vec<_> = exits
        .iter()
        .filter(|(role, _)| role == "netns" || role == "proxy")
        .collect();
    assert!(!sidecars.is_empty(), "{exits:?}");
    assert!(
        sidecars.iter().all(|(_, e)| *e == Some(0)),
        "holders and proxies end cleanly when their stdin closes: {exits:?}"
    );
    if network != "open" {
        assert!(
            sidecars.iter().any(|(role, _)| role == "proxy"),
            "a host list runs an egress proxy: {exits:?}"
        );
    }
    let out = repo.proctor(&["reap"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    repo.assert_no_containers();
}

/// Regression (issue 12, item 9): with `budget: 2 runs / 4s` an agent
/// that ignores SIGTERM and never exits ran until its own timeout (an hour
/// by default): the time budget was checked only between runs. It is
/// stopped when the budget ends, and the loop is blocked.
fn a_time_budget_stops_an_agent_that_ignores_signals(engine: EngineKind) {
    let repo = repo(
        engine,
        &[
            (
                "agent.sh",
                "trap '' TERM INT HUP; echo started; echo half > half.txt; while :; do sleep 1; done\n",
            ),
            (
                "proctor.yaml",
                "loop: hang\nagent: sh agent.sh\ndone_when: exit 1\nbudget: 2 runs / 4s\nnetwork: none\n",
            ),
        ],
    );
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let agents: Vec<_> = repo
        .events()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::AgentEnd { run, timed_out, .. } => Some((run, timed_out)),
            _ => None,
        })
        .collect();
    assert_eq!(agents, [(1, true)]);
    let card = repo.read("INBOX/hang.md");
    assert!(
        card.contains("run 1's agent was stopped when it ended"),
        "{card}"
    );
    repo.assert_no_containers();
}

/// The exam running when the time budget ends is stopped with it (it
/// ignores SIGTERM and never exits), and its log says why.
fn a_time_budget_stops_an_exam_that_ignores_signals(engine: EngineKind) {
    let repo = repo(
        engine,
        &[
            (
                "exam.sh",
                "if [ -f done.txt ]; then trap '' TERM INT HUP; echo hanging; while :; do sleep 1; done; fi; exit 1\n",
            ),
            (
                "proctor.yaml",
                "loop: hang\nagent: echo ok > done.txt\ndone_when: sh exam.sh\nbudget: 2 runs / 6s\nnetwork: none\n",
            ),
        ],
    );
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let verified: Vec<_> = repo
        .events()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::CheckResult {
                phase: proctor::engine::events::Phase::Verify,
                timed_out,
                ..
            } => Some(timed_out),
            _ => None,
        })
        .collect();
    assert_eq!(verified, [true]);
    let log = repo.read(".proctor/logs/hang.run1.exam.log");
    assert!(log.contains("hanging"), "{log}");
    let card = repo.read("INBOX/hang.md");
    assert!(card.contains("time budget spent"), "{card}");
    repo.assert_no_containers();
}

fn a_killed_run_leaves_its_containers_and_files_to_the_reaper(engine: EngineKind) {
    // Both runs share a temp directory and an exam scratch directory of
    // their own, as two runs on one host share /tmp and /dev/shm.
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dirs = [
        common::private_dir(tmp.path()),
        scratch.path().to_path_buf(),
    ];
    // The first exam (a verifier with a host list: its own holder, the
    // loop's proxy, an exam scratch tree) sleeps; that is when the run is
    // killed. The cache tells later exams not to.
    let exam =
        "if [ ! -f /cache/c/slept ]; then touch /cache/c/slept; sleep 60; fi; test -f done.txt";
    let manifest = format!(
        "loop: slow\nagent: echo ok > done.txt\ndone_when: '{exam}'\nbudget: 3 runs\ncaches: [c]\nnetwork: {{agent: [proctor-test.invalid], verifier: [proctor-test.invalid]}}\n"
    );
    let killed = with_temp_dirs(
        repo(engine, &[("proctor.yaml", &manifest)]),
        tmp.path(),
        scratch.path(),
    );
    let live = with_temp_dirs(parked_repo(engine), tmp.path(), scratch.path());
    let label = proctor::cage::repo_label(&killed.path());
    let mut child = killed.spawn_quiet(&["run"]);
    let mut other = live.spawn_quiet(&["run"]);
    killed.wait_until("the exam never started", |r| {
        r.exists(".proctor/caches/c/slept")
    });
    live.wait_until("the other run's agent never started", |r| {
        r.work_exists("started.txt")
    });
    let victim = child.id();
    // SIGKILL: no cleanup at all; the holder, the proxy and their files
    // stay behind.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let _ = child.wait();
    let left_files = common::host_files_of(victim, &dirs);
    let names: Vec<String> = left_files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for kind in ["egress-", "relay-", "proctor-exam-"] {
        assert!(
            names.iter().any(|n| n.starts_with(kind)),
            "the killed run should have left its {kind}* files: {names:?}"
        );
    }
    eprintln!("left by the killed run: {names:?}");
    let live_files = common::host_files_of(other.id(), &dirs);
    assert!(!live_files.is_empty(), "the live run has files");
    let rt = runtime();
    let left = rt.block_on(async {
        let cage = cage(engine).await;
        cage.list_labelled(&[("proctor.repo", label.as_str())])
            .await
            .expect("list")
            .len()
    });
    assert!(
        left >= 3,
        "verifier, holder and proxy should be left: {left}"
    );
    let out = killed.proctor(&["reap"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = common::stdout(&out);
    assert!(
        report.contains(&format!("removed {left} container(s)")),
        "{report}"
    );
    for path in &left_files {
        assert!(
            report.contains(&format!("  {}\n", path.display())),
            "reap should name {}: {report}",
            path.display()
        );
    }
    assert_eq!(
        common::host_files_of(victim, &dirs),
        Vec::<std::path::PathBuf>::new()
    );
    // The other run's files are untouched, and it goes on to pass.
    for path in &live_files {
        assert!(path.exists(), "a live run's {} was removed", path.display());
    }
    live.write(".proctor/wt/parked/go.txt", "");
    assert_eq!(other.wait().unwrap().code(), Some(0));
    let out = killed.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Two normal runs with a host list ended: nothing of theirs is left.
    assert_eq!(
        common::unshared_private_files(tmp.path()),
        Vec::<String>::new()
    );
    assert_eq!(common::entries(scratch.path()), Vec::<String>::new());
    killed.assert_no_containers();
    live.assert_no_containers();
}

/// A run stopped by SIGINT or SIGTERM removes its containers and its
/// files (egress sockets and logs, exam scratch trees) before it exits.
fn an_interrupted_run_leaves_no_files(engine: EngineKind) {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let tmp = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let repo = with_temp_dirs(parked_repo(engine), tmp.path(), scratch.path());
        let mut child = repo.spawn_quiet(&["run"]);
        repo.wait_until("the agent never started", |r| r.work_exists("started.txt"));
        assert!(
            !common::unshared_private_files(tmp.path()).is_empty(),
            "the run has egress files"
        );
        unsafe { libc::kill(child.id() as i32, signal) };
        assert_eq!(child.wait().unwrap().code(), Some(130), "signal {signal}");
        assert_eq!(
            common::unshared_private_files(tmp.path()),
            Vec::<String>::new(),
            "signal {signal}"
        );
        assert_eq!(
            common::entries(scratch.path()),
            Vec::<String>::new(),
            "signal {signal}"
        );
        repo.assert_no_containers();
    }
}

fn agent_cannot_write_git(engine: EngineKind) {
    let agent = r#"mkdir -p seen
printf '#!/bin/sh\ntouch /tmp/hooked\n' > .git/hooks/pre-commit 2> seen/git.txt; echo "hook exit $?" >> seen/git.txt
touch .git/proctor-marker 2>> seen/git.txt; echo "marker exit $?" >> seen/git.txt
echo '[core]' >> .git/config 2>> seen/git.txt; echo "config exit $?" >> seen/git.txt
{ echo 'gitdir: /tmp' > .git; } 2>> seen/git.txt; echo "gitfile exit $?" >> seen/git.txt
echo done > seen/done.txt
"#;
    let repo = repo(
        engine,
        &[
            ("agent.sh", agent),
            (
                "proctor.yaml",
                "loop: git\nagent: sh agent.sh\ndone_when: test -s seen/done.txt\nbudget: 1 run\n",
            ),
        ],
    );
    let config_before = std::fs::read(repo.path().join(".git/config")).expect("git config");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen = repo.work("seen/git.txt");
    // In the run's worktree `.git` is a file naming the admin entry: it is
    // mounted read-only, so nothing can be created under it or point it
    // elsewhere.
    for line in [
        "hook exit 0",
        "marker exit 0",
        "config exit 0",
        "gitfile exit 0",
    ] {
        assert!(!seen.contains(line), "{seen}");
    }
    assert!(seen.contains("Read-only file system"), "{seen}");
    assert!(!repo.path().join(".git/hooks/pre-commit").exists());
    assert!(!repo.path().join(".git/proctor-marker").exists());
    // The only change: the branch the run started from, which proctor
    // records for `land`.
    let config_after =
        std::fs::read_to_string(repo.path().join(".git/config")).expect("git config");
    assert_eq!(
        config_after.replace("[branch \"proctor/git\"]\n\tproctorFrom = master\n", ""),
        String::from_utf8(config_before).unwrap()
    );
    repo.assert_no_containers();
}

fn agent_daemons_die_with_the_container(engine: EngineKind) {
    let mark = marker("daemon", engine);
    let agent = format!(
        r#"mkdir -p seen
sh -c 'sleep 300; : {mark}-bg' &
nohup sh -c 'sleep 301; : {mark}-nohup' > /dev/null 2>&1 &
setsid sh -c 'sleep 302; : {mark}-setsid' > /dev/null 2>&1 < /dev/null &
( ( sh -c 'sleep 303; : {mark}-double' & ) & )
sleep 1
for p in /proc/[0-9]*; do tr '\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -o '{mark}-[a-z][a-z]*' | sort -u > seen/alive.txt
"#
    );
    let repo = repo(
        engine,
        &[
            ("agent.sh", &agent),
            (
                "proctor.yaml",
                "loop: daemons\nagent: sh agent.sh\ndone_when: test -s seen/alive.txt\nbudget: 1 run\n",
            ),
        ],
    );
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The daemons were running when the agent's command ended...
    let alive = repo.work("seen/alive.txt");
    for kind in ["bg", "nohup", "setsid", "double"] {
        assert!(
            alive.lines().any(|l| l == format!("{mark}-{kind}")),
            "the {kind} daemon never ran: {alive}"
        );
    }
    // ...and none survives its container.
    assert_no_host_processes(&mark);
    repo.assert_no_containers();
}

fn agent_timeout_is_recorded_and_the_run_goes_on(engine: EngineKind) {
    let mark = marker("timeout", engine);
    let agent = format!("echo started; sleep 60; : {mark}\n");
    let repo = repo(
        engine,
        &[
            ("agent.sh", &agent),
            (
                "proctor.yaml",
                "loop: slow\nagent: sh agent.sh\ndone_when: exit 1\nbudget: 2 runs\ntimeout: 2s\n",
            ),
        ],
    );
    let started = Instant::now();
    let out = repo.proctor(&["run"]);
    let took = started.elapsed();
    // Both runs were spent: the first timeout did not stop the loop.
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let ends: Vec<(u32, i64, bool)> = events(&repo)
        .into_iter()
        .filter_map(|e| match e {
            Event::AgentEnd {
                run,
                exit,
                timed_out,
                ..
            } => Some((run, exit, timed_out)),
            _ => None,
        })
        .collect();
    assert_eq!(ends, [(1, -1, true), (2, -1, true)]);
    assert!(took < Duration::from_secs(50), "took {took:?}");
    let log = repo.read(".proctor/logs/slow.run1.log");
    assert!(log.contains("started\n"), "{log}");
    assert!(log.contains("timed out after 2s"), "{log}");
    assert!(common::stdout(&out).contains("killed at its timeout"));
    assert_no_host_processes(&mark);
    repo.assert_no_containers();
}

fn fork_bomb_is_contained_by_the_pids_limit(engine: EngineKind) {
    let mark = marker("bomb", engine);
    let script = format!("bomb-{mark}.sh");
    // The bomb's complaints go through a FIFO into a capped file; the
    // loop's limits keep it to 64 processes and half a CPU. The bomb goes
    // off in a subshell: the agent's own shell must not fork once it has
    // started (on a loaded machine the bomb can reach the limit between
    // the two forks of a pipeline, and a shell that cannot fork exits 2).
    // The shell then waits, with builtins only, until a complaint arrived:
    // each `b` returns as soon as it has forked, so without that wait the
    // container could end before the bomb reached the limit.
    let agent = r#"mkdir -p seen
mkfifo /tmp/errors
head -c 4096 < /tmp/errors > seen/bomb.txt &
b() { b | b & }
(b 2> /tmp/errors) &
while [ ! -s seen/bomb.txt ]; do :; done
"#;
    let manifest = format!(
        "loop: bomb\nagent: sh {script}\ndone_when: test -s seen/bomb.txt\nbudget: 1 run\ntimeout: 8s\nresources: {{pids: 64, cpus: 0.5}}\n"
    );
    let repo = repo(engine, &[(&script, agent), ("proctor.yaml", &manifest)]);
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let complaints = repo.work("seen/bomb.txt");
    assert!(
        complaints.to_lowercase().contains("fork"),
        "the bomb never hit the limit: {complaints}"
    );
    assert_no_host_processes(&mark);
    repo.assert_no_containers();
    // The host still forks.
    assert!(std::process::Command::new("true")
        .status()
        .is_ok_and(|s| s.success()));
}

/// Reads a cgroup value in v1 or v2 layout.
const CGROUP_PROBE: &str = r#"cg() { for f in "$@"; do test -r "$f" && { cat "$f"; return; }; done; echo none; }
echo "pids $(cg /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max)"
echo "memory $(cg /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max)"
echo "cpu $(cg /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu.max)"
grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status
echo "pid1 $(tr '\0' ' ' < /proc/1/cmdline)"
echo "user $(id -u):$(id -g)"
echo "net $(ls /sys/class/net | tr '\n' ' ')"
touch /rootfs-probe 2>/dev/null && echo "rootfs writable"
touch /tmp/probe && echo "tmp writable"
test -e /var/run/docker.sock -o -e /run/podman/podman.sock && echo "engine socket"
"#;

fn resources_and_hardening_reach_both_containers(engine: EngineKind) {
    let agent = format!("mkdir -p seen\n{{\n{CGROUP_PROBE}}} > seen/agent.txt 2>&1\n");
    let exam = format!("{CGROUP_PROBE}test -s seen/agent.txt\n");
    // The loop sets memory and cpus; pids comes from the config.
    let repo = repo(
        engine,
        &[
            ("agent.sh", &agent),
            ("exam.sh", &exam),
            (
                "proctor.yaml",
                "loop: limits\nagent: sh agent.sh\ndone_when: sh exam.sh\nbudget: 1 run\nresources: {memory: 256m, cpus: 0.5}\n",
            ),
            (".proctor/config.yaml", "resources: {pids: 100, memory: 1g}\n"),
        ],
    );
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let agent = repo.work("seen/agent.txt");
    let exam = repo.read(".proctor/logs/limits.run1.exam.log");
    let user = proctor::cage::container_user(&repo.path());
    for (who, text) in [("agent", &agent), ("verifier", &exam)] {
        assert!(text.contains("pids 100\n"), "{who}: {text}");
        assert!(text.contains("memory 268435456\n"), "{who}: {text}");
        assert!(
            text.contains("cpu 50000\n") || text.contains("cpu 50000 100000\n"),
            "{who}: {text}"
        );
        assert!(text.contains("CapEff:\t0000000000000000"), "{who}: {text}");
        assert!(text.contains("CapBnd:\t0000000000000000"), "{who}: {text}");
        assert!(text.contains("NoNewPrivs:\t1"), "{who}: {text}");
        assert!(!text.contains("pid1 /bin/sh"), "{who}: no init: {text}");
        assert!(text.contains(&format!("user {user}\n")), "{who}: {text}");
        assert!(!text.contains("rootfs writable"), "{who}: {text}");
        assert!(text.contains("tmp writable"), "{who}: {text}");
        assert!(!text.contains("engine socket"), "{who}: {text}");
    }
    // The agent's network is open by default, the verifier's is none.
    assert!(
        agent
            .lines()
            .any(|l| l.starts_with("net ") && l.contains("eth")),
        "{agent}"
    );
    assert!(exam.contains("net lo \n"), "{exam}");
    repo.assert_no_containers();
}

/// Calls proctor's seccomp profile denies (x86_64 numbers), each printed
/// as `name errno`; then a fork, an exec and a child through `clone`, which
/// must still work. The engines' default profile allows `ptrace` (the
/// forged-verdict cheat of issue 12 used it to stop the test runner).
const SYSCALL_PROBE: &str = r#"
import ctypes, errno, os, platform, subprocess
assert platform.machine() == "x86_64", "the probe knows x86_64 syscall numbers only"
libc = ctypes.CDLL(None, use_errno=True)
def report(name, result):
    print(name, "ok" if result == 0 else errno.errorcode.get(ctypes.get_errno(), "?"))
report("ptrace_traceme", libc.ptrace(0, 0, 0, 0))
report("ptrace_attach", libc.ptrace(16, os.getppid(), 0, 0))
for name, number, args in [
    ("process_vm_readv", 310, (os.getppid(), 0, 0, 0, 0, 0)),
    ("perf_event_open", 298, (0, 0, -1, -1, 0)),
    ("bpf", 321, (0, 0, 0)),
    ("userfaultfd", 323, (0,)),
    ("keyctl", 250, (0, 0)),
    ("unshare_user", 272, (0x10000000,)),
    ("setns", 308, (0, 0)),
    ("mount", 165, (0, 0, 0, 0, 0)),
    ("clone3", 435, (0, 0)),
]:
    report(name, libc.syscall(number, *args))
print("child", subprocess.run(["sh", "-c", "echo $((6 * 7))"], capture_output=True, text=True).stdout.strip())
"#;

/// proctor's seccomp profile reaches the agent and the exam on both
/// engines: what the engines' default lets through (`ptrace`, namespaces)
/// fails, ordinary work (a shell, a child process) does not.
fn ptrace_and_namespaces_are_denied_to_agent_and_exam(engine: EngineKind) {
    let repo = repo(
        engine,
        &[
            ("probe.py", SYSCALL_PROBE),
            (
                "agent.sh",
                "mkdir -p seen\npython3 probe.py > seen/agent.txt 2>&1\n",
            ),
            (
                "proctor.yaml",
                "loop: seccomp\nagent: sh agent.sh\ndone_when: python3 probe.py && test -s seen/agent.txt\nbudget: 1 run\n",
            ),
        ],
    );
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let agent = repo.work("seen/agent.txt");
    let exam = repo.read(".proctor/logs/seccomp.run1.exam.log");
    for (who, text) in [("agent", &agent), ("exam", &exam)] {
        for denied in [
            "ptrace_traceme",
            "ptrace_attach",
            "process_vm_readv",
            "perf_event_open",
            "bpf",
            "userfaultfd",
            "keyctl",
            "unshare_user",
            "setns",
            "mount",
        ] {
            assert!(
                text.contains(&format!("{denied} EPERM\n")),
                "{who}: {denied}: {text}"
            );
        }
        assert!(text.contains("clone3 ENOSYS\n"), "{who}: {text}");
        assert!(text.contains("child 42\n"), "{who}: {text}");
    }
    repo.assert_no_containers();
}

/// Podman's API ignores the runtime a container asks for; proctor says so
/// instead of running a weaker sandbox than configured. Docker honours it.
fn a_runtime_the_engine_would_ignore_is_refused(engine: EngineKind) {
    let rt = runtime();
    rt.block_on(async {
        let cage = cage(engine).await;
        // Docker honours a named runtime (runc works on every host); ask
        // the Podman service for the one of runc and crun it does not run.
        let other = match engine {
            EngineKind::Docker => "runc",
            EngineKind::Podman if cage.default_runtime() == Some("runc") => "crun",
            EngineKind::Podman => "runc",
        };
        let cage = cage.with_runtime(RuntimeChoice::Named(other.into()));
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = format!("test-runtime-{}-{}", engine.as_str(), std::process::id());
        let labels = Labels {
            repo: repo.clone(),
            run: "r".into(),
            loop_id: "l".into(),
            role: Role::Verifier,
        };
        let inv = Invocation {
            timeout: Duration::from_secs(30),
            log_cap: 1 << 16,
            ..Invocation::plain("true", labels, dir.path().join("log"))
        };
        let result = cage.run(inv).await;
        match engine {
            EngineKind::Docker => {
                let outcome = result.unwrap_or_else(|e| panic!("runc on docker: {e}"));
                assert_eq!(outcome.exit_code, 0);
            }
            EngineKind::Podman => match result {
                Err(CageError::Weakened { what, hint, .. }) => {
                    assert!(what.contains(other), "{what}");
                    assert!(hint.contains("--runtime"), "{hint}");
                }
                other => panic!("expected a refusal, got {other:?}"),
            },
        }
        let left = cage
            .list_labelled(&[("proctor.repo", repo.as_str())])
            .await
            .expect("list");
        assert!(left.is_empty(), "{left:?}");
    });
}
