//! What an exam's toolchain needs to run in the `host` image on this
//! machine: the built-in image sees `/usr`, `/bin` and `/lib*` only, so a
//! toolchain installed per user (rustup under `~/.cargo` and `~/.rustup`,
//! pyenv, a venv, nvm, a Go tarball) and git-ignored dependencies
//! (`node_modules`, which never reach the committed tree) are invisible
//! until `.proctor/config.yaml` mounts them and sets the variables that
//! point at them. `init` writes what this finds; `lint` suggests it when an
//! exam cannot run.
//!
//! Reads the host's variables it is given and a few files; runs nothing
//! (not even the toolchain: `python3 -c ...` in a repository could run the
//! repository's code) and writes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::cage::DEFAULT_PATH;

/// The ecosystems `init` knows an exam for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ecosystem {
    Cargo,
    Npm,
    Pytest,
    Go,
    Make,
}

/// The host's variables detection reads (`PATH`, `HOME`, `CARGO_HOME`,
/// `RUSTUP_HOME`, `PYENV_ROOT`, `PYENV_VERSION`, `VIRTUAL_ENV`, `GOPATH`,
/// `GOMODCACHE`, `GOROOT`), passed in so tests need not touch the process's
/// own.
#[derive(Debug, Clone, Default)]
pub struct HostEnv(pub HashMap<String, String>);

impl HostEnv {
    pub fn current() -> HostEnv {
        HostEnv(std::env::vars().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The first executable `name` on `PATH`.
    fn which(&self, name: &str) -> Option<PathBuf> {
        self.get("PATH")?
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| Path::new(d).join(name))
            .find(|p| is_executable(p))
    }

    /// The first executable `name` on `PATH` outside `skip`.
    fn which_outside(&self, name: &str, skip: &Path) -> Option<PathBuf> {
        self.get("PATH")?
            .split(':')
            .filter(|d| d.starts_with('/') && Path::new(d) != skip)
            .map(|d| Path::new(d).join(name))
            .find(|p| is_executable(p))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether the `host` image sees `dir` without a mount.
fn visible(dir: &Path) -> bool {
    ["/usr", "/bin", "/sbin", "/lib", "/lib64"]
        .iter()
        .any(|root| dir.starts_with(root))
}

/// Why the `host` image would not find the agent's program `cli` (a
/// preset's CLI), or `None` when it would: not installed here, or
/// installed where only a mount would show it (nvm, `~/.local`).
pub fn unseen_agent_cli(cli: &str, host: &HostEnv) -> Option<String> {
    let Some(found) = host.which(cli) else {
        return Some(format!(
            "`{cli}` is not on this machine's PATH: the agent needs it in its image (installed under /usr for the `host` image, or an `image:` that has it)"
        ));
    };
    let real = std::fs::canonicalize(&found).unwrap_or_else(|_| found.clone());
    if visible(&parent(&found)) && visible(&parent(&real)) {
        return None;
    }
    Some(format!(
        "`{cli}` is at {}, which the `host` image does not see: install it under /usr (e.g. `npm install -g` with the system's node), or mount its installation (`mounts:` in `.proctor/config.yaml`) and put it on `PATH` (`env:`)",
        real.display()
    ))
}

/// What the exam of one ecosystem needs on this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Toolchain {
    /// Host directories to mount read-only at the same path (the config's
    /// `mounts`).
    pub mounts: Vec<String>,
    /// Variables for the agent's and the exam's containers (the config's
    /// `env`), `PATH` first when set.
    pub env: Vec<(String, String)>,
    /// What was found, one line each, for comments and `init`'s output.
    pub found: Vec<String>,
    /// What is missing for the exam to run, one line each, with what to do.
    pub missing: Vec<String>,
}

impl Toolchain {
    /// Nothing to mount or set: the `host` image runs the exam as it is.
    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty() && self.env.is_empty()
    }

    fn mount(&mut self, dir: &Path) {
        let text = dir.to_string_lossy().into_owned();
        if !visible(dir) && !self.mounts.contains(&text) {
            self.mounts.push(text);
        }
    }

    fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.env.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.env.push((name.to_owned(), value)),
        }
    }

    /// `PATH` with `dirs` (in order) ahead of the container's default.
    fn path(&mut self, dirs: &[PathBuf]) {
        let mut parts: Vec<String> = Vec::new();
        for dir in dirs {
            let text = dir.to_string_lossy().into_owned();
            if !visible(dir) && !parts.contains(&text) {
                parts.push(text);
            }
        }
        if parts.is_empty() {
            return;
        }
        parts.push(DEFAULT_PATH.to_owned());
        self.env.retain(|(n, _)| n != "PATH");
        self.env.insert(0, ("PATH".to_owned(), parts.join(":")));
    }

    /// The config lines (`mounts:` and `env:`) that make the exam run,
    /// with a comment line per finding; paths under `home` written `~/...`
    /// so the file serves everyone whose toolchain sits in the same place
    /// under their own HOME.
    pub fn config_yaml(&self, home: Option<&Path>) -> String {
        let tilde = |text: &str| -> String {
            text.split(':')
                .map(
                    |part| match home.and_then(|h| Path::new(part).strip_prefix(h).ok()) {
                        Some(rest) if rest.as_os_str().is_empty() => "~".to_owned(),
                        Some(rest) => format!("~/{}", rest.display()),
                        None => part.to_owned(),
                    },
                )
                .collect::<Vec<_>>()
                .join(":")
        };
        let mut out = String::new();
        for line in &self.found {
            out.push_str(&format!("# {line}\n"));
        }
        if !self.mounts.is_empty() {
            out.push_str("mounts:\n");
            for mount in &self.mounts {
                out.push_str(&format!("  - {}\n", super::starter::quoted(&tilde(mount))));
            }
        }
        if !self.env.is_empty() {
            out.push_str("env:\n");
            for (name, value) in &self.env {
                out.push_str(&format!(
                    "  {name}: {}\n",
                    super::starter::quoted(&tilde(value))
                ));
            }
        }
        out
    }
}

/// The likeliest ecosystem of the repository at `root` and what its exam
/// needs on this machine; `None` when no test setup is recognised.
pub fn for_repo(root: &Path, host: &HostEnv) -> Option<(Ecosystem, Toolchain)> {
    let eco = *super::starter::detect(root).first()?;
    Some((eco, detect(eco, root, host)))
}

/// What `eco`'s exam needs on this machine, for the repository at `root`.
pub fn detect(eco: Ecosystem, root: &Path, host: &HostEnv) -> Toolchain {
    let mut t = Toolchain::default();
    match eco {
        Ecosystem::Cargo => cargo(&mut t, host),
        Ecosystem::Npm => npm(&mut t, root, host),
        Ecosystem::Pytest => python(&mut t, root, host),
        Ecosystem::Go => go(&mut t, host),
        Ecosystem::Make => {}
    }
    t
}

fn parent(p: &Path) -> PathBuf {
    p.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn cargo(t: &mut Toolchain, host: &HostEnv) {
    let Some(cargo) = host.which("cargo") else {
        t.missing.push(
            "no `cargo` on PATH: install Rust (rustup or the distribution's `cargo`), then run `proctor init --force` again".into(),
        );
        return;
    };
    let bin = parent(&cargo);
    t.found.push(format!("cargo: {}", cargo.display()));
    // The network is off in an exam: cargo must use what CARGO_HOME holds.
    t.set("CARGO_NET_OFFLINE", "true");
    if visible(&bin) {
        return;
    }
    t.path(std::slice::from_ref(&bin));
    let cargo_home = host
        .get("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| parent(&bin));
    if cargo_home.is_dir() {
        t.mount(&cargo_home);
        t.set("CARGO_HOME", cargo_home.to_string_lossy());
    }
    if !bin.starts_with(&cargo_home) || !cargo_home.is_dir() {
        t.mount(&bin);
    }
    // rustup's proxies find their toolchains under RUSTUP_HOME, by default
    // `~/.rustup`, beside `~/.cargo`: the container's HOME is its own.
    let rustup_home = host
        .get("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| parent(&cargo_home).join(".rustup"));
    if bin.join("rustup").exists() && rustup_home.is_dir() {
        t.found
            .push(format!("rustup toolchains: {}", rustup_home.display()));
        t.mount(&rustup_home);
        t.set("RUSTUP_HOME", rustup_home.to_string_lossy());
    }
}

fn package_json(root: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(root.join("package.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether `package.json` declares any dependency.
fn has_dependencies(json: &serde_json::Value) -> bool {
    ["dependencies", "devDependencies", "optionalDependencies"]
        .iter()
        .any(|key| {
            json.get(key)
                .and_then(|d| d.as_object())
                .is_some_and(|d| !d.is_empty())
        })
}

fn npm(t: &mut Toolchain, root: &Path, host: &HostEnv) {
    let Some(node) = host.which("node") else {
        t.missing.push(
            "no `node` on PATH: install Node.js (nvm or the distribution's `nodejs` and `npm`), then run `proctor init --force` again".into(),
        );
        return;
    };
    let bin = parent(&node);
    t.found.push(format!("node: {}", node.display()));
    let mut path = Vec::new();
    if !visible(&bin) {
        // nvm: ~/.nvm/versions/node/vX/bin, npm beside node.
        t.mount(&parent(&bin));
        path.push(bin.clone());
    }
    let deps = package_json(root).is_some_and(|j| has_dependencies(&j));
    let modules = root.join("node_modules");
    if deps && modules.is_dir() {
        // node_modules is git-ignored and never reaches the committed tree
        // the exam runs on: the exam reads this checkout's, read-only, as
        // a cache `npm install` on the host keeps current.
        t.found.push(format!(
            "dependencies: {} (read-only; run `npm install` here when package.json changes)",
            modules.display()
        ));
        t.mount(&modules);
        path.push(modules.join(".bin"));
        t.set("NODE_PATH", modules.to_string_lossy());
    } else if deps {
        t.missing.push(format!(
            "package.json has dependencies but `{}` does not exist: run `npm install` (the exam cannot reach the registry), then `proctor init --force`",
            modules.display()
        ));
    }
    t.path(&path);
}

/// A virtual environment in the repository (`.venv`, `venv`, `env`), else
/// the host's active one.
fn find_venv(root: &Path, host: &HostEnv) -> Option<PathBuf> {
    [".venv", "venv", "env"]
        .iter()
        .map(|d| root.join(d))
        .chain(host.get("VIRTUAL_ENV").map(PathBuf::from))
        .find(|d| d.join("pyvenv.cfg").is_file() && d.join("bin").is_dir())
}

/// `home = DIR` from a venv's `pyvenv.cfg`: the base interpreter's bin.
fn venv_home(venv: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(venv.join("pyvenv.cfg")).ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "home").then(|| PathBuf::from(value.trim()))
    })
}

/// The pyenv version directory `python3` resolves to, when it is a shim.
fn pyenv_version(root: &Path, host: &HostEnv, shims: &Path) -> Option<PathBuf> {
    let pyenv_root = host
        .get("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| parent(shims));
    let version = host
        .get("PYENV_VERSION")
        .map(str::to_owned)
        .or_else(|| std::fs::read_to_string(root.join(".python-version")).ok())
        .or_else(|| std::fs::read_to_string(pyenv_root.join("version")).ok())?;
    let version = version.lines().next()?.trim().to_owned();
    if version.is_empty() || version == "system" || version.contains('/') {
        return None;
    }
    let dir = pyenv_root.join("versions").join(version);
    dir.join("bin").is_dir().then_some(dir)
}

/// Whether the Python installation at `prefix` (a pyenv version) has
/// pytest in its own site-packages, the only place its exam can import it
/// from (a `pip install --user` lands in the host's `$HOME`, which the
/// container does not have).
fn has_pytest(prefix: &Path) -> bool {
    let Ok(libs) = std::fs::read_dir(prefix.join("lib")) else {
        return false;
    };
    libs.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .any(|e| {
            let site = e.path().join("site-packages");
            site.join("pytest").is_dir() || site.join("_pytest").is_dir()
        })
}

/// A pyenv version without pytest: init says so, as lint would only after
/// the commit (`No module named pytest`).
fn want_pytest(t: &mut Toolchain, version: &Path) {
    if !has_pytest(version) {
        t.missing.push(format!(
            "pyenv's {} has no `pytest`, so the exam `python3 -m pytest` cannot run: install it there on the host (`{}/bin/python3 -m pip install pytest`) or make a venv that has it (then `proctor init --force` mounts it), then `proctor lint`",
            version.display(),
            version.display()
        ));
    }
}

fn python(t: &mut Toolchain, root: &Path, host: &HostEnv) {
    let mut path = Vec::new();
    if let Some(venv) = find_venv(root, host) {
        t.found.push(format!(
            "virtual environment: {} (read-only: install test dependencies there on the host)",
            venv.display()
        ));
        t.mount(&venv);
        path.push(venv.join("bin"));
        t.set("VIRTUAL_ENV", venv.to_string_lossy());
        if let Some(home) = venv_home(&venv) {
            if !visible(&home) {
                // A venv made from pyenv's (or any per-user) interpreter
                // links to it: mount that installation too.
                t.mount(&parent(&home));
            }
        }
        t.path(&path);
        return;
    }
    let Some(python) = host.which("python3") else {
        t.missing.push(
            "no `python3` on PATH: install Python (pyenv or the distribution's `python3`), then run `proctor init --force` again".into(),
        );
        return;
    };
    let bin = parent(&python);
    if bin.ends_with("shims") {
        match pyenv_version(root, host, &bin) {
            Some(version) => {
                t.found
                    .push(format!("python3: pyenv {}", version.display()));
                want_pytest(t, &version);
                t.mount(&version);
                path.push(version.join("bin"));
            }
            None => {
                // pyenv's `system`: the next python3 on PATH.
                if let Some(system) = host.which_outside("python3", &bin) {
                    t.found
                        .push(format!("python3: {} (pyenv system)", system.display()));
                    let sbin = parent(&system);
                    t.mount(&parent(&sbin));
                    path.push(sbin);
                }
            }
        }
    } else {
        t.found.push(format!("python3: {}", python.display()));
        if !visible(&bin) {
            t.mount(&parent(&bin));
            path.push(bin);
        }
    }
    t.path(&path);
}

fn go(t: &mut Toolchain, host: &HostEnv) {
    let Some(go) = host.which("go") else {
        t.missing.push(
            "no `go` on PATH: install Go (the distribution's `golang-go` or a go.dev tarball), then run `proctor init --force` again".into(),
        );
        return;
    };
    let bin = parent(&go);
    t.found.push(format!("go: {}", go.display()));
    if !visible(&bin) {
        // A tarball's GOROOT (`/opt/go`, `~/sdk/go1.22`): bin's parent.
        let goroot = host
            .get("GOROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| parent(&bin));
        t.mount(&goroot);
        t.path(std::slice::from_ref(&bin));
    }
    // No network in an exam: never download a toolchain or a module.
    t.set("GOTOOLCHAIN", "local");
    t.set("GOPROXY", "off");
    // Modules already downloaded on the host, read-only (Go keeps its
    // module cache read-only itself); the build cache stays the
    // container's own, under its HOME.
    let modcache = host
        .get("GOMODCACHE")
        .map(PathBuf::from)
        .or_else(|| {
            host.get("GOPATH")
                .and_then(|p| p.split(':').next())
                .map(|p| Path::new(p).join("pkg/mod"))
        })
        .or_else(|| host.get("HOME").map(|h| Path::new(h).join("go/pkg/mod")));
    if let Some(modcache) = modcache.filter(|m| m.is_dir()) {
        t.found
            .push(format!("module cache: {}", modcache.display()));
        t.mount(&modcache);
        t.set("GOMODCACHE", modcache.to_string_lossy());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exe(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn host(vars: &[(&str, String)]) -> HostEnv {
        HostEnv(
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn env_of<'a>(t: &'a Toolchain, name: &str) -> Option<&'a str> {
        t.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn rustup_under_a_home_mounts_cargo_and_rustup_and_points_at_them() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        exe(&home.join(".cargo/bin/cargo"));
        exe(&home.join(".cargo/bin/rustup"));
        std::fs::create_dir_all(home.join(".rustup/toolchains")).unwrap();
        let path = format!("{}/.cargo/bin:/usr/bin", home.display());
        let t = detect(Ecosystem::Cargo, home, &host(&[("PATH", path)]));
        let cargo_home = home.join(".cargo").display().to_string();
        let rustup_home = home.join(".rustup").display().to_string();
        assert_eq!(t.mounts, vec![cargo_home.clone(), rustup_home.clone()]);
        assert_eq!(
            env_of(&t, "PATH"),
            Some(format!("{cargo_home}/bin:{DEFAULT_PATH}").as_str())
        );
        assert_eq!(env_of(&t, "CARGO_HOME"), Some(cargo_home.as_str()));
        assert_eq!(env_of(&t, "RUSTUP_HOME"), Some(rustup_home.as_str()));
        assert_eq!(env_of(&t, "CARGO_NET_OFFLINE"), Some("true"));
        assert!(t.missing.is_empty());
        // What init writes parses as a config.
        let yaml = t.config_yaml(None);
        let config = super::super::parse_config(&yaml, Path::new("c.yaml")).unwrap();
        assert_eq!(config.mounts, t.mounts);
        assert_eq!(config.env, t.env);
        // Under HOME, paths are written `~/...`.
        let yaml = t.config_yaml(Some(home));
        assert!(yaml.contains("  - \"~/.cargo\"\n"), "{yaml}");
        assert!(
            yaml.contains("  PATH: \"~/.cargo/bin:/usr/local/sbin:"),
            "{yaml}"
        );
    }

    #[test]
    fn a_system_toolchain_needs_nothing_but_offline_settings() {
        let tmp = tempfile::tempdir().unwrap();
        let t = detect(
            Ecosystem::Cargo,
            tmp.path(),
            &host(&[("PATH", "/nonexistent".into())]),
        );
        assert!(t.is_empty());
        assert!(
            t.missing[0].contains("no `cargo` on PATH"),
            "{:?}",
            t.missing
        );
    }

    #[test]
    fn a_venv_in_the_repository_is_mounted_with_its_pyenv_interpreter() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        let pyenv = tmp.path().join("pyenv/versions/3.11.7");
        exe(&pyenv.join("bin/python3"));
        std::fs::create_dir_all(root.join(".venv/bin")).unwrap();
        std::fs::write(
            root.join(".venv/pyvenv.cfg"),
            format!(
                "home = {}/bin\ninclude-system-site-packages = false\n",
                pyenv.display()
            ),
        )
        .unwrap();
        let t = detect(
            Ecosystem::Pytest,
            &root,
            &host(&[("PATH", "/usr/bin".into())]),
        );
        let venv = root.join(".venv").display().to_string();
        assert_eq!(t.mounts, vec![venv.clone(), pyenv.display().to_string()]);
        assert_eq!(env_of(&t, "VIRTUAL_ENV"), Some(venv.as_str()));
        assert!(env_of(&t, "PATH")
            .unwrap()
            .starts_with(&format!("{venv}/bin:")));
    }

    #[test]
    fn a_pyenv_shim_resolves_to_the_version_the_repository_names() {
        let tmp = tempfile::tempdir().unwrap();
        let pyenv = tmp.path().join(".pyenv");
        exe(&pyenv.join("shims/python3"));
        exe(&pyenv.join("versions/3.12.1/bin/python3"));
        exe(&pyenv.join("versions/3.11.7/bin/python3"));
        std::fs::write(pyenv.join("version"), "3.11.7\n").unwrap();
        let root = tmp.path().join("repo");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join(".python-version"), "3.12.1\n").unwrap();
        let path = format!("{}/shims:/usr/bin", pyenv.display());
        let t = detect(
            Ecosystem::Pytest,
            &root,
            &host(&[("PATH", path), ("PYENV_ROOT", pyenv.display().to_string())]),
        );
        let version = pyenv.join("versions/3.12.1");
        assert_eq!(t.mounts, vec![version.display().to_string()]);
        assert_eq!(
            env_of(&t, "PATH"),
            Some(format!("{}/bin:{DEFAULT_PATH}", version.display()).as_str())
        );
    }

    /// init picked pyenv's 3.11.7, which had no pytest, and said nothing:
    /// `lint` then found `No module named pytest` after the commit.
    #[test]
    fn a_pyenv_version_without_pytest_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let pyenv = tmp.path().join(".pyenv");
        exe(&pyenv.join("shims/python3"));
        exe(&pyenv.join("versions/3.11.7/bin/python3"));
        std::fs::create_dir_all(pyenv.join("versions/3.11.7/lib/python3.11/site-packages/pip"))
            .unwrap();
        std::fs::write(pyenv.join("version"), "3.11.7\n").unwrap();
        let root = tmp.path().join("repo");
        std::fs::create_dir_all(&root).unwrap();
        let env = host(&[
            ("PATH", format!("{}/shims:/usr/bin", pyenv.display())),
            ("PYENV_ROOT", pyenv.display().to_string()),
        ]);
        let t = detect(Ecosystem::Pytest, &root, &env);
        assert_eq!(t.missing.len(), 1, "{:?}", t.missing);
        assert!(t.missing[0].contains("has no `pytest`"), "{:?}", t.missing);
        assert!(
            t.missing[0].contains("versions/3.11.7/bin/python3 -m pip install pytest"),
            "{:?}",
            t.missing
        );
        std::fs::create_dir_all(pyenv.join("versions/3.11.7/lib/python3.11/site-packages/_pytest"))
            .unwrap();
        assert!(detect(Ecosystem::Pytest, &root, &env).missing.is_empty());
    }

    /// init wrote `agent: codex` whether or not the cage could run it;
    /// the run then stopped on exit 127 at its first agent.
    #[test]
    fn an_agent_cli_outside_the_host_image_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let nvm = tmp.path().join("nvm/versions/node/v20/bin");
        exe(&nvm.join("codex"));
        let env = host(&[("PATH", format!("{}:/usr/bin", nvm.display()))]);
        let why = unseen_agent_cli("codex", &env).expect("not visible");
        assert!(why.contains("which the `host` image does not see"), "{why}");
        let none = host(&[("PATH", "/nonexistent".into())]);
        assert!(unseen_agent_cli("codex", &none)
            .expect("missing")
            .contains("not on this machine's PATH"));
        let usr = host(&[("PATH", "/usr/bin:/bin".into())]);
        assert_eq!(unseen_agent_cli("sh", &usr), None);
    }

    #[test]
    fn node_modules_is_mounted_read_only_and_found_through_node_path() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        exe(&root.join("nvm/versions/node/v20.1.0/bin/node"));
        std::fs::write(
            root.join("package.json"),
            r#"{"scripts":{"test":"tape test.js"},"devDependencies":{"tape":"^5"}}"#,
        )
        .unwrap();
        let path = format!("{}/nvm/versions/node/v20.1.0/bin:/usr/bin", root.display());
        let t = detect(Ecosystem::Npm, root, &host(&[("PATH", path.clone())]));
        assert!(
            t.missing[0].contains("run `npm install`"),
            "{:?}",
            t.missing
        );
        std::fs::create_dir_all(root.join("node_modules/.bin")).unwrap();
        let t = detect(Ecosystem::Npm, root, &host(&[("PATH", path)]));
        let modules = root.join("node_modules").display().to_string();
        assert_eq!(
            t.mounts,
            vec![
                root.join("nvm/versions/node/v20.1.0").display().to_string(),
                modules.clone()
            ]
        );
        assert_eq!(env_of(&t, "NODE_PATH"), Some(modules.as_str()));
        assert!(env_of(&t, "PATH")
            .unwrap()
            .contains(&format!("{modules}/.bin:")));
    }

    #[test]
    fn go_never_reaches_for_the_network_and_reads_the_host_module_cache() {
        let tmp = tempfile::tempdir().unwrap();
        exe(&tmp.path().join("sdk/go/bin/go"));
        std::fs::create_dir_all(tmp.path().join("gopath/pkg/mod")).unwrap();
        let t = detect(
            Ecosystem::Go,
            tmp.path(),
            &host(&[
                ("PATH", format!("{}/sdk/go/bin", tmp.path().display())),
                ("GOPATH", tmp.path().join("gopath").display().to_string()),
            ]),
        );
        assert_eq!(env_of(&t, "GOPROXY"), Some("off"));
        assert_eq!(env_of(&t, "GOTOOLCHAIN"), Some("local"));
        assert_eq!(
            t.mounts,
            vec![
                tmp.path().join("sdk/go").display().to_string(),
                tmp.path().join("gopath/pkg/mod").display().to_string()
            ]
        );
    }
}
