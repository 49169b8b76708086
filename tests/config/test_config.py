"""config.py: shipped suites and profiles, the guide numbers, inheritance, every error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bench_agent.checks import check_names, metric_catalog
from bench_agent.config.loader import (
    DEFAULT_TIMEOUT_S,
    DOMAINS,
    Profile,
    data_dir,
    load_profile,
    load_profile_named,
    load_suite,
    profile_names,
    resolve_targets,
    suite_names,
)
from bench_agent.core.errors import ConfigError, UsageError
from bench_agent.core.metrics import PARSED_ONLY
from bench_agent.core.thresholds import Comparator, Severity, Threshold
from bench_agent.core.units import Unit
from tests.cli_support import run_cli
from tests.paths import REPO

# The metric catalog, as the checks declare it.
METRICS = metric_catalog()

GUIDE_PROFILES = ("guide-minimum", "guide-recommended", "guide-high-performance")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def by_metric(profile: Profile) -> dict[str, Threshold]:
    """The first threshold of each metric (a later one is a further tier, e.g. warm)."""
    result: dict[str, Threshold] = {}
    for t in profile.thresholds:
        result.setdefault(t.metric, t)
    return result


def profile_with(tmp_path: Path, threshold_yaml: str, name: str = "p.yaml") -> Path:
    body = textwrap.indent(textwrap.dedent(threshold_yaml).strip(), "    ")
    return write(tmp_path, name, "name: p\nthresholds:\n  - " + body.lstrip() + "\n")


def config_error(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    return str(exc.value)


# --- shipped suites ----------------------------------------------------------------


def test_shipped_suites_exist() -> None:
    names = suite_names()
    assert {"quick", "acceptance", *DOMAINS} <= set(names)


@pytest.mark.parametrize("name", suite_names())
def test_every_shipped_suite_loads(name: str) -> None:
    path = data_dir() / f"{name}.yaml"
    suite = load_suite(path)
    assert suite.name == name
    assert suite.path == str(path)
    assert len(suite.sha256) == 64
    assert suite.checks, "a suite runs at least one check"
    for plan in suite.checks:
        assert plan.check in check_names()
        assert plan.timeout > 0
        assert isinstance(plan.params, dict)
    # the profile a suite names is a shipped profile
    assert suite.profile is None or suite.profile in profile_names()


def test_quick_suite_contents() -> None:
    suite = load_suite(data_dir() / "quick.yaml")
    assert [p.check for p in suite.checks] == [
        "inventory", "config.consistency", "cpu.gemm", "memory.stream", "storage.randread",
        "storage.seqread", "storage.seqwrite"]
    inventory, _config, gemm, stream = suite.checks[:4]
    assert inventory.timeout == 60.0
    assert inventory.required is True
    assert gemm.timeout == 120.0
    assert gemm.required is False
    # params are validated and completed with the model's defaults
    assert gemm.params["size"] == 2048
    assert gemm.params["repetitions"] == 3
    assert gemm.params["warmup"] == 1
    assert gemm.params["dtypes"] == ["fp64", "fp32"]
    assert stream.params["repetitions"] == 3
    assert stream.params["array_bytes"] is None
    assert suite.profile == "guide-minimum"


# --- shipped profiles --------------------------------------------------------------


def test_shipped_profiles_exist() -> None:
    names = profile_names()
    for name in (*GUIDE_PROFILES, "guide-inference-minimum", "guide-inference-recommended"):
        assert name in names


@pytest.mark.parametrize("name", profile_names())
def test_every_shipped_profile_loads(name: str) -> None:
    profile = load_profile_named(name)
    assert profile.name == name
    assert profile.thresholds
    assert len(profile.sha256) == 64
    ids = [t.id for t in profile.thresholds]
    assert len(ids) == len(set(ids))
    for t in profile.thresholds:
        assert t.source.strip(), f"{name}: {t.id} has no source"
        assert t.metric in METRICS
        assert t.unit is METRICS[t.metric].unit


@pytest.mark.parametrize("name", GUIDE_PROFILES)
def test_guide_sources_cite_the_guide(name: str) -> None:
    # A guide number cites the guide by title and section; a rule of our own says so
    # and why (tests/test_citations.py checks the form and the quotes).
    for t in load_profile_named(name).thresholds:
        assert (t.source.startswith("AI Infrastructure Requirements Guide, Core Infrastructure"
                                    " Components > ")
                or t.source.startswith("bench-agent: ")), t.id


def test_guide_minimum_numbers() -> None:
    t = by_metric(load_profile_named("guide-minimum"))
    expected = {
        "inventory.logical_cpus": (Comparator.GE, 32.0, Unit.COUNT),
        "inventory.memory_total": (Comparator.GE, 1.28e11, Unit.BYTES),
        "inventory.gpu_memory_min": (Comparator.GE, 2.4e10, Unit.BYTES),
        "inventory.nvme_capacity": (Comparator.GE, 1e13, Unit.BYTES),
        "inventory.nic_speed_max": (Comparator.GE, 2.5e10, Unit.BITS_PER_SECOND),
        "storage.randread_4k_iops": (Comparator.GT, 1e5, Unit.IOPS),
        "storage.seqread_1m_bandwidth": (Comparator.GT, 1e10, Unit.BYTES_PER_SECOND),
        "storage.seqwrite_1m_bandwidth": (Comparator.GT, 1e10, Unit.BYTES_PER_SECOND),
        "storage.randread_4k_latency_p99": (Comparator.LT, 1e-3, Unit.SECONDS),
        "network.tcp_bandwidth": (Comparator.GE, 2.5e10, Unit.BITS_PER_SECOND),
        "network.rdma_write_latency": (Comparator.LT, 1e-5, Unit.SECONDS),
        "network.tcp_latency": (Comparator.LT, 5e-5, Unit.SECONDS),
    }
    # Every guide number is there; any other rule is one of ours, and says so.
    assert set(t) >= set(expected)
    for extra in set(t) - set(expected):
        assert t[extra].source.startswith("bench-agent: "), extra
    for metric, (comparator, value, unit) in expected.items():
        assert t[metric].comparator is comparator, metric
        assert t[metric].value == value, metric  # exact: parsed with Fractions
        assert t[metric].unit is unit, metric
        assert t[metric].upper is None
    assert t["storage.randread_4k_iops"].warn_band == 0.1
    assert t["storage.randread_4k_latency_p99"].severity is Severity.WARN
    assert t["network.tcp_latency"].severity is Severity.WARN
    assert t["network.rdma_write_latency"].severity is Severity.FAIL


def test_guide_recommended_numbers() -> None:
    t = by_metric(load_profile_named("guide-recommended"))
    assert t["inventory.logical_cpus"].value == 64.0
    assert t["inventory.memory_total"].value == 2.56e11
    assert t["network.tcp_bandwidth"].value == 1e11
    assert t["network.tcp_bandwidth"].comparator is Comparator.GE
    assert t["inventory.nic_speed_max"].value == 1e11
    assert t["inventory.nvme_capacity"].value == 5e13
    assert t["inventory.gpu_memory_min"].value == 4e10
    # the guide gives one storage and latency line for every tier
    assert t["storage.randread_4k_iops"].value == 1e5
    assert t["storage.seqread_1m_bandwidth"].value == 1e10
    assert t["network.rdma_write_latency"].value == 1e-5


def test_guide_high_performance_numbers() -> None:
    t = by_metric(load_profile_named("guide-high-performance"))
    assert t["inventory.logical_cpus"].value == 96.0
    assert t["inventory.memory_total"].value == 5.12e11
    assert t["inventory.gpu_memory_min"].value == 8e10
    assert t["inventory.gpu_memory_min"].comparator is Comparator.GE
    assert t["network.tcp_bandwidth"].value == 1e11
    assert t["inventory.nvme_capacity"].value == 5e13
    assert t["network.rdma_write_latency"].value == 1e-5


def test_guide_tiers_are_ordered() -> None:
    tiers = [by_metric(load_profile_named(n)) for n in GUIDE_PROFILES]
    for metric in ("inventory.logical_cpus", "inventory.memory_total", "inventory.gpu_memory_min"):
        values = [tier[metric].value for tier in tiers]
        assert values == sorted(values) and len(set(values)) == 3, metric


# --- extends -----------------------------------------------------------------------


def test_inference_minimum_extends_guide_minimum() -> None:
    parent = load_profile_named("guide-minimum")
    child = load_profile_named("guide-inference-minimum")
    assert child.name == "guide-inference-minimum"
    assert [t.id for t in child.thresholds] == [t.id for t in parent.thresholds]
    c, p = by_metric(child), by_metric(parent)
    assert c["inventory.gpu_memory_min"].value == 1.6e10
    assert "T4" in c["inventory.gpu_memory_min"].source
    assert p["inventory.gpu_memory_min"].value == 2.4e10
    for metric, threshold in p.items():
        if metric != "inventory.gpu_memory_min":
            assert c[metric] == threshold
    assert len(child.sources) == 2
    assert child.sources[0].endswith("guide-minimum.yaml")
    assert child.sources[1].endswith("guide-inference-minimum.yaml")
    assert child.sha256 != parent.sha256


def test_inference_recommended_extends_guide_recommended() -> None:
    c = by_metric(load_profile_named("guide-inference-recommended"))
    assert c["inventory.gpu_memory_min"].value == 2.4e10
    assert c["inventory.logical_cpus"].value == 64.0


def test_user_profile_extends_shipped_and_adds(tmp_path: Path) -> None:
    path = write(tmp_path, "mine.yaml", """
        name: mine
        extends: guide-minimum
        thresholds:
          - id: cpu-vcpus
            metric: inventory.logical_cpus
            comparator: ">="
            value: 48
            source: our fleet
          - id: stream
            metric: memory.stream_triad
            comparator: between
            value: ["10 GB/s", "1 TB/s"]
            warn_band: 0.05
            source: our baseline
    """)
    profile = load_profile_named(str(path))
    t = by_metric(profile)
    assert t["inventory.logical_cpus"].value == 48.0
    assert t["inventory.logical_cpus"].source == "our fleet"
    assert t["inventory.memory_total"].value == 1.28e11  # inherited
    assert t["memory.stream_triad"].comparator is Comparator.BETWEEN
    assert (t["memory.stream_triad"].value, t["memory.stream_triad"].upper) == (1e10, 1e12)
    assert t["memory.stream_triad"].warn_band == 0.05
    parent = load_profile_named("guide-minimum")
    assert len(profile.thresholds) == len(parent.thresholds) + 1  # one added, one replaced


def test_extends_a_sibling_file(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", """
        name: base
        thresholds:
          - {id: a, metric: inventory.logical_cpus, comparator: ">=", value: 8, source: s}
    """)
    child = write(tmp_path, "child.yaml", """
        name: child
        extends: base
        thresholds:
          - {id: b, metric: inventory.gpu_count, comparator: ">=", value: 8, source: s}
    """)
    profile = load_profile(child)
    # config-uniform: the loader adds it to every profile that lacks it (expected.py).
    assert [t.id for t in profile.thresholds] == ["a", "config-uniform", "b"]
    assert profile.sources == [str(tmp_path / "base.yaml"), str(child)]


def test_warn_band_percentage(tmp_path: Path) -> None:
    path = profile_with(tmp_path, """
        id: a
        metric: storage.randread_4k_iops
        comparator: ">"
        value: 100k IOPS
        warn_band: 15%
        required: true
        severity: warn
        source: s
    """)
    t, uniform = load_profile(path).thresholds
    assert uniform.id == "config-uniform"
    assert t.warn_band == pytest.approx(0.15)
    assert t.required is True
    assert t.severity is Severity.WARN
    assert t.value == 1e5


# --- profile errors ----------------------------------------------------------------


def test_unknown_unit(tmp_path: Path) -> None:
    path = profile_with(tmp_path, """
        id: a
        metric: storage.seqread_1m_bandwidth
        comparator: ">"
        value: 10 parsecs
        source: s
    """)
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    message = config_error(exc)
    assert message.startswith(f"{path}: thresholds[0].value: ")
    assert "unknown unit 'parsecs'" in message
    assert "measured in bytes/s" in message
    assert exc.value.file == str(path)
    assert exc.value.key == "thresholds[0].value"


def test_wrong_dimension_mentions_iops(tmp_path: Path) -> None:
    path = profile_with(tmp_path, """
        id: a
        metric: storage.randread_4k_iops
        comparator: ">"
        value: 10 GB/s
        source: s
    """)
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    message = config_error(exc)
    assert str(path) in message
    assert "thresholds[0].value" in message
    assert "'10 GB/s' is in bytes/s, expected a value in IOPS" in message
    assert "storage.randread_4k_iops is measured in IOPS" in message


def test_unknown_metric(tmp_path: Path) -> None:
    path = profile_with(tmp_path, """
        id: a
        metric: storage.teleport_speed
        comparator: ">"
        value: 1
        source: s
    """)
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    message = config_error(exc)
    assert message.startswith(
        f"{path}: thresholds[0].metric: threshold a: unknown metric 'storage.teleport_speed'"
    )
    # Nothing close by spelling: the metrics of the same domain are listed.
    assert "; the storage metrics are storage.randread_4k_iops, " in message
    assert "network." not in message


def test_unknown_comparator(tmp_path: Path) -> None:
    path = profile_with(tmp_path, """
        id: a
        metric: inventory.logical_cpus
        comparator: "=="
        value: 1
        source: s
    """)
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    message = config_error(exc)
    assert str(path) in message
    assert "thresholds[0].comparator" in message
    for comparator in (">=", "<=", "between"):
        assert f"'{comparator}'" in message


def test_between_with_one_value(tmp_path: Path) -> None:
    path = profile_with(tmp_path, """
        id: a
        metric: memory.stream_copy
        comparator: between
        value: 10 GB/s
        source: s
    """)
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    assert config_error(exc) == (
        f"{path}: thresholds[0].value: comparator 'between' takes a list [low, high]"
    )


def test_single_comparator_with_list(tmp_path: Path) -> None:
    path = profile_with(tmp_path, """
        id: a
        metric: memory.stream_copy
        comparator: ">="
        value: [1 GB/s, 2 GB/s]
        source: s
    """)
    with pytest.raises(ConfigError, match=r"comparator '>=' takes a single value"):
        load_profile(path)


def test_between_reversed(tmp_path: Path) -> None:
    path = profile_with(tmp_path, """
        id: a
        metric: memory.stream_copy
        comparator: between
        value: [2 GB/s, 1 GB/s]
        source: s
    """)
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    message = config_error(exc)
    assert message.startswith(f"{path}: thresholds[0].value: threshold a: ")
    assert "upper limit >= the lower" in message


@pytest.mark.parametrize(
    ("band", "says"),
    [("150%", "warn_band must be a fraction in (0, 1)"), ("0", "warn_band must be a fraction"),
     ("lots", "expected a fraction or a percentage like '10%', got 'lots'")],
)
def test_bad_warn_band(tmp_path: Path, band: str, says: str) -> None:
    path = profile_with(tmp_path, f"""
        id: a
        metric: inventory.logical_cpus
        comparator: ">="
        value: 1
        warn_band: "{band}"
        source: s
    """)
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    assert str(path) in config_error(exc)
    assert says in config_error(exc)


def test_unknown_key_in_threshold(tmp_path: Path) -> None:
    path = profile_with(tmp_path, """
        id: a
        metric: inventory.logical_cpus
        comparator: ">="
        value: 1
        source: s
        colour: red
    """)
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    message = config_error(exc)
    assert message == (
        f"{path}: thresholds[0].colour: Extra inputs are not permitted"
        " (allowed keys: id, metric, comparator, value, severity, warn_band, required, source)"
    )


def test_missing_source(tmp_path: Path) -> None:
    path = profile_with(tmp_path, """
        id: a
        metric: inventory.logical_cpus
        comparator: ">="
        value: 1
    """)
    with pytest.raises(ConfigError, match=r"thresholds\[0\]\.source: Field required"):
        load_profile(path)


def test_empty_source(tmp_path: Path) -> None:
    path = profile_with(tmp_path, """
        id: a
        metric: inventory.logical_cpus
        comparator: ">="
        value: 1
        source: ""
    """)
    with pytest.raises(ConfigError, match=r"thresholds\[0\]\.source: .*at least 1 character"):
        load_profile(path)


def test_unknown_top_level_key_in_profile(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "name: p\nthreshold: []\n")
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    assert config_error(exc) == (
        f"{path}: threshold: Extra inputs are not permitted"
        " (allowed keys: name, description, extends, thresholds, topology, configuration)"
    )


def test_duplicate_yaml_key_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", """
        name: p
        thresholds:
          - id: a
            metric: inventory.logical_cpus
            comparator: ">="
            value: 32
            value: 64
            source: s
    """)
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    assert config_error(exc) == f"{path}: duplicate key 'value' at line 7"


def test_duplicate_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", "name: a\nname: b\nchecks: []\n")
    with pytest.raises(ConfigError, match="duplicate key 'name' at line 2"):
        load_suite(path)


def test_duplicate_threshold_id(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", """
        name: p
        thresholds:
          - {id: a, metric: inventory.logical_cpus, comparator: ">=", value: 32, source: s}
          - {id: a, metric: inventory.memory_total, comparator: ">=", value: 1 GB, source: s}
    """)
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    assert config_error(exc) == f"{path}: thresholds[1]: duplicate threshold id 'a'"


def test_extends_loop(tmp_path: Path) -> None:
    write(tmp_path, "loop-a.yaml", "name: loop-a\nextends: loop-b\n")
    write(tmp_path, "loop-b.yaml", "name: loop-b\nextends: loop-a\n")
    with pytest.raises(ConfigError) as exc:
        load_profile(tmp_path / "loop-a.yaml")
    message = config_error(exc)
    assert "profile inheritance loops through 'loop-a'" in message
    assert exc.value.key == "extends"
    assert str(tmp_path / "loop-b.yaml") in message


def test_extends_itself(tmp_path: Path) -> None:
    path = write(tmp_path, "self.yaml", "name: self\nextends: self\n")
    with pytest.raises(ConfigError, match="profile inheritance loops through 'self'"):
        load_profile(path)


def test_extends_loop_through_paths(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: a\nextends: b.yaml\n")
    write(tmp_path, "b.yaml", "name: b\nextends: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_profile(tmp_path / "a.yaml")


def test_extends_unknown_profile(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "name: p\nextends: no-such-profile\n")
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    message = config_error(exc)
    assert message.endswith("unknown profile 'no-such-profile'; see `bench-agent list` "
                            "for every profile")


def test_unknown_profile_name() -> None:
    with pytest.raises(ConfigError) as exc:
        load_profile_named("guide-maximum")
    message = config_error(exc)
    # The nearest names, not the whole list.
    assert message == ("unknown profile 'guide-maximum'; did you mean guide-minimum, "
                       "guide-inference-minimum? "
                       "(every profile: bench-agent list)")


def test_profile_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="no such profile file"):
        load_profile_named(str(missing))
    with pytest.raises(ConfigError) as exc:
        load_profile(missing)
    assert config_error(exc) == f"{missing}: no such file"
    assert exc.value.file == str(missing)


def test_boolean_threshold_value_refused(tmp_path: Path) -> None:
    path = profile_with(tmp_path, """
        id: a
        metric: inventory.logical_cpus
        comparator: ">="
        value: true
        source: s
    """)
    with pytest.raises(ConfigError):
        load_profile(path)


# --- file-level errors (suites and profiles) ---------------------------------------


@pytest.mark.parametrize("loader", [load_suite, load_profile])
def test_file_does_not_exist(tmp_path: Path, loader: object) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as exc:
        loader(missing)  # type: ignore[operator]
    assert config_error(exc) == f"{missing}: no such file"


@pytest.mark.parametrize("loader", [load_suite, load_profile])
def test_invalid_yaml(tmp_path: Path, loader: object) -> None:
    path = write(tmp_path, "bad.yaml", "name: [unclosed\nchecks: {\n")
    with pytest.raises(ConfigError) as exc:
        loader(path)  # type: ignore[operator]
    assert config_error(exc).startswith(f"{path}: not valid YAML: ")


@pytest.mark.parametrize("loader", [load_suite, load_profile])
@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "", "42\n"])
def test_top_level_not_a_mapping(tmp_path: Path, loader: object, text: str) -> None:
    path = write(tmp_path, "list.yaml", text) if text else tmp_path / "empty.yaml"
    if not text:
        path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        loader(path)  # type: ignore[operator]
    assert config_error(exc) == f"{path}: expected a mapping at the top level"


# --- suite errors ------------------------------------------------------------------


def test_unknown_check_in_suite(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", """
        name: s
        checks:
          - check: inventory
          - check: gpu.warp_drive
    """)
    with pytest.raises(ConfigError) as exc:
        load_suite(path)
    message = config_error(exc)
    assert message.startswith(f"{path}: checks[1].check: unknown check 'gpu.warp_drive'")
    assert message.endswith("unknown check 'gpu.warp_drive'; see `bench-agent list` for "
                            "every check")


def test_bad_check_param_type(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", """
        name: s
        checks:
          - check: inventory
          - check: cpu.gemm
            params: {size: big}
    """)
    with pytest.raises(ConfigError) as exc:
        load_suite(path)
    message = config_error(exc)
    assert message.startswith(f"{path}: checks[1].params.size: ")
    assert "valid integer" in message
    assert exc.value.key == "checks[1].params.size"


def test_check_param_out_of_range(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", """
        name: s
        checks:
          - check: cpu.gemm
            params: {size: 8}
    """)
    with pytest.raises(ConfigError) as exc:
        load_suite(path)
    assert exc.value.key == "checks[0].params.size"
    assert "greater than or equal to 64" in config_error(exc)


def test_unknown_check_param(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", """
        name: s
        checks:
          - check: inventory
          - check: cpu.gemm
            params: {sise: 1024}
    """)
    with pytest.raises(ConfigError) as exc:
        load_suite(path)
    assert config_error(exc) == f"{path}: checks[1].params.sise: Extra inputs are not permitted"


def test_params_on_check_that_takes_none(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", """
        name: s
        checks:
          - check: inventory
            params: {verbose: true}
    """)
    with pytest.raises(ConfigError) as exc:
        load_suite(path)
    assert exc.value.key == "checks[0].params.verbose"


@pytest.mark.parametrize(
    ("timeout", "says"),
    [
        ("forever", "cannot read 'forever'"),
        ("0s", "a duration must be positive"),
        ("-5s", "a duration must be positive"),
        ("10 GB", "expected a value in s"),
    ],
)
def test_bad_timeout(tmp_path: Path, timeout: str, says: str) -> None:
    path = write(tmp_path, "s.yaml", f"""
        name: s
        checks:
          - check: inventory
            timeout: "{timeout}"
    """)
    with pytest.raises(ConfigError) as exc:
        load_suite(path)
    message = config_error(exc)
    assert message.startswith(f"{path}: checks[0].timeout: ")
    assert says in message


@pytest.mark.parametrize(("timeout", "seconds"), [("30m", 1800.0), ("90", 90.0), (45, 45.0),
                                                   ("1.5 h", 5400.0)])
def test_good_timeout(tmp_path: Path, timeout: object, seconds: float) -> None:
    text = f"name: s\nchecks:\n  - check: inventory\n    timeout: {timeout}\n"
    path = write(tmp_path, "s.yaml", text)
    assert load_suite(path).checks[0].timeout == seconds


def test_default_timeout(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", "name: s\nchecks:\n  - check: inventory\n")
    plan = load_suite(path).checks[0]
    assert plan.timeout == DEFAULT_TIMEOUT_S
    assert plan.required is False
    assert plan.params == {}


def test_zero_minute_timeout_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", "name: s\nchecks:\n  - check: inventory\n    timeout: 0m\n")
    with pytest.raises(ConfigError, match="checks\\[0\\]\\.timeout"):
        load_suite(path)


def test_malformed_timeout_is_config_error(tmp_path: Path) -> None:
    text = "name: s\nchecks:\n  - check: inventory\n    timeout: 1.2.3m\n"
    path = write(tmp_path, "s.yaml", text)
    with pytest.raises(ConfigError, match="checks\\[0\\]\\.timeout"):
        load_suite(path)


def test_unknown_key_in_suite_entry(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", "name: s\nchecks:\n  - check: inventory\n    retries: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_suite(path)
    assert config_error(exc) == (
        f"{path}: checks[0].retries: Extra inputs are not permitted"
        " (allowed keys: check, params, timeout, required, confirm)"
    )


def test_suite_missing_checks(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", "name: s\n")
    with pytest.raises(ConfigError) as exc:
        load_suite(path)
    assert config_error(exc) == f"{path}: checks: Field required"


def test_suite_digest_is_of_the_bytes(tmp_path: Path) -> None:
    import hashlib

    path = write(tmp_path, "s.yaml", "name: s\nchecks:\n  - check: inventory\n")
    assert load_suite(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# --- resolve_targets ---------------------------------------------------------------


@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_gives_its_suite(domain: str) -> None:
    suite = resolve_targets([domain])
    expected = load_suite(data_dir() / f"{domain}.yaml")
    assert suite.name == domain
    assert suite.checks == expected.checks
    assert suite.sha256 == expected.sha256
    assert suite.path == str(data_dir() / f"{domain}.yaml")


def test_no_target_is_quick() -> None:
    assert resolve_targets([]).name == "quick"


def test_check_name_gives_one_check_suite_with_defaults() -> None:
    suite = resolve_targets(["cpu.gemm"])
    assert suite.name == "cpu.gemm"
    assert len(suite.checks) == 1
    (plan,) = suite.checks
    assert plan.check == "cpu.gemm"
    assert plan.params == {
        "size": 2048,
        "repetitions": 5,
        "warmup": 1,
        "dtypes": ["fp64", "fp32"],
        "modes": ["all_cores", "one_core"],
    }
    assert plan.timeout == DEFAULT_TIMEOUT_S
    assert plan.required is False
    assert suite.profile is None
    assert len(suite.sha256) == 64


def test_several_targets_merge_without_duplicates() -> None:
    suite = resolve_targets(["cpu", "quick", "inventory"])
    assert suite.name == "cpu+quick+inventory"
    assert [p.check for p in suite.checks] == [
        "inventory", "cpu.gemm", "memory.stream", "config.consistency", "storage.randread",
        "storage.seqread", "storage.seqwrite"]
    # the first occurrence wins: cpu.yaml's parameters, not quick.yaml's
    gemm = suite.checks[1]
    assert gemm.params["repetitions"] == 5
    assert gemm.timeout == 300.0
    assert suite.checks[0].required is True
    assert suite.profile == "guide-minimum"


def test_check_then_suite_keeps_order() -> None:
    suite = resolve_targets(["memory.stream", "cpu"])
    assert [p.check for p in suite.checks] == ["memory.stream", "inventory", "cpu.gemm"]
    assert suite.checks[0].params["repetitions"] == 5  # the check's default
    assert suite.checks[0].timeout == DEFAULT_TIMEOUT_S


def test_merged_digest_depends_on_targets() -> None:
    a = resolve_targets(["cpu", "inventory"]).sha256
    b = resolve_targets(["inventory", "cpu"]).sha256
    assert a == resolve_targets(["cpu", "inventory"]).sha256
    assert a != b


def test_same_target_twice() -> None:
    suite = resolve_targets(["cpu.gemm", "cpu.gemm"])
    assert [p.check for p in suite.checks] == ["cpu.gemm"]


@pytest.mark.parametrize(("targets", "hint"), [
    (["warp"], "see `bench-agent list` for every domain, suite and check"),
    (["cpu", "acceptnce"], "did you mean acceptance? (every domain, suite and check: "
     "bench-agent list)"),
    (["cpu.gemm", "gpu.matmull"], "did you mean gpu.matmul? (every domain, suite and check: "
     "bench-agent list)"),
])
def test_unknown_target_suggests_the_nearest_names(targets: list[str], hint: str) -> None:
    with pytest.raises(UsageError) as exc:
        resolve_targets(targets)
    assert str(exc.value) == f"{targets[-1]!r} is not a domain, suite or check; {hint}"


# --- the metric catalog matches the checks --------------------------------------------


# Metrics the catalog once listed although no check measures them (the parsers
# read them, no check runs those tests): a threshold on one loaded and was never
# judged. They must stay out until a check emits them.
PHANTOM_METRICS = (
    "network.udp_bandwidth", "network.udp_lost_packets", "network.udp_jitter",
    "network.rdma_read_latency", "network.rdma_read_bandwidth",
    "nccl.alltoall_busbw", "nccl.broadcast_busbw", "nccl.reduce_busbw", "nccl.sendrecv_busbw",
)


def test_no_metric_is_catalogued_that_no_check_measures() -> None:
    # The catalog is built from the checks' declarations (tests/checks/test_catalog.py
    # pins it); what only the parsers read, or what was once listed by hand
    # without a check, stays out.
    for metric in PHANTOM_METRICS:
        assert metric not in METRICS
    assert not PARSED_ONLY & set(METRICS)


def test_checks_emit_only_declared_metrics_in_catalog_units(tmp_path: Path) -> None:
    """The checks that can run here, in the real worker: what they emit is declared
    and catalogued in the unit they measure in (the declarations cannot lie)."""
    from bench_agent.checks import get_check
    from bench_agent.run.runner import run_in_child

    requests = {
        "inventory": {},
        "cpu.gemm": {"size": 64, "repetitions": 2, "warmup": 0},
        # 1 MiB arrays: the STREAM sizing rule (4x the LLC, >= 256 MiB) proves nothing
        # about which metrics and units the check declares, and takes seconds here.
        "memory.stream": {"repetitions": 2, "warmup": 0, "array_bytes": 1024 * 1024},
    }
    for check, params in requests.items():
        outcome = run_in_child({"check": check, "params": params, "root": "/",
                                "output_dir": str(tmp_path), "timeout": 120}, 120)
        assert outcome.status is None, outcome.message
        declared = {spec.name for spec in get_check(check).metrics}
        for m in outcome.measurements:
            assert m.check == check
            assert m.metric in declared, (check, m.metric)
            assert METRICS[m.metric].unit is m.unit, m.metric


# --- unknown metrics, limits outside the metric's domain -----------------------------


def test_unknown_metric_names_file_id_and_nearest_metrics(tmp_path: Path) -> None:
    path = profile_with(tmp_path, """
        id: gpu-cnt
        metric: gpu.cuont
        comparator: ">="
        value: 8
        source: s
    """)
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    assert config_error(exc) == (
        f"{path}: thresholds[0].metric: threshold gpu-cnt: unknown metric 'gpu.cuont';"
        " did you mean gpu.count?")


@pytest.mark.parametrize("metric", ["network.udp_bandwidth", "nccl.alltoall_busbw",
                                    "network.rdma_read_latency"])
def test_a_threshold_on_a_metric_no_check_measures_is_refused(
        tmp_path: Path, metric: str) -> None:
    path = profile_with(tmp_path, f"""
        id: phantom
        metric: {metric}
        comparator: ">="
        value: 1
        source: s
    """)
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    message = config_error(exc)
    why = ": no check measures it (its tool's parser reads it, but no suite runs that test)"
    assert message.startswith(f"{path}: thresholds[0].metric: threshold phantom: "
                              f"unknown metric '{metric}'"
                              + (why if metric in PARSED_ONLY else "") + "; did you mean ")
    suggested = message.split("did you mean ")[1].rstrip("?").split(", ")
    assert suggested and all(name in METRICS for name in suggested)


@pytest.mark.parametrize(("metric", "value", "says"), [
    ("network.tcp_bandwidth", "-25 Gbit/s", "-25 Gbit/s is outside the domain of"
                                            " network.tcp_bandwidth (bits/s cannot be below"),
    ("storage.seqread_1m_bandwidth", "-10 GB/s", "outside the domain"),
    ("storage.randread_4k_iops", "-100k IOPS", "outside the domain"),
    ("inventory.logical_cpus", "-1", "outside the domain"),
    ("network.tcp_latency", "-5 us", "outside the domain"),
    ("gpu.temperature_max", "-300 degC", "degC cannot be below -273 °C"),
])
def test_a_limit_outside_the_metric_domain_is_a_config_error(
        tmp_path: Path, metric: str, value: str, says: str) -> None:
    path = profile_with(tmp_path, f"""
        id: neg
        metric: {metric}
        comparator: ">="
        value: "{value}"
        source: s
    """)
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    message = config_error(exc)
    assert message.startswith(f"{path}: thresholds[0].value: threshold neg: ")
    assert says in message


def test_a_below_zero_rule_that_can_never_pass_is_refused(tmp_path: Path) -> None:
    path = profile_with(tmp_path, """
        id: never
        metric: gpu.xid_events
        comparator: "<"
        value: 0
        source: s
    """)
    with pytest.raises(ConfigError, match=r"thresholds\[0\]\.value: threshold never: "
                                          r"'< 0' can never pass"):
        load_profile(path)


def test_fleet_baseline_limits_are_checked_too(tmp_path: Path) -> None:
    base = "kind: fleet\nmodel: m\nfigures:\n  {metric}:\n    comparator: '>='\n" \
           "    limit: {limit}\n    unit: {unit}\n"
    negative = write(tmp_path, "neg.yaml", base.format(
        metric="network.tcp_bandwidth", limit=-1e9, unit="bits/s"))
    with pytest.raises(ConfigError) as exc:
        load_profile(negative)
    assert config_error(exc).startswith(
        f"{negative}: figures.network.tcp_bandwidth.limit:"
        " threshold fleet-network.tcp_bandwidth:")
    assert "outside the domain" in config_error(exc)
    typo = write(tmp_path, "typo.yaml", base.format(
        metric="network.tcp_bandwith", limit=1e9, unit="bits/s"))
    with pytest.raises(ConfigError) as exc:
        load_profile(typo)
    assert config_error(exc) == (
        f"{typo}: figures.network.tcp_bandwith: unknown metric 'network.tcp_bandwith';"
        " did you mean network.tcp_bandwidth, network.tcp_bandwidth_reverse,"
        " network.tcp_bandwidth_link_ratio?")
    text = write(tmp_path, "text.yaml", base.format(
        metric="network.tcp_bandwidth", limit="lots", unit="bits/s"))
    with pytest.raises(ConfigError, match="limit: Input should be a valid number"):
        load_profile(text)


@pytest.mark.parametrize(("figure", "key", "says"), [
    # A typo is refused, not ignored: "limt" would leave the figure without its limit.
    ("{comparator: '>=', limt: 1000000000.0, unit: bits/s}", "limt",
     "Extra inputs are not permitted (allowed keys: value, unit, comparator, limit, mad,"
     " nodes, fail_fraction, source)"),
    ("{value: 2000000000.0, comparator: '>', limit: 1000000000.0, unit: bits/s}", "comparator",
     "Input should be '>=' or '<='"),
    ("{value: 2000000000.0, comparator: '>=', limit: .inf, unit: bits/s}", "limit",
     "Input should be a finite number"),
    ("{value: 2000000000.0, comparator: '>=', limit: true, unit: bits/s}", "limit",
     "Input should be a valid number"),
    ("{comparator: '>=', limit: 1000000000.0, unit: bits/s, fail_fraction: 2}",
     "fail_fraction", "Input should be less than or equal to 1"),
])
def test_fleet_baseline_is_read_through_its_model(tmp_path: Path, figure: str, key: str,
                                                  says: str) -> None:
    path = write(tmp_path, "f.yaml", "kind: fleet\nmodel: m\nfigures:\n"
                 f"  network.tcp_bandwidth: {figure}\n")
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    assert config_error(exc) == f"{path}: figures.network.tcp_bandwidth.{key}: {says}"


def test_fleet_baseline_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, "f.yaml", "kind: fleet\nmodel: m\nfigure: {}\n")
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    assert config_error(exc) == (f"{path}: figure: Extra inputs are not permitted (allowed"
                                 " keys: kind, model, nvml_names, figures, configuration)")


def test_gpu_profiles_require_their_gpu_count() -> None:
    """What makes gpu-node(-8) GPU profiles: both counts required (thresholds.py)."""
    for name, rule in (("gpu-node", ">= 1"), ("gpu-node-8", "exactly 8")):
        by_id = {t.id: t for t in load_profile_named(name).thresholds}
        for tid, metric in (("gpu-present", "inventory.gpu_count"), ("gpu-count", "gpu.count")):
            t = by_id[tid]
            assert (t.metric, t.required, t.describe()) == (metric, True, rule), (name, tid)


# --- YAML that would exhaust the parser ----------------------------------------------


BOMBS = {
    "long-int": "value: " + "9" * 5000 + "\n",
    "int-over-float": "value: " + "9" * 4000 + "\n",
    "long-quoted": 'value: "' + "9" * 5000 + ' GB/s"\n',
    "deep-list": "value: " + "[" * 20000 + "]" * 20000 + "\n",
    "deep-map": "value: " + "{a: " * 20000 + "1" + "}" * 20000 + "\n",
}


@pytest.mark.parametrize("loader", [load_suite, load_profile])
@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_huge_numbers_and_deep_nesting_are_config_errors(
        tmp_path: Path, loader: object, bomb: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text("name: bomb\n" + BOMBS[bomb], encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        loader(path)  # type: ignore[operator]
    message = config_error(exc)
    if bomb.startswith("deep"):
        assert message == f"{path}: nested deeper than 64 levels at line 2"
    else:
        assert message == f"{path}: a number of more than 100 digits at line 2"


def test_nesting_and_numbers_within_the_bounds_still_load(tmp_path: Path) -> None:
    from bench_agent.config.loader import MAX_YAML_DEPTH, load_yaml_text

    # The top-level mapping is level 1; "value" holds the remaining levels.
    depth = MAX_YAML_DEPTH - 1
    data = load_yaml_text("value: " + "[" * depth + "]" * depth + "\n", "f.yaml")
    assert isinstance(data["value"], list)
    assert load_yaml_text("n: " + "9" * 100 + "\n", "f.yaml") == {"n": int("9" * 100)}
    with pytest.raises(ConfigError, match="nested deeper than 64"):
        load_yaml_text("value: " + "[" * (depth + 1) + "]" * (depth + 1) + "\n", "f.yaml")


def test_an_empty_suite_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", "name: s\nchecks: []\n")
    with pytest.raises(ConfigError) as exc:
        load_suite(path)
    assert config_error(exc) == f"{path}: checks: List should have at least 1 item after" \
                                " validation, not 0"


# --- per-model baselines: the same strict loader ---------------------------------------


def _baseline(tmp_path: Path, figures: str) -> Path:
    return write(tmp_path, "b.yaml", "model: M\nnvml_names: [\"NVIDIA M\"]\nfigures:\n"
                 + textwrap.indent(textwrap.dedent(figures).strip(), "  ") + "\n")


def test_baseline_with_a_duplicate_figure_is_refused(tmp_path: Path) -> None:
    from bench_agent.config.baselines import load_baseline

    path = _baseline(tmp_path, """
        gpu.matmul_bf16: {value: 700 TFLOP/s, source: s}
        gpu.matmul_bf16: {value: 900 TFLOP/s, source: s}
    """)
    with pytest.raises(ConfigError) as exc:
        load_baseline(path)
    assert config_error(exc) == f"{path}: duplicate key 'gpu.matmul_bf16' at line 5"


def test_baseline_figure_on_an_unknown_metric_suggests(tmp_path: Path) -> None:
    from bench_agent.config.baselines import load_baseline

    path = _baseline(tmp_path, "gpu.matmul_bf61: {value: 700 TFLOP/s, source: s}")
    with pytest.raises(ConfigError) as exc:
        load_baseline(path)
    message = config_error(exc)
    assert message.startswith(f"{path}: figures.gpu.matmul_bf61: unknown metric"
                              " 'gpu.matmul_bf61'; did you mean gpu.matmul_bf16")


@pytest.mark.parametrize(("figure", "says"), [
    ("{value: -700 TFLOP/s, source: s}", "value: a baseline figure must be above zero"),
    ("{value: 0, source: s}", "value: a baseline figure must be above zero, got 0 FLOP/s"),
    ("{value: 700 TFLOP/s, ranks: eight, source: s}", "ranks: Input should be a valid integer"),
    ("{value: 700 TFLOP/s, ranks: 0, source: s}",
     "ranks: Input should be greater than or equal to 1"),
    ("{value: 700 TFLOP/s, ranks: true, source: s}", "ranks: Input should be a valid integer"),
    ("{value: 700 TFLOP/s, min_bytes: 8 GB/s, source: s}", "min_bytes: "),
    ("{value: 700 TFLOP/s}", "source: Field required"),
    ("{value: 700 TFLOP/s, source: ''}", "source: String should have at least 1 character"),
])
def test_baseline_figure_values_are_checked(tmp_path: Path, figure: str, says: str) -> None:
    from bench_agent.config.baselines import load_baseline

    path = _baseline(tmp_path, f"gpu.matmul_bf16: {figure}")
    with pytest.raises(ConfigError) as exc:
        load_baseline(path)
    assert config_error(exc).startswith(f"{path}: figures.gpu.matmul_bf16.")
    assert says in config_error(exc)


def test_baseline_unknown_keys_are_refused_not_ignored(tmp_path: Path) -> None:
    """"rank: 8" for "ranks: 8" made an 8-GPU figure judge any GPU count, silently."""
    from bench_agent.config.baselines import load_baseline

    path = _baseline(tmp_path, "nccl.all_reduce_busbw: {value: 232 GB/s, rank: 8, source: s}")
    with pytest.raises(ConfigError) as exc:
        load_baseline(path)
    assert config_error(exc) == (
        f"{path}: figures.nccl.all_reduce_busbw.rank: Extra inputs are not permitted"
        " (allowed keys: value, source, ranks, min_bytes, kind, method, expect)")
    top = write(tmp_path, "t.yaml", "model: M\nnvml_name: [\"NVIDIA M\"]\nfigures: {}\n")
    with pytest.raises(ConfigError) as exc:
        load_baseline(top)
    assert config_error(exc) == (f"{top}: nvml_name: Extra inputs are not permitted"
                                 " (allowed keys: model, nvml_names, nvml_names_source,"
                                 " nvlink_links, nvlink_source, figures)")


@pytest.mark.parametrize(("head", "key", "says"), [
    ("model: ''\nnvml_names: [x]", "model", "String should have at least 1 character"),
    ("model: M\nnvml_names: []", "nvml_names", "List should have at least 1 item"),
    ("model: M\nnvml_names: [1]", "nvml_names[0]", "Input should be a valid string"),
    ("model: M\nnvml_names: NVIDIA M", "nvml_names", "Input should be a valid list"),
])
def test_baseline_head_is_read_through_its_model(tmp_path: Path, head: str, key: str,
                                                 says: str) -> None:
    from bench_agent.config.baselines import load_baseline

    path = write(tmp_path, "b.yaml", head + "\nfigures: {}\n")
    with pytest.raises(ConfigError) as exc:
        load_baseline(path)
    assert config_error(exc).startswith(f"{path}: {key}: {says}")


def test_a_baseline_figure_loads_with_its_collective_bounds(tmp_path: Path) -> None:
    from bench_agent.config.baselines import load_baseline

    path = _baseline(tmp_path, """
        nccl.all_reduce_busbw: {value: 232 GB/s, ranks: 8, min_bytes: 8 GiB, source: s}
        gpu.matmul_bf16: {value: 261 TFLOP/s, source: t}
    """)
    baseline = load_baseline(path)
    assert (baseline.model, baseline.nvml_names) == ("M", ("NVIDIA M",))
    busbw = baseline.figures["nccl.all_reduce_busbw"]
    assert (busbw.value, busbw.ranks, busbw.min_bytes, busbw.source) == (2.32e11, 8, 8 * 2**30,
                                                                         "s")
    assert baseline.figures["gpu.matmul_bf16"].ranks is None


def test_baseline_bomb_is_a_config_error(tmp_path: Path) -> None:
    from bench_agent.config.baselines import load_baseline

    path = tmp_path / "b.yaml"
    path.write_text("model: " + "[" * 20000 + "]" * 20000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="nested deeper than 64 levels at line 1"):
        load_baseline(path)


# --- the command line: exit code 4 -------------------------------------------------


def _cli(*args: str, tmp_path: Path) -> tuple[int, str]:
    import os

    env = {**os.environ, "BENCH_AGENT_KEY": str(tmp_path / "node.key")}
    done = run_cli(*args, env=env, timeout=120, cwd=REPO)
    return done.returncode, done.stdout + done.stderr


def test_cli_unknown_metric_negative_limit_and_bombs_exit_4(tmp_path: Path) -> None:
    unknown = write(tmp_path, "unknown.yaml", """
        name: mine
        extends: gpu-node-8
        thresholds:
          - {id: udp-bw, metric: network.udp_bandwith, comparator: ">=", value: 1 Gbit/s,
             source: s}
    """)
    negative = profile_with(tmp_path, """
        id: bw
        metric: network.tcp_bandwidth
        comparator: ">="
        value: -25 Gbit/s
        source: s
    """, name="negative.yaml")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("name: b\nchecks: " + "[" * 20000 + "]" * 20000 + "\n", encoding="utf-8")
    out = str(tmp_path / "out")
    code, text = _cli("run", "inventory", "--profile", str(unknown), "--no-sign",
                      "--output", out, tmp_path=tmp_path)
    assert code == 4, text
    assert (f"{unknown}: thresholds[0].metric: threshold udp-bw: unknown metric"
            " 'network.udp_bandwith'; did you mean network.tcp_bandwidth,") in text
    code, text = _cli("run", "inventory", "--profile", str(negative), "--no-sign",
                      "--output", out, tmp_path=tmp_path)
    assert code == 4, text
    assert f"{negative}: thresholds[0].value: threshold bw: -25 Gbit/s is outside" in text
    code, text = _cli("run", "--suite-file", str(bomb), "--no-sign", "--output", out,
                      tmp_path=tmp_path)
    assert code == 4, text
    assert f"{bomb}: nested deeper than 64 levels at line 2" in text
    assert "Traceback" not in text
    assert not (tmp_path / "out").exists()  # refused before anything ran
