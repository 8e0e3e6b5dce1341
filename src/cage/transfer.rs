//! The tar path: an invocation's mounts travel to the container as tar
//! streams through the engine API instead of bind mounts, for engines that
//! do not share this machine's filesystem (`tcp://`).
//!
//! Each outermost mount target becomes an anonymous volume of the container
//! (the root filesystem stays read-only); before start, the mount's tree
//! and the trees of the mounts nested in it are uploaded there as one
//! stream (PUT archive). After the exit, the volume of a mount with any
//! writable part is downloaded (GET archive) and applied to the host:
//! files changed, added and deleted, but only under writable mounts. What
//! lies under a read-only mount (`.git`, `.proctor`, `INBOX`, the exam's
//! materials) is never taken back, as a read-only bind mount could not be
//! written. An archive entry that would land outside its mount (`..`, an
//! absolute path, a path through a symlink) is refused. Trees stream in
//! bounded chunks; only the names of the entries seen are kept in memory.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::CageError;

/// Files up to this size that may be unchanged are compared in memory
/// before being rewritten.
const COMPARE_LIMIT: u64 = 1 << 20;

/// One mount of a [`Root`], relative to the root's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlanMount {
    /// The host path (canonical).
    pub host: PathBuf,
    /// Components below the root's target; empty for the root itself.
    pub rel: Vec<String>,
    pub read_only: bool,
}

/// An outermost mount target and every mount inside it: one volume, one
/// upload, at most one download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Root {
    /// Absolute container path of the volume.
    pub target: String,
    /// The root's own mount first, then nested ones, shallowest first.
    pub mounts: Vec<PlanMount>,
}

/// How an invocation's mounts travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TransferPlan {
    pub roots: Vec<Root>,
    /// Owner of every uploaded entry (the container's numeric user), else
    /// the host's owners are kept.
    pub owner: Option<(u64, u64)>,
}

/// What an upload or an apply did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Moved {
    pub entries: u64,
    pub bytes: u64,
    /// Entries applied to the host (written, created or replaced).
    pub changed: u64,
    pub deleted: u64,
}

fn components(target: &str) -> Option<Vec<String>> {
    let path = Path::new(target);
    if !path.is_absolute() {
        return None;
    }
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => out.push(name.to_str()?.to_string()),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

impl TransferPlan {
    /// Groups `(host, container target, read_only)` mounts under their
    /// outermost targets. Later mounts at the same target replace earlier
    /// ones, as with binds.
    pub(crate) fn new(
        mounts: &[(PathBuf, String, bool)],
        owner: Option<(u64, u64)>,
    ) -> Result<TransferPlan, CageError> {
        let mut parsed: Vec<(Vec<String>, PathBuf, bool)> = Vec::new();
        for (host, target, read_only) in mounts {
            let parts = components(target).ok_or_else(|| CageError::InvalidInvocation {
                reason: format!("mount target `{target}` is not a plain absolute path"),
            })?;
            if parts.is_empty() {
                return Err(CageError::InvalidInvocation {
                    reason: "a mount over `/` cannot travel as a tar stream".into(),
                });
            }
            parsed.retain(|(p, _, _)| *p != parts);
            parsed.push((parts, host.clone(), *read_only));
        }
        parsed.sort_by_key(|(p, _, _)| p.len());
        let mut roots: Vec<(Vec<String>, Root)> = Vec::new();
        for (parts, host, read_only) in parsed {
            match roots
                .iter_mut()
                .find(|(root, _)| parts.starts_with(root.as_slice()))
            {
                Some((root_parts, root)) => root.mounts.push(PlanMount {
                    host,
                    rel: parts[root_parts.len()..].to_vec(),
                    read_only,
                }),
                None => {
                    let target = format!("/{}", parts.join("/"));
                    roots.push((
                        parts,
                        Root {
                            target,
                            mounts: vec![PlanMount {
                                host,
                                rel: Vec::new(),
                                read_only,
                            }],
                        },
                    ));
                }
            }
        }
        Ok(TransferPlan {
            roots: roots.into_iter().map(|(_, r)| r).collect(),
            owner,
        })
    }

    /// The container paths that get a volume.
    pub(crate) fn volume_targets(&self) -> Vec<String> {
        self.roots.iter().map(|r| r.target.clone()).collect()
    }
}

impl Root {
    /// Whether anything under this root may be taken back.
    pub(crate) fn writable(&self) -> bool {
        self.mounts.iter().any(|m| !m.read_only)
    }

    /// The deepest mount covering `rel`.
    fn mount_for(&self, rel: &[String]) -> &PlanMount {
        self.mounts
            .iter()
            .rev()
            .find(|m| rel.starts_with(&m.rel))
            .unwrap_or(&self.mounts[0])
    }

    /// Whether `rel` is a nested mount's target (its own tree is sent
    /// from that mount's source).
    fn is_nested_target(&self, rel: &[String]) -> bool {
        self.mounts.iter().skip(1).any(|m| m.rel == rel)
    }

    /// Whether a nested mount lies strictly below `rel`.
    fn holds_nested(&self, rel: &[String]) -> bool {
        self.mounts
            .iter()
            .skip(1)
            .any(|m| m.rel.len() > rel.len() && m.rel.starts_with(rel))
    }
}

/// Writes the tar stream of `root` (names relative to its target) into
/// `out`. Runs on a blocking thread.
pub(crate) fn write_tree(
    out: impl Write,
    root: &Root,
    owner: Option<(u64, u64)>,
) -> io::Result<Moved> {
    let mut builder = tar::Builder::new(out);
    let mut moved = Moved::default();
    for (index, mount) in root.mounts.iter().enumerate() {
        if index > 0 {
            // The directories down to a nested mount, in case its parent
            // is not in the outer tree (a duplicate entry is harmless).
            for depth in 1..mount.rel.len() {
                let rel = &mount.rel[..depth];
                let host = root.mounts[0].host.join(rel.join("/"));
                let mode = fs::symlink_metadata(&host)
                    .ok()
                    .filter(|m| m.is_dir())
                    .map(|m| m.mode())
                    .unwrap_or(0o755);
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(mode & 0o7777);
                set_owner(&mut header, owner, None);
                header.set_size(0);
                builder.append_data(&mut header, format!("{}/", rel.join("/")), io::empty())?;
                moved.entries += 1;
            }
        }
        add(
            &mut builder,
            root,
            &mount.host,
            &mount.rel,
            owner,
            &mut moved,
        )?;
    }
    builder.into_inner()?.flush()?;
    Ok(moved)
}

fn set_owner(header: &mut tar::Header, owner: Option<(u64, u64)>, meta: Option<&fs::Metadata>) {
    match (owner, meta) {
        (Some((uid, gid)), _) => {
            header.set_uid(uid);
            header.set_gid(gid);
        }
        (None, Some(meta)) => {
            header.set_uid(meta.uid() as u64);
            header.set_gid(meta.gid() as u64);
        }
        (None, None) => {}
    }
}

fn add<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Root,
    host: &Path,
    rel: &[String],
    owner: Option<(u64, u64)>,
    moved: &mut Moved,
) -> io::Result<()> {
    let meta = fs::symlink_metadata(host)?;
    let name = if rel.is_empty() {
        ".".to_string()
    } else {
        rel.join("/")
    };
    let mut header = tar::Header::new_gnu();
    header.set_mode(meta.mode() & 0o7777);
    header.set_mtime(meta.mtime().max(0) as u64);
    set_owner(&mut header, owner, Some(&meta));
    let kind = meta.file_type();
    if kind.is_dir() {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        builder.append_data(&mut header, format!("{name}/"), io::empty())?;
        moved.entries += 1;
        for child in fs::read_dir(host)? {
            let child = child?;
            let Some(child_name) = child.file_name().to_str().map(str::to_string) else {
                tracing::warn!(path = %child.path().display(), "not sent to the container: the name is not UTF-8");
                continue;
            };
            let mut child_rel = rel.to_vec();
            child_rel.push(child_name);
            if root.is_nested_target(&child_rel) {
                continue;
            }
            add(builder, root, &child.path(), &child_rel, owner, moved)?;
        }
    } else if kind.is_file() {
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(meta.len());
        let file = fs::File::open(host)?;
        // A file that shrinks while it is read would break the archive.
        builder.append_data(&mut header, &name, file.take(meta.len()))?;
        moved.entries += 1;
        moved.bytes += meta.len();
    } else if kind.is_symlink() {
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        let target = fs::read_link(host)?;
        builder.append_link(&mut header, &name, target)?;
        moved.entries += 1;
    }
    // Sockets, fifos and devices cannot travel; a bind mount would show
    // them, but nothing proctor mounts needs them.
    Ok(())
}

/// Applies the downloaded archive of `root` (entries named
/// `<basename>/...`, as the engine sends them) to the host, then deletes
/// what the container deleted under writable mounts.
pub(crate) fn apply_tree(reader: impl Read, root: &Root) -> Result<Moved, CageError> {
    let fail = |reason: String| CageError::Transfer {
        container_path: root.target.clone(),
        reason,
    };
    let mut archive = tar::Archive::new(reader);
    let mut seen: HashSet<Vec<String>> = HashSet::new();
    let mut moved = Moved::default();
    let mut layout = None;
    let entries = archive
        .entries()
        .map_err(|e| fail(format!("unreadable archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| fail(format!("unreadable archive: {e}")))?;
        let raw = entry.path_bytes().into_owned();
        let layout = *layout.get_or_insert(if raw.starts_with(b"/") {
            Layout::Rooted
        } else {
            Layout::Prefixed
        });
        let rel = entry_rel(&raw, layout).map_err(fail)?;
        moved.entries += 1;
        let Some(rel) = rel else { continue };
        let mount = root.mount_for(&rel);
        if mount.read_only {
            continue;
        }
        seen.insert(rel.clone());
        let dest = dest_in(mount, &rel).map_err(&fail)?;
        let shown = rel.join("/");
        let applied = apply_entry(&mut entry, root, mount, &rel, &dest)
            .map_err(|e| fail(format!("`{shown}`: {e}")))?;
        if applied {
            moved.changed += 1;
        }
        moved.bytes += entry.size();
    }
    for mount in root.mounts.iter().filter(|m| !m.read_only) {
        let is_dir = fs::symlink_metadata(&mount.host).is_ok_and(|m| m.is_dir());
        if is_dir {
            delete_unseen(root, &mount.host, &mount.rel, &seen, &mut moved)
                .map_err(|e| fail(format!("deleting what the container deleted: {e}")))?;
        }
    }
    Ok(moved)
}

/// How an engine names the entries of a downloaded directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Docker: `work/`, `work/a.txt`.
    Prefixed,
    /// Podman 4: `/`, `/a.txt`.
    Rooted,
}

/// The components of an archive entry below the root's own directory;
/// `None` for that directory itself. Anything that could leave the tree
/// is an error.
fn entry_rel(raw: &[u8], layout: Layout) -> Result<Option<Vec<String>>, String> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| format!("entry `{}` is not UTF-8", String::from_utf8_lossy(raw)))?;
    let path = match layout {
        Layout::Rooted => Path::new(text)
            .strip_prefix("/")
            .map_err(|_| format!("entry `{text}` is not below the archived directory"))?,
        Layout::Prefixed => Path::new(text),
    };
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(name) => parts.push(name.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(format!("entry `{text}` leaves the tree"));
            }
        }
    }
    if layout == Layout::Prefixed && !parts.is_empty() {
        // The first component is the directory the engine archived.
        parts.remove(0);
    }
    Ok((!parts.is_empty()).then_some(parts))
}

/// The host path of `rel` under `mount`, refusing any way through a
/// symlink or out of the mount.
fn dest_in(mount: &PlanMount, rel: &[String]) -> Result<PathBuf, String> {
    let below = &rel[mount.rel.len()..];
    let mut dest = mount.host.clone();
    for (i, part) in below.iter().enumerate() {
        dest.push(part);
        if i + 1 == below.len() {
            break;
        }
        match fs::symlink_metadata(&dest) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "entry `{}` would be written through the symlink `{}`",
                    rel.join("/"),
                    dest.display()
                ));
            }
            Ok(_) => {
                return Err(format!(
                    "entry `{}` lies below a file `{}`",
                    rel.join("/"),
                    dest.display()
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
            }
            Err(e) => return Err(format!("{}: {e}", dest.display())),
        }
    }
    Ok(dest)
}

/// Writes one entry; returns whether the host changed.
fn apply_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    root: &Root,
    mount: &PlanMount,
    rel: &[String],
    dest: &Path,
) -> io::Result<bool> {
    let existing = fs::symlink_metadata(dest).ok();
    let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
    let kind = entry.header().entry_type();
    // A mount's own source is replaced in place, never removed.
    let is_mount_source = rel.len() == mount.rel.len();
    let clear = |existing: &Option<fs::Metadata>| -> io::Result<()> {
        match existing {
            None => Ok(()),
            Some(_) if is_mount_source || root.holds_nested(rel) => Err(io::Error::other(
                "would replace a directory that holds a mount or is one",
            )),
            Some(meta) if meta.is_dir() => fs::remove_dir_all(dest),
            Some(_) => fs::remove_file(dest),
        }
    };
    match kind {
        tar::EntryType::Directory => {
            match &existing {
                Some(meta) if meta.is_dir() => {
                    if meta.mode() & 0o7777 == mode {
                        return Ok(false);
                    }
                }
                other => {
                    clear(other)?;
                    fs::create_dir(dest)?;
                }
            }
            fs::set_permissions(dest, fs::Permissions::from_mode(mode | 0o700))?;
            Ok(true)
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let same_size = existing
                .as_ref()
                .is_some_and(|m| m.is_file() && m.len() == entry.size());
            // An unchanged file keeps its mtime (git's index stays fresh);
            // only small ones are compared, in memory, to stay bounded.
            let incoming = if same_size && entry.size() <= COMPARE_LIMIT {
                let mut bytes = Vec::with_capacity(entry.size() as usize);
                entry.read_to_end(&mut bytes)?;
                if fs::read(dest)? == bytes {
                    let unchanged = existing.as_ref().is_some_and(|m| m.mode() & 0o7777 == mode);
                    if !unchanged {
                        fs::set_permissions(dest, fs::Permissions::from_mode(mode))?;
                    }
                    return Ok(!unchanged);
                }
                Some(bytes)
            } else {
                None
            };
            if existing.as_ref().is_some_and(|m| !m.is_file()) {
                clear(&existing)?;
            }
            let parent = dest.parent().unwrap_or(Path::new("/"));
            let mut temp = tempfile::Builder::new()
                .prefix(".proctor-incoming-")
                .tempfile_in(parent)?;
            match incoming {
                Some(bytes) => temp.as_file_mut().write_all(&bytes)?,
                None => {
                    io::copy(entry, temp.as_file_mut())?;
                }
            }
            temp.as_file()
                .set_permissions(fs::Permissions::from_mode(mode))?;
            temp.persist(dest).map_err(|e| e.error)?;
            Ok(true)
        }
        tar::EntryType::Symlink => {
            let Some(target) = entry.link_name()?.map(|t| t.into_owned()) else {
                return Ok(false);
            };
            if let Some(meta) = &existing {
                if meta.file_type().is_symlink() && fs::read_link(dest)? == target {
                    return Ok(false);
                }
            }
            clear(&existing)?;
            std::os::unix::fs::symlink(&target, dest)?;
            Ok(true)
        }
        tar::EntryType::Link => {
            // A hard link to an entry already applied: copied, so that no
            // link can tie a host file to one outside the mount.
            let Some(target) = entry.link_name_bytes().map(|t| t.into_owned()) else {
                return Ok(false);
            };
            let layout = if target.starts_with(b"/") {
                Layout::Rooted
            } else {
                Layout::Prefixed
            };
            let Some(target_rel) = entry_rel(&target, layout).map_err(io::Error::other)? else {
                return Ok(false);
            };
            let source_mount = root.mount_for(&target_rel);
            if source_mount.read_only {
                return Ok(false);
            }
            let source = dest_in(source_mount, &target_rel).map_err(io::Error::other)?;
            let meta = fs::symlink_metadata(&source)?;
            if !meta.is_file() {
                return Ok(false);
            }
            if existing.as_ref().is_some_and(|m| !m.is_file()) {
                clear(&existing)?;
            }
            fs::copy(&source, dest)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Deletes what lies under `host` (the mount at `rel`) and was not in the
/// archive, leaving nested mounts alone. Never follows a symlink.
fn delete_unseen(
    root: &Root,
    host: &Path,
    rel: &[String],
    seen: &HashSet<Vec<String>>,
    moved: &mut Moved,
) -> io::Result<()> {
    for child in fs::read_dir(host)? {
        let child = child?;
        let Some(name) = child.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let mut child_rel = rel.to_vec();
        child_rel.push(name);
        if root.is_nested_target(&child_rel) {
            continue;
        }
        let path = child.path();
        let meta = fs::symlink_metadata(&path)?;
        if !seen.contains(&child_rel) {
            if root.holds_nested(&child_rel) {
                continue;
            }
            if meta.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
            moved.deleted += 1;
        } else if meta.is_dir() {
            delete_unseen(root, &path, &child_rel, seen, moved)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

/// Bound on one tree's upload or download.
const TRANSFER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// Chunks of a download that may wait for the applying thread.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Uploads every root of `plan` into the (created, not started) container.
pub(crate) async fn upload(
    docker: &bollard::Docker,
    id: &str,
    plan: &TransferPlan,
) -> Result<Moved, CageError> {
    use futures_util::StreamExt;
    let mut total = Moved::default();
    for root in &plan.roots {
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<io::Result<Vec<u8>>>(super::import::CHUNKS_IN_FLIGHT);
        let producer = {
            let root = root.clone();
            let owner = plan.owner;
            tokio::task::spawn_blocking(move || {
                let mut out = super::import::ChunkWriter::new(tx.clone());
                let result = write_tree(&mut out, &root, owner);
                if let Err(error) = &result {
                    // Abort the upload: a truncated tree must not start.
                    let _ = tx.blocking_send(Err(io::Error::new(error.kind(), error.to_string())));
                }
                result
            })
        };
        let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
            .map(|chunk| chunk.map(Into::into));
        let options = bollard::query_parameters::UploadToContainerOptionsBuilder::default()
            .path(&root.target)
            .build();
        let sent = tokio::time::timeout(
            TRANSFER_TIMEOUT,
            docker.upload_to_container(id, Some(options), bollard::body_try_stream(body)),
        )
        .await;
        let produced = producer.await.map_err(|e| CageError::Io {
            path: root.mounts[0].host.clone(),
            source: io::Error::other(e.to_string()),
        })?;
        match sent {
            Err(_) => {
                return Err(CageError::EngineTimeout {
                    op: "upload to container",
                    after: TRANSFER_TIMEOUT,
                })
            }
            Ok(Err(source)) => {
                return Err(match produced {
                    Err(error) => CageError::Io {
                        path: root.mounts[0].host.clone(),
                        source: error,
                    },
                    Ok(_) => CageError::Engine {
                        op: "upload to container",
                        source,
                    },
                })
            }
            Ok(Ok(())) => {}
        }
        let produced = produced.map_err(|source| CageError::Io {
            path: root.mounts[0].host.clone(),
            source,
        })?;
        total.entries += produced.entries;
        total.bytes += produced.bytes;
    }
    Ok(total)
}

/// Downloads every writable root of `plan` from the (exited) container and
/// applies it to the host.
pub(crate) async fn take_back(
    docker: &bollard::Docker,
    id: &str,
    plan: &TransferPlan,
) -> Result<Moved, CageError> {
    use futures_util::StreamExt;
    let mut total = Moved::default();
    for root in plan.roots.iter().filter(|r| r.writable()) {
        let (tx, rx) =
            tokio::sync::mpsc::channel::<io::Result<bytes_chunk::Chunk>>(CHUNKS_IN_FLIGHT);
        let applier = {
            let root = root.clone();
            tokio::task::spawn_blocking(move || {
                apply_tree(bytes_chunk::ChannelReader::new(rx), &root)
            })
        };
        let options = bollard::query_parameters::DownloadFromContainerOptionsBuilder::default()
            .path(&root.target)
            .build();
        let pump = async {
            let mut stream = docker.download_from_container(id, Some(options));
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|source| CageError::Engine {
                    op: "download from container",
                    source,
                })?;
                if tx.send(Ok(chunk)).await.is_err() {
                    // The applier stopped (it failed): its error says why.
                    break;
                }
            }
            Ok::<_, CageError>(())
        };
        let pumped = tokio::time::timeout(TRANSFER_TIMEOUT, pump).await;
        let pumped = match pumped {
            Err(_) => Err(CageError::EngineTimeout {
                op: "download from container",
                after: TRANSFER_TIMEOUT,
            }),
            Ok(result) => result,
        };
        if let Err(error) = &pumped {
            // The applier must not take a truncated tree for a whole one
            // (and delete what it did not see).
            let _ = tx
                .send(Err(io::Error::other(format!("download broke: {error}"))))
                .await;
        }
        drop(tx);
        let applied = applier.await.map_err(|e| CageError::Transfer {
            container_path: root.target.clone(),
            reason: e.to_string(),
        })?;
        pumped?;
        let applied = applied?;
        total.entries += applied.entries;
        total.bytes += applied.bytes;
        total.changed += applied.changed;
        total.deleted += applied.deleted;
    }
    Ok(total)
}

/// A blocking `Read` over the chunks of an async download.
mod bytes_chunk {
    use std::io::{self, Read};

    pub(crate) type Chunk = bytes::Bytes;

    pub(crate) struct ChannelReader {
        rx: tokio::sync::mpsc::Receiver<io::Result<Chunk>>,
        current: Chunk,
    }

    impl ChannelReader {
        pub(crate) fn new(rx: tokio::sync::mpsc::Receiver<io::Result<Chunk>>) -> ChannelReader {
            ChannelReader {
                rx,
                current: Chunk::new(),
            }
        }
    }

    impl Read for ChannelReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            while self.current.is_empty() {
                match self.rx.blocking_recv() {
                    Some(Ok(chunk)) => self.current = chunk,
                    Some(Err(error)) => return Err(error),
                    None => return Ok(0),
                }
            }
            let n = buf.len().min(self.current.len());
            buf[..n].copy_from_slice(&self.current.split_to(n));
            Ok(n)
        }
    }
}
