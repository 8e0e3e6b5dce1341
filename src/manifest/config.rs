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
use super::{ManifestError, Resources, LOOP_KEYS};

/// Where the config lives, relative to the repo root.
pub const CONFIG_PATH: &str = ".proctor/config.yaml";

/// The keys the config accepts.
pub const CONFIG_KEYS: &[&str] = &[
    "engine",
    "image",
    "mounts",
    "judge",
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
    /// Judge command: reads a rubric and a diff on stdin, first line `PASS`.
    pub judge: Option<String>,
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
            "judge" => config.judge = check.text(&f, value),
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
