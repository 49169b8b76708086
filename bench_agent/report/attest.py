"""Signed reports: Ed25519 node keys, in-toto Statement v1 inside a DSSE envelope.

A report leaves the node as

    DSSE envelope  {"payloadType": "application/vnd.in-toto+json",
                    "payload": base64(statement), "signatures": [{"keyid", "sig"}]}
    in-toto Statement v1 {"_type": "https://in-toto.io/Statement/v1",
                    "subject": [{"name": <host>, "digest": {"sha256": <inventory digest>}}],
                    "predicateType": PREDICATE_TYPE, "predicate": <the report>}

The signature is over PAE(payloadType, payload) as the DSSE protocol defines it
(github.com/secure-systems-lab/dsse, protocol.md), on the payload *bytes*: the
verifier never re-serializes the JSON it checks. Key ids are computed the way
securesystemslib computes them (sha256 of the canonical JSON of keytype, scheme
and the hex public key; securesystemslib/signer/_utils.py compute_default_keyid),
so DSSE tools that speak securesystemslib find our keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_agent.core.errors import ConfigError, ReportError, SignatureError, StrictJSONError
from bench_agent.core.model import Report

# The one strict JSON reader (core/strict_json.py), re-exported: the collector
# reads envelopes through report.attest.
from bench_agent.core.strict_json import loads_strict as loads_strict

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
# The predicate type of bench-agent reports (the predicate is the report JSON of
# results/schema/report-v1.schema.json). Documented in the README.
PREDICATE_TYPE = "https://bench-agent.dev/predicate/benchmark-report/v1"

SYSTEM_KEY_PATH = Path("/etc/bench-agent/node.key")


def default_key_path() -> Path:
    """Where the node key lives unless --key says otherwise.

    $BENCH_AGENT_KEY if set; else /etc/bench-agent/node.key for root (a host key,
    like /etc/ssh/ssh_host_ed25519_key); else ~/.config/bench-agent/node.key.
    """
    env = os.environ.get("BENCH_AGENT_KEY")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return SYSTEM_KEY_PATH
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "bench-agent" / "node.key"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding, on bytes (lengths are byte counts)."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def canonical_json(data: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: stable bytes to hash."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def keyid_for_public_bytes(raw_public: bytes) -> str:
    """securesystemslib's default keyid of an ed25519 key."""
    key_dict = {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": raw_public.hex()}}
    return hashlib.sha256(canonical_json(key_dict)).hexdigest()


@dataclass(frozen=True)
class PublicKey:
    raw: bytes  # 32 bytes

    @property
    def keyid(self) -> str:
        return keyid_for_public_bytes(self.raw)

    def pem(self) -> str:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        key = Ed25519PublicKey.from_public_bytes(self.raw)
        return key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    @classmethod
    def from_pem(cls, text: str | bytes, origin: str = "public key") -> PublicKey:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        data = text.encode() if isinstance(text, str) else text
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise SignatureError(f"{origin}: not a PEM public key ({exc})") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise SignatureError(f"{origin}: not an Ed25519 key ({type(key).__name__})")
        return cls(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def verify(self, signature: bytes, message: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class NodeKey:
    """The node's private key, loaded from its PEM (PKCS#8) file."""

    private_pem: bytes

    def _key(self) -> Any:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = serialization.load_pem_private_key(self.private_pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"the node key is not Ed25519 ({type(key).__name__})")
        return key

    @property
    def public(self) -> PublicKey:
        from cryptography.hazmat.primitives import serialization

        raw = self._key().public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return PublicKey(raw)

    def sign(self, message: bytes) -> bytes:
        signature: bytes = self._key().sign(message)
        return signature

    @classmethod
    def generate(cls) -> NodeKey:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(pem)


def init_key(path: Path, force: bool = False) -> NodeKey:
    """Create a key file, mode 0600, atomically; refuse to replace one without force."""
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; use --force to replace it "
                          "(the collector knows the node by this key)")
    key = NodeKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    # Left by a run killed between open() and replace(): without this, O_EXCL
    # would refuse every later attempt and every report would go unsigned.
    tmp.unlink(missing_ok=True)
    # O_EXCL and mode 0600 at creation: the key is never readable by others, not
    # even between open() and chmod().
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.private_pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return key


def _warn(message: str) -> None:
    print(f"bench-agent: warning: {message}", file=sys.stderr)


def load_key(path: Path, warn: Callable[[str], None] = _warn) -> NodeKey:
    """The node key at ``path``; refused when others may write it, ``warn`` when they
    may read it.

    After ssh, whose sshkey_perm_ok (OpenSSH authfile.c) refuses a private key
    that group or others may access: a key another user can replace is not this
    node's identity any more, so it is refused; one that others can read lets them
    sign as this node, which is worth a warning, not a lost run.
    """
    try:
        # The mode is read from the open file, not the path: the file checked is
        # the file read.
        with path.open("rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            if mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise ConfigError(f"the node key {path} is writable by others (mode "
                                  f"{mode:04o}): another user could replace this node's "
                                  f"identity; check it, then chmod 600 {path}")
            pem = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"no node key at {path}; create one with `bench-agent keys init`"
                          ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the node key {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warn(f"the node key {path} is readable by others (mode {mode:04o}): anyone who reads"
             f" it can sign reports as this node; chmod 600 {path}")
    from cryptography.exceptions import UnsupportedAlgorithm

    key = NodeKey(pem)
    try:
        key.public  # noqa: B018 - parse now, fail here rather than at signing time
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{path} is not a PEM private key: {exc}") from exc
    except TypeError as exc:  # cryptography: "Password was not given but private key is encrypted"
        raise ConfigError(f"{path} is an encrypted key; the node key must be unencrypted "
                          f"({exc})") from exc
    return key


def load_or_create_key(path: Path) -> tuple[NodeKey, bool]:
    """The node key, created on first use like an SSH host key. (key, created)."""
    if path.exists():
        return load_key(path), False
    return init_key(path), True


# --- statements and envelopes ---------------------------------------------------------


def inventory_digest(inventory: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(inventory)).hexdigest()


def make_statement(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": report["host"],
             "digest": {"sha256": inventory_digest(report.get("inventory", {}))}}
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": report,
    }


def sign_payload(payload: bytes, key: NodeKey, payload_type: str = PAYLOAD_TYPE) -> dict[str, Any]:
    signature = key.sign(pae(payload_type, payload))
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key.public.keyid,
                        "sig": base64.b64encode(signature).decode()}],
    }


def sign_report(report: dict[str, Any], key: NodeKey) -> dict[str, Any]:
    """The DSSE envelope of the report's in-toto statement."""
    from bench_agent.core.model import dumps_finite

    # No NaN: what is signed here must be what every strict reader accepts.
    payload = dumps_finite(make_statement(report), indent=None, sort_keys=True).encode()
    return sign_payload(payload, key)


def is_envelope(data: Any) -> bool:
    return isinstance(data, dict) and "payloadType" in data and "signatures" in data


def decode_base64(value: Any, what: str) -> bytes:
    """The bytes of a base64 field (RFC 4648 section 4, the alphabet DSSE uses);
    SignatureError naming ``what`` when it is no string or not strictly base64
    (validate=True: a character outside the alphabet is refused, not skipped)."""
    if not isinstance(value, str):
        raise SignatureError(f"malformed envelope: {what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"malformed envelope: {what} is not valid base64") from exc


def envelope_statement(envelope: Any) -> dict[str, Any]:
    """The statement a DSSE envelope carries, decoded as strictly as verify decodes it.

    The signature is *not* checked (that needs the node's key: verify_envelope);
    for readers of envelopes already verified (the collector's stored ones) or
    shown unverified (report show, fleet). SignatureError when there is none.
    """
    if not is_envelope(envelope):
        raise SignatureError("not a DSSE envelope (no payloadType or signatures)")
    try:
        statement = loads_strict(decode_base64(envelope.get("payload"), "payload"))
    except StrictJSONError as exc:
        raise SignatureError(f"the payload is not JSON: {exc}") from exc
    if not isinstance(statement, dict):
        raise SignatureError("the payload is not an in-toto Statement (not a JSON object)")
    return statement


def envelope_report(envelope: Any) -> dict[str, Any]:
    """The report (the statement's predicate) of a DSSE envelope; signature not
    checked (envelope_statement). SignatureError when it holds no report."""
    predicate = envelope_statement(envelope).get("predicate")
    if not isinstance(predicate, dict):
        raise SignatureError("the envelope holds no report")
    return predicate


def verify_envelope(envelope: Any, pubkey: PublicKey) -> dict[str, Any]:
    """Check the envelope against the key; return the statement, or raise SignatureError."""
    if not is_envelope(envelope):
        raise SignatureError("not a DSSE envelope (no payloadType or signatures)")
    payload_type = envelope["payloadType"]
    if payload_type != PAYLOAD_TYPE:
        raise SignatureError(
            f"payload type is {payload_type!r}, expected {PAYLOAD_TYPE!r} (the envelope was "
            "changed, or is not a bench-agent report)"
        )
    payload = decode_base64(envelope.get("payload"), "payload")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or not signatures:
        raise SignatureError("the envelope carries no signature")
    message = pae(payload_type, payload)
    keyids = []
    for entry in signatures:
        if not isinstance(entry, dict):
            raise SignatureError("malformed envelope: a signature is not an object")
        keyids.append(str(entry.get("keyid", "")))
        if pubkey.verify(decode_base64(entry.get("sig"), "signature"), message):
            break
    else:
        if pubkey.keyid not in keyids:
            raise SignatureError(
                f"signed by key {', '.join(k[:16] or '?' for k in keyids)}, not by the given"
                f" key {pubkey.keyid[:16]}"
            )
        raise SignatureError(
            "signature does not verify: the payload or the signature was changed after signing"
        )
    return _check_statement(payload)


def _check_statement(payload: bytes) -> dict[str, Any]:
    """A verified payload must still be our statement, bound to its inventory."""
    try:
        statement = loads_strict(payload)
    except StrictJSONError as exc:
        raise SignatureError(f"signed payload is not JSON: {exc}") from exc
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise SignatureError("signed payload is not an in-toto Statement v1")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise SignatureError(f"predicateType {statement.get('predicateType')!r:.200} is not "
                             f"{PREDICATE_TYPE!r}")
    predicate = statement.get("predicate")
    subjects = statement.get("subject")
    if not isinstance(predicate, dict) or not isinstance(subjects, list) or not subjects:
        raise SignatureError("statement lacks its subject or predicate")
    # Every subject is read by whoever prints or stores it (verify prints them all).
    for subject in subjects:
        digest = subject.get("digest") if isinstance(subject, dict) else None
        if not isinstance(subject, dict) or not isinstance(subject.get("name"), str) \
                or not isinstance(digest, dict) or not isinstance(digest.get("sha256"), str):
            raise SignatureError('a subject is not {"name": TEXT, "digest": {"sha256": HEX}}')
    if subjects[0]["digest"]["sha256"] != inventory_digest(predicate.get("inventory", {})):
        raise SignatureError("subject digest does not match the report's inventory")
    return statement


def read_report_file(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(report dict, envelope or None) from a signed or an unsigned report file.

    The envelope's signature is *not* checked here (that needs the node's public
    key: `bench-agent verify`); the payload is only decoded, as strictly as the
    collector decodes it (loads_strict).
    """
    try:
        data = loads_strict(path.read_bytes())
    except FileNotFoundError as exc:
        raise ReportError(f"{path}: no such file") from exc
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except StrictJSONError as exc:
        raise ReportError(f"{path}: not a readable JSON report: {exc}") from exc
    if is_envelope(data):
        try:
            return envelope_report(data), data
        except SignatureError as exc:
            raise ReportError(f"{path}: the envelope's payload cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not a JSON object")
    return data, None


def load_report(path: Path) -> Report:
    """Read a report file, signed (a DSSE envelope) or unsigned.

    The signature of a signed report is not checked here: that needs the node's
    public key (`bench-agent verify FILE --pubkey PEM`).
    """
    data, _envelope = read_report_file(path)
    try:
        return Report.from_dict(data)
    except ReportError as exc:
        raise ReportError(f"{path}: {exc}") from exc
