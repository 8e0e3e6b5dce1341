//! The manifest: untrusted YAML in, a validated loop tree out.
//!
//! `proctor.yaml` (or a Lute `lute.yaml`, unchanged) is read into a tree of
//! positioned YAML nodes, checked against closed key sets (unknown keys are
//! errors with a did-you-mean), then validated into the resolved types
//! below, which the engine trusts: budgets parsed, globs compiled, ids
//! checked, inherited fields filled in. Every problem in a file is reported
//! at once, each with its line and column. The host-side
//! `.proctor/config.yaml` ([`config`]) and the `init` starter file
//! ([`starter_manifest`]) live here too, because they share the value syntax.
//!
//! This module never touches git, containers or the terminal, never runs
//! anything the manifest names, and never panics on any input.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

pub mod auto_image;
mod check;
pub mod config;
mod hint;
mod node;
pub mod preset;
mod resolve;
pub(crate) mod starter;
pub mod templates;
pub mod toolchain;
mod units;

#[cfg(test)]
mod tests;

pub use check::RESOURCES_KEYS;
pub use config::{
    load_config, parse_config, Config, JudgeConfig, ReviewConfig, CONFIG_KEYS, CONFIG_PATH,
};
pub use starter::{detected_exams, starter_manifest, starter_manifest_with};
pub use units::{
    check_cron, check_host, format_duration, format_memory, is_kebab, parse_budget, parse_duration,
    parse_memory, to_kebab, DEFAULT_BUDGET, DEFAULT_CHECK_EVERY,
};

/// The keys a loop may have: Lute's, then proctor's additions. The parser
/// accepts exactly these (plus [`TOP_KEYS`] at the top), and a test holds
/// `docs/manifest.schema.json` to the same set.
pub const LOOP_KEYS: &[&str] = &[
    // Lute's
    "loop",
    "task",
    "agent",
    "done_when",
    "budget",
    "confirm",
    "check_every",
    "gate",
    "protected",
    "parallel",
    "loops",
    // proctor's
    "image",
    "network",
    "env",
    "writes",
    "tests",
    "judge",
    "caches",
    "resources",
    "timeout",
    "max_parallel",
];

/// Keys allowed only on the root mapping, beside its [`LOOP_KEYS`].
pub const TOP_KEYS: &[&str] = &["schedules"];

/// Keys of one `schedules` entry.
pub const SCHEDULE_KEYS: &[&str] = &["run", "at"];

/// Keys of a loop's `tests:` audit.
pub const TESTS_KEYS: &[&str] = &["junit", "min", "expect_delta", "allow_skipped"];

/// Manifest file names looked for at the repo root, in order.
pub const MANIFEST_NAMES: &[&str] = &["proctor.yaml", "lute.yaml"];

/// The manifest at the root of `repo_root`: `proctor.yaml`, else Lute's
/// `lute.yaml`, else `None`.
pub fn find(repo_root: &Path) -> Option<PathBuf> {
    MANIFEST_NAMES
        .iter()
        .map(|name| repo_root.join(name))
        .find(|path| path.is_file())
}

/// Reads and validates the manifest at `path`.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text = read_text(path)?;
    parse(&text, path)
}

/// Validates manifest `text`; `path` is only used to name the file in
/// messages and is kept in [`Manifest::path`].
pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
    let doc = node::read(text).map_err(|e| ManifestError::syntax(path, e))?;
    resolve::manifest(&doc, path).map_err(|problems| ManifestError::new(path, problems))
}

pub(crate) fn read_text(path: &Path) -> Result<String, ManifestError> {
    std::fs::read_to_string(path).map_err(|e| ManifestError {
        path: path.to_path_buf(),
        problems: vec![Problem {
            field: String::new(),
            message: format!("cannot read `{}`: {e}", path.display()),
            line: None,
            column: None,
        }],
    })
}

/// Compiles globs as the manifest means them: relative to the repo root,
/// matched against `/`-separated paths, `*` staying within one directory and
/// `**` crossing any number (gitignore-like). Validation uses this, so a
/// glob that loaded will compile here.
pub fn compile_globs<S: AsRef<str>>(globs: &[S]) -> Result<GlobSet, globset::Error> {
    let mut set = GlobSetBuilder::new();
    for glob in globs {
        set.add(
            GlobBuilder::new(glob.as_ref())
                .literal_separator(true)
                .build()?,
        );
    }
    set.build()
}

/// One thing wrong with a manifest or config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Index path of the field from the document root, for programs:
    /// `loops[1].budget`, `schedules[0].run`; empty for the whole file.
    pub field: String,
    /// The sentence for people: lowercase, names in backticks, naming the
    /// loop by id where it has one (`loop `fix-tests`: `budget`: ...`).
    pub message: String,
    /// 1-based position of the offending key or value, when known.
    pub line: Option<u64>,
    pub column: Option<u64>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{line}:{column}: {}", self.message),
            (Some(line), None) => write!(f, "{line}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// A manifest or config file that cannot be used, with every problem found.
/// Displays as one line per problem, each prefixed with the file path (and
/// position): `proctor.yaml:7:3: unknown key `budjet` in loop `fix-tests`;
/// did you mean `budget`?`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(path, problems))]
pub struct ManifestError {
    pub path: PathBuf,
    /// Never empty.
    pub problems: Vec<Problem>,
}

impl crate::exit_codes::DomainError for ManifestError {
    /// The manifest is the user's; its messages carry their own "did you
    /// mean" where one helps.
    fn is_users_to_fix(&self) -> bool {
        true
    }
}

impl ManifestError {
    /// Problems are found key by key, tree by tree; people read files top
    /// to bottom, so they are listed in file order.
    pub(crate) fn new(path: &Path, mut problems: Vec<Problem>) -> ManifestError {
        problems.sort_by_key(|p| (p.line.unwrap_or(0), p.column.unwrap_or(0)));
        ManifestError {
            path: path.to_path_buf(),
            problems,
        }
    }

    fn syntax(path: &Path, e: node::SyntaxError) -> ManifestError {
        ManifestError {
            path: path.to_path_buf(),
            problems: vec![Problem {
                field: String::new(),
                message: format!("invalid yaml: {}", e.message),
                line: e.line,
                column: e.column,
            }],
        }
    }
}

fn render(path: &Path, problems: &[Problem]) -> String {
    let path = path.display();
    let lines: Vec<String> = problems
        .iter()
        .map(|p| match p.line {
            Some(_) => format!("{path}:{p}"),
            None => format!("{path}: {p}"),
        })
        .collect();
    lines.join("\n")
}

impl Manifest {
    /// Every loop, parents before children, in document order.
    pub fn loops(&self) -> Vec<&LoopSpec> {
        self.root.walk(Order::ParentsFirst)
    }

    /// The loop with this id, anywhere in the tree.
    pub fn find_loop(&self, id: &str) -> Option<&LoopSpec> {
        self.root.find(id)
    }

    /// Watchers (loops that set `check_every`) under `root` that have no
    /// time budget: waiting spends no runs, so nothing would end the wait.
    pub fn untimed_watchers<'m>(&self, root: &'m LoopSpec) -> Vec<&'m LoopSpec> {
        root.walk(Order::ParentsFirst)
            .into_iter()
            .filter(|spec| spec.budget.wall.is_none() && self.watchers.contains(&spec.id))
            .collect()
    }

    /// The `protected` globs of every loop in the tree, without repeats.
    pub fn all_protected(&self) -> Vec<String> {
        self.root.all_protected()
    }
}

/// The order of a walk over the loop tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Each loop before its children (document order).
    ParentsFirst,
    /// Each loop after its children (the order loops close in).
    ChildrenFirst,
}

/// How Lute writes a judge as a loop's only exam: `done_when: "judge: <rubric>"`.
pub const JUDGE_EXAM_PREFIX: &str = "judge:";

impl LoopSpec {
    /// Lute's judge-only exam: `Some(rubric)` when `done_when` is
    /// `judge: <rubric>`. Such a loop is judged, not examined: no exam
    /// runs, the judge's answer is its verdict, and the report says so.
    pub fn judged_only(&self) -> Option<&str> {
        self.done_when
            .strip_prefix(JUDGE_EXAM_PREFIX)
            .map(str::trim)
    }

    /// The caches `done_when` names by path (`/cache/<name>`) that this
    /// loop does not mount: `caches:` is not inherited, so a child that
    /// copied its parent's exam (`CARGO_TARGET_DIR=/cache/target cargo
    /// test`) without its `caches:` has no such folder, and its exam
    /// cannot create one (the root file system is read-only).
    pub fn unmounted_caches(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (at, _) in self.done_when.match_indices("/cache/") {
            let before = self.done_when[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c)) {
                // `/x/cache/...` or `a/cache/...`: some other folder.
                continue;
            }
            let name: String = self.done_when[at + "/cache/".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
                .collect();
            if !name.is_empty() && !self.caches.contains(&name) && !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    /// This loop and every loop under it, in `order`.
    pub fn walk(&self, order: Order) -> Vec<&LoopSpec> {
        self.walk_with_depth(order)
            .into_iter()
            .map(|(_, spec)| spec)
            .collect()
    }

    /// This loop and every loop under it, in `order`, each with its depth
    /// below this one (this one is 0): the one walk of the tree that every
    /// caller uses.
    pub fn walk_with_depth(&self, order: Order) -> Vec<(usize, &LoopSpec)> {
        fn visit<'s>(
            spec: &'s LoopSpec,
            depth: usize,
            order: Order,
            out: &mut Vec<(usize, &'s LoopSpec)>,
        ) {
            if order == Order::ParentsFirst {
                out.push((depth, spec));
            }
            for child in &spec.children {
                visit(child, depth + 1, order, out);
            }
            if order == Order::ChildrenFirst {
                out.push((depth, spec));
            }
        }
        let mut out = Vec::new();
        visit(self, 0, order, &mut out);
        out
    }

    /// The loop with this id: this one or one under it.
    pub fn find(&self, id: &str) -> Option<&LoopSpec> {
        self.walk(Order::ParentsFirst)
            .into_iter()
            .find(|spec| spec.id == id)
    }

    /// The `protected` globs of this loop and every loop under it, without
    /// repeats. `protected` is per loop, as in Lute; an engine that guards
    /// the union keeps an ancestor's exam safe while a child's agent works.
    pub fn all_protected(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for spec in self.walk(Order::ParentsFirst) {
            for glob in &spec.protected {
                if !out.contains(glob) {
                    out.push(glob.clone());
                }
            }
        }
        out
    }
}

impl Resources {
    /// These limits, with any unset one taken from `fallback` (a parent
    /// loop's, or the host config's defaults).
    pub fn or(self, fallback: Resources) -> Resources {
        Resources {
            memory: self.memory.or(fallback.memory),
            nano_cpus: self.nano_cpus.or(fallback.nano_cpus),
            pids: self.pids.or(fallback.pids),
            tree: self.tree.or(fallback.tree),
            files: self.files.or(fallback.files),
            file: self.file.or(fallback.file),
            tmp: self.tmp.or(fallback.tmp),
        }
    }
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The file it came from (as given, for messages).
    pub path: PathBuf,
    pub root: LoopSpec,
    pub schedules: Vec<Schedule>,
    /// Ids of loops that set `check_every`: their exam is meant to answer
    /// 75 (not yet), so they need a time budget (`run` and `lint` refuse
    /// one without; Lute only found out at the first 75).
    pub watchers: Vec<String>,
}

/// One loop of the tree, with inherited fields already resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopSpec {
    /// Kebab-case id, unique in the tree.
    pub id: String,
    pub task: Option<String>,
    /// Agent command (inherited from the nearest ancestor that sets one).
    pub agent: Option<String>,
    /// The exam: a shell command; exit 0 pass, 75 not yet, else fail.
    pub done_when: String,
    pub budget: Budget,
    /// Consecutive passes needed to close (>= 1).
    pub confirm: u32,
    /// Sleep between checks of a not-yet (75) exam.
    pub check_every: Duration,
    pub gate: Option<Gate>,
    /// Globs (relative to the repo root) of exam materials.
    pub protected: Vec<String>,
    pub parallel: bool,
    /// Under `parallel`: how many children may run at once; `None` = the
    /// engine host's cores.
    pub max_parallel: Option<u32>,
    /// Image for the agent and verifier (inherited); `None` = config default.
    pub image: Option<String>,
    /// Agent network (inherited; default open).
    pub network: Network,
    /// Whether this loop or an ancestor set the agent's network: when none
    /// did, a preset agent gets its own hosts instead of `open`.
    pub network_set: bool,
    /// The verifier's network (inherited; default none): set only through
    /// `network: {verifier: ...}`.
    pub verifier_network: Network,
    /// Host environment variable names passed to the agent (inherited).
    pub env: Vec<String>,
    /// Host environment variable names passed to the exam (inherited;
    /// default none): set only through `env: {verifier: ...}`.
    pub verifier_env: Vec<String>,
    /// Write allow-list globs (inherited); empty = anything.
    pub writes: Vec<String>,
    pub tests: Option<TestsAudit>,
    pub judge: Option<String>,
    pub caches: Vec<String>,
    pub resources: Resources,
    /// Per-invocation timeout for agent and exam containers (inherited).
    pub timeout: Option<Duration>,
    pub children: Vec<LoopSpec>,
}

/// `budget:` as runs and/or wall-clock; both absent never happens after
/// validation (the default is 10 runs, as in Lute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub runs: Option<u32>,
    pub wall: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// Distinct approvers needed (`gate: human` = 1, `gate: {human: 2}` = 2).
    pub approvals: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    None,
    Open,
    /// Only these hosts (`host` or `host:port`), through the egress proxy.
    Hosts(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestsAudit {
    /// Directory (relative to /work in the verifier) where the exam writes JUnit XML.
    pub junit: String,
    pub min: Option<u32>,
    pub expect_delta: Option<i64>,
    pub allow_skipped: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resources {
    /// Bytes.
    pub memory: Option<u64>,
    /// CPUs, in nano-CPUs (1.5 CPUs = 1_500_000_000).
    pub nano_cpus: Option<i64>,
    pub pids: Option<i64>,
    /// Cap on an attempt's committed tree: total bytes (logical sizes).
    pub tree: Option<u64>,
    /// Cap on an attempt's committed tree: number of files.
    pub files: Option<u64>,
    /// Cap on an attempt's committed tree: bytes of its largest file.
    pub file: Option<u64>,
    /// Size of each container's `/tmp` and `$HOME` tmpfs, in bytes.
    pub tmp: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub run: String,
    pub at: String,
}
