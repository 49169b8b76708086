"""Signed reports: keys, DSSE envelopes, in-toto statements, tampering, interop."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from bench_agent.core.errors import ConfigError, SignatureError
from bench_agent.report.attest import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    NodeKey,
    PublicKey,
    decode_base64,
    envelope_report,
    envelope_statement,
    init_key,
    inventory_digest,
    load_key,
    load_or_create_key,
    make_statement,
    pae,
    read_report_file,
    sign_payload,
    sign_report,
    verify_envelope,
)
from tests.paths import REPO

REPO = REPO


def sample_report() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "report_id": "6f1c2b8e-6a51-4a51-9d2e-1c5d3f7a9b10",
        "agent_version": "0.1.0",
        "host": "gpu-node-17",
        "status": "PASS",
        "interrupted": False,
        "started_at": "2026-11-27T10:00:00Z",
        "finished_at": "2026-11-27T10:01:00Z",
        "suite": {"name": "quick", "sha256": "a" * 64, "path": ""},
        "profile": {"name": "guide-minimum", "sha256": "b" * 64, "path": ""},
        "inventory": {"cpu": {"logical_cpus": 128}, "host": {"hostname": "gpu-node-17"}},
        "measurements": [],
        "verdicts": [],
    }


def test_pae_matches_the_dsse_specification_test_vector() -> None:
    # secure-systems-lab/dsse protocol.md, "Test Vectors".
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"


def test_sign_and_verify_round_trip() -> None:
    key = NodeKey.generate()
    envelope = sign_report(sample_report(), key)
    assert envelope["payloadType"] == PAYLOAD_TYPE
    assert envelope["signatures"][0]["keyid"] == key.public.keyid
    statement = verify_envelope(envelope, key.public)
    assert statement["_type"] == STATEMENT_TYPE
    assert statement["predicateType"] == PREDICATE_TYPE
    assert statement["predicate"] == sample_report()
    subject = statement["subject"][0]
    assert subject["name"] == "gpu-node-17"
    assert subject["digest"]["sha256"] == inventory_digest(sample_report()["inventory"])


def _tampered_payload(envelope: dict[str, Any]) -> dict[str, Any]:
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["status"] = "PASS"
    statement["predicate"]["measurements"] = [{"metric": "fake"}]
    changed = copy.deepcopy(envelope)
    changed["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return changed


def test_each_kind_of_tampering_is_refused_with_its_message() -> None:
    key = NodeKey.generate()
    envelope = sign_report(sample_report(), key)

    with pytest.raises(SignatureError, match="payload or the signature was changed"):
        verify_envelope(_tampered_payload(envelope), key.public)

    retyped = copy.deepcopy(envelope)
    retyped["payloadType"] = "application/json"
    with pytest.raises(SignatureError, match="payload type is 'application/json'"):
        verify_envelope(retyped, key.public)

    resigned = copy.deepcopy(envelope)
    sig = bytearray(base64.b64decode(resigned["signatures"][0]["sig"]))
    sig[0] ^= 0x01
    resigned["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(SignatureError, match="payload or the signature was changed"):
        verify_envelope(resigned, key.public)

    other = NodeKey.generate()
    with pytest.raises(SignatureError, match=f"not by the given key {other.public.keyid[:16]}"):
        verify_envelope(envelope, other.public)

    garbled = copy.deepcopy(envelope)
    garbled["signatures"][0]["sig"] = "***"
    with pytest.raises(SignatureError, match="signature is not valid base64"):
        verify_envelope(garbled, key.public)

    with pytest.raises(SignatureError, match="carries no signature"):
        verify_envelope({**envelope, "signatures": []}, key.public)


def test_decode_base64_is_strict_and_names_the_field() -> None:
    assert decode_base64(base64.b64encode(b"\x00\xffpayload").decode(), "payload") == (
        b"\x00\xffpayload")
    # b64decode without validate skips what is outside the alphabet: "QU*JD" would be b"AB\x03".
    for value, words in (("QU*JD", "payload is not valid base64"),
                         ("QUJ", "payload is not valid base64"),
                         (None, "payload is not a base64 string"),
                         (b"QUJD", "payload is not a base64 string")):
        with pytest.raises(SignatureError, match=f"malformed envelope: {words}"):
            decode_base64(value, "payload")


def test_one_function_unwraps_a_signed_report() -> None:
    """What verify, report show, fleet and the collector read out of an envelope."""
    key = NodeKey.generate()
    report = sample_report()
    envelope = sign_report(report, key)
    statement = envelope_statement(envelope)
    assert statement == verify_envelope(envelope, key.public)
    assert envelope_report(envelope) == report == statement["predicate"]


@pytest.mark.parametrize(("payload", "words"), [
    (b'{"predicate": {"a": NaN}}', "the payload is not JSON: NaN is not a JSON number"),
    (b'{"predicate": 1, "predicate": {}}', "the payload is not JSON: duplicate key"),
    (b"[1, 2]", "the payload is not an in-toto Statement (not a JSON object)"),
    (b'{"predicate": "text"}', "the envelope holds no report"),
])
def test_unwrapping_refuses_what_is_no_report(payload: bytes, words: str) -> None:
    envelope = sign_payload(payload, NodeKey.generate())
    with pytest.raises(SignatureError, match=re.escape(words)):
        envelope_report(envelope)


def test_unwrapping_what_is_no_envelope() -> None:
    for data in ({"payload": "e30="}, [], "text"):
        with pytest.raises(SignatureError, match="not a DSSE envelope"):
            envelope_statement(data)


def test_a_signed_statement_must_bind_its_inventory() -> None:
    key = NodeKey.generate()
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "n", "digest": {"sha256": "0" * 64}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": sample_report(),
    }
    envelope = sign_payload(json.dumps(statement).encode(), key)
    with pytest.raises(SignatureError, match="subject digest does not match"):
        verify_envelope(envelope, key.public)


def test_key_file_is_0600_and_not_overwritten_without_force(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "node.key"
    key = init_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path).public == key.public
    with pytest.raises(ConfigError, match="already exists; use --force"):
        init_key(path)
    assert load_key(path).public == key.public  # untouched by the refusal
    replaced = init_key(path, force=True)
    assert replaced.public != key.public
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_first_use_creates_the_key_then_reuses_it(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    first, created = load_or_create_key(path)
    again, created_again = load_or_create_key(path)
    assert (created, created_again) == (True, False)
    assert first.public == again.public


def test_a_corrupt_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_text("not a key\n")
    with pytest.raises(ConfigError, match="is not a PEM private key"):
        load_key(path)
    with pytest.raises(ConfigError, match="no node key at"):
        load_key(tmp_path / "absent.key")


def test_an_encrypted_key_file_is_a_clear_error(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = tmp_path / "node.key"
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(ConfigError, match="encrypted"):
        load_key(path)


def test_a_temporary_file_left_by_a_killed_run_does_not_block_key_creation(
        tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    (tmp_path / ".node.key.tmp").write_bytes(b"half a key")
    key, created = load_or_create_key(path)
    assert created and load_key(path).public == key.public
    assert not (tmp_path / ".node.key.tmp").exists()


def test_cli_keys_init_where_no_key_can_be_written_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = _cli("keys", "init", "--key", str(tmp_path / "a-file" / "node.key"))
    assert result.returncode == 4, result.stderr
    assert "cannot create the node key" in result.stderr
    assert "Traceback" not in result.stderr


def test_our_keyid_is_securesystemslibs() -> None:
    key = NodeKey.generate()
    theirs = SSlibKey.from_crypto(load_pem_public_key(key.public.pem().encode()))
    assert theirs.keyid == key.public.keyid
    assert theirs.keyval["public"] == key.public.raw.hex()


def test_envelopes_we_sign_verify_with_securesystemslib() -> None:
    key = NodeKey.generate()
    ours = sign_report(sample_report(), key)
    envelope = Envelope.from_dict(copy.deepcopy(ours))
    sslib_key = SSlibKey.from_crypto(load_pem_public_key(key.public.pem().encode()))
    accepted = envelope.verify([sslib_key], 1)
    assert list(accepted) == [key.public.keyid]
    tampered = Envelope.from_dict(_tampered_payload(ours))
    with pytest.raises(VerificationError, match="Found: 0, Expected 1"):
        tampered.verify([sslib_key], 1)


def test_envelopes_securesystemslib_signs_verify_with_ours() -> None:
    signer = CryptoSigner.generate_ed25519()
    from bench_agent.report.attest import make_statement

    payload = json.dumps(make_statement(sample_report())).encode()
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(signer)
    public = PublicKey(bytes.fromhex(signer.public_key.keyval["public"]))
    assert public.keyid == signer.public_key.keyid
    statement = verify_envelope(envelope.to_dict(), public)
    assert statement["predicate"]["host"] == "gpu-node-17"


def test_read_report_file_reads_signed_and_unsigned(tmp_path: Path) -> None:
    key = NodeKey.generate()
    signed = tmp_path / "signed.json"
    signed.write_text(json.dumps(sign_report(sample_report(), key)))
    unsigned = tmp_path / "unsigned.json"
    unsigned.write_text(json.dumps(sample_report()))
    report, envelope = read_report_file(signed)
    assert envelope is not None and report == sample_report()
    report, envelope = read_report_file(unsigned)
    assert envelope is None and report == sample_report()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench_agent.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO, env={**os.environ, **(env or {})})


@pytest.mark.e2e
def test_cli_keys_run_and_verify(tmp_path: Path) -> None:
    key_path = tmp_path / "node.key"
    init = _cli("keys", "init", "--key", str(key_path))
    assert init.returncode == 0, init.stderr
    assert "-----BEGIN PUBLIC KEY-----" in init.stdout
    keyid = init.stdout.strip().splitlines()[-1].removeprefix("keyid: ")
    assert keyid == load_key(key_path).public.keyid
    refused = _cli("keys", "init", "--key", str(key_path))
    assert refused.returncode == 4 and "already exists" in refused.stderr

    pem = tmp_path / "node.pub"
    shown = _cli("keys", "show", "--key", str(key_path))
    pem.write_text(shown.stdout.split("keyid:")[0])

    out = tmp_path / "out"
    run = _cli("run", "inventory", "--key", str(key_path), "--output", str(out))
    assert run.returncode in (0, 1), run.stderr
    report_file = next(out.glob("*/*.json"))
    ok = _cli("verify", str(report_file), "--pubkey", str(pem))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("verified: subject ")

    envelope = json.loads(report_file.read_text())
    report_file.write_text(json.dumps(_tampered_payload(envelope)))
    bad = _cli("verify", str(report_file), "--pubkey", str(pem))
    assert bad.returncode == 1
    assert "NOT VERIFIED" in bad.stderr and "was changed" in bad.stderr


@pytest.mark.e2e
def test_cli_first_run_creates_the_key_and_says_so(tmp_path: Path) -> None:
    key_path = tmp_path / "fresh" / "node.key"
    out = tmp_path / "out"
    run = _cli("run", "inventory", "--output", str(out), env={"BENCH_AGENT_KEY": str(key_path)})
    assert run.returncode in (0, 1), run.stderr
    assert f"created the node key {key_path}" in run.stderr
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    unsigned = _cli("run", "inventory", "--no-sign", "--output", str(tmp_path / "plain"),
                    env={"BENCH_AGENT_KEY": str(tmp_path / "never.key")})
    assert not (tmp_path / "never.key").exists()
    data = json.loads(next((tmp_path / "plain").glob("*/*.json")).read_text())
    assert data["schema_version"] == 1 and "payloadType" not in data
    assert "(unsigned)" in unsigned.stdout


# --- strict JSON, hostile signed payloads -----------------------------------------------

def _signed_statement(key: NodeKey, **changes: Any) -> dict[str, Any]:
    statement = {"_type": STATEMENT_TYPE, "predicateType": PREDICATE_TYPE,
                 "subject": [{"name": "gpu-node-17", "digest": {
                     "sha256": inventory_digest(sample_report()["inventory"])}}],
                 "predicate": sample_report(), **changes}
    return sign_payload(json.dumps(statement).encode(), key)


def hostile_envelopes(key: NodeKey) -> list[tuple[dict[str, Any], str]]:
    """Well-signed envelopes whose payloads once raised out of verify_envelope."""
    nan_params = sample_report()
    nan_params["measurements"] = [{"check": "c", "metric": "m", "value": 1, "unit": "s",
                                   "params": {"x": float("nan")}}]
    return [
        (sign_payload(b"[" * 100_000, key), "nested 100000 deep"),
        (sign_payload(b"1" * 5000, key), "a number of more than 64 digits"),
        (_signed_statement(key, subject=[{"name": "gpu-node-17", "digest": "abc"}]),
         'a subject is not {"name": TEXT, "digest": {"sha256": HEX}}'),
        (_signed_statement(key, subject=["gpu-node-17"]), "a subject is not"),
        (_signed_statement(key, subject=[{"name": "gpu-node-17", "digest": {
            "sha256": inventory_digest(sample_report()["inventory"])}}, 5]), "a subject is not"),
        # sign_report refuses NaN (model.dumps_finite): a node that signs it anyway.
        (sign_payload(json.dumps(make_statement(nan_params)).encode(), key),
         "NaN is not a JSON number"),
    ]


def test_hostile_signed_payloads_are_signature_errors_not_crashes() -> None:
    key = NodeKey.generate()
    for envelope, message in hostile_envelopes(key):
        with pytest.raises(SignatureError, match=re.escape(message)):
            verify_envelope(envelope, key.public)


@pytest.mark.e2e
def test_cli_verify_and_report_show_on_hostile_files_say_one_line(tmp_path: Path) -> None:
    key = NodeKey.generate()
    pem = tmp_path / "node.pub"
    pem.write_text(key.public.pem())
    # (file text, message, whether report show can read it: it reads the predicate
    # and checks neither the signature nor the statement's subject).
    files = [(json.dumps(envelope), message, "subject" in message)
             for envelope, message in hostile_envelopes(key)]
    files += [("[" * 100_000, "nested 100000 deep", False),
              ('{"payloadType": "x", "signatures": [], "payload": ' + "1" * 5000 + "}",
               "a number of more than 64 digits", False),
              (json.dumps({**sign_report(sample_report(), key), "extra": float("inf")}),
               "Infinity is not a JSON number", False)]
    for index, (text, message, readable) in enumerate(files):
        path = tmp_path / f"hostile-{index}.json"
        path.write_text(text)
        verify = _cli("verify", str(path), "--pubkey", str(pem))
        # verify: 1, the report is not what was signed (README, exit codes).
        assert (verify.returncode, verify.stdout) == (1, ""), (message, verify.stderr)
        assert verify.stderr.startswith(f"bench-agent: {path}: ")
        assert message in verify.stderr and verify.stderr.count("\n") == 1, verify.stderr
        assert "Traceback" not in verify.stderr
        if readable:
            continue
        show = _cli("report", "show", str(path))
        # report show: 5, the report cannot be read.
        assert (show.returncode, show.stdout) == (5, ""), (message, show.stderr)
        assert show.stderr.startswith(f"bench-agent: {path}: ") and message in show.stderr
        assert show.stderr.count("\n") == 1 and "Traceback" not in show.stderr


# --- key file modes ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602, 0o660])
def test_a_key_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    init_key(path)
    path.chmod(mode)
    with pytest.raises(ConfigError, match=re.escape(
            f"the node key {path} is writable by others (mode {mode:04o}): another user could "
            f"replace this node's identity; check it, then chmod 600 {path}")):
        load_key(path)
    with pytest.raises(ConfigError, match="writable by others"):
        load_or_create_key(path)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_others_may_read_is_used_with_a_warning(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    key = init_key(path)
    path.chmod(mode)
    warnings: list[str] = []
    assert load_key(path, warn=warnings.append).public == key.public
    assert warnings == [f"the node key {path} is readable by others (mode {mode:04o}): anyone "
                        f"who reads it can sign reports as this node; chmod 600 {path}"]
    path.chmod(0o600)
    warnings.clear()
    assert load_key(path, warn=warnings.append).public == key.public
    assert warnings == []


@pytest.mark.e2e
def test_cli_keys_show_warns_on_a_readable_key_and_refuses_a_writable_one(tmp_path: Path
                                                                         ) -> None:
    path = tmp_path / "node.key"
    key = init_key(path)
    path.chmod(0o644)
    shown = _cli("keys", "show", "--key", str(path))
    assert shown.returncode == 0 and f"keyid: {key.public.keyid}" in shown.stdout
    assert shown.stderr == (f"bench-agent: warning: the node key {path} is readable by others "
                            f"(mode 0644): anyone who reads it can sign reports as this node; "
                            f"chmod 600 {path}\n")
    path.chmod(0o666)
    refused = _cli("keys", "show", "--key", str(path))
    assert (refused.returncode, refused.stdout) == (4, "")
    assert "is writable by others (mode 0666)" in refused.stderr
    # A run signs nothing with it: the report is kept unsigned and the exit code says so.
    out = tmp_path / "out"
    run = _cli("run", "inventory", "--key", str(path), "--output", str(out))
    assert run.returncode == 5, run.stderr
    assert "cannot sign the report" in run.stderr and "writable by others" in run.stderr
    assert [p.name.endswith(".unsigned.json") for p in out.glob("*/*.json")] == [True]
