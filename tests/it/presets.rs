//! The agent presets with the real CLIs: `agent: codex`, `agent: claude`
//! and `agent: mini-swe-agent`, each against a scripted model endpoint this
//! test starts (`model_mock.py`, no real model), on Docker and on Podman,
//! with `network: open` and with the preset's default host list.
//!
//! The scripted model answers the first turn with one shell command that
//! writes `fixed.txt`, and the next with "done"; the exam checks the file,
//! so the loop closes only if the CLI ran in the cage, reached the model,
//! ran the command in `/work` and ended. The model is a container on a
//! network this test creates (reached by name through the egress proxy for
//! the host list) and on the engine's default bridge (reached by address
//! with `network: open`); it stops itself after 40 requests or 5 minutes,
//! and each agent container has a 3-minute timeout.
//!
//! The CLIs must be installed where the `host` image sees them (`.ci/run`
//! does it: `npm install -g @openai/codex @anthropic-ai/claude-code`, `pip
//! install mini-swe-agent`); a missing one fails the test with that hint.

use crate::common;

use crate::testnet::{default_bridge, TestNet, PORT};
use common::{cage, on_both_engines, socket, stderr, TestRepo};
use proctor::cage::EngineKind;

const MOCK: &str = include_str!("model_mock.py");

on_both_engines!(
    codex_preset_closes_a_loop,
    claude_preset_closes_a_loop,
    mini_swe_agent_preset_closes_a_loop,
);

fn codex_preset_closes_a_loop(engine: EngineKind) {
    require_cli("codex", "npm install -g @openai/codex");
    // Codex picks its tools by model name; the mock serves any.
    closes_a_loop(
        engine,
        "codex -m gpt-5-codex",
        &[("OPENAI_API_KEY", "sk-proctor-test")],
        |url| vec![("OPENAI_BASE_URL", format!("{url}/v1"))],
        // Codex logs each command it ran, with its working directory.
        "'echo fixed > fixed.txt' in /work",
    );
}

fn claude_preset_closes_a_loop(engine: EngineKind) {
    require_cli("claude", "npm install -g @anthropic-ai/claude-code");
    closes_a_loop(
        engine,
        "claude",
        &[("ANTHROPIC_API_KEY", "sk-ant-proctor-test")],
        |url| vec![("ANTHROPIC_BASE_URL", url.to_string())],
        // stream-json: the tool call is in the log, not only the last words.
        "\"tool_use\"",
    );
}

fn mini_swe_agent_preset_closes_a_loop(engine: EngineKind) {
    require_cli(
        "mini",
        "pip install --break-system-packages mini-swe-agent (with the system python3)",
    );
    closes_a_loop(
        engine,
        "mini-swe-agent",
        &[
            ("OPENAI_API_KEY", "sk-proctor-test"),
            ("MSWEA_MODEL_NAME", "openai/proctor-mock"),
        ],
        |url| vec![("OPENAI_BASE_URL", format!("{url}/v1"))],
        "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT",
    );
}

/// Fails (never skips) when `cli` is not where the `host` image sees it.
fn require_cli(cli: &str, install: &str) {
    let found = ["/usr/bin", "/usr/local/bin"]
        .iter()
        .any(|dir| std::path::Path::new(dir).join(cli).exists());
    assert!(
        found,
        "`{cli}` is not installed under /usr/bin or /usr/local/bin, where the cage sees it: run `bash .ci/run`, or `{install}`"
    );
}

/// Runs `agent` twice against the scripted model: with `network: open`
/// (the model by address on the default bridge) and with no `network:`
/// (the preset's hosts plus its base URL's host, the model by name through
/// the egress proxy). Each run must close in one attempt, with `fixed.txt`
/// committed and `in_log` in the agent's log.
fn closes_a_loop(
    engine: EngineKind,
    agent: &str,
    keys: &[(&str, &str)],
    base_url: impl Fn(&str) -> Vec<(&'static str, String)>,
    in_log: &str,
) {
    let tag = agent.split_whitespace().next().unwrap_or("agent");
    let mut model = Model::new(engine, tag);
    let listed = model.start(engine, &model.net.name.clone(), "listed");
    let open = model.start(engine, default_bridge(engine), "open");
    for (mode, url, network) in [
        ("open", format!("http://{open}:8000"), "network: open\n"),
        ("listed", format!("http://{listed}:8000"), ""),
    ] {
        common::runtime().block_on(cage(engine));
        let manifest = format!(
            "loop: fix\ntask: Write the word fixed into fixed.txt.\nagent: {agent}\ndone_when: grep -qx fixed fixed.txt\nbudget: 1 run\ntimeout: 3m\n{network}"
        );
        let config = format!("egress_network: {}\n", model.net.name);
        let repo = TestRepo::new()
            .engine(&socket(engine))
            .file("README.md", "a fixture\n")
            .file("proctor.yaml", &manifest)
            .file(".proctor/config.yaml", &config)
            .commit("fixture");
        let mut env: Vec<(&str, String)> = keys.iter().map(|(k, v)| (*k, v.to_string())).collect();
        env.extend(base_url(&url));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = repo.proctor_env(&["run"], &env);
        let log = repo.read(".proctor/logs/fix.run1.log");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{agent} with {mode} network: {}\n--- agent log\n{log}\n--- model\n{}",
            stderr(&out),
            model.logs()
        );
        assert_eq!(committed(&repo, "proctor/fix", "fixed.txt"), "fixed\n");
        assert_eq!(repo.agent_starts(), 1);
        assert!(
            log.contains(in_log),
            "{agent} with {mode} network: `{in_log}` not in the agent's log:\n{log}"
        );
        // The key travelled by environment, never on a command line.
        for (_, value) in keys {
            assert!(!log.contains(value), "{log}");
        }
        repo.assert_no_containers();
    }
}

/// A file as committed on `branch`.
fn committed(repo: &TestRepo, branch: &str, path: &str) -> String {
    let git = git2::Repository::open(repo.path()).expect("repo");
    let tree = git
        .find_branch(branch, git2::BranchType::Local)
        .expect("work branch")
        .get()
        .peel_to_tree()
        .expect("tree");
    let entry = tree
        .get_path(std::path::Path::new(path))
        .unwrap_or_else(|_| panic!("{path} is not committed on {branch}"));
    let blob = git.find_blob(entry.id()).expect("blob");
    String::from_utf8_lossy(blob.content()).into_owned()
}

/// The scripted model: containers of the `host` image running
/// `model_mock.py` on a network this test made.
struct Model {
    net: TestNet,
}

impl Model {
    fn new(engine: EngineKind, tag: &str) -> Model {
        Model {
            net: TestNet::new(engine, &format!("model-{tag}")),
        }
    }

    /// Starts the model on `network`; returns the name to reach it by on
    /// the test's own network, or its address on any other.
    fn start(&mut self, engine: EngineKind, network: &str, which: &str) -> String {
        let name = format!("{}-{which}", self.net.name);
        let address = self.net.serve(
            engine,
            &name,
            network,
            vec!["python3".into(), "-c".into(), MOCK.into()],
            vec![
                "PATH=/usr/bin:/bin".into(),
                format!("MOCK_PORT={PORT}"),
                "MOCK_MAX_REQUESTS=40".into(),
                "MOCK_DEADLINE=300".into(),
            ],
        );
        if network == self.net.name {
            name
        } else {
            address
        }
    }

    /// What the models logged (requests and what they answered), for a
    /// failing test's message.
    fn logs(&self) -> String {
        self.net.logs()
    }
}
