//! Where a container's output goes: a log file written live and capped, and
//! a bounded head and tail kept in memory for the outcome.
//!
//! An agent may print hundreds of megabytes, so nothing here ever holds more
//! than the head, the tail and one chunk in memory.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::CageError;

/// Bytes of the start of the output kept for the outcome.
pub(crate) const HEAD_BYTES: usize = 8 * 1024;
/// Bytes of the end of the output kept for the outcome.
pub(crate) const TAIL_BYTES: usize = 8 * 1024;

/// The bounded in-memory view of an output stream: the first
/// [`HEAD_BYTES`], then the last [`TAIL_BYTES`] of what came after them
/// (the two never overlap, so short outputs are reproduced exactly).
#[derive(Debug, Default)]
pub(crate) struct HeadTail {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl HeadTail {
    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.head.len() < HEAD_BYTES {
            let take = bytes.len().min(HEAD_BYTES - self.head.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if bytes.len() >= TAIL_BYTES {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - TAIL_BYTES..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(TAIL_BYTES);
        self.tail.drain(..overflow);
        self.tail.extend(bytes);
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Head and tail as lossy UTF-8. The tail is cut at arbitrary bytes, so
    /// leading UTF-8 continuation bytes are dropped rather than rendered
    /// as replacement characters.
    pub(crate) fn texts(&self) -> (String, String) {
        let head = String::from_utf8_lossy(&self.head).into_owned();
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let skip = tail
            .iter()
            .take(3)
            .take_while(|b| (**b & 0xC0) == 0x80)
            .count();
        (head, String::from_utf8_lossy(&tail[skip..]).into_owned())
    }
}

/// The log file of one invocation, written as output arrives.
#[derive(Debug)]
pub(crate) struct LogSink {
    file: tokio::fs::File,
    path: PathBuf,
    cap: u64,
    written: u64,
    summary: HeadTail,
}

impl LogSink {
    /// Creates (truncates) the log, and its parent directories.
    pub(crate) async fn create(path: &Path, cap: u64) -> Result<Self, CageError> {
        let io_err = |source| CageError::Io {
            path: path.to_path_buf(),
            source,
        };
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.exists() {
            tokio::fs::create_dir_all(parent).await.map_err(io_err)?;
        }
        let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            io_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a log needs a file name",
            ))
        })?;
        // Never through a link planted at the log's path (issue 12, item
        // 8): the engine reports one it finds before the container runs;
        // one planted since is replaced here.
        let (file, replaced) = crate::state::create_in(parent, name).map_err(io_err)?;
        if let Some(was) = replaced {
            tracing::warn!(log = %path.display(), %was, "replaced a planted entry at a log path");
        }
        let file = tokio::fs::File::from_std(file);
        Ok(LogSink {
            file,
            path: path.to_path_buf(),
            cap,
            written: 0,
            summary: HeadTail::default(),
        })
    }

    pub(crate) async fn push(&mut self, bytes: &[u8]) -> Result<(), CageError> {
        self.summary.push(bytes);
        let room = self.cap.saturating_sub(self.written);
        let take = usize::try_from(room).unwrap_or(usize::MAX).min(bytes.len());
        if take > 0 {
            self.file
                .write_all(&bytes[..take])
                .await
                .map_err(|source| CageError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            self.written += take as u64;
        }
        Ok(())
    }

    /// Appends `note` on its own line (not counted as output, not capped).
    pub(crate) async fn note(&mut self, note: &str) -> Result<(), CageError> {
        let line = format!("\n[proctor] {note}\n");
        self.file
            .write_all(line.as_bytes())
            .await
            .map_err(|source| CageError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Notes what the cap cut, flushes, and returns the in-memory summary.
    pub(crate) async fn finish(mut self) -> Result<HeadTail, CageError> {
        let cut = self.summary.total().saturating_sub(self.written);
        if cut > 0 {
            let note = format!(
                "output cut: {cut} of {} bytes not written (log cap {} bytes)",
                self.summary.total(),
                self.cap
            );
            self.note(&note).await?;
        }
        // tokio writes complete in the background; flush waits for them.
        self.file.flush().await.map_err(|source| CageError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_output_is_all_head() {
        let mut ht = HeadTail::default();
        ht.push(b"hello ");
        ht.push(b"world");
        let (head, tail) = ht.texts();
        assert_eq!(head, "hello world");
        assert_eq!(tail, "");
        assert_eq!(ht.total(), 11);
    }

    #[test]
    fn head_and_tail_do_not_overlap_and_stay_bounded() {
        let mut ht = HeadTail::default();
        let data: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        for chunk in data.chunks(777) {
            ht.push(chunk);
        }
        let (head, tail) = ht.texts();
        assert_eq!(head.as_bytes(), &data[..HEAD_BYTES]);
        assert_eq!(tail.as_bytes(), &data[data.len() - TAIL_BYTES..]);
        assert_eq!(ht.total(), 100_000);
    }

    #[test]
    fn medium_output_is_reproduced_exactly() {
        let mut ht = HeadTail::default();
        let data = vec![b'x'; HEAD_BYTES + 100];
        ht.push(&data);
        let (head, tail) = ht.texts();
        assert_eq!(head.len() + tail.len(), data.len());
    }

    #[test]
    fn tail_does_not_start_with_a_broken_character() {
        let mut ht = HeadTail::default();
        ht.push(&vec![b'a'; HEAD_BYTES]);
        let mut rest = vec![b'b'; TAIL_BYTES];
        rest.extend("é".repeat(TAIL_BYTES / 2 + 1).as_bytes());
        rest.push(b'c');
        ht.push(&rest);
        let (_, tail) = ht.texts();
        // The 8 KiB window starts on the second byte of an `é`.
        assert!(!tail.contains('\u{FFFD}'));
    }

    #[tokio::test]
    async fn log_is_capped_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/run.log");
        let mut sink = LogSink::create(&path, 10).await.unwrap();
        sink.push(b"0123456789abcdef").await.unwrap();
        let summary = sink.finish().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("0123456789\n[proctor] output cut: 6 of 16 bytes"));
        assert_eq!(summary.total(), 16);
    }
}
