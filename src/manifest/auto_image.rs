//! `image: auto`: which definition in the repository the loop's image is
//! built from. Pure: it reads files through the closure it is given (the
//! run hands it the base commit's blobs), so what an agent writes in its
//! working tree never changes the image its exam runs in.
//!
//! First found wins: `.proctor/Dockerfile` (context `.proctor/`), then
//! `.devcontainer/devcontainer.json` (its `build.dockerfile` and
//! `build.context`, or its `image`), then `Dockerfile` at the root (context
//! the whole tree). `devcontainer.json` is JSON with comments (`//`,
//! `/* */`) and trailing commas, as VS Code writes it.

use std::collections::BTreeMap;

/// The value of `image:` that asks for the repository's own image.
pub const AUTO: &str = "auto";

/// Where `image: auto` looks, in order (for the error when none is there).
pub const LOOKED_FOR: [&str; 3] = [
    ".proctor/Dockerfile",
    ".devcontainer/devcontainer.json",
    "Dockerfile",
];

/// What `image: auto` means in this repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoSource {
    /// Build this Dockerfile.
    Build(BuildSpec),
    /// A devcontainer that names an image: use it as it is (it must be on
    /// the engine; proctor never pulls).
    Image { origin: String, image: String },
}

/// A Dockerfile to build, every path relative to the repository root and
/// `/`-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    /// The file that chose this build (`.proctor/Dockerfile`,
    /// `.devcontainer/devcontainer.json` or `Dockerfile`).
    pub origin: String,
    pub dockerfile: String,
    /// The build context directory; empty for the repository root.
    pub context: String,
    /// `build.args` of a devcontainer.
    pub args: BTreeMap<String, String>,
    /// `build.target` of a devcontainer.
    pub target: Option<String>,
}

/// Why `image: auto` cannot tell what to build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutoError {
    #[error(
        "`image: auto` found nothing to build: no {} in the base commit",
        looked_for()
    )]
    NothingFound,
    #[error("`{path}`: {reason}")]
    Devcontainer { path: String, reason: String },
}

fn looked_for() -> String {
    let names: Vec<String> = LOOKED_FOR.iter().map(|n| format!("`{n}`")).collect();
    format!(
        "{}, or {}",
        names[..names.len() - 1].join(", "),
        names[names.len() - 1]
    )
}

/// Finds the definition `image: auto` builds, reading committed files
/// through `read` (repository-relative path to its bytes; `None` when it
/// is not there).
pub fn find(read: &dyn Fn(&str) -> Option<Vec<u8>>) -> Result<AutoSource, AutoError> {
    if read(".proctor/Dockerfile").is_some() {
        return Ok(AutoSource::Build(BuildSpec {
            origin: ".proctor/Dockerfile".into(),
            dockerfile: ".proctor/Dockerfile".into(),
            context: ".proctor".into(),
            args: BTreeMap::new(),
            target: None,
        }));
    }
    let devcontainer = ".devcontainer/devcontainer.json";
    if let Some(bytes) = read(devcontainer) {
        return devcontainer_source(devcontainer, &String::from_utf8_lossy(&bytes));
    }
    if read("Dockerfile").is_some() {
        return Ok(AutoSource::Build(BuildSpec {
            origin: "Dockerfile".into(),
            dockerfile: "Dockerfile".into(),
            context: String::new(),
            args: BTreeMap::new(),
            target: None,
        }));
    }
    Err(AutoError::NothingFound)
}

/// What a `devcontainer.json` at `path` (repository-relative) asks for.
pub fn devcontainer_source(path: &str, text: &str) -> Result<AutoSource, AutoError> {
    let bad = |reason: String| AutoError::Devcontainer {
        path: path.to_string(),
        reason,
    };
    let json = strip_jsonc(text);
    let doc: serde_json::Value = serde_json::from_str(&json).map_err(|e| {
        bad(format!(
            "not JSON (comments and trailing commas aside): {e}"
        ))
    })?;
    let Some(doc) = doc.as_object() else {
        return Err(bad("not a JSON object".into()));
    };
    if doc
        .get("features")
        .is_some_and(|f| f.as_object().is_none_or(|m| !m.is_empty()))
    {
        return Err(bad(
            "`features` are fetched from a registry by the devcontainer CLI; proctor builds without one: bake them into the Dockerfile".into(),
        ));
    }
    if doc.contains_key("dockerComposeFile") {
        return Err(bad(
            "`dockerComposeFile` is not supported: name a Dockerfile under `build.dockerfile`"
                .into(),
        ));
    }
    let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
    let text_of = |value: Option<&serde_json::Value>, key: &str| match value {
        None => Ok(None),
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!("`{key}` must be a non-empty string"))),
    };
    let build = match doc.get("build") {
        None => None,
        Some(serde_json::Value::Object(b)) => Some(b),
        Some(_) => return Err(bad("`build` must be an object".into())),
    };
    // The older top-level `dockerFile` and `context` mean the same.
    let dockerfile = match build.and_then(|b| b.get("dockerfile")) {
        Some(v) => text_of(Some(v), "build.dockerfile")?,
        None => text_of(doc.get("dockerFile"), "dockerFile")?,
    };
    let Some(dockerfile) = dockerfile else {
        return match text_of(doc.get("image"), "image")? {
            Some(image) => Ok(AutoSource::Image {
                origin: path.to_string(),
                image,
            }),
            None => Err(bad(
                "names neither `build.dockerfile` nor `image`: nothing to build or run".into(),
            )),
        };
    };
    let context = match build.and_then(|b| b.get("context")) {
        Some(v) => text_of(Some(v), "build.context")?,
        None => text_of(doc.get("context"), "context")?,
    }
    .unwrap_or_else(|| ".".into());
    let dockerfile_path = join_inside(dir, &dockerfile)
        .ok_or_else(|| bad(format!("`{dockerfile}` is outside the repository")))?;
    let context_path = join_inside(dir, &context).ok_or_else(|| {
        bad(format!(
            "build context `{context}` is outside the repository"
        ))
    })?;
    let mut args = BTreeMap::new();
    match build.and_then(|b| b.get("args")) {
        None => {}
        Some(serde_json::Value::Object(map)) => {
            for (name, value) in map {
                let value = match value {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    _ => return Err(bad(format!("`build.args.{name}` must be a string"))),
                };
                if value.contains("${") {
                    return Err(bad(format!(
                        "`build.args.{name}` uses a devcontainer variable (`${{...}}`), which proctor does not expand"
                    )));
                }
                args.insert(name.clone(), value);
            }
        }
        Some(_) => return Err(bad("`build.args` must be an object".into())),
    }
    let target = text_of(build.and_then(|b| b.get("target")), "build.target")?;
    Ok(AutoSource::Build(BuildSpec {
        origin: path.to_string(),
        dockerfile: dockerfile_path,
        context: context_path,
        args,
        target,
    }))
}

/// `rel` (relative, `/`-separated) resolved against the directory `dir`,
/// normalised; `None` when it leaves the repository or is absolute.
fn join_inside(dir: &str, rel: &str) -> Option<String> {
    if rel.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// JSON with comments into JSON: `//` and `/* */` comments outside strings
/// become spaces, and a comma before `}` or `]` goes.
pub fn strip_jsonc(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut in_string = false;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(next) = chars.get(i + 1) {
                    out.push(*next);
                    i += 1;
                }
            } else if c == '"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match (c, chars.get(i + 1)) {
            ('"', _) => {
                in_string = true;
                out.push(c);
                i += 1;
            }
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
                out.push(' ');
            }
            (',', _) => {
                // A trailing comma: the next thing that is not a space or a
                // comment closes the object or array.
                let mut j = i + 1;
                loop {
                    while j < chars.len() && chars[j].is_whitespace() {
                        j += 1;
                    }
                    if chars.get(j) == Some(&'/') && chars.get(j + 1) == Some(&'/') {
                        while j < chars.len() && chars[j] != '\n' {
                            j += 1;
                        }
                    } else if chars.get(j) == Some(&'/') && chars.get(j + 1) == Some(&'*') {
                        j += 2;
                        while j < chars.len()
                            && !(chars[j] == '*' && chars.get(j + 1) == Some(&'/'))
                        {
                            j += 1;
                        }
                        j += 2;
                    } else {
                        break;
                    }
                }
                if !matches!(chars.get(j), Some('}') | Some(']')) {
                    out.push(',');
                }
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_devcontainer_text_is_parsed_or_refused_never_a_panic(
            text in r#"[{}\[\]",:/*\\ a-z0-9.\n]{0,200}"#
        ) {
            let _ = strip_jsonc(&text);
            let _ = devcontainer_source(".devcontainer/devcontainer.json", &text);
        }

        #[test]
        fn a_resolved_path_never_leaves_the_repository(rel in r"[a-z./]{0,30}") {
            if let Some(path) = join_inside(".devcontainer", &rel) {
                prop_assert!(!path.split('/').any(|p| p == ".." || p == "."));
                prop_assert!(!path.starts_with('/'));
            }
        }
    }

    fn files(list: &[(&str, &str)]) -> impl Fn(&str) -> Option<Vec<u8>> {
        let map: BTreeMap<String, Vec<u8>> = list
            .iter()
            .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec()))
            .collect();
        move |p: &str| map.get(p).cloned()
    }

    fn build(source: AutoSource) -> BuildSpec {
        match source {
            AutoSource::Build(b) => b,
            other => panic!("not a build: {other:?}"),
        }
    }

    #[test]
    fn the_first_definition_found_wins() {
        let all = files(&[
            (".proctor/Dockerfile", "FROM scratch"),
            (".devcontainer/devcontainer.json", "{\"image\": \"x\"}"),
            ("Dockerfile", "FROM scratch"),
        ]);
        let b = build(find(&all).unwrap());
        assert_eq!(
            (b.dockerfile.as_str(), b.context.as_str()),
            (".proctor/Dockerfile", ".proctor")
        );
        let dev = files(&[
            (".devcontainer/devcontainer.json", "{\"image\": \"x\"}"),
            ("Dockerfile", "FROM scratch"),
        ]);
        assert_eq!(
            find(&dev).unwrap(),
            AutoSource::Image {
                origin: ".devcontainer/devcontainer.json".into(),
                image: "x".into()
            }
        );
        let root = build(find(&files(&[("Dockerfile", "FROM scratch")])).unwrap());
        assert_eq!(
            (root.dockerfile.as_str(), root.context.as_str()),
            ("Dockerfile", "")
        );
        let none = find(&files(&[])).unwrap_err().to_string();
        assert_eq!(
            none,
            "`image: auto` found nothing to build: no `.proctor/Dockerfile`, `.devcontainer/devcontainer.json`, or `Dockerfile` in the base commit"
        );
    }

    #[test]
    fn a_devcontainer_with_comments_and_trailing_commas_builds_its_dockerfile() {
        let text = r#"// VS Code's template
{
    "name": "dev // not a comment",
    /* the build */
    "build": {
        "dockerfile": "Dockerfile", // beside this file
        "context": "..",
        "args": { "VARIANT": "3.12", "N": 2, },
        "target": "test",
    },
    "customizations": { "vscode": { "extensions": ["a", "b",] } },
}"#;
        let b = build(devcontainer_source(".devcontainer/devcontainer.json", text).unwrap());
        assert_eq!(b.dockerfile, ".devcontainer/Dockerfile");
        assert_eq!(b.context, "");
        assert_eq!(b.args.get("VARIANT").map(String::as_str), Some("3.12"));
        assert_eq!(b.args.get("N").map(String::as_str), Some("2"));
        assert_eq!(b.target.as_deref(), Some("test"));
        assert_eq!(b.origin, ".devcontainer/devcontainer.json");
    }

    #[test]
    fn a_devcontainer_context_defaults_to_its_folder_and_old_keys_work() {
        let b = build(
            devcontainer_source(
                ".devcontainer/devcontainer.json",
                r#"{"dockerFile": "docker/Dockerfile"}"#,
            )
            .unwrap(),
        );
        assert_eq!(b.dockerfile, ".devcontainer/docker/Dockerfile");
        assert_eq!(b.context, ".devcontainer");
    }

    #[test]
    fn devcontainers_proctor_cannot_build_offline_are_refused_with_the_reason() {
        let refused = |text: &str| {
            devcontainer_source(".devcontainer/devcontainer.json", text)
                .unwrap_err()
                .to_string()
        };
        let features =
            refused(r#"{"image": "x", "features": {"ghcr.io/devcontainers/features/node:1": {}}}"#);
        assert!(
            features.starts_with("`.devcontainer/devcontainer.json`: `features`"),
            "{features}"
        );
        assert!(features.contains("registry"), "{features}");
        assert!(refused(r#"{"dockerComposeFile": "x.yml"}"#).contains("dockerComposeFile"));
        assert!(refused(r#"{"name": "x"}"#).contains("neither"));
        assert!(refused(r#"{"build": {"dockerfile": "../../Dockerfile"}}"#).contains("outside"));
        assert!(refused(r#"{"build": {"dockerfile": "/etc/Dockerfile"}}"#).contains("outside"));
        assert!(refused(r#"{"build": {"dockerfile": 3}}"#).contains("non-empty string"));
        assert!(refused("{").contains("not JSON"));
        assert!(refused("[]").contains("not a JSON object"));
        assert!(
            refused(r#"{"build": {"dockerfile": "D", "args": {"A": "${localEnv:X}"}}}"#)
                .contains("does not expand")
        );
        // An empty `features` is no feature.
        assert!(devcontainer_source("d.json", r#"{"image": "x", "features": {}}"#).is_ok());
    }

    #[test]
    fn jsonc_keeps_strings_whole() {
        assert_eq!(
            strip_jsonc(r#"{"a": "http://x/*y*/", "b": "q\"//", }"#),
            r#"{"a": "http://x/*y*/", "b": "q\"//" }"#
        );
        assert_eq!(strip_jsonc("[1, 2, /* c */ ]"), "[1, 2   ]");
        // Unterminated comments and strings end the text, never panic.
        for text in ["/* open", "\"open", "{\"a\": 1, // x", "\\", "/"] {
            let _ = strip_jsonc(text);
        }
    }
}
