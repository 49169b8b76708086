"""Every number the agent judges by names its primary source inside the repository.

A reader of the repository has neither the developers' notes nor the requirements
document as a file, so a source may not point at files outside the repository
(THRESHOLDS.md, REQUIREMENTS-GUIDE.md, ../shared). Each threshold and baseline
figure is loaded through the project's own loaders, as the agent reads them, and
its source must be one of: the guide by title and section path with its own words
quoted, a public page (URL) or repository file (owner/repo:path), or a rule or
measurement of our own marked "bench-agent:".

When the guide happens to sit beside the checkout (../shared, the developers'
copy), each quote is also looked up in it, so a paraphrase passed off as a quote
fails; without it those cases skip.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bench_agent.config.baselines import load_baselines
from bench_agent.config.loader import load_profile_named, profile_names
from tests.paths import REPO

ROOT = REPO
GUIDE_FILE = ROOT.parent / "shared" / "REQUIREMENTS-GUIDE.md"

GUIDE_TITLE = "AI Infrastructure Requirements Guide"
# Names that only exist outside the repository.
OUTSIDE = ("THRESHOLDS.md", "REQUIREMENTS-GUIDE.md", "../shared")
# A public repository file: owner/repo:path (e.g. NVIDIA/DCGM:nvvs/diag-skus.yaml.in).
REPO_FILE = re.compile(r"\b[\w.-]+/[\w.-]+:[\w./-]+\.\w+")
URL = re.compile(r"https://\S+")
# The guide: title, a heading path with " > ", then the guide's words in quotes.
GUIDE_CITATION = re.compile(
    rf"^{re.escape(GUIDE_TITLE)}, (?P<path>[^:\"]+ > [^:\"]+): \"(?P<quote>[^\"]+)\"")


def citation_problems(source: str) -> list[str]:
    """What is wrong with a source string; empty when it is a usable citation."""
    text = source.strip()
    if not text:
        return ["empty source"]
    problems = [f"names {name}, which is not in the repository"
                for name in OUTSIDE if name in text]
    if re.fullmatch(r"[\w./:-]+", text):
        problems.append("a bare file name, not a citation")
    elif text.startswith(GUIDE_TITLE):
        if not GUIDE_CITATION.match(text):
            problems.append("a guide citation needs 'Section > Subsection:"
                            " \"the guide's words\"'")
    elif not (text.startswith("bench-agent: ") or URL.search(text)
              or REPO_FILE.search(text)):
        problems.append("cites neither the guide (title > section: \"words\"), a URL,"
                        " an owner/repo:path file, nor a 'bench-agent:' rule of ours")
    return problems


def _shipped_thresholds() -> list[tuple[str, str, str]]:
    return [(name, t.id, t.source) for name in profile_names()
            for t in load_profile_named(name).thresholds]


def _shipped_figures() -> list[tuple[str, str, str]]:
    return [(Path(b.path).name, f.metric, f.source) for b in load_baselines()
            for f in b.figures.values()]


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        # Not a git checkout (an unpacked sdist): every file but caches and venvs.
        skip = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache",
                ".pytest_cache", "build", "dist"}
        return [p for p in ROOT.rglob("*") if p.is_file()
                and not skip.intersection(p.relative_to(ROOT).parts)]
    return [ROOT / name for name in out.decode().split("\0") if name]


# --- the checker itself ---------------------------------------------------------------


@pytest.mark.parametrize(("source", "expected"), [
    ("", ["empty source"]),
    ("THRESHOLDS.md", ["names THRESHOLDS.md, which is not in the repository",
                       "a bare file name, not a citation"]),
    ("REQUIREMENTS-GUIDE.md, Storage / Primary Storage: >100K IOPS",
     ["names REQUIREMENTS-GUIDE.md, which is not in the repository",
      "cites neither the guide (title > section: \"words\"), a URL, an owner/repo:path"
      " file, nor a 'bench-agent:' rule of ours"]),
    ("THRESHOLDS.md: AzNHC check_gpu_ecc fails above 2e7",
     ["names THRESHOLDS.md, which is not in the repository",
      "cites neither the guide (title > section: \"words\"), a URL, an owner/repo:path"
      " file, nor a 'bench-agent:' rule of ours"]),
    ("see ../shared/notes.md for the figure",
     ["names ../shared, which is not in the repository",
      "cites neither the guide (title > section: \"words\"), a URL, an owner/repo:path"
      " file, nor a 'bench-agent:' rule of ours"]),
    (f"{GUIDE_TITLE}, Storage: fast", ["a guide citation needs 'Section > Subsection:"
                                       " \"the guide's words\"'"]),
    (f"{GUIDE_TITLE}, A > B: \"Minimum: 32 vCPUs\"", []),
    ("NVIDIA/DCGM:nvvs/diag-skus.yaml.in, A100-SXM4-80GB: passes at 0.75x", []),
    ("https://github.com/NVIDIA/nccl-tests/issues/212: ~480 GB/s with NVLS", []),
    ("bench-agent: our own rule, and why", []),
])
def test_citation_checker(source: str, expected: list[str]) -> None:
    assert citation_problems(source) == expected


# --- what ships -----------------------------------------------------------------------


def test_every_profile_threshold_cites_a_primary_source() -> None:
    rows = _shipped_thresholds()
    assert len(rows) > 50  # every shipped profile was read
    bad = [f"{name}: {tid}: {p}: {src!r}" for name, tid, src in rows
           for p in citation_problems(src)]
    assert bad == []


def test_every_configuration_entry_cites_a_primary_source() -> None:
    from bench_agent.config.loader import load_profile_named, profile_names

    rows = [(name, e.fact, e.source) for name in profile_names()
            for e in load_profile_named(name).configuration]
    assert len(rows) >= 8  # gpu-node's section at least
    bad = [f"{name}: {fact}: {p}: {src!r}" for name, fact, src in rows
           for p in citation_problems(src)]
    assert bad == []


def test_every_baseline_figure_cites_a_primary_source() -> None:
    rows = _shipped_figures()
    assert len(rows) >= 10
    bad = [f"{name}: {metric}: {p}: {src!r}" for name, metric, src in rows
           for p in citation_problems(src)]
    assert bad == []


def test_no_tracked_file_points_outside_the_repository() -> None:
    # tests/ may name ../shared: its optional samples lookup is documented there.
    files = [p for p in _tracked_files() if p.relative_to(ROOT).parts[0] != "tests"]
    assert any(p.name == "README.md" for p in files)
    hits = []
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        hits += [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
                 for n, line in enumerate(lines, 1) if any(name in line for name in OUTSIDE)]
    assert hits == []


# --- guide quotes are the guide's words -------------------------------------------------


def _guide_citations() -> list[tuple[str, str, str, str]]:
    rows = []
    for name, tid, source in _shipped_thresholds():
        m = GUIDE_CITATION.match(source.strip())
        if m:
            rows.append((name, tid, m["path"], m["quote"]))
    return rows


def test_guide_profiles_cite_the_guide() -> None:
    cited = {name for name, _, _, _ in _guide_citations()}
    assert {"guide-minimum", "guide-recommended", "guide-high-performance",
            "guide-inference-minimum", "guide-inference-recommended"} <= cited


@pytest.mark.skipif(not GUIDE_FILE.is_file(), reason="the guide is not beside this checkout")
def test_guide_quotes_and_sections_exist_in_the_guide() -> None:
    raw = GUIDE_FILE.read_text(encoding="utf-8")
    text = re.sub(r"\s+", " ", raw.replace("**", ""))
    headings = {line.lstrip("#").strip() for line in raw.splitlines() if line.startswith("#")}
    bad = []
    for name, tid, path, quote in _guide_citations():
        if quote not in text:
            bad.append(f"{name}: {tid}: quote not in the guide: {quote!r}")
        # "Heading > Heading > Heading (bold label)": each heading must be the guide's.
        for part in path.split(" > "):
            heading = re.sub(r" \([^)]*\)$", "", part.strip())
            if heading not in headings:
                bad.append(f"{name}: {tid}: no heading {heading!r} in the guide")
    assert bad == []
