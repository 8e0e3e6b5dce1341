//! DSSE envelopes (github.com/secure-systems-lab/dsse, v1): the payload,
//! its type and signatures over the pre-authentication encoding (PAE), so
//! a signature covers the type as well as the bytes.

use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::key::{key_id, AttestKey};

/// The payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Base64 (standard) of the payload bytes.
    pub payload: String,
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    /// Base64 (standard) of the signature bytes.
    pub sig: String,
}

/// `DSSEv1 <len(type)> <type> <len(body)> <body>`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Signs `payload` into an envelope with the host's attestation key.
pub fn seal(key: &AttestKey, payload_type: &str, payload: &[u8]) -> Envelope {
    let b64 = base64::engine::general_purpose::STANDARD;
    let sig = key.sign(&pae(payload_type, payload));
    Envelope {
        payload: b64.encode(payload),
        payload_type: payload_type.to_string(),
        signatures: vec![EnvelopeSignature {
            keyid: key_id(&key.public()),
            sig: b64.encode(sig.to_bytes()),
        }],
    }
}

/// Why an envelope did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the payload is not base64")]
    Payload,
    #[error("the envelope has no signature by key {keyid}")]
    NoSignature { keyid: String },
    #[error("the signature does not verify under key {keyid}")]
    BadSignature { keyid: String },
}

/// The payload bytes, if a signature in `envelope` verifies under `public`.
pub fn open(envelope: &Envelope, public: &VerifyingKey) -> Result<Vec<u8>, OpenError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64
        .decode(envelope.payload.as_bytes())
        .map_err(|_| OpenError::Payload)?;
    let keyid = key_id(public);
    if envelope.signatures.is_empty() {
        return Err(OpenError::NoSignature { keyid });
    }
    let message = pae(&envelope.payload_type, &payload);
    let verifies = envelope.signatures.iter().any(|s| {
        b64.decode(s.sig.as_bytes())
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .is_some_and(|sig| public.verify_strict(&message, &sig).is_ok())
    });
    if verifies {
        Ok(payload)
    } else {
        Err(OpenError::BadSignature { keyid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_specification_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn an_envelope_opens_only_unchanged_and_under_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = AttestKey::load_or_create(dir.path()).unwrap();
        let envelope = seal(&key, IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}");
        assert_eq!(open(&envelope, &key.public()).unwrap(), b"{\"a\":1}");

        let b64 = base64::engine::general_purpose::STANDARD;
        let mut changed = envelope.clone();
        changed.payload = b64.encode(b"{\"a\":2}");
        assert!(matches!(
            open(&changed, &key.public()),
            Err(OpenError::BadSignature { .. })
        ));
        let mut retyped = envelope.clone();
        retyped.payload_type = "text/plain".into();
        assert!(open(&retyped, &key.public()).is_err());

        let other_dir = tempfile::tempdir().unwrap();
        let other = AttestKey::load_or_create(other_dir.path()).unwrap();
        assert!(open(&envelope, &other.public()).is_err());
    }
}
