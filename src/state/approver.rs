//! Approver keys: who may seal a human gate.
//!
//! Each person who approves gates has an Ed25519 key pair in their own
//! `PROCTOR_KEY_DIR` (`approver.key`, 0600, created on first use, next to
//! the answer-auth key) and a public file `approver.pub` to hand to others.
//! An approver's id is a hash of the public key, so it names the key without
//! revealing anything. The host that runs a loop trusts its own approver key
//! and the public keys in its approvers directory (`PROCTOR_APPROVERS_DIR`,
//! default `~/.config/proctor/approvers`), which lives outside the repository
//! and outside every container: no agent can add itself.
//!
//! Signatures rather than HMACs because a gate that needs two people must be
//! verifiable by a host that holds neither person's secret; with a shared
//! MAC key the operator could approve in the other person's name.

use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::key::KeyError;

const SECRET_FILE: &str = "approver.key";
const PUBLIC_FILE: &str = "approver.pub";
const PUBLIC_TAG: &str = "proctor-approver-v1";

/// The directory of trusted approvers' public keys on this host.
pub fn approvers_dir() -> PathBuf {
    super::key::config_dir("PROCTOR_APPROVERS_DIR", "approvers")
}

/// The id of a public key: 16 hex digits of a domain-separated SHA-256.
pub fn approver_id(public: &VerifyingKey) -> String {
    let mut hasher = Sha256::new();
    hasher.update(PUBLIC_TAG.as_bytes());
    hasher.update(public.as_bytes());
    hex::encode(&hasher.finalize()[..8])
}

/// One person's signing key.
pub struct ApproverKey {
    signing: SigningKey,
    pub id: String,
    /// Where the public half is, to hand to other hosts.
    pub public_path: PathBuf,
}

impl ApproverKey {
    /// Loads the approver key in `dir`, creating it on first use.
    pub fn load_or_create(dir: &Path) -> Result<ApproverKey, KeyError> {
        let path = dir.join(SECRET_FILE);
        super::key::ensure_secret_file(dir, &path)?;
        let key = ApproverKey::load(&path)?;
        let public_path = dir.join(PUBLIC_FILE);
        let line = key.public_line();
        if fs::read_to_string(&public_path).ok().as_deref() != Some(line.as_str()) {
            fs::write(&public_path, &line).map_err(|source| KeyError::Io {
                path: public_path.clone(),
                source,
            })?;
        }
        Ok(ApproverKey { public_path, ..key })
    }

    /// Loads an existing key file; a missing file is an error.
    pub fn load(path: &Path) -> Result<ApproverKey, KeyError> {
        let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let seed: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| KeyError::Short {
                path: path.to_path_buf(),
            })?;
        let signing = SigningKey::from_bytes(&seed);
        let id = approver_id(&signing.verifying_key());
        Ok(ApproverKey {
            signing,
            id,
            public_path: path.with_file_name(PUBLIC_FILE),
        })
    }

    pub fn public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The line of an `approver.pub` file.
    pub fn public_line(&self) -> String {
        let who = std::env::var("USER").unwrap_or_else(|_| "approver".into());
        format!(
            "{PUBLIC_TAG} {} {who} id={}\n",
            hex::encode(self.public().as_bytes()),
            self.id
        )
    }

    pub fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.signing.sign(message).to_bytes())
    }
}

/// The approvers a host trusts: id → public key.
#[derive(Debug, Clone, Default)]
pub struct Trusted {
    keys: Vec<(String, VerifyingKey)>,
}

impl Trusted {
    /// This host's own approver (if its key exists) plus every public key in
    /// `dir` (`*.pub` files; lines of `proctor-approver-v1 <hex> [label]`,
    /// `#` comments). Unreadable or malformed entries are skipped.
    pub fn load(own: Option<&ApproverKey>, dir: &Path) -> Trusted {
        let mut trusted = Trusted::default();
        if let Some(own) = own {
            trusted.add(own.public());
        }
        let Ok(entries) = fs::read_dir(dir) else {
            return trusted;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pub"))
            .collect();
        files.sort();
        for file in files {
            if let Ok(text) = fs::read_to_string(&file) {
                for key in parse_public(&text) {
                    trusted.add(key);
                }
            }
        }
        trusted
    }

    pub fn add(&mut self, key: VerifyingKey) {
        let id = approver_id(&key);
        if !self.keys.iter().any(|(known, _)| *known == id) {
            self.keys.push((id, key));
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.keys.iter().any(|(known, _)| known == id)
    }

    /// Whether `sig_hex` is `approver`'s signature of `message` under a
    /// trusted key.
    pub fn verify(&self, approver: &str, message: &[u8], sig_hex: &str) -> bool {
        let Some((_, key)) = self.keys.iter().find(|(id, _)| id == approver) else {
            return false;
        };
        let Some(sig) = hex::decode(sig_hex)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
        else {
            return false;
        };
        key.verify_strict(message, &sig).is_ok()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Public keys in an `approver.pub`-style text.
pub fn parse_public(text: &str) -> Vec<VerifyingKey> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            line.split_whitespace().find_map(|word| {
                let bytes: [u8; 32] = hex::decode(word).ok()?.try_into().ok()?;
                VerifyingKey::from_bytes(&bytes).ok()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_signature_verifies_only_under_a_trusted_key() {
        let alice_dir = tempfile::tempdir().unwrap();
        let bob_dir = tempfile::tempdir().unwrap();
        let alice = ApproverKey::load_or_create(alice_dir.path()).unwrap();
        let bob = ApproverKey::load_or_create(bob_dir.path()).unwrap();
        assert_ne!(alice.id, bob.id);
        let mode = fs::metadata(alice_dir.path().join(SECRET_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);

        let approvers = tempfile::tempdir().unwrap();
        let only_alice = Trusted::load(Some(&alice), approvers.path());
        let sig = bob.sign(b"approve");
        assert!(!only_alice.verify(&bob.id, b"approve", &sig));

        fs::copy(&bob.public_path, approvers.path().join("bob.pub")).unwrap();
        let both = Trusted::load(Some(&alice), approvers.path());
        assert_eq!(both.len(), 2);
        assert!(both.verify(&bob.id, b"approve", &sig));
        assert!(!both.verify(&bob.id, b"approve!", &sig));
        assert!(!both.verify(&alice.id, b"approve", &sig));
        assert!(!both.verify(&bob.id, b"approve", "00"));
        // Reloading gives the same identity.
        let again = ApproverKey::load_or_create(bob_dir.path()).unwrap();
        assert_eq!(again.id, bob.id);
    }

    #[test]
    fn public_files_tolerate_comments_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let key = ApproverKey::load_or_create(dir.path()).unwrap();
        let text = format!("# team\n\nnot a key\n{}", key.public_line());
        assert_eq!(parse_public(&text).len(), 1);
        assert!(parse_public("zz 00").is_empty());
    }
}
