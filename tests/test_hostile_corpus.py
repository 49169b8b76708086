"""The hostile corpus (tests/hostile.py) through every reader and every writer.

Nothing raises (an error is the reader's own, with a message), nothing vanishes
(a hostile name is shown, escaped, wherever it is shown), nothing is a 500,
nothing is a PASS: a parser refuses a document whose figures are changed or
unknowable, or reads the original's figures; the table and the exports show
every name and no raw escape; verify and report show refuse hostile files with
their documented exit codes in one line; the collector answers 4xx with a
reason and serves awkward names escaped; a run whose tool lies is ERROR.

The documents changed here are the captured outputs of tests/data.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench_agent.core.errors import ParseError, ReportError
from bench_agent.core.inventory import Gpu, Host, Inventory
from bench_agent.core.model import Measurement, NamedDigest, Report, Status, Verdict
from bench_agent.core.units import Unit
from bench_agent.report.attest import (
    NodeKey,
    loads_strict,
    make_statement,
    sign_payload,
    sign_report,
)
from bench_agent.report.display import print_table, printable
from bench_agent.report.exports import to_junit, to_prometheus
from bench_agent.report.upload import PUBLIC_KEY_HEADER
from bench_agent.tools import PARSERS, parse_tool_output
from tests import cli_support, hostile
from tests.collector_support import Collector, Reply, envelope_bytes, make_report
from tests.paths import REPO

REPO = REPO
DATA = REPO / "tests" / "data"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`bench-agent ARGS` from this checkout, in a child: what an operator sees."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return cli_support.run_cli(*args, timeout=timeout, env=environment, cwd=cwd or REPO)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """stderr of a refusal: one line, 'bench-agent: ...', never a traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bench-agent: "), lines[0]
    return lines[0]


# --- every parser ---------------------------------------------------------------------

# (tool, captured output, a figure as printed)
# (tool, captured output, JSON key of a figure, text before it)
JSON_OUTPUTS = [
    ("fio", "fio/randread_4k_libaio_numjobs2_grouped.json", "iops", ""),
    ("iperf3", "network/iperf3_3.12_tcp_P2_omit1_loopback.json", "bits_per_second",
     '"sum_received"'),
    ("perftest", "network/ib_write_bw_out_json_quoted.json", "BW_average", ""),
    ("dcgm", "dcgm/dcgmi_diag_r3_4x_2gpu_fail_warn_handmade.json", "error_id", ""),
    ("nvbandwidth", "nvbandwidth/nvbandwidth_v0.8_json_2gpu_handmade.json", "sum", ""),
]
TEXT_OUTPUTS = [
    ("sockperf", "network/sockperf_3.7_pingpong_tcp_loopback.txt", "157.593"),
    ("qperf", "network/qperf_0.4.11_tcp_udp_lat_vv_loopback.txt", "7.04"),
    ("perftest", "network/ib_write_bw_from_format_gbits.txt", "196.30"),
    ("nccl-tests", "nccl/all_reduce_v2.19_4gpu.txt", "294.603"),
    ("nvbandwidth", "nvbandwidth/nvbandwidth_v0.8_text_2gpu_handmade.txt", "26.35"),
]


def figures(measurements: list[Measurement]) -> list[tuple[str, str, float, str]]:
    return [(m.check, m.metric, m.value, m.unit.value) for m in measurements]


def parser_cases() -> list[Any]:
    cases = []
    for tool, path, key, after in JSON_OUTPUTS:
        text = (DATA / path).read_text(encoding="utf-8")
        cases += [pytest.param(tool, path, v, id=f"{tool}-{v.id}")
                  for v in hostile.json_variants(text, key, after)]
    for tool, path, figure in TEXT_OUTPUTS:
        text = (DATA / path).read_text(encoding="utf-8")
        name = path.rsplit("/", 1)[-1].split("_")[0]
        cases += [pytest.param(tool, path, v, id=f"{tool}-{name}-{v.id}")
                  for v in hostile.text_variants(text, figure)]
    return cases


def test_the_corpus_covers_every_parser() -> None:
    covered = {c[0] for c in JSON_OUTPUTS + TEXT_OUTPUTS}
    # ib_write_lat and ib_write_bw are perftest's parser under the tools' names.
    targets = {PARSERS[tool] for tool in PARSERS}
    assert {PARSERS[tool] for tool in covered} == targets


# Where a tool's own format makes a variant legitimate, and what is read instead.
# fio: --status-interval prints cumulative reports, the final one last
# (tools/fio.py parse_fio_report): a later document replaces an earlier one.
# nccl-tests prints "-nan" or "inf" as its average when a run went wrong, and
# the average is then no figure (tools/nccl_tests.py parse_table).
LATER_DOCUMENT_WINS = {("fio", "json-concatenated-other")}
NO_AVERAGE = {("nccl-tests", "nan-figure"), ("nccl-tests", "inf-figure")}


@pytest.mark.parametrize(("tool", "path", "variant"), parser_cases())
def test_a_parser_refuses_a_hostile_output_or_reads_the_original_figures(
        tool: str, path: str, variant: hostile.Variant, tmp_path: Path) -> None:
    original = figures(parse_tool_output(tool, DATA / path))
    file = tmp_path / "output"
    file.write_text(variant.text, encoding="utf-8")
    try:
        got = figures(parse_tool_output(tool, file))
    except ParseError as exc:
        message = str(exc)
        assert message.startswith(f"cannot read {exc.tool} output: ")
        assert len(message) > len(f"cannot read {exc.tool} output: ") + 10
        assert (tool, variant.id) not in LATER_DOCUMENT_WINS | NO_AVERAGE, message
        return
    assert all(math.isfinite(value) and value >= 0 for _, _, value, _ in got)
    if (tool, variant.id) in LATER_DOCUMENT_WINS:
        later = tmp_path / "later"
        later.write_text(variant.text[len((DATA / path).read_text(encoding="utf-8")):])
        assert got == figures(parse_tool_output(tool, later)) != original
        return
    if (tool, variant.id) in NO_AVERAGE:
        assert got == [f for f in original if not f[1].endswith("_avg_busbw")]
        return
    assert not variant.refuse, f"a figure read from a hostile output: {got}"
    assert got, "nothing read and no error"
    assert set(got) <= set(original), f"figures the original does not hold: {got}"


# Names a tool may print for a device: legal ones come back as they are, a control
# character is a ParseError (a Measurement cannot hold it: model.check_name).
# fio's JSON escapes the name (json.dumps); perftest prints it with printf("%s"),
# as it is, and its device names hold no quote or backslash.
DEVICE_OUTPUTS = [
    ("fio", "fio/randread_4k_libaio_numjobs2_grouped.json", '"/tmp/fxw/f"', json.dumps),
    ("perftest", "network/ib_write_bw_out_json_quoted.json", '"mlx5_0"',
     lambda name: f'"{name}"'),
]
# perftest's text is read without its ANSI colour codes (sockperf.clean_text).
STRIPS_COLOUR = {"perftest"}
DEVICE_NAMES = {**{k: v for k, v in hostile.LEGAL_NAMES.items() if k != "quote-amp"},
                **hostile.CONTROL_NAMES}


@pytest.mark.parametrize(("tool", "path", "printed", "quote"), DEVICE_OUTPUTS,
                         ids=[c[0] for c in DEVICE_OUTPUTS])
@pytest.mark.parametrize("name", DEVICE_NAMES.values(), ids=DEVICE_NAMES)
def test_a_device_name_from_the_tool_is_kept_or_refused(
        tool: str, path: str, printed: str, quote: Any, name: str, tmp_path: Path) -> None:
    text = (DATA / path).read_text(encoding="utf-8")
    original = figures(parse_tool_output(tool, DATA / path))
    file = tmp_path / "output"
    file.write_text(text.replace(printed, quote(name)), encoding="utf-8")
    if tool in STRIPS_COLOUR and re.sub(r"\x1b\[[0-9;]*m", "", name) != name:
        name = re.sub(r"\x1b\[[0-9;]*m", "", name)
    if name in hostile.CONTROL_NAMES.values():
        with pytest.raises(ParseError, match=r"device name .* contains U\+"):
            parse_tool_output(tool, file)
        return
    got = parse_tool_output(tool, file)
    assert figures(got) == original
    assert {m.device for m in got} == {name}


CLI_CASES = [("fio", "fio/randread_4k_libaio_numjobs2_grouped.json", "iops", "json-nan"),
             ("fio", "fio/randread_4k_libaio_numjobs2_grouped.json", "iops", "json-deep"),
             ("iperf3", "network/iperf3_3.12_tcp_P2_omit1_loopback.json", "bits_per_second",
              "json-duplicate-key"),
             ("sockperf", "network/sockperf_3.7_pingpong_tcp_loopback.txt", "157.593",
              "nan-figure"),
             ("nccl-tests", "nccl/all_reduce_v2.19_4gpu.txt", "294.603", "huge-figure")]


@pytest.mark.parametrize(("tool", "path", "figure", "variant_id"), CLI_CASES,
                         ids=[f"{c[0]}-{c[3]}" for c in CLI_CASES])
def test_bench_agent_parse_refuses_in_one_line(tool: str, path: str, figure: str,
                                               variant_id: str, tmp_path: Path) -> None:
    text = (DATA / path).read_text(encoding="utf-8")
    make = hostile.json_variants if variant_id.startswith("json-") else hostile.text_variants
    variant = next(v for v in make(text, figure) if v.id == variant_id)
    file = tmp_path / "output"
    file.write_text(variant.text, encoding="utf-8")
    result = run_cli("parse", tool, str(file))
    assert result.returncode == 2  # a CheckError: the output cannot be read
    assert result.stdout == ""
    assert one_line_error(result).startswith(f"bench-agent: cannot read {tool.split('-')[0]}")


# --- the table ------------------------------------------------------------------------

ALL_NAMES = {**hostile.LEGAL_NAMES, **hostile.CONTROL_NAMES}
SAFE_CHECK, SAFE_DEVICE = "storage.randread", "nvme0n1"
_SGR = re.compile(r"\x1b\[[0-9;]*m")  # rich's own styles (ECMA-48 SGR)


def named_report(name: str) -> Report:
    """``name`` in every field a person reads: host, suite, profile, check, device,
    threshold, source, message. Check and device names cannot hold a control
    character (model.check_name): there a control name is replaced by a safe one."""
    legal = name in hostile.LEGAL_NAMES.values()
    check = name if legal else SAFE_CHECK
    device = name if legal else SAFE_DEVICE
    metric = "storage.randread_4k_iops"
    return Report(
        report_id="6f1c2b8e-6a51-4a51-9d2e-1c5d3f7a9b10", agent_version="0.1.0", host=name,
        inventory=Inventory(host=Host(name)), suite=NamedDigest(name, "a" * 64),
        profile=NamedDigest(name, "b" * 64), started_at="2026-11-27T10:00:00Z",
        finished_at="2026-11-27T10:01:30Z",
        measurements=[Measurement(check, metric, 85512.5, Unit.IOPS, device=device),
                      Measurement(check, metric, 1.0, Unit.IOPS, device=device + "-2")],
        verdicts=[Verdict(check, Status.FAIL, metric, 85512.5, Unit.IOPS, name, name, name,
                          device=device, threshold_id="iops-min")],
        check_seconds={check: 1.5})


def places(name: str) -> int:
    """How often the table shows ``name``: host, suite and profile in the summary; the
    verdict's check, device, threshold, message and source; the unjudged
    measurement's check and device (a control name is only in the free text)."""
    return 10 if name in hostile.LEGAL_NAMES.values() else 6


class Terminal(io.StringIO):
    """What rich sees on a terminal (pty-like): it styles, and it would interpret
    markup in a str."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False], ids=["rich", "plain"])
@pytest.mark.parametrize("name", ALL_NAMES.values(), ids=ALL_NAMES)
def test_the_table_shows_every_hostile_name_escaped(name: str, terminal: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    stream: io.StringIO = Terminal() if terminal else io.StringIO()
    print_table(named_report(name), stream)
    out = stream.getvalue()
    for raw in ("\x00", "\x07", "\r", "\u202e"):
        assert raw not in out
    assert hostile.ESC not in (_SGR.sub("", out) if terminal else out)
    shown = printable(name)
    if len(shown) > 200:  # folded by rich across lines: every character is still there
        assert out.count("n") >= places(name) * len(name)
        assert out.count(shown) == places(name) or terminal
    else:
        assert out.count(shown) == places(name), out
    if name not in hostile.LEGAL_NAMES.values():
        assert name not in out  # the raw control name never


# --- the exports ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_NAMES.values(), ids=ALL_NAMES)
def test_junit_is_valid_and_names_every_hostile_name(name: str) -> None:
    import xmlschema

    text = to_junit(named_report(name))
    schema = xmlschema.XMLSchema(str(DATA / "junit" / "junit-10.xsd"))
    assert [f"{e.reason} at {e.path}" for e in schema.iter_errors(text)] == []
    root = ET.fromstring(text)
    case = root.find("testsuite/testcase")
    assert case is not None
    failure = case.find("failure")
    assert failure is not None
    kept = re.sub("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]",
                  lambda m: f"\\x{{{ord(m.group()):x}}}", name)
    assert kept in (failure.get("message") or "") + (failure.text or "")
    if name in hostile.LEGAL_NAMES.values():
        assert name in case.attrib["name"] or name in case.attrib["classname"]


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package "
                    "prometheus; `make test` installs it)")
@pytest.mark.parametrize("name", ALL_NAMES.values(), ids=ALL_NAMES)
def test_promtool_accepts_the_textfile_of_hostile_names(name: str) -> None:
    assert PROMTOOL is not None
    text = to_prometheus(named_report(name))
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                             text=True, timeout=60)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    devices = {s.labels.get("device") for f in families.values() for s in f.samples}
    if name in hostile.LEGAL_NAMES.values():
        assert name in devices  # the label holds the name as it is, escaped by the format


# --- verify and report show -----------------------------------------------------------

EXIT_FAIL, EXIT_REPORT = 1, 5  # cli.py: verify refuses (1), a report that cannot be read (5)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A node key, its public PEM file, a good report and its envelope's text."""
    folder = tmp_path_factory.mktemp("signed")
    key = NodeKey.generate()
    pem = folder / "node.pub"
    pem.write_text(key.public.pem())
    report = make_report("node-7")
    envelope = json.dumps(sign_report(report, key), indent=2)
    statement = json.dumps(make_statement(report), indent=2)
    return {"key": key, "pem": pem, "report": report, "envelope": envelope,
            "statement": statement, "folder": folder}


def hostile_files(signed: dict[str, Any]) -> list[tuple[str, bytes]]:
    """The envelope changed on disk, and hostile payloads under a valid signature."""
    out = [(f"envelope-{name}", data)
           for name, data in hostile.report_file_variants(signed["envelope"])]
    out += [(f"signed-payload-{name}",
             json.dumps(sign_payload(data, signed["key"])).encode())
            for name, data in hostile.report_file_variants(signed["statement"])]
    return out


FILE_CASES = [name for name, _ in hostile.report_file_variants('{"a": 1}')]


@pytest.mark.parametrize("where", ["envelope", "signed-payload"])
@pytest.mark.parametrize("case", FILE_CASES)
def test_verify_and_report_show_refuse_a_hostile_file_in_one_line(
        signed: dict[str, Any], where: str, case: str, tmp_path: Path) -> None:
    data = dict(hostile_files(signed))[f"{where}-{case}"]
    path = tmp_path / "report.json"
    path.write_bytes(data)
    verified = run_cli("verify", str(path), "--pubkey", str(signed["pem"]))
    assert verified.returncode == EXIT_FAIL, verified.stderr
    assert verified.stdout == ""
    line = one_line_error(verified)
    assert line.startswith(f"bench-agent: {path}: ")
    assert "NOT VERIFIED" in line or where == "envelope", line
    shown = run_cli("report", "show", str(path))
    assert shown.returncode == EXIT_REPORT, shown.stderr
    assert shown.stdout == ""
    assert one_line_error(shown).startswith(f"bench-agent: {path}: ")


def test_the_good_file_verifies_and_shows(signed: dict[str, Any], tmp_path: Path) -> None:
    """The hostile files above are refused for what was changed, not for the base."""
    path = tmp_path / "report.json"
    path.write_text(signed["envelope"])
    verified = run_cli("verify", str(path), "--pubkey", str(signed["pem"]))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("verified: subject node-7 sha256:")
    shown = run_cli("report", "show", str(path))
    assert shown.returncode == 0, shown.stderr
    assert "node-7: PASS" in shown.stdout


# --- the collector --------------------------------------------------------------------


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """The real collector (`bench-agent collector serve`, SQLite) on loopback; nodes
    enroll with their first report (--auto-enroll)."""
    pytest.importorskip("fastapi")
    folder = tmp_path_factory.mktemp("collector")
    server = Collector(f"sqlite:///{folder / 'collector.db'}", folder / "server.log",
                       "--auto-enroll", "--no-access-log")
    try:
        yield server.start()
    finally:
        server.stop()


NODE_KEYS: dict[str, NodeKey] = {}


def post_signed(server: Collector, report: dict[str, Any]) -> Reply:
    """The report signed by its node's key (one per node: auto-enroll trusts a
    node's first key only)."""
    key = NODE_KEYS.setdefault(report["host"], NodeKey.generate())
    offered = base64.b64encode(key.public.raw).decode()
    return server.post(envelope_bytes(report, key), {PUBLIC_KEY_HEADER: offered})


def refused(reply: Reply, status: int, reason: str) -> str:
    """The refusal's detail, after checking its status and reason code."""
    assert reply.status == status, (reply.status, reply.body[:300])
    body = reply.json()
    assert body["error"] == reason, body
    assert isinstance(body["detail"], str) and body["detail"]
    return str(body["detail"])


@pytest.mark.parametrize("case", FILE_CASES)
def test_the_collector_refuses_a_hostile_body_with_its_reason(
        collector: Collector, signed: dict[str, Any], case: str) -> None:
    body = dict(hostile_files(signed))[f"envelope-{case}"]
    reply = collector.post(body)
    if case == "not-an-object":
        refused(reply, 400, "not_envelope")
    else:
        refused(reply, 400, "malformed_json")


@pytest.mark.parametrize("case", FILE_CASES)
def test_the_collector_refuses_a_hostile_signed_payload_with_its_reason(
        collector: Collector, signed: dict[str, Any], case: str) -> None:
    body = dict(hostile_files(signed))[f"signed-payload-{case}"]
    offered = base64.b64encode(signed["key"].public.raw).decode()
    refused(collector.post(body, {PUBLIC_KEY_HEADER: offered}), 422, "invalid_report")


# Where a name goes in a report, and which names the collector must refuse there.
NAME_FIELDS = ["host", "check", "device", "message"]


def report_named(name: str, field: str) -> dict[str, Any]:
    report = make_report(name if field == "host" else "node-hostile")
    measurement, verdict = report["measurements"][0], report["verdicts"][0]
    if field in ("check", "device"):
        measurement[field], verdict[field] = name, name
    elif field == "message":
        verdict["status"], verdict["message"] = "FAIL", name
        report["status"] = "FAIL"
    report["report_id"] = str(uuid.uuid4())
    return report


def storable(name: str, field: str) -> bool:
    """Control and format characters never name anything (model.check_name); a
    message may hold them, except NUL (PostgreSQL text) and bidirectional controls
    (model.check_text). A node name has at most 255 characters (db.NAME_LENGTH)."""
    if field == "message":
        return "\x00" not in name and "\u202e" not in name
    if field == "host" and len(name) > 255:
        return False
    return name in hostile.LEGAL_NAMES.values() and len(name) <= 255


@pytest.mark.parametrize("field", NAME_FIELDS)
@pytest.mark.parametrize("name", ALL_NAMES.values(), ids=ALL_NAMES)
def test_the_collector_stores_a_legal_name_and_refuses_the_others(
        collector: Collector, name: str, field: str) -> None:
    reply = post_signed(collector, report_named(name, field))
    if not storable(name, field):
        detail = refused(reply, 422, "invalid_report")
        assert "contains" in detail or "character" in detail, detail
        return
    assert reply.status == 201, reply.body[:300]
    report_id = reply.json()["id"]
    node = name if field == "host" else "node-hostile"
    import markupsafe  # Jinja2's escaping, what the pages use

    escaped = str(markupsafe.escape(name))
    pages = ["/", f"/nodes/{quote(node, safe='')}", f"/reports/{report_id}"]
    for page in pages:
        got = collector.get(page)
        assert got.status == 200, (page, got.body[:300])
        html = got.body.decode("utf-8")
        assert "<script>alert(1)</script>" not in html
        # The fleet and node pages name nodes and suites; the report page shows
        # every verdict's check, device and message.
        if field == "host" or page.startswith("/reports/"):
            assert escaped in html, page


# --- nothing is a PASS ------------------------------------------------------------------

FIO_OUTPUT = "fio/randread_4k_libaio_numjobs2_grouped.json"
# A fio that names its engines and prints the given document for any job: the
# storage check runs it as it runs the real one (tools/fio_run.py).
FAKE_FIO = """#!/bin/sh
if [ "$1" = "--enghelp" ]; then printf 'Available IO engines:\\n\\tlibaio\\n\\tpsync\\n'; exit 0; fi
cat > /dev/null
cat "{document}"
"""
TINY_RANDREAD = """name: hostile-fio
description: storage.randread, small, against a fio that lies
checks:
  - check: storage.randread
    timeout: 60s
    params: {iodepth: 1, numjobs: 1, runtime: 1s, ramp_time: 0s, size: 1MiB}
"""


def run_with_fake_fio(document: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str],
                                                              dict[str, Any]]:
    """`bench-agent run` of storage.randread with ``document`` as fio's output:
    (the process, the report it wrote)."""
    bin_dir, target, out = tmp_path / "bin", tmp_path / "target", tmp_path / "out"
    for folder in (bin_dir, target):
        folder.mkdir()
    (tmp_path / "fio-output.json").write_text(document, encoding="utf-8")
    fake = bin_dir / "fio"
    fake.write_text(FAKE_FIO.format(document=tmp_path / "fio-output.json"))
    fake.chmod(0o755)
    suite = tmp_path / "suite.yaml"
    suite.write_text(TINY_RANDREAD)
    result = run_cli("run", "--suite-file", str(suite), "--target", str(target), "--no-sign",
                     "--output", str(out), env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
                     cwd=tmp_path)
    reports = list(out.glob("*/*.json"))
    assert len(reports) == 1, (result.stdout, result.stderr)
    return result, json.loads(reports[0].read_text())


@pytest.mark.e2e
def test_the_true_fio_output_is_judged(tmp_path: Path) -> None:
    """The base of the cases below: 85.5 kIOPS fails the guide's > 100K IOPS."""
    result, report = run_with_fake_fio((DATA / FIO_OUTPUT).read_text(), tmp_path)
    assert (result.returncode, report["status"]) == (1, "FAIL"), result.stderr
    iops = [m for m in report["measurements"] if m["metric"] == "storage.randread_4k_iops"]
    assert [m["value"] for m in iops] == [85512.487512]


RUN_CASES = ["json-duplicate-key", "json-nan", "json-huge-int", "json-truncated",
             "json-null-figure"]


@pytest.mark.e2e
@pytest.mark.parametrize("variant_id", RUN_CASES)
def test_a_run_whose_fio_lies_is_an_error_not_a_pass(variant_id: str, tmp_path: Path) -> None:
    text = (DATA / FIO_OUTPUT).read_text()
    variant = next(v for v in hostile.json_variants(text, "iops") if v.id == variant_id)
    result, report = run_with_fake_fio(variant.text, tmp_path)
    assert (result.returncode, report["status"]) == (2, "ERROR"), result.stderr
    assert report["measurements"] == []
    # The check's own verdict is the ERROR; the profile's thresholds on its metrics
    # follow as SKIP rows naming that reason, and none of them is a PASS.
    (verdict,) = [v for v in report["verdicts"] if not v.get("metric")]
    assert (verdict["check"], verdict["status"]) == ("storage.randread", "ERROR")
    assert verdict["message"].startswith("cannot read fio output: ")
    judged = [v for v in report["verdicts"] if v.get("metric")]
    assert judged and all(v["status"] in ("SKIP", "FAIL") for v in judged)
    assert "Traceback" not in result.stderr + result.stdout


# --- upload ----------------------------------------------------------------------------

BAD_URLS = ["collector:8080", "http://", "http://[::1", "http://a b/", "http://x:port/",
            "ftp://collector/"]


def spool_with_a_report(tmp_path: Path, body: bytes) -> Path:
    report = tmp_path / "spool" / "node-7" / "20261127T100000Z-quick.json"
    report.parent.mkdir(parents=True)
    report.write_bytes(body)
    return report


@pytest.mark.parametrize("url", BAD_URLS)
def test_upload_to_a_url_that_is_no_http_url_is_a_usage_error(
        url: str, signed: dict[str, Any], tmp_path: Path) -> None:
    report = spool_with_a_report(tmp_path, signed["envelope"].encode())
    result = run_cli("upload", "--collector", url, "--output", str(tmp_path / "spool"),
                     "--key", str(tmp_path / "no-key"))
    assert result.returncode == 3, result.stderr
    assert one_line_error(result).startswith(f"bench-agent: collector URL {url!r}")
    assert report.read_text() == signed["envelope"]  # waiting, untouched


def test_run_upload_to_a_url_without_scheme_stops_before_running(tmp_path: Path) -> None:
    result = run_cli("run", "--suite-file", str(DATA / "suites" / "tiny-cpu.yaml"), "--no-sign",
                     "--output", str(tmp_path / "out"), "--upload", "collector:8080")
    assert result.returncode == 3
    assert "give it as http://HOST:PORT" in one_line_error(result)
    assert not (tmp_path / "out").exists()


def test_a_spool_file_the_collector_would_refuse_waits_unread(
        collector: Collector, signed: dict[str, Any], tmp_path: Path) -> None:
    """Read as strictly as the collector reads it: NaN in an unsigned field is not
    sent (and refused, and moved to rejected/), it is counted and stays."""
    text = signed["envelope"]
    report = spool_with_a_report(tmp_path, ('{"note": NaN, ' + text[1:]).encode())
    result = run_cli("upload", "--collector", collector.url, "--output",
                     str(tmp_path / "spool"), "--key", str(tmp_path / "no-key"))
    assert result.returncode == 2, result.stderr
    assert "not a readable JSON file: NaN is not a JSON number" in result.stderr
    assert "Traceback" not in result.stderr
    assert report.exists() and not (report.parent / "rejected").exists()


def test_a_refusal_with_a_hostile_body_is_kept_with_its_words(
        signed: dict[str, Any], tmp_path: Path) -> None:
    """The collector's answer is read strictly too: a body nested 100,000 deep (a
    RecursionError for json.loads) is a reason, quoted, not a crash."""
    from bench_agent.report.upload import Response, upload_spool

    report = spool_with_a_report(tmp_path, signed["envelope"].encode())
    deep = "[" * 100_000

    def answer(url: str, body: bytes, timeout: float, headers: dict[str, str]) -> Response:
        return Response(400, {"content-type": "application/json"}, deep)

    result = upload_spool(tmp_path / "spool", "http://127.0.0.1:9", transport=answer)
    assert result.exit_code == 1
    (rejected, reason), = result.rejected
    assert rejected == report.parent / "rejected" / report.name
    assert reason == "HTTP 400: " + deep[:500]


# --- NaN made by the agent itself ----------------------------------------------------


@pytest.mark.parametrize("field", ["params", "stats"])
@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_a_measurement_refuses_nan_in_its_params_and_stats(field: str, number: float) -> None:
    values = {"params": {"runtime": 30, "jobs": [{"depth": number}]}, "stats": {"p99": number}}
    where = {"params": r"params\.jobs\[0\]\.depth", "stats": r"stats\.p99"}[field]
    with pytest.raises(ValueError, match=rf"^m\.x: {where}: NaN or an infinity is no figure"):
        Measurement("c", "m.x", 1.0, Unit.SECONDS, **{field: values[field]})  # type: ignore[arg-type]


def nan_inventory_report() -> dict[str, Any]:
    """A report as the agent wrote it before the inventory was typed, with a fact read
    as NaN: written as null, and named under "non_finite_facts"."""
    report = named_report("node-nan").to_dict()
    report["host"] = "node-nan"
    report["inventory"] = {
        "host": {"hostname": "node-nan"},
        "gpus": [{"index": 0, "name": "H100", "uuid": "GPU-0", "memory_total_bytes": None,
                  "driver_version": "550.54.15"}],
        "non_finite_facts": ["gpus[0].memory_total_bytes"]}
    return report


def test_a_fact_read_as_nan_cannot_enter_the_inventory() -> None:
    """The typed inventory has no float field: NaN or an infinity is refused where a
    record is built, so no report can carry one (it used to be nulled at writing)."""
    for number in (math.nan, math.inf):
        with pytest.raises(ValueError, match=r"^Gpu\.memory_total_bytes: expected an "
                                             r"integer or null, got float"):
            Gpu(0, "H100", "GPU-0", number)  # type: ignore[arg-type]
    old = Report.from_dict(nan_inventory_report())
    assert old.inventory.gpus == (Gpu(0, "H100", "GPU-0", None, "550.54.15"),)
    data = loads_strict(old.to_json())
    assert data["inventory"]["gpus"][0]["memory_total_bytes"] is None
    assert "non_finite_facts" not in data["inventory"]
    assert loads_strict(old.to_json(compact=True)) == data


def test_an_old_report_with_a_nan_fact_is_verified_shown_and_stored(
        collector: Collector, signed: dict[str, Any], tmp_path: Path) -> None:
    """Before the typed inventory, a NaN fact was written as null and named; such a
    report still verifies, shows and is stored."""
    report = nan_inventory_report()
    envelope = sign_report(report, signed["key"])
    path = tmp_path / "report.json"
    path.write_text(json.dumps(envelope))
    assert run_cli("verify", str(path), "--pubkey", str(signed["pem"])).returncode == 0
    shown = run_cli("report", "show", str(path))
    assert shown.returncode == 1 and "node-nan: FAIL" in shown.stdout, shown.stderr
    key = NODE_KEYS.setdefault("node-nan", NodeKey.generate())
    reply = collector.post(json.dumps(sign_report(report, key)).encode(),
                           {PUBLIC_KEY_HEADER: base64.b64encode(key.public.raw).decode()})
    assert reply.status == 201, reply.body[:300]


def test_a_nan_that_reaches_the_writer_is_refused_where_it_is() -> None:
    report = named_report("node-nan")
    report.series = {"load.cpu_matmul": [[0.0, 1.0], [1.0, math.nan]]}
    with pytest.raises(ReportError, match=r"NaN or an infinity at series\.load\.cpu_matmul"
                                          r"\[1\]\[1\], which JSON cannot carry"):
        report.to_json()
    with pytest.raises(ReportError, match=r"at predicate\.series\.load\.cpu_matmul\[1\]\[1\]"):
        sign_report(report.to_dict(), NodeKey.generate())


# --- burn-in series ------------------------------------------------------------------


def test_a_burnin_reading_of_nan_is_no_point_and_the_series_stays_strict(
        tmp_path: Path) -> None:
    from bench_agent.burnin.engine import SeriesWriter, read_series
    from bench_agent.burnin.health import HealthReader

    readings, _ = HealthReader().feed({"cpu": {"temp_c_max": math.inf, "load1": 0.5}}, 5.0)
    assert [(r.metric, r.value) for r in readings] == [("burnin.cpu_load", 0.5)]
    # A load's NaN reaches the file as null (not known), never as NaN.
    sample = {"type": "sample", "elapsed": 5.0, "readings": [
        {"metric": "burnin.cpu_matmul", "device": "", "value": math.nan, "unit": "FLOP/s"}]}
    writer = SeriesWriter(tmp_path / "s.jsonl")
    writer.write({"type": "start", "host": "n1"})
    writer.write(sample)
    writer.close()
    assert read_series(tmp_path / "s.jsonl")[1] == {
        "type": "sample", "elapsed": 5.0, "readings": [
            {"metric": "burnin.cpu_matmul", "device": "", "value": None, "unit": "FLOP/s"}]}


@pytest.mark.parametrize("line", ['{"type": "sample", "elapsed": NaN}',
                                  '{"type": "sample", "type": "end"}',
                                  '{"type": "sample", "elapsed": ' + "9" * 5000 + "}",
                                  "[" * 100_000, "\x00garbage"])
def test_a_damaged_series_line_is_named_not_skipped(line: str, tmp_path: Path) -> None:
    series = tmp_path / "s.jsonl"
    start = json.dumps({"type": "start", "host": "n1", "started_at": "2026-11-27T10:00:00Z"})
    series.write_text(f"{start}\n{line}\n" + json.dumps({"type": "end"}) + "\n")
    result = run_cli("report", "show", str(series))
    assert result.returncode == EXIT_REPORT
    assert one_line_error(result).startswith(f"bench-agent: {series}: line 2 is not a ")
    # The last line alone may be cut by a crash: it is ignored, as before.
    series.write_text(f"{start}\n{line}")
    assert run_cli("report", "show", str(series)).returncode != EXIT_REPORT


# --- fleet ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["nan", "duplicate-key", "huge-int", "deep"])
def test_fleet_skips_a_hostile_report_and_says_so(case: str, signed: dict[str, Any],
                                                  tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    from bench_agent.fleet.analysis import load_dir

    good = tmp_path / "good.json"
    good.write_text(signed["envelope"])
    bad = tmp_path / "bad.json"
    bad.write_bytes(dict(hostile.report_file_variants(json.dumps(signed["report"])))[case])
    data = load_dir(tmp_path)
    assert data.reports == 1
    (problem,) = data.unreadable
    assert problem.startswith(f"{bad}: ")


@pytest.mark.parametrize("text", ['{"temperature": Infinity}', '{"temperature": 1e400}',
                                  '{"temperature": 310, "temperature": 9999}',
                                  '{"media_errors": NaN}'])
def test_a_hostile_smart_log_is_no_reading(text: str) -> None:
    from bench_agent.burnin.health import parse_smart_log

    # sample_nvme turns a ValueError into "unreadable" for the drive.
    with pytest.raises(ValueError, match="nvme smart-log printed no readable JSON: "):
        parse_smart_log(text)
