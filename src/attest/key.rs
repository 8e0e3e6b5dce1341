//! The attestation key: an Ed25519 key pair that signs `proctor attest`'s
//! envelopes, kept beside the answer-auth key (`PROCTOR_KEY_DIR`), outside
//! the repository and outside every container, so no agent can sign a
//! verdict. `proctor key export` prints its public half for verifiers.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::state::key::KeyError;

const SECRET_FILE: &str = "attest.key";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32 key
/// bytes follow. Fixed, so no ASN.1 library is needed.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The host's signing key for attestations.
pub struct AttestKey {
    signing: SigningKey,
    pub path: PathBuf,
}

impl AttestKey {
    /// Loads the key in `dir`, creating it (0600 in a 0700 directory) on
    /// first use.
    pub fn load_or_create(dir: &Path) -> Result<AttestKey, KeyError> {
        let path = dir.join(SECRET_FILE);
        crate::state::key::ensure_secret_file(dir, &path)?;
        let text = std::fs::read_to_string(&path).map_err(|source| KeyError::Io {
            path: path.clone(),
            source,
        })?;
        let seed: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| KeyError::Short { path: path.clone() })?;
        Ok(AttestKey {
            signing: SigningKey::from_bytes(&seed),
            path,
        })
    }

    pub fn public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }
}

/// The key id an envelope names: SHA-256 of the public key's
/// SubjectPublicKeyInfo DER, hex (the same whatever tool reads the key).
pub fn key_id(public: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(spki_der(public)))
}

fn spki_der(public: &VerifyingKey) -> Vec<u8> {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(public.as_bytes());
    der
}

/// The public key as a PEM `PUBLIC KEY` block (what OpenSSL, cosign and
/// securesystemslib read).
pub fn public_pem(public: &VerifyingKey) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki_der(public));
    format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
}

/// A public key from a PEM `PUBLIC KEY` block or 64 hex digits; `None`
/// when the text holds neither.
pub fn parse_public(text: &str) -> Option<VerifyingKey> {
    let trimmed = text.trim();
    if let Ok(bytes) = hex::decode(trimmed) {
        let raw: [u8; 32] = bytes.try_into().ok()?;
        return VerifyingKey::from_bytes(&raw).ok();
    }
    let body: String = trimmed
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN PUBLIC KEY-----")
        .skip(1)
        .take_while(|l| *l != "-----END PUBLIC KEY-----")
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    let raw: [u8; 32] = der.strip_prefix(&SPKI_PREFIX[..])?.try_into().ok()?;
    VerifyingKey::from_bytes(&raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_is_private_stable_and_its_pem_parses_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = AttestKey::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(&key.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = AttestKey::load_or_create(dir.path()).unwrap();
        assert_eq!(key.public(), again.public());
        let pem = public_pem(&key.public());
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"));
        assert_eq!(parse_public(&pem), Some(key.public()));
        assert_eq!(
            parse_public(&hex::encode(key.public().as_bytes())),
            Some(key.public())
        );
        assert_eq!(parse_public("not a key"), None);
        assert_eq!(key_id(&key.public()).len(), 64);
    }
}
