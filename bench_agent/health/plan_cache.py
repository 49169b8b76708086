"""The health suite and profile as last loaded, kept beside the state file.

Why: loading them (strict YAML, then pydantic models, thresholds checked against
the metric catalog) costs about 0.1 s on the test VM, a third of what `bench-agent
health` may take in all (under 0.3 s, issue 16; benchmarks/bench_health.py), and
a node runs health every few minutes (Slurm's HealthCheckInterval) on the same
files. So the first run does the full load and writes its result here; the next
runs use it while nothing it came from changed, and load in full again when
anything did.

An entry is valid only for the same request (the suite file, the profile as
named, the working directory a relative profile path is read from), the same
agent (its version, the suites folder, and the size and modification time of
every module of the package: the loader's rules and the metric catalog are
code), the same bytes of every file the load read (the suite and each
profile of the `extends` chain, by SHA-256), and the same answer to every name
the load resolved (the profile asked for and each `extends`: a file added
beside a profile can take the place of the one an `extends` named). A cache
that is missing, damaged, from another agent or for other files is no error: the
run loads in full and rewrites it. One that cannot be written costs the next
run the full load, never a result. The file holds only what the files say,
validated: trusting it is trusting the state folder (root's /var/lib/bench-agent),
as the state file is.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

from bench_agent import __version__
from bench_agent.config.plans import Profile, Suite, data_dir, resolve_profile_path
from bench_agent.core.errors import ConfigError, ReportError
from bench_agent.core.model import write_atomic

CACHE_SCHEMA = 2
# Requests (suite, profile) remembered at once; past that the oldest is dropped.
MAX_ENTRIES = 8
PACKAGE = Path(__file__).resolve().parents[1]


def cache_path(state: Path) -> Path:
    """health-state.json -> health-state.plan.json, in the state file's folder."""
    return state.with_name(f"{state.stem}.plan.json")


def agent_fingerprint(package: Path = PACKAGE) -> str:
    """The version, the suites folder and (path, size, mtime) of every module: any
    edit or reinstall of the agent changes it. About 200 stat calls, 1 ms here."""
    digest = hashlib.sha256(f"{__version__}\n{data_dir()}\n".encode())
    for folder, dirs, files in os.walk(package):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                st = os.stat(os.path.join(folder, name))
                digest.update(f"{folder}/{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def request_key(suite: Path, profile: str | None) -> str:
    """What was asked for: the suite file, the profile as named and, for a profile
    given as a relative path, the folder it is read from."""
    cwd = os.getcwd() if profile is not None and not Path(profile).is_absolute() else ""
    return json.dumps([str(suite.resolve()), profile, cwd])


def _digest(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _entries(cache: Path) -> list[Any]:
    """The file's entries, newest first; [] for a file that is absent or not ours."""
    try:
        data = json.loads(cache.read_bytes())
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("schema") != CACHE_SCHEMA \
            or not isinstance(data.get("entries"), list):
        return []
    entries: list[Any] = data["entries"]
    return entries


def _valid(entry: Any, key: str, fingerprint: str) -> tuple[Suite, Profile] | None:
    try:
        if not isinstance(entry, dict) or entry.get("agent") != fingerprint \
                or entry.get("request") != key:
            return None
        sources = entry["sources"]
        if not isinstance(sources, dict) or not sources:
            return None
        if any(_digest(path) != digest for path, digest in sources.items()):
            return None
        for name, relative_to, resolved in entry["resolved"]:
            where = None if relative_to is None else Path(relative_to)
            if str(resolve_profile_path(name, where)) != resolved:
                return None
        return Suite.from_dict(entry["suite"]), Profile.from_dict(entry["profile"])
    except (OSError, ValueError, KeyError, TypeError, ConfigError):
        return None


def lookup(cache: Path, key: str, fingerprint: str) -> tuple[Suite, Profile] | None:
    """The cached suite and profile for ``key``, or None when there is no valid entry."""
    for entry in _entries(cache):
        if isinstance(entry, dict) and entry.get("request") == key:
            return _valid(entry, key, fingerprint)
    return None


def _chained(digests: list[str]) -> str:
    """config/loader.py's digest of a profile chain: each child's file digest
    folded onto its parent's (load_profile)."""
    chained = digests[0]
    for digest in digests[1:]:
        chained = hashlib.sha256((chained + digest).encode()).hexdigest()
    return chained


def _resolutions(asked: str, profile: Profile) -> list[tuple[str, str | None, str]] | None:
    """(name, folder it was resolved from, path) of the profile asked for and of each
    `extends` of the chain (Profile.sources: the root parent first), read again from
    the files; None when a file does not say what the chain holds."""
    from bench_agent.config.loader import read_yaml

    chain = profile.sources
    out: list[tuple[str, str | None, str]] = [(asked, None, chain[-1])]
    for parent, child in itertools.pairwise(chain):
        extends = read_yaml(Path(child))[0].get("extends")
        if not isinstance(extends, str):
            return None
        out.append((extends, str(Path(child).parent), parent))
    return out


def store(cache: Path, key: str, fingerprint: str, suite: Suite, profile: Profile,
          asked: str) -> None:
    """Remember a full load, only when the files are still the bytes it read: the
    suite's and the profile chain's digests, taken again now, must give the ones
    the load recorded (Suite.sha256, Profile.sha256). A file changed in between
    is not cached: the next run loads it in full."""
    sources: dict[str, str] = {}
    for path in [suite.path, *profile.sources]:
        digest = _digest(path)
        if digest is None:
            return
        sources[path] = digest
    if not profile.sources or sources[suite.path] != suite.sha256 \
            or _chained([sources[p] for p in profile.sources]) != profile.sha256:
        return
    try:
        resolved = _resolutions(asked, profile)
    except ConfigError:
        return
    if resolved is None:
        return
    entry = {"agent": fingerprint, "request": key, "sources": sources,
             "resolved": resolved, "suite": suite.to_dict(), "profile": profile.to_dict()}
    # The newest first, one per request, the others of this agent kept: a node may
    # run health with several profiles (Slurm's with one, a timer's with another).
    kept = [e for e in _entries(cache) if isinstance(e, dict)
            and e.get("request") != key and e.get("agent") == fingerprint]
    document = {"schema": CACHE_SCHEMA, "entries": [entry, *kept][:MAX_ENTRIES]}
    # Not written: only speed is lost, the next run loads in full (module docstring).
    with contextlib.suppress(ReportError):
        write_atomic(cache, json.dumps(document, sort_keys=True) + "\n")
