"""`--json` of list, verify, keys show, upload and fleet compare: one JSON object
on stdout, messages on stderr, the same exit code as without --json."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cli_support import run_cli
from tests.paths import REPO


def bench_agent(*args: str, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=300, cwd=REPO, env=env)


def one_document(stdout: str) -> Any:
    assert stdout.endswith("}\n")
    return json.loads(stdout)  # json.loads refuses anything after the document


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("signed")
    key = folder / "node [1].key"
    assert bench_agent("keys", "init", "--key", str(key)).returncode == 0
    pem = folder / "node.pub"
    pem.write_text(bench_agent("keys", "show", "--key", str(key)).stdout.split("keyid:")[0])
    done = bench_agent("run", "inventory", "--profile", str(REPO / "tests/data/profiles/"
                       "tiny-node.yaml"), "--output", str(folder / "out"), "--key", str(key))
    assert done.returncode == 0, done.stderr
    (report,) = (folder / "out").glob("*/*.json")
    return {"key": key, "pem": pem, "report": report, "spool": folder / "out"}


def test_keys_show_json(signed: dict[str, Path]) -> None:
    done = bench_agent("keys", "show", "--key", str(signed["key"]), "--json")
    assert done.returncode == 0
    doc = one_document(done.stdout)
    assert set(doc) == {"path", "keyid", "public_key_pem"}
    assert doc["path"] == str(signed["key"])
    assert doc["public_key_pem"] == signed["pem"].read_text()
    plain = bench_agent("keys", "show", "--key", str(signed["key"])).stdout
    assert plain.endswith(f"keyid: {doc['keyid']}\n")


def test_verify_json_valid_and_tampered(signed: dict[str, Path], tmp_path: Path) -> None:
    done = bench_agent("verify", str(signed["report"]), "--pubkey", str(signed["pem"]), "--json")
    assert done.returncode == 0, done.stderr
    doc = one_document(done.stdout)
    assert doc["verified"] is True and doc["error"] == ""
    assert doc["file"] == str(signed["report"])
    assert len(doc["subjects"]) == 1 and len(doc["subjects"][0]["sha256"]) == 64
    envelope = json.loads(signed["report"].read_text())
    envelope["payload"] = envelope["payload"][:-8] + "AAAAAAA="
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(envelope))
    done = bench_agent("verify", str(tampered), "--pubkey", str(signed["pem"]), "--json")
    assert done.returncode == 1  # as without --json
    doc = one_document(done.stdout)
    assert doc["verified"] is False and doc["subjects"] == []
    assert doc["error"].startswith("NOT VERIFIED") or doc["error"].startswith("not a signed")
    assert "NOT VERIFIED" in done.stderr or "not a signed report" in done.stderr


# e2e: the real CLI retries a refused connection with its real backoff (6 attempts,
# up to ~8 s of jittered sleeps, report/upload.py Backoff); the backoff itself is
# tested with a recorded sleep in tests/report/test_upload.py.
@pytest.mark.e2e
def test_upload_json_to_a_collector_that_is_not_there(signed: dict[str, Path]) -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused.
    done = bench_agent("upload", "--collector", "http://127.0.0.1:9", "--output",
                       str(signed["spool"]), "--json")
    assert done.returncode == 2, done.stderr
    doc = one_document(done.stdout)
    assert doc["exit_code"] == 2
    assert doc["delivered"] == [] and doc["rejected"] == []
    assert doc["waiting"] == [str(signed["report"])]
    assert doc["summary"].startswith("0 delivered, 0 rejected, 1 waiting")
    assert "upload: " in done.stderr  # the people's lines stay on stderr


def test_list_json_is_one_document() -> None:
    done = bench_agent("list", "--json")
    assert done.returncode == 0
    doc = one_document(done.stdout)
    assert {"checks", "suites", "profiles"} <= set(doc)


def test_fleet_compare_json(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    from tests.fleet_factory import write_fleet

    nodes = write_fleet(tmp_path, 40, slow={7: "memory.stream_triad"}, seed=5)
    done = bench_agent("fleet", "compare", str(tmp_path), "--json")
    assert done.returncode == 1, done.stderr  # an outlier: exit 1, as the table's
    doc = one_document(done.stdout)
    assert doc["nodes"] == sorted(nodes)
    assert [(o["node"], o["metric"]) for o in doc["outliers"]] == [
        (nodes[7], "memory.stream_triad")]
    triad = next(m for m in doc["metrics"] if m["metric"] == "memory.stream_triad")
    assert (triad["unit"], triad["n"], triad["better"]) == ("bytes/s", 40, "higher")
    assert triad["values"][nodes[7]] == doc["outliers"][0]["value"]
    assert doc["outliers"][0]["value"] < 0.7 * triad["median"]
