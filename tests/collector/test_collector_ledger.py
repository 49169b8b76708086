"""The acceptance ledger through a real collector (uvicorn on loopback): lifecycle moves
from signed reports and from operators, roles, the repair bundle, /docs offline."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from bench_agent.report.attest import NodeKey
from tests.cli_support import run_cli
from tests.collector_support import Collector, Reply, envelope_bytes, http, make_report
from tests.paths import REPO

READER, OPERATOR, ADMIN = ("reader-token-0123456789", "operator-token-0123456789",
                           "admin-token-0123456789ab")
TOKENS = f"""# role name token
read grafana {READER}
operate alice {OPERATOR}
admin root {ADMIN}
"""
SERIAL = "1652822012345"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def report(host: str, suite: str, hours_ago: float, status: str = "PASS",
           **extra: Any) -> dict[str, Any]:
    # The clock at the call, not at import: "ahead of the clock" must stay ahead
    # however long the suite ran before this test.
    now = datetime.now(UTC).replace(microsecond=0)
    data = make_report(host, when=now - timedelta(hours=hours_ago), status=status,
                       gemm=2e11 if status == "FAIL" else 1.2e12)
    data["suite"]["name"] = suite
    data["inventory"]["gpus"] = [{"index": 0, "name": "NVIDIA H100 80GB HBM3",
                                  "uuid": "GPU-8f1c", "serial": SERIAL}]
    data.update(extra)
    return data


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    tmp = tmp_path_factory.mktemp("ledger")
    (tmp / "tokens").write_text(TOKENS)
    collector = Collector(f"sqlite:///{tmp / 'collector.db'}", tmp / "server.log",
                          "--auto-enroll", "--tokens-file", str(tmp / "tokens"),
                          "--no-access-log")
    try:
        yield collector.start()
    finally:
        collector.stop()


def post(server: Collector, data: dict[str, Any], key: NodeKey) -> Reply:
    return server.post(envelope_bytes(data, key), {
        "X-Bench-Agent-Public-Key": base64.b64encode(key.public.raw).decode()})


def state_of(server: Collector, node: str) -> str:
    found: str = server.get(f"/v1/nodes/{node}").json()["state"]
    return found


def move(server: Collector, node: str, body: Any, token: str = OPERATOR) -> Reply:
    return http("POST", f"{server.url}/v1/states/{node}", json.dumps(body).encode(),
                bearer(token))


def test_reports_and_operators_move_a_node_through_its_lifecycle(server: Collector) -> None:
    key = NodeKey.generate()
    node = "life-1"
    assert post(server, report(node, "burnin", 10), key).status == 201
    assert state_of(server, node) == "burn-in"
    assert post(server, report(node, "acceptance", 9, "FAIL"), key).status == 201
    assert state_of(server, node) == "burn-in"  # a failed acceptance accepts nothing
    assert post(server, report(node, "acceptance", 8), key).status == 201
    assert state_of(server, node) == "accepted"
    reply = move(server, node, {"state": "in-service", "why": "handed to the training team"})
    assert reply.status == 200, reply.body
    assert (reply.json()["from"], reply.json()["to"]) == ("accepted", "in-service")
    # Runs after the operator's move finish after it: here, minutes ahead of the clock.
    # A burn-in FAIL of a node in service is a person's to judge: no move.
    assert post(server, report(node, "burnin", -0.05, "FAIL"), key).status == 201
    assert state_of(server, node) == "in-service"
    # A report that finished before the operator's move (uploaded late) moves nothing.
    assert post(server, report(node, "quick", 7, "FAIL"), key).status == 201
    assert state_of(server, node) == "in-service"
    assert post(server, report(node, "quick", -0.1, "FAIL"), key).status == 201
    assert state_of(server, node) == "quarantined"
    history = server.get(f"/v1/nodes/{node}").json()["history"]
    assert [(h["from"], h["to"], h["actor"]) for h in history] == [
        ("new", "burn-in", "report"), ("burn-in", "accepted", "report"),
        ("accepted", "in-service", "alice (operate token)"),
        ("in-service", "quarantined", "report")]
    assert history[2]["why"] == "handed to the training team"
    assert history[3]["why"] == "suite quick FAIL while in-service"
    assert all(h["report_id"] for h in (history[0], history[1], history[3]))
    assert history[2]["report_id"] is None


def test_an_operator_move_needs_a_state_a_reason_and_an_operate_token(
        server: Collector) -> None:
    key = NodeKey.generate()
    assert post(server, report("life-2", "quick", 2), key).status == 201
    no_why = move(server, "life-2", {"state": "retired", "why": "  "})
    assert (no_why.status, no_why.json()["error"]) == (422, "bad_state")
    assert "needs a reason" in no_why.json()["detail"]
    bad = move(server, "life-2", {"state": "broken", "why": "x"})
    assert (bad.status, bad.json()["error"]) == (422, "bad_state")
    assert "unknown state 'broken'" in bad.json()["detail"]
    missing = move(server, "nobody", {"state": "retired", "why": "x"})
    assert (missing.status, missing.json()["error"]) == (404, "not_found")
    reader = move(server, "life-2", {"state": "retired", "why": "x"}, READER)
    assert (reader.status, reader.json()["error"]) == (403, "forbidden")
    assert "'grafana' has the read role; this needs operate" in reader.json()["detail"]
    anonymous = http("POST", f"{server.url}/v1/states/life-2",
                     json.dumps({"state": "retired", "why": "x"}).encode())
    assert (anonymous.status, anonymous.json()["error"]) == (401, "unauthorized")
    assert anonymous.headers["www-authenticate"] == "Bearer"
    wrong = move(server, "life-2", {"state": "retired", "why": "x"}, "not-a-token-at-all-0")
    assert wrong.status == 401
    assert state_of(server, "life-2") == "burn-in"  # nothing refused moved it
    admin = move(server, "life-2", {"state": "retired", "why": "decommissioned"}, ADMIN)
    assert admin.status == 200 and state_of(server, "life-2") == "retired"
    # A retired node's reports move it nowhere.
    assert post(server, report("life-2", "quick", -0.1, "FAIL"), key).status == 201
    assert state_of(server, "life-2") == "retired"
    assert "alice" not in server.log() or OPERATOR not in server.log()
    assert OPERATOR not in server.log() and ADMIN not in server.log()


def test_labels_are_set_by_operators_and_checked(server: Collector) -> None:
    key = NodeKey.generate()
    assert post(server, report("life-3", "quick", 2), key).status == 201
    url = f"{server.url}/v1/labels/life-3"
    ok = http("PUT", url, json.dumps({"labels": {"rack": "r12", "pool": "train"}}).encode(),
              bearer(OPERATOR))
    assert ok.status == 200, ok.body
    assert server.get("/v1/nodes/life-3").json()["labels"] == {"pool": "train", "rack": "r12"}
    bad = http("PUT", url, json.dumps({"labels": {"<b>": "x"}}).encode(), bearer(OPERATOR))
    assert (bad.status, bad.json()["error"]) == (422, "bad_labels")
    assert http("PUT", url, json.dumps({"labels": {}}).encode(), bearer(READER)).status == 403


def test_the_repair_bundle_holds_what_a_vendor_needs(server: Collector) -> None:
    key = NodeKey.generate()
    node = "broken-gpu-7"
    burnin = report(node, "burnin", 3, series={"gpu.gpu0.temp_c": [[0, 60.0], [5, 91.0]]},
                    series_units={"gpu.gpu0.temp_c": "degC"})
    failed = report(node, "acceptance", 1, "FAIL")
    failed["verdicts"][0].update(fault_code="BA-GPU-XID-79", remediation="reset-gpu",
                                 component=f"GPU 0 GPU-8f1c serial {SERIAL}", attempts=2)
    bodies = [envelope_bytes(burnin, key), envelope_bytes(failed, key)]
    headers = {"X-Bench-Agent-Public-Key": base64.b64encode(key.public.raw).decode()}
    ids = [server.post(body, headers).json()["id"] for body in bodies]
    reply = server.get(f"/v1/bundles/{node}")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/gzip"
    assert 'filename="broken-gpu-7-repair.tar.gz"' in reply.headers["content-disposition"]
    with tarfile.open(fileobj=io.BytesIO(reply.body), mode="r:gz") as tar:
        files = {m.name.split("/", 1)[1]: tar.extractfile(m).read()  # type: ignore[union-attr]
                 for m in tar.getmembers()}
    assert set(files) == {"README.txt", "summary.json", "inventory.json", "verdicts.json",
                          f"reports/{ids[0]}.envelope.json", f"reports/{ids[1]}.envelope.json",
                          f"burnin/{ids[0]}.series.json", f"keys/{key.public.keyid}.pub.pem"}
    # The envelopes exactly as received: a vendor verifies them with the key.
    assert files[f"reports/{ids[0]}.envelope.json"] == bodies[0]
    assert files[f"reports/{ids[1]}.envelope.json"] == bodies[1]
    assert files[f"keys/{key.public.keyid}.pub.pem"].decode() == key.public.pem()
    summary = json.loads(files["summary.json"])
    assert summary["status"] == "FAIL"
    assert [(f["fault_code"], f["component"], f["remediation"]) for f in summary["failing"]] \
        == [("BA-GPU-XID-79", f"GPU 0 GPU-8f1c serial {SERIAL}", "reset-gpu")]
    assert json.loads(files["inventory.json"])["gpus"][0]["serial"] == SERIAL
    series = json.loads(files[f"burnin/{ids[0]}.series.json"])
    assert series["series"] == {"gpu.gpu0.temp_c": [[0, 60.0], [5, 91.0]]}
    verdicts = json.loads(files["verdicts.json"])
    assert verdicts[str(ids[1])][0]["attempts"] == 2
    assert server.get("/v1/bundles/nobody").status == 404


def test_the_fleet_api_pages_and_names_a_bad_parameter(server: Collector) -> None:
    key = NodeKey.generate()
    assert post(server, report("api-1", "quick", 1, "FAIL"), key).status == 201
    found = server.get("/v1/fleet?q=api-&status=FAIL").json()
    assert (found["total"], found["page"], found["pages"]) == (1, 1, 1)
    assert [n["name"] for n in found["nodes"]] == ["api-1"]
    assert found["nodes"][0]["failing"][0]["threshold"] == ">= 1 TFLOP/s"
    assert found["counts"]["status"]["FAIL"] >= 1
    bad = server.get("/v1/fleet?status=MAYBE")
    assert (bad.status, bad.json()["error"]) == (400, "bad_query")
    assert "status='MAYBE' is not one of" in bad.json()["detail"]
    assert server.get("/?per_page=0").status == 400


def test_docs_are_served_with_local_assets(server: Collector) -> None:
    page = server.get("/docs")
    assert page.status == 200
    text = page.body.decode()
    assert "/docs/assets/swagger-ui-bundle.js" in text and "/v1/openapi.json" in text
    assert "cdn." not in text and "https://" not in text
    assert server.get("/docs/assets/swagger-ui-bundle.js").status == 200
    assert server.get("/docs/assets/swagger-ui.css").status == 200
    paths = server.get("/v1/openapi.json").json()["paths"]
    assert {"/v1/reports", "/v1/fleet", "/v1/states/{name}", "/v1/bundles/{name}"} <= set(paths)
    # The auto-enroll header of a post, and the node list's paging, are described.
    assert [(p["name"], p["in"]) for p in paths["/v1/reports"]["post"]["parameters"]] == [
        ("X-Bench-Agent-Public-Key", "header")]
    assert {p["name"] for p in paths["/v1/nodes"]["get"]["parameters"]} == {
        "limit", "after", "authorization"}


def test_reads_can_need_a_token(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text(TOKENS)
    gated = Collector(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "server.log",
                      "--auto-enroll", "--tokens-file", str(tmp_path / "tokens"),
                      "--reads-need-token").start()
    try:
        key = NodeKey.generate()
        assert post(gated, report("gated-1", "quick", 1), key).status == 201  # no token
        assert gated.get("/healthz").status == 200
        for path in ("/v1/nodes", "/v1/fleet", "/metrics", "/nodes/gated-1"):
            assert gated.get(path).status == 401, path
        page = gated.get("/")
        assert page.headers["www-authenticate"].startswith("Basic")
        assert http("GET", gated.url + "/v1/nodes", headers=bearer(READER)).status == 200
        basic = base64.b64encode(f"anyone:{READER}".encode()).decode()
        assert http("GET", gated.url + "/", headers={"Authorization": f"Basic {basic}"}
                    ).status == 200
    finally:
        gated.stop()


def collector_cli(*args: str, env: dict[str, str] | None = None
                  ) -> subprocess.CompletedProcess[str]:
    return run_cli("collector", *args, cwd=REPO, timeout=60, env=env)


def test_the_cli_shows_and_moves_a_node(tmp_path: Path) -> None:
    from bench_agent.collector import db
    from bench_agent.collector.ingest import ingest

    url = f"sqlite:///{tmp_path / 'c.db'}"
    database = db.Database(url)
    database.migrate()
    key = NodeKey.generate()
    ingest(database, envelope_bytes(report("cli-1", "acceptance", 1), key),
           offered_key=base64.b64encode(key.public.raw).decode(), auto_enroll=True)
    database.dispose()
    shown = collector_cli("node", "--db", url, "cli-1")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == "cli-1: state accepted, status PASS"
    refused = collector_cli("node", "--db", url, "cli-1", "--state", "in-service")
    assert refused.returncode == 3
    assert refused.stderr.strip().splitlines()[-1] == \
        "bench-agent: --state needs --why (the reason is recorded)"
    moved = collector_cli("node", "--db", url, "cli-1", "--state", "in-service",
                          "--why", "racked in pod 4", "--json")
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.splitlines()[0] == "cli-1: accepted -> in-service"
    data = json.loads(moved.stdout.split("\n", 1)[1])
    assert data["state"] == "in-service"
    assert data["history"][-1]["why"] == "racked in pod 4"
    assert data["history"][-1]["actor"].startswith("cli:")
    unknown = collector_cli("node", "--db", url, "nobody")
    assert (unknown.returncode, unknown.stderr.splitlines()[-1]) == (
        3, "bench-agent: no node named 'nobody'")


def test_a_bad_tokens_file_is_one_line_and_exit_4(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text("read grafana short\n")
    done = collector_cli("serve", "--db", str(tmp_path / "c.db"), "--tokens-file",
                         str(tmp_path / "tokens"))
    assert done.returncode == 4
    assert "entry 1: the token of 'grafana' has fewer than 16 characters" in done.stderr
    assert "Traceback" not in done.stderr
