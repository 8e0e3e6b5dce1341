//! proctor's own images: importing a root filesystem (a directory, a tar or
//! a gzipped tar) as an engine image, listing them, pruning unused ones.
//!
//! A rootfs travels to the engine as one tar stream through the import API
//! (`docker import`): a directory is tarred on the fly and a gzipped tar is
//! inflated on the fly, in bounded chunks, so a large rootfs never sits in
//! memory. Every image made here carries the [`LABEL_IMAGE`] label; `ls`
//! and `prune` only ever look at images with that label (or the built-in
//! host image's name) and must never touch any other image on the engine.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{CageError, DockerCage, HOST_IMAGE, HOST_IMAGE_REF};

/// Label every image proctor creates carries; its value is the name the
/// image was imported under.
pub const LABEL_IMAGE: &str = "proctor.image";

/// Bytes per chunk sent to the engine, and how many chunks may wait in the
/// pipe: at most about 1 MiB of a rootfs is in memory at once.
const CHUNK: usize = 256 * 1024;
pub(super) const CHUNKS_IN_FLIGHT: usize = 4;
/// Bound on one import; a rootfs of several GiB through a local socket
/// takes well under this.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Bound on the short calls (list, tag, remove).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How many skipped special files are named in the report.
const SKIPPED_SHOWN: usize = 5;

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The reference the image is tagged with, e.g. `busybox:latest`.
    pub name: String,
    /// The image id (`sha256:...`).
    pub id: String,
    /// Entries tarred from a directory source (0 for a tar source, which
    /// is passed through as it is).
    pub entries: u64,
    /// Bytes of tar sent to the engine.
    pub bytes: u64,
    /// Device files, fifos and sockets of a directory source, which an image
    /// cannot usefully hold: the first few paths, and how many in all.
    pub skipped: Vec<String>,
    pub skipped_count: u64,
}

/// One of proctor's images on the engine.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageInfo {
    /// Its names (tags), engine prefixes such as `localhost/` removed; empty
    /// for an image a re-import left nameless.
    pub names: Vec<String>,
    pub id: String,
    /// Bytes, as the engine reports them.
    pub size: i64,
    /// Unix seconds.
    pub created: i64,
    /// Whether this is the built-in `host` image of this version of proctor.
    pub builtin: bool,
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub removed: Vec<ImageInfo>,
    /// Images some container (running or not) still uses.
    pub in_use: Vec<ImageInfo>,
    /// The built-in host image of this version, which every run needs.
    pub kept_builtin: usize,
    /// Names asked for that are not among proctor's images.
    pub not_found: Vec<String>,
}

/// Checks a user-given image name and returns the reference to tag it
/// with (`name` gains `:latest` when it has no tag), or why not.
pub fn image_reference(name: &str) -> Result<String, String> {
    if name == HOST_IMAGE {
        return Err(format!(
            "`{HOST_IMAGE}` is the built-in host image's name; choose another"
        ));
    }
    let (repo, tag) = match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (name, None),
    };
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
    };
    // A registry host (with an optional port) may lead a name of two or
    // more parts: `localhost:5000/agent`.
    let host_ok = |c: &str| {
        let (host, port) = c.split_once(':').unwrap_or((c, "0"));
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
    };
    let parts: Vec<&str> = repo.split('/').collect();
    let parts_ok = match parts.as_slice() {
        [first, rest @ ..] if !rest.is_empty() => {
            (component_ok(first) || host_ok(first)) && rest.iter().all(|c| component_ok(c))
        }
        _ => parts.iter().all(|c| component_ok(c)),
    };
    if repo.is_empty() || !parts_ok {
        return Err(format!(
            "`{name}` is not an image name: use lowercase letters, digits and `._-`, path parts separated by `/`, and an optional `:tag`"
        ));
    }
    match tag {
        None => Ok(format!("{repo}:latest")),
        Some(tag)
            if !tag.is_empty()
                && tag.len() <= 128
                && !tag.starts_with(['.', '-'])
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) =>
        {
            Ok(format!("{repo}:{tag}"))
        }
        Some(tag) => Err(format!(
            "`{tag}` is not an image tag: use letters, digits and `_.-`, at most 128"
        )),
    }
}

/// A default image name from the source's file name (`rootfs.tar.gz` ->
/// `rootfs`), if that makes a valid one.
pub fn default_name(source: &Path) -> Option<String> {
    let file = source.file_name()?.to_string_lossy().to_lowercase();
    let stem = [".tar.gz", ".tgz", ".tar"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .unwrap_or(&file);
    let cleaned: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    image_reference(cleaned).ok().map(|_| cleaned.to_string())
}

/// Where a rootfs comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Dir(PathBuf),
    Tar(PathBuf),
    TarGz(PathBuf),
}

impl Source {
    /// Classifies `path` by what it is, not by its name: gzip is
    /// recognised by its magic bytes. A file that is not a tar archive
    /// (after inflating) is refused before anything reaches the engine.
    fn open(path: &Path) -> Result<Source, CageError> {
        let io_err = |source| CageError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = fs::metadata(path).map_err(io_err)?;
        if meta.is_dir() {
            return Ok(Source::Dir(path.to_path_buf()));
        }
        let mut magic = [0u8; 2];
        let mut file = fs::File::open(path).map_err(io_err)?;
        let n = read_full(&mut file, &mut magic).map_err(io_err)?;
        let source = if n == 2 && magic == [0x1f, 0x8b] {
            Source::TarGz(path.to_path_buf())
        } else {
            Source::Tar(path.to_path_buf())
        };
        let mut block = [0u8; 512];
        let mut reader = source.reader().map_err(io_err)?;
        let n = read_full(&mut reader, &mut block).map_err(io_err)?;
        if n < block.len() || !tar_header_checksum_ok(&block) {
            return Err(CageError::InvalidInvocation {
                reason: format!(
                    "`{}` is neither a directory nor a tar archive (plain or gzipped)",
                    path.display()
                ),
            });
        }
        Ok(source)
    }

    /// The tar bytes of a file source (inflated if gzipped).
    fn reader(&self) -> io::Result<Box<dyn Read + Send>> {
        match self {
            Source::Dir(_) => Err(io::Error::other("a directory has no tar reader")),
            Source::Tar(path) => Ok(Box::new(fs::File::open(path)?)),
            Source::TarGz(path) => Ok(Box::new(flate2::read::MultiGzDecoder::new(fs::File::open(
                path,
            )?))),
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Whether a 512-byte block is a tar header: its checksum field matches the
/// sum of its bytes with that field read as spaces (every tar flavour).
fn tar_header_checksum_ok(block: &[u8; 512]) -> bool {
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    let text = text.trim();
    let Ok(stored) = u32::from_str_radix(text, 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u32
            }
        })
        .sum();
    // An all-zero block (an empty archive) sums to 256 and stores nothing.
    stored == sum && !text.is_empty()
}

/// A `Write` that hands bounded chunks to the upload; fails once the
/// upload is gone so the producer stops.
pub(super) struct ChunkWriter {
    tx: mpsc::Sender<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    written: u64,
}

impl ChunkWriter {
    pub(super) fn new(tx: mpsc::Sender<io::Result<Vec<u8>>>) -> ChunkWriter {
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
            written: 0,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the engine stopped reading the import",
            )
        })
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// What the producer thread did.
#[derive(Debug, Default)]
struct Produced {
    entries: u64,
    bytes: u64,
    skipped: Vec<String>,
    skipped_count: u64,
}

/// Writes the source's tar stream into `out`. Runs on a blocking thread.
fn produce(source: &Source, out: &mut ChunkWriter) -> io::Result<Produced> {
    let mut produced = Produced::default();
    match source {
        Source::Dir(root) => {
            let mut builder = tar::Builder::new(&mut *out);
            tar_directory(root, &mut builder, &mut produced)?;
            builder.into_inner()?;
        }
        Source::Tar(_) | Source::TarGz(_) => {
            let mut reader = source.reader()?;
            io::copy(&mut reader, out)?;
        }
    }
    out.flush()?;
    produced.bytes = out.written;
    Ok(produced)
}

/// Tars `root` (not following symlinks, keeping owners and modes), in a
/// stable order. Device files, fifos and sockets are skipped and counted.
fn tar_directory<W: Write>(
    root: &Path,
    builder: &mut tar::Builder<W>,
    produced: &mut Produced,
) -> io::Result<()> {
    let with_path = |path: &Path| {
        let path = path.to_path_buf();
        move |e: io::Error| io::Error::new(e.kind(), format!("`{}`: {e}", path.display()))
    };
    // Explicit stack: no recursion depth limit from deep trees.
    let mut pending: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(with_path(&dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(with_path(&dir))?;
        names.sort();
        // Reverse so the stack pops subdirectories in name order.
        let mut subdirs = Vec::new();
        for name in names {
            let rel_path = rel.join(&name);
            let path = root.join(&rel_path);
            let meta = fs::symlink_metadata(&path).map_err(with_path(&path))?;
            let kind = meta.file_type();
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            if kind.is_dir() {
                header.set_size(0);
                builder
                    .append_data(&mut header, &rel_path, io::empty())
                    .map_err(with_path(&path))?;
                subdirs.push(rel_path);
            } else if kind.is_symlink() {
                let target = fs::read_link(&path).map_err(with_path(&path))?;
                header.set_size(0);
                builder
                    .append_link(&mut header, &rel_path, &target)
                    .map_err(with_path(&path))?;
            } else if kind.is_file() {
                let file = fs::File::open(&path).map_err(with_path(&path))?;
                let exact = ExactReader {
                    inner: file,
                    left: meta.len(),
                };
                builder
                    .append_data(&mut header, &rel_path, exact)
                    .map_err(with_path(&path))?;
            } else {
                // Char and block devices, fifos, sockets: an image is no
                // place for them, and the runtime provides `/dev`.
                produced.skipped_count += 1;
                if produced.skipped.len() < SKIPPED_SHOWN {
                    produced
                        .skipped
                        .push(rel_path.to_string_lossy().into_owned());
                }
                continue;
            }
            produced.entries += 1;
        }
        pending.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// Yields exactly `left` bytes of a file, failing if it shrank while read
/// (the tar header already promised its size).
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being read",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// `name` as a tagged reference (`x` -> `x:latest`).
fn with_tag(name: &str) -> String {
    match name.rsplit_once(':') {
        Some((_, tag)) if !tag.contains('/') => name.to_string(),
        _ => format!("{name}:latest"),
    }
}

/// Strips the prefixes Podman adds to short names.
fn display_name(tag: &str) -> String {
    tag.strip_prefix("docker.io/library/")
        .or_else(|| tag.strip_prefix("localhost/"))
        .unwrap_or(tag)
        .to_string()
}

impl DockerCage {
    /// Imports a root filesystem (directory, tar, or gzipped tar) as the
    /// image `name`, labelled as proctor's. The stream is tagged only once
    /// it arrived whole: a source that fails halfway leaves no image.
    pub async fn import_rootfs(&self, path: &Path, name: &str) -> Result<ImportReport, CageError> {
        let reference =
            image_reference(name).map_err(|reason| CageError::InvalidInvocation { reason })?;
        let source = Source::open(path)?;
        let (tx, mut rx) = mpsc::channel::<io::Result<Vec<u8>>>(CHUNKS_IN_FLIGHT);
        let producer = {
            let source = source.clone();
            tokio::task::spawn_blocking(move || {
                let mut out = ChunkWriter::new(tx.clone());
                let result = produce(&source, &mut out);
                if let Err(error) = &result {
                    // Abort the upload, so the engine cannot mistake a
                    // truncated stream for a whole one.
                    let _ = tx.blocking_send(Err(io::Error::new(error.kind(), error.to_string())));
                }
                result
            })
        };
        let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
            .map(|chunk| chunk.map(Into::into));
        // Untagged first: only a complete import gets the name.
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .changes(vec![format!("LABEL {LABEL_IMAGE}={reference}")])
            .build();
        let upload = async {
            let mut progress = self.client().create_image(
                Some(options),
                Some(bollard::body_try_stream(body)),
                None,
            );
            let mut id = None;
            while let Some(step) = progress.next().await {
                let step = step?;
                if let Some(status) = step.status.filter(|s| s.starts_with("sha256:")) {
                    id = Some(status);
                }
            }
            Ok::<_, BollardError>(id)
        };
        let uploaded = tokio::time::timeout(IMPORT_TIMEOUT, upload).await;
        let produced = producer.await.map_err(|e| CageError::Io {
            path: path.to_path_buf(),
            source: io::Error::other(e.to_string()),
        })?;
        let id = match uploaded {
            Err(_) => {
                return Err(CageError::EngineTimeout {
                    op: "import image",
                    after: IMPORT_TIMEOUT,
                })
            }
            Ok(Ok(id)) => id,
            Ok(Err(source)) => {
                // The producer's own failure explains a broken upload best.
                return Err(match produced {
                    Err(error) => CageError::Io {
                        path: path.to_path_buf(),
                        source: error,
                    },
                    Ok(_) => CageError::Engine {
                        op: "import image",
                        source,
                    },
                });
            }
        };
        let Some(id) = id else {
            return Err(CageError::EngineReply {
                op: "import image",
                status: 200,
                message: "the engine did not report the new image's id".into(),
            });
        };
        let produced = match produced {
            Ok(p) => p,
            Err(error) => {
                self.remove_image_quietly(&id).await;
                return Err(CageError::Io {
                    path: path.to_path_buf(),
                    source: error,
                });
            }
        };
        let (repo, tag) = reference
            .rsplit_once(':')
            .unwrap_or((reference.as_str(), "latest"));
        let options = TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        let tagged =
            tokio::time::timeout(CALL_TIMEOUT, self.client().tag_image(&id, Some(options))).await;
        match tagged {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                self.remove_image_quietly(&id).await;
                return Err(CageError::Engine {
                    op: "tag image",
                    source,
                });
            }
            Err(_) => {
                return Err(CageError::EngineTimeout {
                    op: "tag image",
                    after: CALL_TIMEOUT,
                })
            }
        }
        // A re-import under the same name moved the name to the new image.
        self.forget_image(name);
        self.forget_image(&reference);
        Ok(ImportReport {
            name: reference,
            id,
            entries: produced.entries,
            bytes: produced.bytes,
            skipped: produced.skipped,
            skipped_count: produced.skipped_count,
        })
    }

    /// proctor's images: those labelled [`LABEL_IMAGE`], plus any built-in
    /// host image (older versions imported it without the label).
    pub async fn proctor_images(&self) -> Result<Vec<ImageInfo>, CageError> {
        let options = ListImagesOptionsBuilder::default().all(false).build();
        let all = call("list images", self.client().list_images(Some(options))).await?;
        let mut images: Vec<ImageInfo> = all
            .into_iter()
            .filter_map(|image| {
                let names: Vec<String> = image
                    .repo_tags
                    .iter()
                    .filter(|t| t.as_str() != "<none>:<none>")
                    .map(|t| display_name(t))
                    .collect();
                let labelled = image.labels.contains_key(LABEL_IMAGE);
                let host = names.iter().any(|n| n.starts_with("proctor-host:"));
                (labelled || host).then(|| ImageInfo {
                    builtin: names.iter().any(|n| n == HOST_IMAGE_REF),
                    names,
                    id: image.id,
                    size: image.size,
                    created: image.created,
                })
            })
            .collect();
        images.sort_by(|a, b| b.created.cmp(&a.created).then(a.names.cmp(&b.names)));
        Ok(images)
    }

    /// Removes proctor's images that no container (running or stopped)
    /// uses, except this version's built-in host image. The engine is asked
    /// not to force anything, so an image that comes into use meanwhile is
    /// kept.
    ///
    /// With `only` non-empty, just the images named there are candidates
    /// (`name` means `name:latest`); names that are not proctor's images
    /// are returned in [`PruneReport::not_found`].
    pub async fn prune_images(&self, only: &[String]) -> Result<PruneReport, CageError> {
        let mut images = self.proctor_images().await?;
        let mut report = PruneReport::default();
        if !only.is_empty() {
            let wanted: Vec<String> = only.iter().map(|n| with_tag(n)).collect();
            images.retain(|image| image.names.iter().any(|n| wanted.contains(n)));
            report.not_found = wanted
                .into_iter()
                .filter(|w| !images.iter().any(|i| i.names.contains(w)))
                .collect();
        }
        let options = ListContainersOptionsBuilder::default().all(true).build();
        let containers = call(
            "list containers",
            self.client().list_containers(Some(options)),
        )
        .await?;
        let used: HashSet<String> = containers.into_iter().filter_map(|c| c.image_id).collect();
        for image in images {
            if image.builtin {
                report.kept_builtin += 1;
                continue;
            }
            if used.contains(&image.id) {
                report.in_use.push(image);
                continue;
            }
            match self.remove_image_by_id(&image.id).await {
                Ok(()) => report.removed.push(image),
                Err(CageError::Engine {
                    source: BollardError::DockerResponseServerError { status_code, .. },
                    ..
                }) if status_code == 409 || status_code == 500 => report.in_use.push(image),
                Err(other) => return Err(other),
            }
        }
        self.forget_all_images();
        Ok(report)
    }

    async fn remove_image_by_id(&self, id: &str) -> Result<(), CageError> {
        let options = RemoveImageOptionsBuilder::default()
            .force(false)
            .noprune(false)
            .build();
        call(
            "remove image",
            self.client().remove_image(id, Some(options), None),
        )
        .await
        .map(|_| ())
    }

    async fn remove_image_quietly(&self, id: &str) {
        if let Err(error) = self.remove_image_by_id(id).await {
            tracing::warn!(image = id, %error, "cannot remove a half-imported image");
        }
    }
}

async fn call<T>(
    op: &'static str,
    future: impl std::future::Future<Output = Result<T, BollardError>>,
) -> Result<T, CageError> {
    match tokio::time::timeout(CALL_TIMEOUT, future).await {
        Ok(result) => result.map_err(|source| CageError::Engine { op, source }),
        Err(_) => Err(CageError::EngineTimeout {
            op,
            after: CALL_TIMEOUT,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn names_gain_latest_and_bad_ones_are_refused() {
        assert_eq!(image_reference("busybox").unwrap(), "busybox:latest");
        assert_eq!(image_reference("me/agent:v1.2").unwrap(), "me/agent:v1.2");
        assert_eq!(
            image_reference("localhost:5000/x").unwrap(),
            "localhost:5000/x:latest"
        );
        for bad in [
            "", "Upper", "a b", "x:", "x:-y", "-x", "x//y", "host", "a:b:c/d",
        ] {
            assert!(image_reference(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn default_names_come_from_the_file_name() {
        assert_eq!(
            default_name(Path::new("/x/Rootfs.tar.gz")).as_deref(),
            Some("rootfs")
        );
        assert_eq!(
            default_name(Path::new("my rootfs.tgz")).as_deref(),
            Some("my-rootfs")
        );
        assert_eq!(default_name(Path::new("/tmp/bb/")).as_deref(), Some("bb"));
        assert_eq!(default_name(Path::new("/")), None);
    }

    fn produce_dir(root: &Path) -> (Produced, Vec<(String, tar::EntryType, String)>) {
        let (tx, mut rx) = mpsc::channel(1024);
        let mut out = ChunkWriter::new(tx);
        let produced = produce(&Source::Dir(root.to_path_buf()), &mut out).unwrap();
        drop(out);
        let mut bytes = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            bytes.extend(chunk.unwrap());
        }
        assert_eq!(bytes.len() as u64, produced.bytes);
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let kind = e.header().entry_type();
                let extra = if kind == tar::EntryType::Symlink {
                    e.link_name()
                        .unwrap()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                } else {
                    let mut s = String::new();
                    e.read_to_string(&mut s).unwrap();
                    s
                };
                (path, kind, extra)
            })
            .collect();
        (produced, entries)
    }

    #[test]
    fn a_directory_streams_with_symlinks_kept_and_specials_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/busybox"), "binary").unwrap();
        symlink("busybox", root.join("bin/sh")).unwrap();
        symlink("/nowhere/at/all", root.join("dangling")).unwrap();
        let long = "d".repeat(120);
        fs::create_dir_all(root.join(&long).join(&long)).unwrap();
        fs::write(root.join(&long).join(&long).join("f"), "deep").unwrap();
        let fifo = root.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);

        let (produced, entries) = produce_dir(root);
        let find = |p: &str| entries.iter().find(|e| e.0 == p).cloned();
        assert_eq!(
            find("bin/sh"),
            Some(("bin/sh".into(), tar::EntryType::Symlink, "busybox".into()))
        );
        assert_eq!(find("bin/busybox").unwrap().2, "binary");
        assert_eq!(find("dangling").unwrap().2, "/nowhere/at/all");
        assert_eq!(find(&format!("{long}/{long}/f")).unwrap().2, "deep");
        assert!(find("fifo").is_none());
        assert_eq!(produced.skipped, ["fifo"]);
        assert_eq!(produced.skipped_count, 1);
        assert_eq!(produced.entries, entries.len() as u64);
        // Parents come before their children.
        let pos = |p: &str| {
            entries
                .iter()
                .position(|e| e.0.trim_end_matches('/') == p)
                .unwrap()
        };
        assert!(pos("bin") < pos("bin/busybox"));
        assert_eq!(entries[pos("bin")].1, tar::EntryType::Directory);
    }

    #[test]
    fn files_are_recognised_by_content_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let tar_path = dir.path().join("rootfs.bin");
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        header.set_mode(0o644);
        builder.append_data(&mut header, "a", &b"hi"[..]).unwrap();
        let bytes = builder.into_inner().unwrap();
        fs::write(&tar_path, &bytes).unwrap();
        assert_eq!(
            Source::open(&tar_path).unwrap(),
            Source::Tar(tar_path.clone())
        );

        let gz_path = dir.path().join("rootfs.tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        fs::write(&gz_path, gz.finish().unwrap()).unwrap();
        assert_eq!(Source::open(&gz_path).unwrap(), Source::TarGz(gz_path));

        let junk = dir.path().join("junk.tar.gz");
        fs::write(&junk, "not an archive at all ".repeat(40)).unwrap();
        let error = Source::open(&junk).unwrap_err().to_string();
        assert!(error.contains("neither a directory nor a tar"), "{error}");
        let empty = dir.path().join("empty.tar");
        fs::write(&empty, [0u8; 1024]).unwrap();
        assert!(Source::open(&empty).is_err());
    }
}
