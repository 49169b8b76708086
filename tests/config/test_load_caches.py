"""What config/ remembers within a process: parsed YAML (config/loader.read_yaml)
and loaded baselines (config/baselines.load_baseline), both by the SHA-256 of the
file's bytes, so an edit is seen even within one timestamp tick, and a caller
that changes what it got changes nothing for the next one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench_agent.config.baselines import load_baseline
from bench_agent.config.loader import read_yaml

BASELINE = """\
model: Test GPU
nvml_names: ["NVIDIA Test GPU"]
figures:
  gpu.matmul_bf16: {value: %s TFLOP/s, source: "a test figure"}
"""


def _same_time(path: Path, text: str) -> None:
    stat = path.stat()
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_parsed_document_is_handed_out_as_a_copy(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nthresholds: [{id: a}]\n", encoding="utf-8")
    first, digest = read_yaml(path)
    first["thresholds"].append({"id": "b"})
    first["name"] = "changed"
    again, same = read_yaml(path)
    assert (again, same) == ({"name": "p", "thresholds": [{"id": "a"}]}, digest)


def test_an_edit_within_one_timestamp_tick_is_read(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p1\n", encoding="utf-8")
    assert read_yaml(path)[0] == {"name": "p1"}
    _same_time(path, "name: p2\n")  # same size, same mtime
    assert read_yaml(path)[0] == {"name": "p2"}


def test_a_baseline_is_loaded_once_per_content(tmp_path: Path) -> None:
    path = tmp_path / "test-gpu.yaml"
    path.write_text(BASELINE % "100", encoding="utf-8")
    first = load_baseline(path)
    assert load_baseline(path) is first
    _same_time(path, BASELINE % "200")
    edited = load_baseline(path)
    assert edited.figures["gpu.matmul_bf16"].value == pytest.approx(200e12)
    assert first.figures["gpu.matmul_bf16"].value == pytest.approx(100e12)
    with pytest.raises(TypeError):
        edited.figures["gpu.hbm_copy"] = edited.figures["gpu.matmul_bf16"]  # type: ignore[index]
