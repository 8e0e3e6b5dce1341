//! Typed reads of tree values that report, rather than stop at, each problem.
//!
//! Shared by the manifest and the host config so that both speak the same
//! value syntax (durations, sizes, globs) and the same error style.

use std::time::Duration;

use super::hint;
use super::node::{self, Node, Value};
use super::units;
use super::{Problem, Resources};

/// Keys of a `resources:` mapping.
pub const RESOURCES_KEYS: &[&str] = &["memory", "cpus", "pids", "tree", "files", "file", "tmp"];

/// Docker refuses a memory limit under 6 MiB; say so before a run starts.
const MIN_MEMORY: u64 = 6 << 20;
/// Past this many CPUs the value is a typo, and nano-CPUs would overflow soon after.
const MAX_CPUS: f64 = 4096.0;

/// Where a value sits, for messages: `loop `fix-tests`: `tests.min`` to a
/// person, `loops[1].tests.min` to a program.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    /// `loop `fix-tests`` or `the root loop`; empty at the top of the config.
    scope: String,
    /// The key as the user wrote it, dotted for nesting: `tests.min`.
    key: String,
    /// Index path from the document root: `loops[1].tests.min`.
    path: String,
}

impl Field {
    pub fn new(scope: &str, scope_path: &str, key: &str) -> Field {
        Field {
            scope: scope.to_owned(),
            key: key.to_owned(),
            path: join(scope_path, key),
        }
    }

    /// A key inside this field's mapping.
    pub fn sub(&self, key: &str) -> Field {
        Field {
            scope: self.scope.clone(),
            key: format!("{}.{key}", self.key),
            path: format!("{}.{key}", self.path),
        }
    }

    /// An item of this field's list.
    pub fn item(&self, index: usize) -> Field {
        Field {
            scope: self.scope.clone(),
            key: format!("{}[{index}]", self.key),
            path: format!("{}[{index}]", self.path),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    fn label(&self) -> String {
        if self.scope.is_empty() {
            format!("`{}`", self.key)
        } else {
            format!("{}: `{}`", self.scope, self.key)
        }
    }
}

pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Collects problems while values are read.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    pub problems: Vec<Problem>,
}

impl Checker {
    /// Records a problem with `field`'s value, positioned at `at`.
    pub fn bad(&mut self, field: &Field, at: &Node, message: impl AsRef<str>) {
        let message = format!("{}: {}", field.label(), message.as_ref());
        self.push(field.path.clone(), at, message);
    }

    /// Records a problem whose message is already complete.
    pub fn push(&mut self, path: String, at: &Node, message: String) {
        self.problems.push(Problem {
            field: path,
            message,
            line: (at.line > 0).then_some(at.line),
            column: (at.column > 0).then_some(at.column),
        });
    }

    /// The entries of mapping `node` whose keys are in `allowed`; reports the
    /// rest as unknown (with a did-you-mean from `allowed`, or from `hint`
    /// for keys that are right somewhere else) and non-string keys as bad.
    /// `within` names the mapping for messages, e.g. ` in loop `x``.
    pub fn known_entries<'n>(
        &mut self,
        node: &'n Node,
        allowed: &[&str],
        path: &str,
        within: &str,
        hint: impl Fn(&str) -> Option<String>,
    ) -> Vec<(&'n str, &'n Node)> {
        let Value::Map(entries) = &node.value else {
            return Vec::new();
        };
        let mut known = Vec::new();
        for (key, value) in entries {
            let Some(name) = key.as_str() else {
                self.push(
                    path.to_owned(),
                    key,
                    format!("keys must be strings, got {}{within}", key.describe()),
                );
                continue;
            };
            if allowed.contains(&name) {
                known.push((name, value));
                continue;
            }
            let advice = match hint(name) {
                Some(advice) => format!("; {advice}"),
                None => match hint::closest(name, allowed) {
                    Some(near) => format!("; did you mean `{near}`?"),
                    None => String::new(),
                },
            };
            self.push(
                join(path, name),
                key,
                format!("unknown key {}{within}{advice}", node::quoted(name)),
            );
        }
        known
    }

    /// A string value. Scalars of other types are refused with a hint to
    /// quote them: `done_when: true` is a YAML boolean, not a command.
    pub fn string<'n>(&mut self, field: &Field, node: &'n Node) -> Option<&'n str> {
        match &node.value {
            Value::Str(s) => Some(s),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => {
                self.bad(
                    field,
                    node,
                    format!("expected a string, got {}; quote it", node.describe()),
                );
                None
            }
            _ => {
                self.bad(
                    field,
                    node,
                    format!("expected a string, got {}", node.describe()),
                );
                None
            }
        }
    }

    /// A string with something other than whitespace in it.
    pub fn text(&mut self, field: &Field, node: &Node) -> Option<String> {
        let s = self.string(field, node)?;
        if s.trim().is_empty() {
            self.bad(field, node, "must not be empty");
            return None;
        }
        Some(s.to_owned())
    }

    /// A boolean. The reader keeps `yes`/`no`/`on`/`off` as strings so that
    /// `env: [NO]` stays a name; where a boolean is expected they mean what
    /// PyYAML (and so Lute) reads them as, so a `lute.yaml` with
    /// `parallel: yes` runs unchanged.
    pub fn boolean(&mut self, field: &Field, node: &Node) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) => match s.as_str() {
                "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
                "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
                _ => {
                    self.bad(
                        field,
                        node,
                        format!("expected `true` or `false`, got {}", node.describe()),
                    );
                    None
                }
            },
            _ => {
                self.bad(
                    field,
                    node,
                    format!("expected `true` or `false`, got {}", node.describe()),
                );
                None
            }
        }
    }

    /// A whole number in `min..=max`.
    pub fn int(&mut self, field: &Field, node: &Node, min: i128, max: i128) -> Option<i128> {
        match &node.value {
            Value::Int(i) if (min..=max).contains(i) => Some(*i),
            _ => {
                let range = if max >= i128::from(u32::MAX) {
                    format!(">= {min}")
                } else {
                    format!("from {min} to {max}")
                };
                self.bad(
                    field,
                    node,
                    format!("expected a whole number {range}, got {}", node.describe()),
                );
                None
            }
        }
    }

    /// A positive duration such as `30s`, `5m`, `2h` or `1d`.
    pub fn duration(&mut self, field: &Field, node: &Node) -> Option<Duration> {
        let parsed = match &node.value {
            Value::Str(s) => units::parse_duration(s).filter(|d| !d.is_zero()),
            _ => None,
        };
        if parsed.is_none() {
            let hint = match &node.value {
                Value::Int(n) if *n > 0 => format!("; did you mean `{n}s`?"),
                _ => String::new(),
            };
            self.bad(
                field,
                node,
                format!(
                    "expected a positive duration like `30s`, `5m`, `2h` or `1d`, got {}{hint}",
                    node.describe()
                ),
            );
        }
        parsed
    }

    /// A list of strings, each checked by `each` (which returns why an item
    /// is bad). A lone string is refused rather than wrapped, as Lute does,
    /// so the file means the same to both tools.
    pub fn strings(
        &mut self,
        field: &Field,
        node: &Node,
        what: &str,
        each: impl Fn(&str) -> Result<(), String>,
    ) -> Option<Vec<String>> {
        let Value::Seq(items) = &node.value else {
            let hint = match &node.value {
                Value::Str(s) => format!("; write `[{}]`", quote(s)),
                _ => String::new(),
            };
            self.bad(
                field,
                node,
                format!("expected a list of {what}, got {}{hint}", node.describe()),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item_field = field.item(i);
            match &item.value {
                Value::Str(s) => match each(s) {
                    Ok(()) => {
                        if !out.contains(s) {
                            out.push(s.clone());
                        }
                    }
                    Err(why) => {
                        self.bad(&item_field, item, why);
                        ok = false;
                    }
                },
                _ => {
                    self.bad(
                        &item_field,
                        item,
                        format!("expected a string, got {}", item.describe()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A list of globs relative to the repo root, each of which compiles.
    pub fn globs(&mut self, field: &Field, node: &Node) -> Option<Vec<String>> {
        self.strings(field, node, "globs", |glob| {
            if glob.trim().is_empty() {
                return Err("empty glob".to_owned());
            }
            super::compile_globs(&[glob])
                .map(|_| ())
                .map_err(|e| format!("bad glob `{glob}`: {}", glob_reason(&e)))
        })
    }

    /// `resources: {memory, cpus, pids, tree, files, file, tmp}`.
    pub fn resources(&mut self, field: &Field, node: &Node, within: &str) -> Option<Resources> {
        if !matches!(node.value, Value::Map(_)) {
            self.bad(
                field,
                node,
                format!(
                    "expected a mapping like `{{memory: 2g, cpus: 1.5, pids: 256}}`, got {}",
                    node.describe()
                ),
            );
            return None;
        }
        let entries = self.known_entries(node, RESOURCES_KEYS, field.path(), within, |_| None);
        let mut out = Resources::default();
        let before = self.problems.len();
        for (key, value) in entries {
            let f = field.sub(key);
            if value.value == Value::Null {
                continue;
            }
            match key {
                "memory" => out.memory = self.memory(&f, value),
                "cpus" => out.nano_cpus = self.cpus(&f, value),
                "pids" => {
                    out.pids = self
                        .int(&f, value, 1, i128::from(i64::MAX))
                        .map(|n| n as i64)
                }
                "tree" | "file" | "tmp" => {
                    let size = self.size(&f, value);
                    match key {
                        "tree" => out.tree = size,
                        "file" => out.file = size,
                        _ => out.tmp = size,
                    }
                }
                "files" => {
                    out.files = self
                        .int(&f, value, 1, i128::from(u64::MAX))
                        .map(|n| n as u64)
                }
                _ => {}
            }
        }
        (self.problems.len() == before).then_some(out)
    }

    fn memory(&mut self, field: &Field, node: &Node) -> Option<u64> {
        let bytes = match &node.value {
            Value::Int(n) => u64::try_from(*n).ok(),
            Value::Str(s) => units::parse_memory(s),
            _ => None,
        };
        match bytes {
            Some(b) if b >= MIN_MEMORY => Some(b),
            Some(_) => {
                self.bad(
                    field,
                    node,
                    "must be at least `6m` (the engine refuses less)",
                );
                None
            }
            None => {
                self.bad(
                    field,
                    node,
                    format!(
                        "expected a size like `512m` or `2g` (or a byte count), got {}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    /// A byte size above zero: `100m`, `2g`, or a byte count.
    fn size(&mut self, field: &Field, node: &Node) -> Option<u64> {
        let bytes = match &node.value {
            Value::Int(n) => u64::try_from(*n).ok(),
            Value::Str(s) => units::parse_memory(s),
            _ => None,
        };
        match bytes {
            Some(b) if b > 0 => Some(b),
            _ => {
                self.bad(
                    field,
                    node,
                    format!(
                        "expected a size above zero like `100m` or `2g` (or a byte count), got {}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    fn cpus(&mut self, field: &Field, node: &Node) -> Option<i64> {
        let cpus = match &node.value {
            Value::Int(n) => Some(*n as f64),
            Value::Float(f) => Some(*f),
            // Docker's own flag is a string (`--cpus "1.5"`), so a quoted
            // number is what people will copy.
            Value::Str(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match cpus {
            Some(c) if c.is_finite() && c > 0.0 && c <= MAX_CPUS => {
                let nano = (c * 1e9).round() as i64;
                if nano > 0 {
                    return Some(nano);
                }
                self.bad(field, node, "is too small to give any CPU time");
                None
            }
            _ => {
                self.bad(
                    field,
                    node,
                    format!(
                        "expected a number of CPUs above 0 (like `1.5`), got {}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }
}

/// `s` as it would be written in a YAML flow list.
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// globset's error repeats the glob; keep only the reason.
fn glob_reason(e: &globset::Error) -> String {
    e.kind().to_string()
}
