//! From a positioned YAML tree to the resolved loop tree: closed key sets,
//! typed values, ids, schedules, and inheritance down the tree.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::check::{Checker, Field};
use super::node::{self, Node, Value};
use super::units;
use super::{
    Budget, Gate, LoopSpec, Manifest, Network, Problem, Resources, Schedule, TestsAudit, LOOP_KEYS,
    SCHEDULE_KEYS, TESTS_KEYS, TOP_KEYS,
};

/// The keys of the mapping form of `network` and `env`.
const SIDES: &[&str] = &["agent", "verifier"];

/// What a child takes from its parent when it does not set the field itself.
#[derive(Debug, Clone)]
struct Inherited {
    agent: Option<String>,
    image: Option<String>,
    network: Network,
    network_set: bool,
    verifier_network: Network,
    env: Vec<String>,
    verifier_env: Vec<String>,
    writes: Vec<String>,
    resources: Resources,
    timeout: Option<Duration>,
}

impl Default for Inherited {
    fn default() -> Self {
        Inherited {
            agent: None,
            image: None,
            network: Network::Open,
            network_set: false,
            verifier_network: Network::None,
            env: Vec::new(),
            verifier_env: Vec::new(),
            writes: Vec::new(),
            resources: Resources::default(),
            timeout: None,
        }
    }
}

struct Resolver {
    check: Checker,
    /// Loop id → the node that first declared it, for duplicate messages.
    ids: HashMap<String, u64>,
    /// Loops that set `check_every`.
    watchers: Vec<String>,
}

pub(crate) fn manifest(doc: &Node, path: &Path) -> Result<Manifest, Vec<Problem>> {
    let mut r = Resolver {
        check: Checker::default(),
        ids: HashMap::new(),
        watchers: Vec::new(),
    };
    if !matches!(doc.value, Value::Map(_)) {
        r.check.push(
            String::new(),
            doc,
            format!(
                "the top level must be a mapping with a `loop:` key, got {}",
                doc.describe()
            ),
        );
        return Err(r.check.problems);
    }
    let root = r.resolve_loop(doc, "", &Inherited::default(), true);
    let schedules = match doc.get("schedules") {
        Some(node) => r.schedules(node),
        None => Vec::new(),
    };
    if r.check.problems.is_empty() {
        Ok(Manifest {
            path: path.to_path_buf(),
            root,
            schedules,
            watchers: r.watchers,
        })
    } else {
        Err(r.check.problems)
    }
}

/// Advice for keys that are not loop keys but mean something elsewhere.
fn loop_key_hint(key: &str, top: bool) -> Option<String> {
    let advice = match key {
        "schedules" if !top => "`schedules` belongs at the top level of the file",
        "engine" | "runtime" | "mounts" | "on_halt" => "it belongs in `.proctor/config.yaml`",
        "depends_on" | "needs" | "after" => {
            "loops run in list order and children close before their parent; reorder or nest them instead"
        }
        "until" | "check" | "exam" => "did you mean `done_when`?",
        "id" | "name" => "did you mean `loop`?",
        "children" | "steps" | "subloops" => "did you mean `loops`?",
        "prompt" | "goal" => "did you mean `task`?",
        _ => return None,
    };
    Some(advice.to_owned())
}

impl Resolver {
    fn resolve_loop(&mut self, node: &Node, path: &str, parent: &Inherited, top: bool) -> LoopSpec {
        let raw_id = node.get("loop");
        let scope = match raw_id.and_then(Node::as_str) {
            Some(id) => format!("loop {}", node::quoted(id)),
            None if top => "the root loop".to_owned(),
            None => format!("the loop at `{path}`"),
        };
        let allowed: Vec<&str> = if top {
            LOOP_KEYS.iter().chain(TOP_KEYS).copied().collect()
        } else {
            LOOP_KEYS.to_vec()
        };
        let within = format!(" in {scope}");
        let entries = self
            .check
            .known_entries(node, &allowed, path, &within, |k| loop_key_hint(k, top));
        let field = |key: &str| Field::new(&scope, path, key);

        let mut spec = LoopSpec {
            id: String::new(),
            task: None,
            agent: parent.agent.clone(),
            done_when: String::new(),
            budget: units::DEFAULT_BUDGET,
            confirm: 1,
            check_every: units::DEFAULT_CHECK_EVERY,
            gate: None,
            protected: Vec::new(),
            parallel: false,
            max_parallel: None,
            image: parent.image.clone(),
            network: parent.network.clone(),
            network_set: parent.network_set,
            verifier_network: parent.verifier_network.clone(),
            env: parent.env.clone(),
            verifier_env: parent.verifier_env.clone(),
            writes: parent.writes.clone(),
            tests: None,
            judge: None,
            caches: Vec::new(),
            resources: parent.resources,
            timeout: parent.timeout,
            children: Vec::new(),
        };

        match raw_id {
            Some(id_node) => {
                if let Some(id) = self.id(&field("loop"), id_node) {
                    spec.id = id;
                }
            }
            None => self.check.bad(
                &field("loop"),
                node,
                "missing; every loop needs a kebab-case id, e.g. `loop: fix-tests`",
            ),
        }

        let mut done_when_seen = false;
        let mut kids: Option<&Node> = None;
        for (key, value) in &entries {
            let f = field(key);
            // An empty value (`budget:`) reads as the key being absent, so a
            // half-written line means the default rather than an error;
            // `loop` and `done_when` are required, so they still complain.
            if value.value == Value::Null && !matches!(*key, "loop" | "done_when") {
                continue;
            }
            match *key {
                "loop" | "schedules" => {}
                "task" => spec.task = self.check.string(&f, value).map(str::to_owned),
                "agent" => {
                    if let Some(agent) = self.check.text(&f, value) {
                        spec.agent = Some(agent);
                    }
                }
                "done_when" => {
                    done_when_seen = true;
                    match &value.value {
                        Value::Null => self.check.bad(
                            &f,
                            value,
                            "is empty; give the exam, a shell command that exits 0 when the work is done",
                        ),
                        _ => {
                            if let Some(exam) = self.check.text(&f, value) {
                                spec.done_when = exam;
                            }
                        }
                    }
                }
                "budget" => {
                    if let Some(budget) = self.budget(&f, value) {
                        spec.budget = budget;
                    }
                }
                "confirm" => {
                    if let Some(n) = self.check.int(&f, value, 1, i128::from(u32::MAX)) {
                        spec.confirm = n as u32;
                    }
                }
                "check_every" => {
                    if let Some(d) = self.check.duration(&f, value) {
                        spec.check_every = d;
                    }
                }
                "gate" => spec.gate = self.gate(&f, value, &scope),
                "protected" => spec.protected = self.check.globs(&f, value).unwrap_or_default(),
                "parallel" => spec.parallel = self.check.boolean(&f, value).unwrap_or(false),
                "max_parallel" => {
                    if let Some(n) = self.check.int(&f, value, 1, 1024) {
                        spec.max_parallel = Some(n as u32);
                    }
                }
                "loops" => kids = Some(value),
                "image" => {
                    if let Some(image) = self.image(&f, value) {
                        spec.image = Some(image);
                    }
                }
                "network" => {
                    let (agent, verifier) = self.per_side(&f, value, key, &scope, Self::network);
                    if let Some(network) = agent {
                        spec.network = network;
                        spec.network_set = true;
                    }
                    if let Some(network) = verifier {
                        spec.verifier_network = network;
                    }
                }
                "env" => {
                    let (agent, verifier) = self.per_side(&f, value, key, &scope, Self::env_names);
                    if let Some(env) = agent {
                        spec.env = env;
                    }
                    if let Some(env) = verifier {
                        spec.verifier_env = env;
                    }
                }
                "writes" => {
                    if let Some(writes) = self.check.globs(&f, value) {
                        spec.writes = writes;
                    }
                }
                "tests" => spec.tests = self.tests(&f, value, &scope),
                "judge" => spec.judge = self.check.text(&f, value),
                "caches" => {
                    spec.caches = self
                        .check
                        .strings(&f, value, "cache names", |name| {
                            if units::is_volume_name(name) {
                                Ok(())
                            } else {
                                Err(format!(
                                    "`{name}` is not a cache name (letters, digits, `_`, `.` and `-`, starting with a letter or digit)"
                                ))
                            }
                        })
                        .unwrap_or_default()
                }
                "resources" => {
                    let within = format!(" in `resources` of {scope}");
                    if let Some(own) = self.check.resources(&f, value, &within) {
                        spec.resources = own.or(parent.resources);
                    }
                }
                "timeout" => {
                    if let Some(d) = self.check.duration(&f, value) {
                        spec.timeout = Some(d);
                    }
                }
                _ => {}
            }
        }
        if entries.iter().any(|(key, _)| *key == "check_every") && !spec.id.is_empty() {
            self.watchers.push(spec.id.clone());
        }
        if let Some((_, node)) = entries.iter().find(|(key, _)| *key == "max_parallel") {
            if spec.max_parallel.is_some() && !spec.parallel {
                self.check.bad(
                    &field("max_parallel"),
                    node,
                    "only applies with `parallel: true` (it caps how many children run at once); add `parallel: true` or remove it",
                );
            }
        }
        if let Some(rubric) = spec.judged_only() {
            // Lute's judge as the only exam: the rubric is the judge's.
            if rubric.is_empty() {
                self.check.bad(
                    &field("done_when"),
                    node,
                    "`judge:` needs a rubric after it, e.g. `done_when: \"judge: the README explains every flag\"`",
                );
            } else if spec.judge.is_some() {
                self.check.bad(
                    &field("judge"),
                    node,
                    "this loop's `done_when` is already a judge's rubric (`judge: ...`); keep one of them",
                );
            } else {
                spec.judge = Some(rubric.to_string());
            }
        }
        if !done_when_seen {
            self.check.bad(
                &field("done_when"),
                node,
                "missing; every loop needs an exam, a shell command that exits 0 when the work is done",
            );
        }

        let passed_down = Inherited {
            agent: spec.agent.clone(),
            image: spec.image.clone(),
            network: spec.network.clone(),
            network_set: spec.network_set,
            verifier_network: spec.verifier_network.clone(),
            env: spec.env.clone(),
            verifier_env: spec.verifier_env.clone(),
            writes: spec.writes.clone(),
            resources: spec.resources,
            timeout: spec.timeout,
        };
        if let Some(kids) = kids {
            spec.children = self.children(&field("loops"), kids, &passed_down);
        }
        spec
    }

    fn children(&mut self, field: &Field, node: &Node, parent: &Inherited) -> Vec<LoopSpec> {
        let Value::Seq(items) = &node.value else {
            self.check.bad(
                field,
                node,
                format!("expected a list of loops, got {}", node.describe()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = field.item(i).path().to_owned();
            if matches!(item.value, Value::Map(_)) {
                out.push(self.resolve_loop(item, &path, parent, false));
            } else {
                self.check.bad(
                    &field.item(i),
                    item,
                    format!(
                        "expected a loop (a mapping with `loop:` and `done_when:`), got {}",
                        item.describe()
                    ),
                );
            }
        }
        out
    }

    fn id(&mut self, field: &Field, node: &Node) -> Option<String> {
        let id = self.check.string(field, node)?;
        if !units::is_kebab(id) {
            let hint = match units::to_kebab(id) {
                Some(k) => format!(", e.g. `{k}`"),
                None => String::new(),
            };
            self.check.bad(
                field,
                node,
                format!(
                    "{} is not kebab-case (lowercase letters and digits joined by single hyphens){hint}",
                    node.describe()
                ),
            );
            return None;
        }
        if let Some(first) = self.ids.get(id) {
            self.check.bad(
                field,
                node,
                format!("duplicate loop id `{id}` (first used on line {first}); ids must be unique in the file"),
            );
            return None;
        }
        self.ids.insert(id.to_owned(), node.line);
        Some(id.to_owned())
    }

    fn budget(&mut self, field: &Field, node: &Node) -> Option<Budget> {
        match &node.value {
            Value::Str(s) => match units::parse_budget(s) {
                Ok(b) => Some(b),
                Err(why) => {
                    self.check.bad(field, node, why);
                    None
                }
            },
            other => {
                let hint = match other {
                    Value::Int(n) if *n > 0 => format!("; did you mean `{n} runs`?"),
                    _ => String::new(),
                };
                self.check.bad(
                    field,
                    node,
                    format!(
                        "expected `N runs`, a duration like `48h`, or both joined by `/`, got {}{hint}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    fn gate(&mut self, field: &Field, node: &Node, scope: &str) -> Option<Gate> {
        match &node.value {
            Value::Str(s) if s == "human" => Some(Gate { approvals: 1 }),
            Value::Map(_) => {
                let within = format!(" in `gate` of {scope}");
                let entries =
                    self.check
                        .known_entries(node, &["human"], field.path(), &within, |_| None);
                let Some((_, n)) = entries.first() else {
                    self.check
                        .bad(field, node, "expected `{human: N}` with N >= 1");
                    return None;
                };
                let n = self
                    .check
                    .int(&field.sub("human"), n, 1, i128::from(u32::MAX))?;
                Some(Gate {
                    approvals: n as u32,
                })
            }
            _ => {
                self.check.bad(
                    field,
                    node,
                    format!(
                        "expected `human` or `{{human: N}}` (N approvers), got {}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    fn image(&mut self, field: &Field, node: &Node) -> Option<String> {
        let image = self.check.text(field, node)?;
        if image.chars().any(char::is_whitespace) {
            self.check.bad(
                field,
                node,
                format!(
                    "{} is not an image reference (it has spaces)",
                    node.describe()
                ),
            );
            return None;
        }
        Some(image)
    }

    /// `network` and `env`, as (the agent's, the verifier's). The mapping
    /// `{agent: ..., verifier: ...}` gives each side it names (a side not
    /// given, or left empty, is inherited); any other form is the agent's.
    fn per_side<T>(
        &mut self,
        f: &Field,
        value: &Node,
        key: &str,
        scope: &str,
        read: fn(&mut Self, &Field, &Node) -> Option<T>,
    ) -> (Option<T>, Option<T>) {
        if !matches!(value.value, Value::Map(_)) {
            return (read(self, f, value), None);
        }
        let within = format!(" in `{key}` of {scope}");
        let sides = self
            .check
            .known_entries(value, SIDES, f.path(), &within, |_| None);
        let (mut agent, mut verifier) = (None, None);
        for (side, side_value) in sides {
            if side_value.value == Value::Null {
                continue;
            }
            if let Some(read) = read(self, &f.sub(side), side_value) {
                match side {
                    "agent" => agent = Some(read),
                    _ => verifier = Some(read),
                }
            }
        }
        (agent, verifier)
    }

    /// A list of host variable names.
    fn env_names(&mut self, f: &Field, value: &Node) -> Option<Vec<String>> {
        self.check.strings(f, value, "variable names", |name| {
            if units::is_env_name(name) {
                Ok(())
            } else {
                Err(format!(
                    "`{name}` is not a variable name (letters, digits and `_`, not starting with a digit); list names, not `NAME=value`"
                ))
            }
        })
    }

    fn network(&mut self, field: &Field, node: &Node) -> Option<Network> {
        match &node.value {
            Value::Str(s) if s == "none" => Some(Network::None),
            Value::Str(s) if s == "open" => Some(Network::Open),
            Value::Seq(items) if items.is_empty() => {
                self.check.bad(
                    field,
                    node,
                    "an empty host list allows nothing; write `none`",
                );
                None
            }
            Value::Seq(_) => self
                .check
                .strings(field, node, "hosts", units::check_host)
                .map(Network::Hosts),
            _ => {
                self.check.bad(
                    field,
                    node,
                    format!(
                        "expected `none`, `open`, a list of hosts (`host` or `host:port`), or `{{agent: ..., verifier: ...}}`, got {}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    fn tests(&mut self, field: &Field, node: &Node, scope: &str) -> Option<TestsAudit> {
        if !matches!(node.value, Value::Map(_)) {
            self.check.bad(
                field,
                node,
                format!(
                    "expected a mapping like `{{junit: target/junit, min: 10}}`, got {}",
                    node.describe()
                ),
            );
            return None;
        }
        let within = format!(" in `tests` of {scope}");
        let entries = self
            .check
            .known_entries(node, TESTS_KEYS, field.path(), &within, |_| None);
        let before = self.check.problems.len();
        let mut audit = TestsAudit {
            junit: String::new(),
            min: None,
            expect_delta: None,
            allow_skipped: 0,
        };
        let mut junit = false;
        for (key, value) in entries {
            let f = field.sub(key);
            match key {
                "junit" => {
                    junit = true;
                    if let Some(dir) = self.check.text(&f, value) {
                        if let Err(why) = check_relative(&dir) {
                            self.check.bad(&f, value, why);
                        }
                        audit.junit = dir;
                    }
                }
                _ if value.value == Value::Null => {}
                "min" => {
                    audit.min = self
                        .check
                        .int(&f, value, 0, i128::from(u32::MAX))
                        .map(|n| n as u32)
                }
                "expect_delta" => {
                    audit.expect_delta = self
                        .check
                        .int(&f, value, i128::from(i64::MIN), i128::from(i64::MAX))
                        .map(|n| n as i64)
                }
                "allow_skipped" => {
                    audit.allow_skipped = self
                        .check
                        .int(&f, value, 0, i128::from(u32::MAX))
                        .map_or(0, |n| n as u32)
                }
                _ => {}
            }
        }
        if !junit {
            self.check.bad(
                &field.sub("junit"),
                node,
                "missing; name the directory the exam writes JUnit XML to",
            );
        }
        (self.check.problems.len() == before).then_some(audit)
    }

    fn schedules(&mut self, node: &Node) -> Vec<Schedule> {
        if node.value == Value::Null {
            return Vec::new();
        }
        let field = Field::new("", "", "schedules");
        let Value::Seq(items) = &node.value else {
            self.check.bad(
                &field,
                node,
                format!(
                    "expected a list of `{{run: <loop id>, at: \"<cron>\"}}`, got {}",
                    node.describe()
                ),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let f = field.item(i);
            if !matches!(item.value, Value::Map(_)) {
                self.check.bad(
                    &f,
                    item,
                    format!(
                        "expected `{{run: <loop id>, at: \"<cron>\"}}`, got {}",
                        item.describe()
                    ),
                );
                continue;
            }
            let within = format!(" in `{}`", f.key());
            let entries = self
                .check
                .known_entries(item, SCHEDULE_KEYS, f.path(), &within, |k| match k {
                    "loop" | "id" => Some("did you mean `run`?".to_owned()),
                    "cron" | "when" | "every" => Some("did you mean `at`?".to_owned()),
                    _ => None,
                });
            let mut run = None;
            let mut at = None;
            for (key, value) in entries {
                let vf = f.sub(key);
                match key {
                    "run" => {
                        if let Some(id) = self.check.text(&vf, value) {
                            if self.ids.contains_key(&id) {
                                run = Some(id);
                            } else {
                                let mut known: Vec<&str> =
                                    self.ids.keys().map(String::as_str).collect();
                                known.sort_unstable();
                                let hint = match super::hint::closest(&id, &known) {
                                    Some(near) => format!("; did you mean `{near}`?"),
                                    None => String::new(),
                                };
                                self.check.bad(
                                    &vf,
                                    value,
                                    format!("no loop has the id `{id}`{hint}"),
                                );
                            }
                        }
                    }
                    "at" => {
                        if let Some(expr) = self.check.text(&vf, value) {
                            match units::check_cron(&expr) {
                                Ok(()) => at = Some(expr.trim().to_owned()),
                                Err(why) => self.check.bad(&vf, value, why),
                            }
                        }
                    }
                    _ => {}
                }
            }
            for (key, present) in [("run", run.is_some()), ("at", at.is_some())] {
                if !present && item.get(key).is_none() {
                    self.check.bad(&f.sub(key), item, "missing");
                }
            }
            if let (Some(run), Some(at)) = (run, at) {
                out.push(Schedule { run, at });
            }
        }
        out
    }
}

/// Paths the verifier resolves under /work must stay under it.
fn check_relative(dir: &str) -> Result<(), String> {
    let path = Path::new(dir);
    if path.is_absolute() {
        return Err(format!(
            "`{dir}` is absolute; give a directory relative to the repo root"
        ));
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!("`{dir}` leaves the repo with `..`"));
    }
    Ok(())
}
