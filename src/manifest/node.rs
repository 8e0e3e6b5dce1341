//! A YAML document as a tree of positioned nodes.
//!
//! Validation walks this tree instead of deserializing straight into typed
//! structs so that one pass can report every problem (serde stops at the
//! first), with a did-you-mean for each unknown key and a line and column for
//! each bad value. The YAML itself is read by `serde-saphyr`, which rejects
//! duplicate keys, caps nesting and alias expansion, and never panics.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One YAML value and where it starts (1-based; 0 when unknown).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    pub line: u64,
    pub column: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; keys are nodes because YAML keys need not
    /// be strings, and a non-string key is a problem to report, not to drop.
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value of `key` when this node is a mapping with a string key `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short description of the value for messages: `"two"`, `3`, `a list`.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "nothing".to_owned(),
            Value::Bool(b) => format!("`{b}`"),
            Value::Int(i) => format!("`{i}`"),
            Value::Float(f) => format!("`{f}`"),
            Value::Str(s) => quoted(s),
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a mapping".to_owned(),
        }
    }
}

/// `s` in backticks for a message, cut short if someone pasted a paragraph
/// (the line number points at the rest).
pub(crate) fn quoted(s: &str) -> String {
    let short: String = s.chars().take(40).collect();
    if short.len() < s.len() {
        format!("`{short}…`")
    } else {
        format!("`{s}`")
    }
}

/// The error from reading YAML: the parser's message and position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub message: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
}

/// Deepest nesting of mappings and lists accepted: 15 levels of `loops`.
pub(crate) const MAX_DEPTH: usize = 32;

/// Stack for the reader's thread. Each level of nesting costs the reader
/// tens of KiB in a debug build, more than a 2 MiB worker thread has for
/// [`MAX_DEPTH`] levels; this leaves a wide margin in any build.
const READER_STACK: usize = 16 << 20;

/// Reads `text` as one YAML document, on a thread of its own so that the
/// caller's stack size never decides whether a deep document is an error
/// or an abort. A panic in the reader (it is meant to have none) becomes
/// an error too.
pub(crate) fn read(text: &str) -> Result<Node, SyntaxError> {
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("manifest-reader".to_owned())
            .stack_size(READER_STACK)
            .spawn_scoped(scope, || read_here(text));
        match reader {
            Ok(handle) => handle.join().unwrap_or_else(|_| {
                Err(SyntaxError {
                    message: "the YAML reader failed on this input".to_owned(),
                    line: None,
                    column: None,
                })
            }),
            // No thread to be had: read here, within the depth limit.
            Err(_) => read_here(text),
        }
    })
}

fn read_here(text: &str) -> Result<Node, SyntaxError> {
    let options = serde_saphyr::options! {
        // `yes`/`no`/`on`/`off` stay strings, so `env: [NO]` is a name; the
        // one boolean field reads them itself (see `Checker::boolean`).
        strict_booleans: true,
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
        },
    };
    match serde_saphyr::from_str_with_options::<Node>(text, options) {
        Ok(node) => Ok(node),
        Err(err) => {
            let bare = err.without_snippet();
            let location = bare.location();
            let message = first_line(&bare.to_string());
            Err(SyntaxError {
                message,
                line: location.map(|l| l.line()).filter(|l| *l > 0),
                column: location.map(|l| l.column()).filter(|c| *c > 0),
            })
        }
    }
}

/// The parser's message as one line, without the position (printed by the
/// caller in its own format) and without advice meant for programmers
/// using the library.
fn first_line(message: &str) -> String {
    let mut line = message.lines().next().unwrap_or("").trim();
    if let Some(at) = line.find(" at line ") {
        line = &line[..at];
    }
    if let Some(key) = line.strip_prefix("duplicate mapping key: ") {
        let key = key.split(", set DuplicateKeyPolicy").next().unwrap_or(key);
        return format!("duplicate key `{key}`");
    }
    if let Some(breach) = line.strip_prefix("budget breached: ") {
        // The reader's own limits, not a loop's `budget`.
        return if breach.starts_with("Depth") {
            format!("nested more than {MAX_DEPTH} levels deep")
        } else {
            let limit: String = breach
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            format!(
                "too large or too repetitive to read (over the reader's `{}` limit)",
                limit.to_lowercase()
            )
        };
    }
    if line.starts_with("multiple YAML documents") {
        return "expected one YAML document, found more (remove the extra `---`)".to_owned();
    }
    if line.is_empty() {
        return "cannot parse".to_owned();
    }
    // Ours are lowercase; the parser capitalises some sentences (but an
    // acronym like `YAML` stays as it is).
    let mut chars = line.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => {
            first.to_lowercase().chain(line.chars().skip(1)).collect()
        }
        _ => line.to_owned(),
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node {
            value: spanned.value,
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        // Beyond i128 is beyond any field's range; saturate and let the range
        // check reject it.
        Ok(Value::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Str(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<Node, Node>()? {
            entries.push(entry);
        }
        Ok(Value::Map(entries))
    }
}
