//! Building an image from a Dockerfile (`image: auto`) through the
//! engine's build API (`POST /build`, the classic builder on Docker,
//! Buildah behind Podman's compatible endpoint), with no registry.
//!
//! proctor never pulls: every image a `FROM` (or `COPY --from`) names is
//! looked up on the engine first, and a missing one stops the build before
//! the engine is asked (both engines would otherwise try a registry). The
//! context travels as one tar stream, written deterministically (names in
//! order, owners root, fixed times) with `.dockerignore` applied, so equal
//! trees make equal bytes: the image is tagged with a hash of them, of the
//! Dockerfile, the build arguments and the base images' ids, and a tag
//! that exists already is reused without a build. Nothing here decides
//! which Dockerfile or which tree: the caller gives a directory.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt;
use globset::{GlobBuilder, GlobMatcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::import::{ChunkWriter, CHUNKS_IN_FLIGHT, LABEL_IMAGE};
use super::{CageError, DockerCage};

/// The repository part of every tag `image: auto` builds.
pub const AUTO_REPO: &str = "proctor-auto";
/// Where a Dockerfile outside its context goes in the context's tar.
const OUTSIDE_DOCKERFILE: &str = ".proctor-auto.Dockerfile";
/// Bound on one build: a toolchain image can take long to build.
const BUILD_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);

/// One image to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The build context: a directory on this machine.
    pub context: PathBuf,
    /// How messages name the Dockerfile (its path in the repository).
    pub dockerfile_name: String,
    /// Its path inside the context (`/`-separated), or `None` when it is
    /// outside: it then travels under a name of proctor's.
    pub dockerfile_in_context: Option<String>,
    pub dockerfile: Vec<u8>,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// A directory for the context's tar file while it is sent.
    pub scratch: PathBuf,
    /// The build's whole output goes here.
    pub log: PathBuf,
}

/// What [`DockerCage::build_auto`] made or found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// `proctor-auto:<hash>`.
    pub tag: String,
    /// The image id (`sha256:...`).
    pub id: String,
    /// `false` when an image with the tag was there already.
    pub built: bool,
}

impl DockerCage {
    /// Builds `req` into `proctor-auto:<hash>`, or finds it built; calls
    /// `step` with each build step the engine reports (`Step 2/5 : COPY
    /// ...`), for a progress line.
    pub async fn build_auto(
        &self,
        req: &BuildRequest,
        step: &mut dyn FnMut(&str),
    ) -> Result<Built, CageError> {
        let text = String::from_utf8_lossy(&req.dockerfile);
        let bases = external_images(&text, &req.args).map_err(|reason| CageError::Dockerfile {
            path: req.dockerfile_name.clone(),
            reason,
        })?;
        let mut base_ids = Vec::new();
        for base in &bases {
            match self.inspect_image_id(base).await? {
                Some(id) => base_ids.push(format!("{base}={id}")),
                None => {
                    return Err(CageError::BaseImageMissing {
                        image: base.clone(),
                        dockerfile: req.dockerfile_name.clone(),
                    })
                }
            }
        }
        let in_tar = req
            .dockerfile_in_context
            .clone()
            .unwrap_or_else(|| OUTSIDE_DOCKERFILE.to_string());
        let tar_path = req.scratch.join("context.tar");
        let (context_digest, tar_bytes) = {
            let owned = req.clone();
            let in_tar = in_tar.clone();
            let tar_path = tar_path.clone();
            tokio::task::spawn_blocking(move || write_context_tar(&owned, &in_tar, &tar_path))
                .await
                .map_err(|e| CageError::Io {
                    path: req.context.clone(),
                    source: io::Error::other(e.to_string()),
                })?
                .map_err(|source| CageError::Io {
                    path: req.context.clone(),
                    source,
                })?
        };
        let tag = auto_tag(
            &context_digest,
            &in_tar,
            &req.args,
            req.target.as_deref(),
            &base_ids,
        );
        if let Some(id) = self.inspect_image_id(&tag).await? {
            let _ = fs::remove_file(&tar_path);
            return Ok(Built {
                tag,
                id,
                built: false,
            });
        }
        let result = self
            .send_build(req, &in_tar, &tag, &tar_path, tar_bytes, step)
            .await;
        let _ = fs::remove_file(&tar_path);
        let id = result?;
        self.forget_image(&tag);
        Ok(Built {
            tag,
            id,
            built: true,
        })
    }

    async fn send_build(
        &self,
        req: &BuildRequest,
        in_tar: &str,
        tag: &str,
        tar_path: &Path,
        tar_bytes: u64,
        step: &mut dyn FnMut(&str),
    ) -> Result<String, CageError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CageError::Io { path, source }
        };
        let mut log = fs::File::create(&req.log).map_err(io_err(&req.log))?;
        let (tx, mut rx) = mpsc::channel::<io::Result<Vec<u8>>>(CHUNKS_IN_FLIGHT);
        let reader = {
            let tar_path = tar_path.to_path_buf();
            tokio::task::spawn_blocking(move || {
                let mut out = ChunkWriter::new(tx.clone());
                let result = fs::File::open(&tar_path).and_then(|mut f| {
                    io::copy(&mut f, &mut out)?;
                    out.flush()
                });
                if let Err(error) = &result {
                    let _ = tx.blocking_send(Err(io::Error::new(error.kind(), error.to_string())));
                }
                result
            })
        };
        let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
            .map(|chunk| chunk.map(Into::into));
        let labels = std::collections::HashMap::from([(LABEL_IMAGE.to_string(), tag.to_string())]);
        let args: std::collections::HashMap<String, String> = req
            .args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut options = BuildImageOptionsBuilder::default()
            .dockerfile(in_tar)
            .t(tag)
            .rm(true)
            .forcerm(true)
            .labels(&labels)
            .buildargs(&args);
        if let Some(target) = &req.target {
            options = options.target(target);
        }
        let options = options.build();
        let mut id = None;
        let mut failure = None;
        let build = async {
            let mut stream =
                self.client()
                    .build_image(options, None, Some(bollard::body_try_stream(body)));
            while let Some(info) = stream.next().await {
                let info = match info {
                    Ok(info) => info,
                    // The engine's own report of a failed step.
                    Err(bollard::errors::Error::DockerStreamError { error }) => {
                        let _ = writeln!(log, "{error}");
                        failure = Some(error);
                        break;
                    }
                    Err(other) => return Err(other),
                };
                if let Some(text) = &info.stream {
                    let _ = log.write_all(text.as_bytes());
                    for line in text.lines() {
                        let line = line.trim();
                        if is_step(line) {
                            step(line);
                        }
                    }
                }
                if let Some(aux) = info.aux.as_ref().and_then(|a| a.id.clone()) {
                    id = Some(aux);
                }
                if let Some(message) = info.error_detail.and_then(|d| d.message) {
                    let _ = writeln!(log, "{message}");
                    failure = Some(message);
                }
            }
            Ok::<_, bollard::errors::Error>(())
        };
        let sent = tokio::time::timeout(BUILD_TIMEOUT, build).await;
        let read = reader.await;
        let _ = tar_bytes;
        match sent {
            Err(_) => {
                return Err(CageError::EngineTimeout {
                    op: "build image",
                    after: BUILD_TIMEOUT,
                })
            }
            Ok(Err(source)) => {
                if let Ok(Err(error)) = read {
                    return Err(CageError::Io {
                        path: tar_path.to_path_buf(),
                        source: error,
                    });
                }
                return Err(CageError::Engine {
                    op: "build image",
                    source,
                });
            }
            Ok(Ok(())) => {}
        }
        if let Some(message) = failure {
            return Err(CageError::BuildFailed {
                dockerfile: req.dockerfile_name.clone(),
                message: first_line(&message),
                log: req.log.clone(),
            });
        }
        match id {
            Some(id) => Ok(id),
            None => self
                .inspect_image_id(tag)
                .await?
                .ok_or_else(|| CageError::BuildFailed {
                    dockerfile: req.dockerfile_name.clone(),
                    message: "the engine reported no image".into(),
                    log: req.log.clone(),
                }),
        }
    }
}

/// Docker says `Step 2/5 : COPY . /`, Podman `STEP 2/5: COPY . /`.
fn is_step(line: &str) -> bool {
    line.starts_with("Step ") || line.starts_with("STEP ")
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// The content-addressed tag.
fn auto_tag(
    context_digest: &[u8],
    dockerfile: &str,
    args: &BTreeMap<String, String>,
    target: Option<&str>,
    base_ids: &[String],
) -> String {
    let mut hash = Sha256::new();
    hash.update(b"proctor-auto v1\0");
    hash.update(context_digest);
    hash.update(format!("\0dockerfile={dockerfile}\0").as_bytes());
    for (name, value) in args {
        hash.update(format!("arg {name}={value}\0").as_bytes());
    }
    hash.update(format!("target={}\0", target.unwrap_or("")).as_bytes());
    for base in base_ids {
        hash.update(format!("base {base}\0").as_bytes());
    }
    format!("{AUTO_REPO}:{}", &hex::encode(hash.finalize())[..16])
}

/// A `Write` that hashes what passes through.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hash.update(&data[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the context of `req` as a tar file at `out`; returns the hash of
/// its bytes and their count.
fn write_context_tar(req: &BuildRequest, in_tar: &str, out: &Path) -> io::Result<(Vec<u8>, u64)> {
    let file = io::BufWriter::new(fs::File::create(out)?);
    let mut hashing = Hashing {
        inner: file,
        hash: Sha256::new(),
        bytes: 0,
    };
    let ignore = match fs::read(req.context.join(".dockerignore")) {
        Ok(bytes) => IgnoreRules::parse(&String::from_utf8_lossy(&bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => IgnoreRules::default(),
        Err(e) => return Err(e),
    };
    {
        let mut builder = tar::Builder::new(&mut hashing);
        builder.mode(tar::HeaderMode::Deterministic);
        tar_context(&req.context, &ignore, in_tar, &mut builder)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(req.dockerfile.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, in_tar, req.dockerfile.as_slice())?;
        builder.into_inner()?;
    }
    hashing.flush()?;
    let bytes = hashing.bytes;
    Ok((hashing.hash.finalize().to_vec(), bytes))
}

/// Tars the context in name order, without the ignored entries and
/// without `skip` (the Dockerfile, appended by the caller), never
/// following a symlink.
fn tar_context<W: Write>(
    root: &Path,
    ignore: &IgnoreRules,
    skip: &str,
    builder: &mut tar::Builder<W>,
) -> io::Result<()> {
    let with_path = |path: &Path| {
        let path = path.to_path_buf();
        move |e: io::Error| io::Error::new(e.kind(), format!("`{}`: {e}", path.display()))
    };
    let mut pending: Vec<String> = vec![String::new()];
    while let Some(rel) = pending.pop() {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(with_path(&dir))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(with_path(&dir))?;
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let rel_path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if rel_path == skip {
                continue;
            }
            let path = root.join(&rel_path);
            let meta = fs::symlink_metadata(&path).map_err(with_path(&path))?;
            let kind = meta.file_type();
            let ignored = ignore.ignores(&rel_path);
            if kind.is_dir() {
                // An ignored directory is still walked when a `!` rule may
                // bring something inside it back.
                if !ignored {
                    let mut header = tar::Header::new_gnu();
                    header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
                    header.set_size(0);
                    builder
                        .append_data(&mut header, &rel_path, io::empty())
                        .map_err(with_path(&path))?;
                }
                if !ignored || ignore.has_exceptions() {
                    subdirs.push(rel_path);
                }
                continue;
            }
            if ignored {
                continue;
            }
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
            if kind.is_symlink() {
                let target = fs::read_link(&path).map_err(with_path(&path))?;
                header.set_size(0);
                builder
                    .append_link(&mut header, &rel_path, &target)
                    .map_err(with_path(&path))?;
            } else if kind.is_file() {
                let mut file = fs::File::open(&path).map_err(with_path(&path))?;
                let mut data = Vec::new();
                file.read_to_end(&mut data).map_err(with_path(&path))?;
                header.set_size(data.len() as u64);
                builder
                    .append_data(&mut header, &rel_path, data.as_slice())
                    .map_err(with_path(&path))?;
            }
            // Anything else (a fifo, a device) has no place in a context.
        }
        pending.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// `.dockerignore`: one pattern a line (`#` comments, `!` exceptions, the
/// last matching line decides); `*`, `?` and `[...]` stay inside one path
/// part, `**` spans any number of parts, and a pattern that matches a
/// directory covers what is inside it. Docker's own rules, without its
/// environment-variable expansion.
#[derive(Debug, Default)]
pub struct IgnoreRules {
    rules: Vec<(GlobMatcher, bool)>,
}

impl IgnoreRules {
    pub fn parse(text: &str) -> IgnoreRules {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pattern = clean(pattern);
            if pattern.is_empty() {
                continue;
            }
            // A pattern that is not a valid glob matches nothing (Docker
            // fails the build on it; a context with one file more is safe).
            if let Ok(glob) = GlobBuilder::new(&pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
            {
                rules.push((glob.compile_matcher(), exception));
            }
        }
        IgnoreRules { rules }
    }

    fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|(_, exception)| *exception)
    }

    /// Whether `rel` (relative to the context, `/`-separated) is left out.
    pub fn ignores(&self, rel: &str) -> bool {
        let mut ignored = false;
        for (glob, exception) in &self.rules {
            // The path itself or any directory above it.
            let mut matched = glob.is_match(rel);
            let mut prefix = rel;
            while !matched {
                match prefix.rsplit_once('/') {
                    Some((parent, _)) => {
                        prefix = parent;
                        matched = glob.is_match(prefix);
                    }
                    None => break,
                }
            }
            if matched {
                ignored = !exception;
            }
        }
        ignored
    }
}

/// A pattern as Docker cleans it: no leading `/` or `./`, no `.` parts,
/// `..` resolved, no trailing `/`.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The images a Dockerfile needs from the engine: every `FROM` that is
/// not `scratch` or an earlier stage, and every `COPY --from=` that is not
/// a stage; `ARG`s before the first `FROM` (overridden by `args`) are
/// expanded. A reference that still holds a variable is an error: proctor
/// could not check that it is there.
pub fn external_images(
    dockerfile: &str,
    args: &BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<String> = Vec::new();
    let mut images: Vec<String> = Vec::new();
    let mut seen_from = false;
    for (line_no, instruction) in instructions(dockerfile) {
        let mut words = instruction.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        let rest: Vec<&str> = words.collect();
        match keyword.to_ascii_uppercase().as_str() {
            "ARG" if !seen_from => {
                for decl in &rest {
                    let (name, default) = match decl.split_once('=') {
                        Some((n, d)) => (n, Some(unquote(d))),
                        None => (*decl, None),
                    };
                    let value = args.get(name).cloned().or(default);
                    if let Some(value) = value {
                        vars.insert(name.to_string(), value);
                    }
                }
            }
            "FROM" => {
                seen_from = true;
                let mut parts = rest.iter().filter(|w| !w.starts_with("--"));
                let Some(image) = parts.next() else {
                    return Err(format!("line {line_no}: `FROM` names no image"));
                };
                let image = expand(image, &vars)
                    .ok_or_else(|| format!("line {line_no}: `FROM {image}` uses a variable proctor cannot resolve (give it a default with `ARG`)"))?;
                let is_stage = stages.iter().any(|s| s.eq_ignore_ascii_case(&image));
                if !image.eq_ignore_ascii_case("scratch") && !is_stage && !images.contains(&image) {
                    images.push(image);
                }
                if let (Some(as_kw), Some(name)) = (parts.next(), parts.next()) {
                    if as_kw.eq_ignore_ascii_case("as") {
                        stages.push(name.to_string());
                    }
                }
            }
            "COPY" | "ADD" => {
                for flag in rest.iter().take_while(|w| w.starts_with("--")) {
                    let Some(from) = flag.strip_prefix("--from=") else {
                        continue;
                    };
                    let from = expand(from, &vars).ok_or_else(|| {
                        format!("line {line_no}: `--from={from}` uses a variable proctor cannot resolve")
                    })?;
                    let is_stage = stages.iter().any(|s| s.eq_ignore_ascii_case(&from))
                        || from.parse::<usize>().is_ok();
                    if !is_stage && !images.contains(&from) {
                        images.push(from);
                    }
                }
            }
            _ => {}
        }
    }
    if !seen_from {
        return Err("it has no `FROM`".into());
    }
    Ok(images)
}

fn unquote(value: &str) -> String {
    let v = value.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    v.to_string()
}

/// `$NAME`, `${NAME}` and `${NAME:-default}` replaced; `None` when a
/// variable has no value.
fn expand(text: &str, vars: &BTreeMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}')?;
            let body = &inner[..end];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            let value = vars
                .get(name)
                .filter(|v| !v.is_empty())
                .cloned()
                .or(default.map(str::to_string))?;
            out.push_str(&value);
            rest = &inner[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if len == 0 {
                return None;
            }
            out.push_str(vars.get(&after[..len])?);
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Some(out)
}

/// The Dockerfile's instructions with continuation lines joined and
/// comment lines dropped, each with the line it starts on.
fn instructions(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_none()) {
            continue;
        }
        let (body, continues) = match line.strip_suffix('\\') {
            Some(body) => (body, true),
            None => (line, false),
        };
        let entry = current.get_or_insert_with(|| (i + 1, String::new()));
        entry.1.push(' ');
        entry.1.push_str(body);
        if !continues {
            if let Some(done) = current.take() {
                out.push(done);
            }
        }
    }
    out.extend(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_dockerfile_or_dockerignore_is_read_without_a_panic(
            text in r"[A-Za-z0-9 ${}:=\-#!*?/\[\].
    ]{0,300}"
        ) {
            let _ = external_images(&text, &BTreeMap::new());
            let rules = IgnoreRules::parse(&text);
            let _ = rules.ignores("a/b/c");
        }
    }

    fn no_args() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn from_lines_name_the_images_the_engine_must_have() {
        let dockerfile = "# syntax=docker/dockerfile:1\n\
            ARG BASE=debian:bookworm\n\
            ARG TAG\n\
            FROM --platform=linux/amd64 ${BASE} AS build\n\
            RUN make \\\n  && make install\n\
            from build as test\n\
            FROM scratch\n\
            COPY --from=build /out /\n\
            COPY --from=0 /a /\n\
            COPY --from=busybox:musl /bin/busybox /bin/\n\
            FROM my-base\n";
        assert_eq!(
            external_images(dockerfile, &no_args()).unwrap(),
            ["debian:bookworm", "busybox:musl", "my-base"]
        );
        let args = BTreeMap::from([("BASE".to_string(), "alpine:3".to_string())]);
        assert_eq!(external_images(dockerfile, &args).unwrap()[0], "alpine:3");
        assert!(external_images("FROM scratch\nCOPY . /\n", &no_args())
            .unwrap()
            .is_empty());
        let error = external_images("FROM $NOPE\n", &no_args()).unwrap_err();
        assert!(
            error.contains("line 1") && error.contains("$NOPE"),
            "{error}"
        );
        assert!(external_images("RUN true\n", &no_args())
            .unwrap_err()
            .contains("no `FROM`"));
        assert_eq!(
            external_images(
                "ARG V=1\nFROM img:${V}-x\nFROM ${X:-fallback}\n",
                &no_args()
            )
            .unwrap(),
            ["img:1-x", "fallback"]
        );
    }

    #[test]
    fn dockerignore_patterns_follow_dockers_rules() {
        let rules = IgnoreRules::parse(
            "# comment\n/target\n*.log\n**/node_modules\ndocs/*.md\n!docs/keep.md\n./build/\n",
        );
        for ignored in [
            "target",
            "target/debug/x",
            "a.log",
            "node_modules/x",
            "web/node_modules/y/z",
            "docs/a.md",
            "build/out",
        ] {
            assert!(rules.ignores(ignored), "{ignored} kept");
        }
        for kept in [
            "src/a.log",
            "docs/keep.md",
            "docs/sub/a.md",
            "src/target",
            "Dockerfile",
        ] {
            assert!(!rules.ignores(kept), "{kept} ignored");
        }
        assert!(IgnoreRules::parse("").rules.is_empty());
    }

    fn tar_names(dir: &Path, dockerfile_in_context: Option<&str>) -> (Vec<String>, Vec<u8>) {
        let scratch = tempfile::tempdir().unwrap();
        let req = BuildRequest {
            context: dir.to_path_buf(),
            dockerfile_name: "Dockerfile".into(),
            dockerfile_in_context: dockerfile_in_context.map(str::to_string),
            dockerfile: b"FROM scratch\n".to_vec(),
            args: BTreeMap::new(),
            target: None,
            scratch: scratch.path().to_path_buf(),
            log: scratch.path().join("log"),
        };
        let in_tar = dockerfile_in_context.unwrap_or(OUTSIDE_DOCKERFILE);
        let out = scratch.path().join("c.tar");
        let (digest, bytes) = write_context_tar(&req, in_tar, &out).unwrap();
        let data = fs::read(&out).unwrap();
        assert_eq!(data.len() as u64, bytes);
        let names = tar::Archive::new(data.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        (names, digest)
    }

    #[test]
    fn the_context_tar_is_deterministic_and_leaves_out_what_dockerignore_says() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("target/debug")).unwrap();
        fs::create_dir_all(root.join("src")).unwrap();
        fs::write(root.join("target/debug/big"), "x").unwrap();
        fs::write(root.join("src/main.rs"), "fn main() {}").unwrap();
        fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(root.join(".dockerignore"), "target\nDockerfile\n").unwrap();
        std::os::unix::fs::symlink("src/main.rs", root.join("link")).unwrap();
        let (names, digest) = tar_names(root, Some("Dockerfile"));
        assert_eq!(
            names,
            [".dockerignore", "link", "src", "src/main.rs", "Dockerfile"]
        );
        // Same content, another time stamp: the same bytes.
        std::thread::sleep(Duration::from_millis(20));
        fs::write(root.join("src/main.rs"), "fn main() {}").unwrap();
        assert_eq!(tar_names(root, Some("Dockerfile")).1, digest);
        fs::write(root.join("src/main.rs"), "fn main() { }").unwrap();
        assert_ne!(tar_names(root, Some("Dockerfile")).1, digest);
        // A Dockerfile outside the context travels under proctor's name.
        let (names, _) = tar_names(&root.join("src"), None);
        assert_eq!(names, ["main.rs", OUTSIDE_DOCKERFILE]);
    }

    #[test]
    fn tags_change_with_every_input() {
        let base = auto_tag(b"d", "Dockerfile", &no_args(), None, &[]);
        assert!(base.starts_with("proctor-auto:"), "{base}");
        assert_eq!(base.len(), "proctor-auto:".len() + 16);
        let args = BTreeMap::from([("A".to_string(), "1".to_string())]);
        for other in [
            auto_tag(b"e", "Dockerfile", &no_args(), None, &[]),
            auto_tag(b"d", "x/Dockerfile", &no_args(), None, &[]),
            auto_tag(b"d", "Dockerfile", &args, None, &[]),
            auto_tag(b"d", "Dockerfile", &no_args(), Some("t"), &[]),
            auto_tag(b"d", "Dockerfile", &no_args(), None, &["b=sha256:1".into()]),
        ] {
            assert_ne!(other, base);
        }
    }
}
