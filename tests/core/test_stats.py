"""stats.py: percentile (numpy's linear definition), summarize, the unstable flag."""

from __future__ import annotations

import math
import random
import statistics

import numpy as np
import pytest

from bench_agent.core.stats import UNSTABLE_SPREAD, Summary, percentile, summarize

# --- percentile --------------------------------------------------------------------


def test_percentile_matches_numpy_on_random_data() -> None:
    rng = random.Random(20240601)
    qs = [0, 0.1, 1, 5, 10, 25, 33.3, 50, 66.7, 75, 90, 95, 99, 99.9, 100]
    checked = 0
    for n in range(1, 60):
        for _ in range(8):
            kind = rng.choice(["normal", "uniform", "ints", "dupes"])
            if kind == "normal":
                values = [rng.gauss(100.0, 30.0) for _ in range(n)]
            elif kind == "uniform":
                values = [rng.uniform(-1e6, 1e6) for _ in range(n)]
            elif kind == "ints":
                values = [float(rng.randint(-50, 50)) for _ in range(n)]
            else:
                values = [rng.choice([1.0, 2.0, 2.0, 3.5]) for _ in range(n)]
            for q in [*qs, rng.uniform(0, 100)]:
                expected = float(np.percentile(values, q))
                got = percentile(values, q)
                # numpy's lerp differs from a + (b - a) * t only in the last ulp
                assert got == pytest.approx(expected, rel=1e-12, abs=1e-9), (values, q)
                checked += 1
    assert checked > 5000


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 25, 1.75),
        ([1.0, 2.0, 3.0, 4.0], 75, 3.25),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([4.0, 1.0, 3.0, 2.0], 50, 2.5),  # order of the input does not matter
        ([10.0, 20.0, 30.0, 40.0, 50.0], 90, 46.0),
        ([7.0], 0, 7.0),
        ([7.0], 37.5, 7.0),
        ([7.0], 100, 7.0),
        ([0.0, 10.0], 99, 9.9),
        ([-5.0, 5.0], 50, 0.0),
    ],
)
def test_percentile_known_values(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected, abs=1e-12)
    assert float(np.percentile(values, q)) == pytest.approx(expected, abs=1e-12)


def test_percentile_does_not_modify_input() -> None:
    values = [3.0, 1.0, 2.0]
    percentile(values, 50)
    assert values == [3.0, 1.0, 2.0]


def test_percentile_accepts_tuple_and_ints() -> None:
    assert percentile((1, 2, 3), 50) == 2
    assert percentile([1, 3], 50) == 2.0


def test_percentile_empty() -> None:
    with pytest.raises(ValueError, match="percentile of no values"):
        percentile([], 50)


@pytest.mark.parametrize("q", [-0.1, 100.1, -50, 1000])
def test_percentile_out_of_range(q: float) -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile([1.0, 2.0], q)


@pytest.mark.parametrize(
    "values", [[math.nan, 1.0, 2.0, 3.0], [3.0, math.nan, 1.0, 2.0], [1.0, 2.0, 3.0, math.nan]]
)
def test_percentile_refuses_nan(values: list[float]) -> None:
    with pytest.raises(ValueError):
        percentile(values, 50)


# --- summarize ---------------------------------------------------------------------


def test_summarize_values() -> None:
    samples = [10.0, 11.0, 12.0, 13.0, 14.0]
    s = summarize(samples)
    assert s.n == 5
    assert s.median == 12.0
    assert s.mean == 12.0
    assert s.minimum == 10.0
    assert s.maximum == 14.0
    assert s.stdev == pytest.approx(statistics.stdev(samples))  # sample stdev (n - 1)
    assert s.stdev == pytest.approx(math.sqrt(2.5))
    # IQR = 13 - 11 = 2, over the median 12
    assert s.relative_spread == pytest.approx(2 / 12)
    assert s.unstable is True


def test_summarize_matches_numpy_on_random_data() -> None:
    rng = random.Random(7)
    for n in range(2, 30):
        samples = [rng.uniform(50.0, 150.0) for _ in range(n)]
        s = summarize(samples)
        assert s.median == pytest.approx(float(np.median(samples)))
        assert s.mean == pytest.approx(float(np.mean(samples)))
        assert s.stdev == pytest.approx(float(np.std(samples, ddof=1)))
        q75, q25 = np.percentile(samples, [75, 25])
        assert s.relative_spread == pytest.approx(float((q75 - q25) / np.median(samples)))


def test_summarize_even_count_median() -> None:
    s = summarize([4.0, 1.0, 3.0, 2.0])
    assert s.median == 2.5
    assert s.minimum == 1.0
    assert s.maximum == 4.0


def test_summarize_single_sample() -> None:
    s = summarize([5.0])
    assert s == Summary(n=1, median=5.0, mean=5.0, minimum=5.0, maximum=5.0, stdev=0.0,
                        relative_spread=0.0)
    assert s.unstable is False


def test_summarize_identical_samples_are_stable() -> None:
    s = summarize([3.0] * 6)
    assert s.stdev == 0.0
    assert s.relative_spread == 0.0
    assert not s.unstable


def test_summarize_tight_samples_are_stable() -> None:
    s = summarize([100.0, 101.0, 99.0, 100.5, 99.5])
    assert s.relative_spread == pytest.approx(1.0 / 100.0)
    assert not s.unstable


def test_one_outlier_does_not_make_it_unstable() -> None:
    # The robust spread (IQR) ignores one slow run among five; stdev/mean would not.
    samples = [100.0, 100.0, 100.0, 100.0, 40.0]
    s = summarize(samples)
    assert s.relative_spread == 0.0
    assert not s.unstable
    assert s.stdev / s.mean > UNSTABLE_SPREAD


def test_unstable_threshold_is_ten_percent_and_strict() -> None:
    assert UNSTABLE_SPREAD == 0.10
    # [90, 95, 100, 105, 110]: IQR = 105 - 95 = 10, median 100 -> spread exactly 0.1
    at_limit = summarize([90.0, 95.0, 100.0, 105.0, 110.0])
    assert at_limit.relative_spread == pytest.approx(0.10)
    assert at_limit.relative_spread <= UNSTABLE_SPREAD
    assert not at_limit.unstable
    above = summarize([89.0, 94.0, 100.0, 106.0, 111.0])
    assert above.relative_spread == pytest.approx(0.12)
    assert above.unstable


def test_zero_median_gives_zero_spread() -> None:
    s = summarize([-1.0, 0.0, 1.0])
    assert s.median == 0.0
    assert s.relative_spread == 0.0


def test_negative_median_spread_is_positive() -> None:
    s = summarize([-10.0, -11.0, -12.0, -13.0, -14.0])
    assert s.relative_spread == pytest.approx(2 / 12)
    assert s.unstable


def test_summarize_accepts_ints_and_tuples() -> None:
    s = summarize((1, 2, 3))
    assert s.median == 2
    assert isinstance(s.mean, float)


def test_summarize_empty() -> None:
    with pytest.raises(ValueError, match="no samples to summarize"):
        summarize([])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_summarize_refuses_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="non-finite sample"):
        summarize([1.0, bad, 2.0])


def test_summary_to_dict() -> None:
    d = summarize([1.0, 2.0, 3.0]).to_dict()
    assert d == {
        "n": 3,
        "median": 2.0,
        "mean": 2.0,
        "min": 1.0,
        "max": 3.0,
        "stdev": 1.0,
        "relative_spread": pytest.approx(1.0 / 2.0),
    }


def test_summary_is_frozen() -> None:
    s = summarize([1.0, 2.0])
    with pytest.raises(AttributeError):
        s.median = 3.0  # type: ignore[misc]
