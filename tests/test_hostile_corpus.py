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

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench_agent.errors import ParseError
from bench_agent.model import Measurement
from bench_agent.tools import PARSERS, parse_tool_output
from tests import hostile

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
PYTHON = sys.executable


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`bench-agent ARGS` from this checkout, in a child: what an operator sees."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([PYTHON, "-m", "bench_agent.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=environment, cwd=cwd or REPO,
                          stdin=subprocess.DEVNULL, check=False)


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
]
TEXT_OUTPUTS = [
    ("sockperf", "network/sockperf_3.7_pingpong_tcp_loopback.txt", "157.593"),
    ("qperf", "network/qperf_0.4.11_tcp_udp_lat_vv_loopback.txt", "7.04"),
    ("perftest", "network/ib_write_bw_from_format_gbits.txt", "196.30"),
    ("nccl-tests", "nccl/all_reduce_v2.19_4gpu.txt", "294.603"),
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
