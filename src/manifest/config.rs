//! The host-side config, `.proctor/config.yaml`: settings that belong to the
//! operator rather than to the loop (which engine, default image, extra
//! read-only mounts, the judge command, the `on_halt` notifier, resource
//! defaults, OCI runtime, timeout). It is trusted and guarded like the
//! manifest. Same YAML reader, same value syntax, same error style as the
//! manifest; an absent file means every default.

use std::path::Path;
use std::time::Duration;

use super::check::{Checker, Field};
use super::node::{self, Node, Value};
use super::{units, ManifestError, Network, Resources, LOOP_KEYS};

/// Where the config lives, relative to the repo root.
pub const CONFIG_PATH: &str = ".proctor/config.yaml";

/// The keys the config accepts.
pub const CONFIG_KEYS: &[&str] = &[
    "engine",
    "image",
    "mounts",
    "env",
    "judge",
    "review",
    "on_halt",
    "resources",
    "runtime",
    "timeout",
    "egress_network",
];

/// OCI runtimes proctor knows how to ask the engine for.
pub const RUNTIMES: &[&str] = &["runc", "crun", "runsc"];

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// Container engine to talk to (`docker`, `podman`, a socket address or
    /// `tcp://host:port`);
    /// `None` = detect.
    pub engine: Option<String>,
    /// Image for loops that name none.
    pub image: Option<String>,
    /// Extra host paths mounted into agent and exam containers (agent auth
    /// and toolchains enter this way, by name, never implicitly). Absolute
    /// or `~/...`; read-only unless `:rw` (the agent's only: an exam's are
    /// always read-only).
    pub mounts: Vec<String>,
    /// Toolchain variables set in every agent and exam container, as
    /// written (`NAME: value`, in file order): the `PATH`, `CARGO_HOME`,
    /// `VIRTUAL_ENV` a per-user toolchain mounted by `mounts` needs. Values,
    /// not host names: the file is committed, so never a secret (those go
    /// by name under the manifest's `env:`). A `~` opening a
    /// `:`-separated part is `$HOME`.
    pub env: Vec<(String, String)>,
    /// The judge: a command that reads a rubric and a diff on stdin and
    /// answers `PASS` on its first line (anything else is a veto).
    pub judge: Option<JudgeConfig>,
    /// The reviewer: an agent asked, before a loop's first agent run, how
    /// its exam could pass without the task being done.
    pub review: Option<ReviewConfig>,
    /// Shell command run on the host when a loop blocks or gates.
    pub on_halt: Option<String>,
    /// Defaults under every loop's own `resources`.
    pub resources: Resources,
    /// OCI runtime: `runc`, `crun` or `runsc` (gVisor); `None` = engine default.
    pub runtime: Option<String>,
    /// Default per-container timeout for loops that set none.
    pub timeout: Option<Duration>,
    /// The engine network through which the egress proxy reaches the hosts
    /// a loop's `network:` lists; `None` = the engine's default bridge.
    pub egress_network: Option<String>,
}

/// The keys of the long form of `judge:`.
pub const JUDGE_KEYS: &[&str] = &["command", "env", "network", "timeout"];

/// Default limit on one judge's answer.
pub const JUDGE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The config's `judge:`: `judge: CMD`, or
/// `judge: {command: CMD, env: [NAMES], network: none|open|[hosts], timeout: 5m}`.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    /// Shell command run in the judge's container.
    pub command: String,
    /// Host variable names passed to the judge (its model's API key).
    pub env: Vec<String>,
    /// The judge's network; default `none`.
    pub network: Network,
    /// Limit on one answer; default [`JUDGE_TIMEOUT`].
    pub timeout: Duration,
}

impl JudgeConfig {
    /// A judge running `command` with every default.
    pub fn command(command: impl Into<String>) -> JudgeConfig {
        JudgeConfig {
            command: command.into(),
            env: Vec::new(),
            network: Network::None,
            timeout: JUDGE_TIMEOUT,
        }
    }
}

/// The keys of the long form of `review:`.
pub const REVIEW_KEYS: &[&str] = &["command", "env", "network", "timeout", "block"];

/// Default limit on one review.
pub const REVIEW_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The config's `review:`: `review: CMD`, or `review: {command: CMD,
/// env: [NAMES], network: none|open|[hosts], timeout: 10m, block: true}`.
/// Its container is set up as a judge's is (the same fields, the same
/// defaults but the timeout), with the base commit read-only at `/work`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewConfig {
    /// The command, its host variables, network and timeout.
    pub caged: JudgeConfig,
    /// Whether the run stops before the loop's first agent with a card
    /// until a person answers `approve`.
    pub block: bool,
}

/// Reads `<repo_root>/.proctor/config.yaml`; a missing file is the default
/// config, any other read failure is an error.
pub fn load_config(repo_root: &Path) -> Result<Config, ManifestError> {
    let path = repo_root.join(CONFIG_PATH);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        _ => {}
    }
    let text = super::read_text(&path)?;
    parse_config(&text, &path)
}

/// Validates config `text`; `path` names the file in messages.
pub fn parse_config(text: &str, path: &Path) -> Result<Config, ManifestError> {
    let doc = node::read(text).map_err(|e| ManifestError::syntax(path, e))?;
    let mut check = Checker::default();
    let config = match &doc.value {
        // An empty file, or one that is all comments, is the default config.
        Value::Null => Config::default(),
        Value::Map(_) => read(&mut check, &doc),
        _ => {
            check.push(
                String::new(),
                &doc,
                format!(
                    "the config must be a mapping of settings, got {}",
                    doc.describe()
                ),
            );
            Config::default()
        }
    };
    if check.problems.is_empty() {
        Ok(config)
    } else {
        Err(ManifestError::new(path, check.problems))
    }
}

/// Advice for keys from Lute's `.lute/config.yaml` and from the manifest.
fn config_key_hint(key: &str) -> Option<String> {
    let advice = match key {
        "cage" => "proctor always runs agents in containers; pick the engine with `engine`",
        "cage_image" => "did you mean `image`?",
        "cage_mounts" => "did you mean `mounts`?",
        _ if LOOP_KEYS.contains(&key) || key == "schedules" => {
            return Some(format!("`{key}` belongs in the manifest (`proctor.yaml`)"));
        }
        _ => return None,
    };
    Some(advice.to_owned())
}

fn read(check: &mut Checker, doc: &Node) -> Config {
    let mut config = Config::default();
    let entries = check.known_entries(doc, CONFIG_KEYS, "", "", config_key_hint);
    for (key, value) in entries {
        if value.value == Value::Null {
            continue;
        }
        let f = Field::new("", "", key);
        match key {
            "engine" => config.engine = check.text(&f, value),
            "image" => config.image = check.text(&f, value),
            "judge" => config.judge = judge(check, &f, value),
            "review" => config.review = review(check, &f, value),
            "on_halt" => config.on_halt = check.text(&f, value),
            "timeout" => config.timeout = check.duration(&f, value),
            "egress_network" => config.egress_network = check.text(&f, value),
            "resources" => {
                config.resources = check
                    .resources(&f, value, " in `resources`")
                    .unwrap_or_default()
            }
            "runtime" => {
                if let Some(runtime) = check.text(&f, value) {
                    if RUNTIMES.contains(&runtime.as_str()) {
                        config.runtime = Some(runtime);
                    } else {
                        check.bad(
                            &f,
                            value,
                            format!(
                                "expected `runc`, `crun` or `runsc`, got {}",
                                value.describe()
                            ),
                        );
                    }
                }
            }
            "env" => config.env = toolchain_env(check, &f, value),
            "mounts" => {
                config.mounts = check
                    .strings(&f, value, "host paths", |m| {
                        let p = m
                            .strip_suffix(":rw")
                            .or_else(|| m.strip_suffix(":ro"))
                            .unwrap_or(m);
                        if p.starts_with('/') || p == "~" || p.starts_with("~/") {
                            Ok(())
                        } else {
                            Err(format!(
                                "`{p}` is not an absolute path; write `/...` or `~/...` (add `:rw` to let the agent write it)"
                            ))
                        }
                    })
                    .unwrap_or_default()
            }
            _ => {}
        }
    }
    config
}

/// `judge:`: a command, or the long form with [`JUDGE_KEYS`].
fn judge(check: &mut Checker, f: &Field, value: &Node) -> Option<JudgeConfig> {
    caged_command(
        check,
        f,
        value,
        JUDGE_KEYS,
        "judge",
        JUDGE_TIMEOUT,
        &mut |_, _, _, _| {},
    )
}

/// `review:`: a command, or the long form with [`REVIEW_KEYS`].
fn review(check: &mut Checker, f: &Field, value: &Node) -> Option<ReviewConfig> {
    let mut block = false;
    let caged = caged_command(
        check,
        f,
        value,
        REVIEW_KEYS,
        "review",
        REVIEW_TIMEOUT,
        &mut |check, key, sub, node| {
            if key == "block" {
                block = check.boolean(sub, node).unwrap_or(false);
            }
        },
    )?;
    Some(ReviewConfig { caged, block })
}

/// A command run in a container of its own, as `judge:` and `review:`
/// write it: a command, or a mapping of `keys` (`command`, `env`,
/// `network`, `timeout`, and any others, which `other` reads).
fn caged_command(
    check: &mut Checker,
    f: &Field,
    value: &Node,
    keys: &[&str],
    what: &str,
    timeout: Duration,
    other: &mut dyn FnMut(&mut Checker, &str, &Field, &Node),
) -> Option<JudgeConfig> {
    let mut judge = JudgeConfig::command("");
    judge.timeout = timeout;
    if !matches!(value.value, Value::Map(_)) {
        judge.command = check.text(f, value)?;
        return Some(judge);
    }
    let entries = check.known_entries(value, keys, f.path(), &format!(" in `{what}`"), |_| None);
    let mut command = None;
    for (key, node) in entries {
        if node.value == Value::Null {
            continue;
        }
        let sub = f.sub(key);
        match key {
            "command" => command = check.text(&sub, node),
            "env" => {
                judge.env = check
                    .strings(&sub, node, "variable names", |name| {
                        if units::is_env_name(name) {
                            Ok(())
                        } else {
                            Err(format!("`{name}` is not a variable name (letters, digits and `_`, not starting with a digit); list names, not `NAME=value`"))
                        }
                    })
                    .unwrap_or_default()
            }
            "network" => match &node.value {
                Value::Str(s) if s == "none" => judge.network = Network::None,
                Value::Str(s) if s == "open" => judge.network = Network::Open,
                Value::Seq(items) if !items.is_empty() => {
                    if let Some(hosts) = check.strings(&sub, node, "hosts", units::check_host) {
                        judge.network = Network::Hosts(hosts);
                    }
                }
                _ => check.bad(
                    &sub,
                    node,
                    format!(
                        "expected `none`, `open` or a list of hosts (`host` or `host:port`), got {}",
                        node.describe()
                    ),
                ),
            },
            "timeout" => {
                if let Some(timeout) = check.duration(&sub, node) {
                    judge.timeout = timeout;
                }
            }
            _ => other(check, key, &sub, node),
        }
    }
    match command {
        Some(command) => {
            judge.command = command;
            Some(judge)
        }
        None => {
            check.bad(f, value, format!("the {what} needs a `command`"));
            None
        }
    }
}

/// The config's `env:`: a mapping of variable names to string values.
fn toolchain_env(check: &mut Checker, f: &Field, value: &Node) -> Vec<(String, String)> {
    let Value::Map(entries) = &value.value else {
        check.bad(
            f,
            value,
            format!(
                "expected a mapping of variable names to values (`PATH: /opt/x/bin:/usr/bin`), got {}",
                value.describe()
            ),
        );
        return Vec::new();
    };
    let mut env = Vec::new();
    for (key, val) in entries {
        let Some(name) = key.as_str().filter(|n| super::units::is_env_name(n)) else {
            check.bad(
                f,
                key,
                format!(
                    "{} is not a variable name (`[A-Za-z_][A-Za-z0-9_]*`)",
                    key.describe()
                ),
            );
            continue;
        };
        let sub = f.sub(name);
        if matches!(
            name,
            "HOME" | "PROCTOR_LOOP" | "PROCTOR_RUN" | "PROCTOR_COMMIT" | "PROCTOR_SLOT" | "CI"
        ) {
            check.bad(
                &sub,
                key,
                format!("`{name}` is proctor's to set in a container"),
            );
            continue;
        }
        if let Some(text) = check.text(&sub, val) {
            if text.contains('\0') {
                check.bad(&sub, val, "a value cannot hold a NUL character");
                continue;
            }
            env.push((name.to_owned(), text));
        }
    }
    env
}
