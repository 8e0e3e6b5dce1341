//! Whether an exam (or an agent command) could run at all: an exit code
//! and output that say the command, its toolchain, a module it loads or the
//! network it needs is missing in the container. Such a failure is no
//! verdict on the tree, and no agent can fix it, so the engine stops before
//! spending a run on it and `lint` reports it. Pure text matching: it reads
//! what the command printed, never runs anything.

/// Why a command that exited `exit` and printed `output` could not run in
/// the container, or `None` when it ran (pass or honest failure).
pub fn cannot_run(exit: i64, output: &str) -> Option<String> {
    match exit {
        0 | 75 | -1 => return None,
        126 => {
            return Some(
                "its command cannot be executed in the container (exit 126: not executable, or a directory; a script committed without its executable bit runs as `sh FILE`, or commit the bit with `git update-index --chmod=+x FILE`)"
                    .into(),
            )
        }
        127 => {
            let what = output.lines().find_map(missing_command);
            return Some(match what {
                Some(cmd) => format!("command `{cmd}` was not found in the container (exit 127)"),
                None => "a command it runs was not found in the container (exit 127)".into(),
            });
        }
        _ => {}
    }
    // The file of the Python frame just above (a traceback's innermost
    // frame is followed by its source line, maybe carets, then the error).
    let mut frame: Option<(&str, usize)> = None;
    for (n, line) in output.lines().enumerate() {
        let line = line.trim();
        if let Some(file) = python_frame(line) {
            frame = Some((file, n));
        }
        let near = frame.filter(|(_, at)| n - at <= 3).map(|(file, _)| file);
        if let Some((module, file)) = missing_library_dependency(line, near) {
            return Some(format!(
                "its Python has no module `{module}`, which the installed package `{file}` imports: a dependency missing from the exam's environment (install it where its interpreter looks, on the host, then `proctor lint`)"
            ));
        }
        if let Some(cmd) = missing_command(line) {
            return Some(format!("command `{cmd}` was not found in the container"));
        }
        if let Some(module) = missing_runner_module(line) {
            return Some(format!(
                "its Python has no module `{module}` in the container (a venv or user install that is not mounted?)"
            ));
        }
        if let Some(package) = missing_node_package(line) {
            return Some(format!(
                "Node cannot find package `{package}` (`node_modules` is git-ignored and never reaches the exam: `proctor init` mounts this checkout's read-only, or install dependencies in the exam, e.g. `npm ci && npm test`, with a network for it)"
            ));
        }
        if line.contains("rustup could not choose a version")
            || line.contains("no default toolchain configured")
        {
            return Some(
                "rustup has no toolchain in the container (set `RUSTUP_HOME` and mount it, see `proctor init`)"
                    .into(),
            );
        }
        if NO_NETWORK.iter().any(|p| line.contains(p)) {
            return Some(format!(
                "it needs the network and cannot reach it (`{}`); fetch dependencies ahead (a cache, vendoring) or give the exam a network (`network: {{agent: open, verifier: [HOST]}}`)",
                cut(line, 120)
            ));
        }
    }
    None
}

/// What a resolver or a client prints when there is no network.
const NO_NETWORK: [&str; 8] = [
    "Could not resolve host",
    "Couldn't resolve host",
    "Temporary failure in name resolution",
    "getaddrinfo EAI_AGAIN",
    "getaddrinfo ENOTFOUND",
    "Network is unreachable",
    "network is unreachable",
    "dial tcp: lookup ",
];

/// The command a shell says it could not find: `sh: 1: pytest: not
/// found`, `bash: line 1: go: command not found`, `cargo: command not
/// found`, `env: 'node': No such file or directory`.
fn missing_command(line: &str) -> Option<String> {
    let line = line.trim();
    let rest = line
        .strip_suffix(": command not found")
        .or_else(|| line.strip_suffix(": not found"))
        .or_else(|| {
            line.strip_prefix("env: ")
                .and_then(|l| l.strip_suffix(": No such file or directory"))
        })?;
    let cmd = rest
        .rsplit(": ")
        .next()?
        .trim_matches(|c| c == '\'' || c == '"');
    let shell_said = line.starts_with("sh: ")
        || line.starts_with("/bin/sh: ")
        || line.starts_with("bash: ")
        || line.starts_with("/bin/bash: ")
        || line.starts_with("/usr/bin/env: ")
        || line.starts_with("env: ")
        || !rest.contains(' ');
    (shell_said && !cmd.is_empty() && !cmd.contains(' ')).then(|| cmd.to_string())
}

/// `python3 -m pytest` without pytest: `/usr/bin/python3: No module named
/// pytest`. Only the interpreter's own line counts: a test that imports a
/// module the task is to write fails differently (`ModuleNotFoundError`).
fn missing_runner_module(line: &str) -> Option<String> {
    let (who, module) = line.split_once(": No module named ")?;
    let program = who.rsplit('/').next()?;
    let python = program.starts_with("python")
        && program["python".len()..]
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.');
    python.then(|| module.trim().trim_matches('\'').to_string())
}

/// The file of a traceback frame: `File "/x/y.py", line 3, in <module>`.
fn python_frame(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("File \"")?;
    let (file, after) = rest.split_once('"')?;
    after.starts_with(", line ").then_some(file)
}

/// A `ModuleNotFoundError` raised in installed library code (a frame under
/// `site-packages` or `dist-packages`): pytest itself, or a package the
/// tests use, lacks a dependency, which no edit to the tree provides. One
/// raised in the repository's own files (a test importing the module the
/// task is to write) is an honest failure.
fn missing_library_dependency<'a>(
    line: &'a str,
    frame: Option<&'a str>,
) -> Option<(&'a str, &'a str)> {
    let rest = line.split_once("ModuleNotFoundError: No module named ")?.1;
    let module = rest.trim().trim_matches('\'');
    let file = frame?;
    let installed = file.contains("/site-packages/") || file.contains("/dist-packages/");
    (installed && !module.is_empty()).then_some((module, file))
}

/// `Error: Cannot find module 'tape'` (a package, not a relative file the
/// task may be to write), or ESM's `Cannot find package 'x'`.
fn missing_node_package(line: &str) -> Option<String> {
    let rest = line
        .split_once("Cannot find module '")
        .or_else(|| line.split_once("Cannot find package '"))?
        .1;
    let name = rest.split('\'').next()?;
    let relative = name.starts_with('.') || name.starts_with('/');
    (!relative && !name.is_empty()).then(|| name.to_string())
}

fn cut(line: &str, max: usize) -> String {
    if line.chars().count() <= max {
        line.to_string()
    } else {
        let mut s: String = line.chars().take(max).collect();
        s.push('…');
        s
    }
}

/// The last `lines` non-empty lines of `output`, for an error message.
pub fn tail_lines(output: &str, lines: usize) -> Vec<&str> {
    let mut tail: Vec<&str> = output
        .lines()
        .rev()
        .filter(|l| !l.trim().is_empty())
        .take(lines)
        .collect();
    tail.reverse();
    tail
}

/// How an exam answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Pass,
    Fail,
    NotYet,
    Error,
}

/// How an exam answered, from its exit code and output: a failure that
/// says the exam could not run (a missing command, module, toolchain or
/// network) is an error.
pub fn classify(exit: i64, timed_out: bool, has_wall_budget: bool, output: &str) -> Class {
    if !timed_out && cannot_run(exit, output).is_some() {
        return Class::Error;
    }
    match exit {
        _ if timed_out => Class::Fail,
        0 => Class::Pass,
        75 if has_wall_budget => Class::NotYet,
        75 | 126 | 127 => Class::Error,
        _ => Class::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_126_and_127_cannot_run() {
        let why = cannot_run(127, "sh: 1: pytest: not found\n").unwrap();
        assert!(why.contains("`pytest` was not found"), "{why}");
        assert!(cannot_run(127, "").unwrap().contains("exit 127"));
        assert!(cannot_run(126, "").unwrap().contains("exit 126"));
        // `./test.sh` committed without its bit: the way out is named.
        let why = cannot_run(126, "/bin/sh: 1: ./test.sh: Permission denied\n").unwrap();
        assert!(why.contains("git update-index --chmod=+x"), "{why}");
    }

    #[test]
    fn honest_failures_and_passes_can_run() {
        assert_eq!(cannot_run(0, "sh: 1: x: not found"), None);
        assert_eq!(cannot_run(1, "FAIL add: expected 4, got -2"), None);
        assert_eq!(
            cannot_run(1, "E   ModuleNotFoundError: No module named 'calc'"),
            None
        );
        assert_eq!(cannot_run(1, "Error: Cannot find module './lib/add'"), None);
        // A test that imports the module the task is to write.
        assert_eq!(
            cannot_run(
                1,
                "tests/test_calc.py:1: in <module>\n  File \"/work/tests/test_calc.py\", line 1, in <module>\n    from calc import add\nE   ModuleNotFoundError: No module named 'calc'\n"
            ),
            None
        );
        assert_eq!(cannot_run(1, "test result: the file was not found"), None);
    }

    #[test]
    fn a_missing_runner_module_toolchain_or_network_cannot_run() {
        let why = cannot_run(1, "/usr/bin/python3: No module named pytest\n").unwrap();
        assert!(why.contains("`pytest`"), "{why}");
        let why = cannot_run(1, "npm ERR! x\nsh: 1: tape: not found\n").unwrap();
        assert!(why.contains("`tape`"), "{why}");
        let why = cannot_run(1, "Error: Cannot find module 'tape'\nRequire stack:").unwrap();
        assert!(why.contains("npm ci"), "{why}");
        let why = cannot_run(1, "error: rustup could not choose a version of cargo to run, because one wasn't specified explicitly, and no default is configured.").unwrap();
        assert!(why.contains("RUSTUP_HOME"), "{why}");
        let why = cannot_run(
            101,
            "  [6] Couldn't resolve host name (Could not resolve host: index.crates.io)",
        )
        .unwrap();
        assert!(why.contains("network"), "{why}");
        // pytest's own import fails on a dependency of pytest's.
        let why = cannot_run(
            1,
            "Traceback (most recent call last):\n  File \"<frozen runpy>\", line 189, in _run_module_as_main\n  File \"/p/lib/python3.11/site-packages/_pytest/_code/code.py\", line 35, in <module>\n    import attr\nModuleNotFoundError: No module named 'attr'\n",
        )
        .unwrap();
        assert!(why.contains("no module `attr`"), "{why}");
        assert!(why.contains("_pytest/_code/code.py"), "{why}");
        let why = cannot_run(1, "bash: line 1: go: command not found").unwrap();
        assert!(why.contains("`go`"), "{why}");
    }
}
