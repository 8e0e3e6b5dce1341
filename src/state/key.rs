//! The answer-auth key: a secret kept outside the repository and outside
//! every container, used to authenticate human answers in the ledger.
//!
//! The key lives in `PROCTOR_KEY_DIR` (default `$XDG_CONFIG_HOME/proctor/keys`
//! or `~/.config/proctor/keys`). It must never be mounted into a container.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const KEY_FILE: &str = "answer.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot use the answer-auth key at `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the answer-auth key at `{path}` is too short")]
    Short { path: PathBuf },
}

impl crate::exit_codes::DomainError for KeyError {
    fn is_users_to_fix(&self) -> bool {
        true
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            KeyError::Io { .. } => {
                "set `PROCTOR_KEY_DIR` to a private directory outside the repository".into()
            }
            KeyError::Short { .. } => "remove it to make a new one".into(),
        })
    }
}

/// The directory that holds the key.
pub fn key_dir() -> PathBuf {
    config_dir("PROCTOR_KEY_DIR", "keys")
}

/// `$<var>` when set, else `proctor/<leaf>` under `$XDG_CONFIG_HOME`
/// (or `~/.config`): host-side directories outside every repository.
pub(crate) fn config_dir(var: &str, leaf: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(var).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("/etc/proctor"));
    config.join("proctor").join(leaf)
}

/// An HMAC key for answers.
pub struct AnswerKey {
    secret: Vec<u8>,
    pub path: PathBuf,
}

impl AnswerKey {
    /// Loads the key, creating it (0600 in a 0700 directory) on first use.
    pub fn load_or_create(dir: &Path) -> Result<AnswerKey, KeyError> {
        let path = dir.join(KEY_FILE);
        ensure_secret_file(dir, &path)?;
        AnswerKey::load(&path)
    }

    /// Loads an existing key; a missing key is an error.
    pub fn load(path: &Path) -> Result<AnswerKey, KeyError> {
        let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let secret = hex::decode(text.trim()).unwrap_or_else(|_| text.trim().as_bytes().to_vec());
        if secret.len() < 16 {
            return Err(KeyError::Short {
                path: path.to_path_buf(),
            });
        }
        Ok(AnswerKey {
            secret,
            path: path.to_path_buf(),
        })
    }

    pub fn sign(&self, message: &[u8]) -> String {
        // HMAC accepts keys of any length, so this cannot fail; fall back to
        // an empty tag rather than panic, which then verifies nothing.
        match HmacSha256::new_from_slice(&self.secret) {
            Ok(mut mac) => {
                mac.update(message);
                hex::encode(mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        }
    }

    pub fn verify(&self, message: &[u8], tag_hex: &str) -> bool {
        let Ok(tag) = hex::decode(tag_hex) else {
            return false;
        };
        match HmacSha256::new_from_slice(&self.secret) {
            Ok(mut mac) => {
                mac.update(message);
                mac.verify_slice(&tag).is_ok()
            }
            Err(_) => false,
        }
    }
}

/// Makes `path` (in `dir`) hold 32 random bytes, hex, unless it exists:
/// the file 0600 in a 0700 directory. When two processes race, the first
/// file written wins and both use it.
pub(crate) fn ensure_secret_file(dir: &Path, path: &Path) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
    let mut secret = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .map_err(io)?;
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            std::io::Write::write_all(&mut file, hex::encode(secret).as_bytes()).map_err(io)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(e)),
    }
}

/// A fresh random id (hex), for answer nonces and run ids.
pub fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mixed = nanos ^ ((std::process::id() as u128) << 64);
        buf = mixed.to_le_bytes()[..bytes.min(16)].to_vec();
    }
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_verifies_only_its_message_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = AnswerKey::load_or_create(dir.path()).unwrap();
        let tag = key.sign(b"answer fix try again");
        assert!(key.verify(b"answer fix try again", &tag));
        assert!(!key.verify(b"answer fix try harder", &tag));
        assert!(!key.verify(b"answer fix try again", "00"));
        let other_dir = tempfile::tempdir().unwrap();
        let other = AnswerKey::load_or_create(other_dir.path()).unwrap();
        assert!(!other.verify(b"answer fix try again", &tag));
        let mode = fs::metadata(&key.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
