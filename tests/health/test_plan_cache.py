"""The health plan cache (health/plan_cache.py): a cached plan is exactly the full
load's, and it is never used once anything it came from changed: the suite, a
profile of the `extends` chain, the agent, the request. A damaged or unwritable
cache costs speed, never a result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench_agent.checks import DomainCatalog
from bench_agent.config.loader import load_profile_named, load_suite, profile_names, suite_names
from bench_agent.config.plans import Profile, Suite, suite_path
from bench_agent.health import plan_cache
from bench_agent.health.runner import load_plan
from tests.paths import REPO

HEALTH = suite_path("health")


@pytest.mark.parametrize("name", suite_names())
def test_every_shipped_suite_round_trips_through_plain_data(name: str) -> None:
    suite = load_suite(suite_path(name))
    assert Suite.from_dict(json.loads(json.dumps(suite.to_dict()))) == suite


@pytest.mark.parametrize("name", profile_names())
def test_every_shipped_profile_round_trips_through_plain_data(name: str) -> None:
    profile = load_profile_named(name)
    again = Profile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert again == profile
    # The catalog's part of each rule (Threshold.to_dict leaves it out) is kept.
    assert [t.checks for t in again.thresholds] == [t.checks for t in profile.thresholds]


def _site_profile(folder: Path, gpus: int) -> Path:
    path = folder / "site.yaml"
    path.write_text("name: site\nextends: health\nthresholds:\n"
                    f"  - {{id: gpus, metric: inventory.gpu_count, comparator: '>=', "
                    f"value: {gpus}, required: true, source: our HGX nodes}}\n",
                    encoding="utf-8")
    return path


def _gpu_rule(profile: Profile) -> float:
    return next(t.value for t in profile.thresholds if t.id == "gpus")


def test_the_second_load_is_the_cached_one_and_equals_the_full_load(tmp_path: Path) -> None:
    site = _site_profile(tmp_path, 8)
    cache = tmp_path / "state.plan.json"
    full = load_plan(HEALTH, str(site), cache)
    assert cache.is_file()
    key = plan_cache.request_key(HEALTH, str(site))
    cached = plan_cache.lookup(cache, key, plan_cache.agent_fingerprint())
    assert cached == full
    assert cached[1].sources == [str(suite_path("profiles/health")), str(site)]
    assert load_plan(HEALTH, str(site), cache) == full


def test_an_edited_profile_is_loaded_again_not_taken_from_the_cache(tmp_path: Path) -> None:
    site = _site_profile(tmp_path, 8)
    cache = tmp_path / "state.plan.json"
    assert _gpu_rule(load_plan(HEALTH, str(site), cache)[1]) == 8
    # Same size, same second: only the bytes' digest tells the edit.
    stat = site.stat()
    site.write_text(site.read_text(encoding="utf-8").replace("value: 8", "value: 4"),
                    encoding="utf-8")
    os.utime(site, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _gpu_rule(load_plan(HEALTH, str(site), cache)[1]) == 4
    assert _gpu_rule(plan_cache.lookup(cache, plan_cache.request_key(HEALTH, str(site)),
                                       plan_cache.agent_fingerprint())[1]) == 4


def test_another_request_or_agent_misses(tmp_path: Path) -> None:
    site = _site_profile(tmp_path, 8)
    cache = tmp_path / "state.plan.json"
    load_plan(HEALTH, str(site), cache)
    fingerprint = plan_cache.agent_fingerprint()
    assert plan_cache.lookup(cache, plan_cache.request_key(HEALTH, "health"),
                             fingerprint) is None
    assert plan_cache.lookup(cache, plan_cache.request_key(HEALTH, str(site)),
                             "another agent") is None


def test_the_agent_fingerprint_changes_with_any_module(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    module = package / "sub" / "m.py"
    module.write_text("x = 1\n", encoding="utf-8")
    before = plan_cache.agent_fingerprint(package)
    assert plan_cache.agent_fingerprint(package) == before
    module.write_text("x = 22\n", encoding="utf-8")
    assert plan_cache.agent_fingerprint(package) != before


@pytest.mark.parametrize("damage", ["", "{", "[]", '{"schema": 1}',
                                    "NaN", "\u00e9\u0000"])
def test_a_damaged_cache_is_a_miss_and_is_rewritten(tmp_path: Path, damage: str) -> None:
    cache = tmp_path / "state.plan.json"
    cache.write_text(damage, encoding="utf-8")
    suite, profile = load_plan(HEALTH, None, cache)
    assert profile.name == "health" and suite.name == "health"
    assert json.loads(cache.read_text(encoding="utf-8"))["schema"] == plan_cache.CACHE_SCHEMA


def test_a_cached_entry_whose_plan_is_damaged_is_a_miss(tmp_path: Path) -> None:
    cache = tmp_path / "state.plan.json"
    load_plan(HEALTH, None, cache)
    document = json.loads(cache.read_text(encoding="utf-8"))
    document["entries"][0]["profile"]["thresholds"][0]["value"] = "zero"
    cache.write_text(json.dumps(document), encoding="utf-8")
    key = plan_cache.request_key(HEALTH, None)
    assert plan_cache.lookup(cache, key, plan_cache.agent_fingerprint()) is None
    assert load_plan(HEALTH, None, cache)[1] == load_profile_named("health", DomainCatalog())


def test_several_requests_are_kept_the_oldest_dropped_past_the_limit(tmp_path: Path
                                                                    ) -> None:
    # Slurm's health with one profile and a timer's with another: both stay cached.
    cache = tmp_path / "state.plan.json"
    fingerprint = plan_cache.agent_fingerprint()
    sites = []
    for gpus in range(1, plan_cache.MAX_ENTRIES + 2):
        folder = tmp_path / f"site{gpus}"
        folder.mkdir()
        sites.append(_site_profile(folder, gpus))
        load_plan(HEALTH, str(sites[-1]), cache)
    found = [plan_cache.lookup(cache, plan_cache.request_key(HEALTH, str(site)), fingerprint)
             for site in sites]
    assert found[0] is None  # the oldest, dropped
    assert [_gpu_rule(f[1]) for f in found[1:] if f is not None] == list(
        range(2, plan_cache.MAX_ENTRIES + 2))
    entries = json.loads(cache.read_text(encoding="utf-8"))["entries"]
    assert len(entries) == plan_cache.MAX_ENTRIES


def test_a_file_changed_after_its_load_is_not_cached(tmp_path: Path) -> None:
    site = _site_profile(tmp_path, 8)
    suite = load_suite(HEALTH)
    profile = load_profile_named(str(site))
    site.write_text(site.read_text(encoding="utf-8").replace("value: 8", "value: 4"),
                    encoding="utf-8")
    cache = tmp_path / "state.plan.json"
    key = plan_cache.request_key(HEALTH, str(site))
    plan_cache.store(cache, key, plan_cache.agent_fingerprint(), suite, profile, str(site))
    assert not cache.exists()


def test_an_unwritable_cache_folder_costs_only_the_cache(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    suite, profile = load_plan(HEALTH, None, blocker / "state.plan.json")
    assert (suite.name, profile.name) == ("health", "health")


def test_the_cli_keeps_the_plan_beside_the_state_and_sees_an_edit(tmp_path: Path) -> None:
    # As an SRE runs it: a site profile, then an edit between two runs. The
    # second run judges the edited rule, not the cached one.
    site = _site_profile(tmp_path, 1)
    state = tmp_path / "state" / "health-state.json"

    def run() -> dict[str, object]:
        done = subprocess.run([sys.executable, "-m", "bench_agent", "health", "--no-sign",
                               "--json", "--profile", str(site), "--state", str(state),
                               "--output", str(tmp_path / "spool")],
                              capture_output=True, text=True, cwd=REPO, timeout=120)
        assert done.returncode in (0, 1), done.stderr
        report: dict[str, object] = json.loads(done.stdout)
        return report

    def gpu_verdict(report: dict[str, object]) -> dict[str, object]:
        verdicts = report["verdicts"]
        assert isinstance(verdicts, list)
        found: dict[str, object] = next(v for v in verdicts if v["threshold_id"] == "gpus")
        return found

    first = gpu_verdict(run())
    assert (tmp_path / "state" / "health-state.plan.json").is_file()
    site.write_text(site.read_text(encoding="utf-8").replace("value: 1", "value: 3"),
                    encoding="utf-8")
    second = gpu_verdict(run())
    # This VM has no GPU: "at least 1" and "at least 3" both fail, each with its limit.
    assert first["status"] == second["status"] == "FAIL"
    assert (first["threshold"], second["threshold"]) == (">= 1", ">= 3")


def test_a_file_that_takes_the_place_of_an_extends_is_seen(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    # `extends: ./base.yaml` is read beside the profile first, then from the working
    # directory. Cached while only the working directory's exists; a base.yaml put
    # beside the profile afterwards is what a full load reads, so the cache must
    # not answer with the old one, although no file it recorded changed.
    cwd, folder = tmp_path / "cwd", tmp_path / "profiles"
    cwd.mkdir()
    folder.mkdir()
    monkeypatch.chdir(cwd)
    base = ("name: base\nextends: health\nthresholds:\n  - {id: gpus, metric: "
            "inventory.gpu_count, comparator: '>=', value: %d, source: x}\n")
    (cwd / "base.yaml").write_text(base % 2, encoding="utf-8")
    site = folder / "site.yaml"
    site.write_text("name: site\nextends: ./base.yaml\n", encoding="utf-8")
    cache = tmp_path / "state.plan.json"
    assert _gpu_rule(load_plan(HEALTH, str(site), cache)[1]) == 2
    assert _gpu_rule(load_plan(HEALTH, str(site), cache)[1]) == 2  # from the cache
    (folder / "base.yaml").write_text(base % 6, encoding="utf-8")
    assert plan_cache.lookup(cache, plan_cache.request_key(HEALTH, str(site)),
                             plan_cache.agent_fingerprint()) is None
    assert _gpu_rule(load_plan(HEALTH, str(site), cache)[1]) == 6
