"""Verifies a DSSE envelope of an in-toto statement with securesystemslib
(an independent, maintained implementation from PyPI: its DSSE envelope,
PAE and Ed25519 verification, through pyca/cryptography where a recent one
is installed, else its own pure-Python Ed25519), never with proctor's code.

usage: python3 dsse_verify.py ENVELOPE.json PUBLIC_KEY.pem
Prints the statement's _type, predicateType and subject digest on success;
exit 1 when the envelope does not verify, 2 when the library is missing.
"""
import base64
import json
import sys

try:
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey
except ImportError as e:
    print(
        f"securesystemslib is missing ({e}): install it with "
        "`/usr/bin/pip3 install --break-system-packages securesystemslib` "
        "(bash .ci/run does)",
        file=sys.stderr,
    )
    sys.exit(2)

with open(sys.argv[1], "rb") as f:
    envelope = Envelope.from_dict(json.load(f))
# The PEM `PUBLIC KEY` block of an Ed25519 key: a fixed 12-byte
# SubjectPublicKeyInfo prefix (RFC 8410), then the 32 key bytes.
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
with open(sys.argv[2]) as f:
    body = "".join(l.strip() for l in f if l.strip() and not l.startswith("-----"))
der = base64.b64decode(body)
if not der.startswith(SPKI_PREFIX) or len(der) != 44:
    print("the key is not an Ed25519 PUBLIC KEY block", file=sys.stderr)
    sys.exit(1)
public_hex = der[len(SPKI_PREFIX):].hex()

keyids = list(envelope.signatures.keys())
if len(keyids) != 1:
    print(f"expected one signature, found {len(keyids)}", file=sys.stderr)
    sys.exit(1)
key = SSlibKey(keyids[0], "ed25519", "ed25519", {"public": public_hex})
try:
    envelope.verify([key], 1)
except Exception as e:  # VerificationError and friends
    print(f"does not verify: {e}", file=sys.stderr)
    sys.exit(1)
if envelope.payload_type != "application/vnd.in-toto+json":
    print(f"payload type {envelope.payload_type}", file=sys.stderr)
    sys.exit(1)
statement = json.loads(envelope.payload)
print(statement["_type"])
print(statement["predicateType"])
print(statement["subject"][0]["digest"]["gitCommit"])
