"""derain_utils.stats.bootstrap: the interval of the report card's means (scipy's bootstrap, degenerate cases)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.stats

from derain_utils.stats import bootstrap
from derain_utils.stats.bootstrap import DegenerateBootstrapWarning


def test_bootstrap_ci_iid_uses_scipy_and_is_deterministic():
    x = np.random.default_rng(0).normal(loc=3.0, size=200)
    r = bootstrap.bootstrap_ci(x, np.mean, seed=1)
    assert r["estimate"] == pytest.approx(x.mean())
    assert r["ci95"][0] < 3.0 < r["ci95"][1]
    ref = scipy.stats.bootstrap((x,), np.mean, n_resamples=2000, method="percentile",
                                rng=np.random.default_rng(1), vectorized=False)
    assert r["ci95"] == pytest.approx([ref.confidence_interval.low, ref.confidence_interval.high])
    assert bootstrap.bootstrap_ci(x, np.mean, seed=1) == r
    bca = bootstrap.bootstrap_ci(x, np.mean, method="BCa", n_resamples=500)
    assert bca["method"] == "BCa" and bca["ci95"][0] < 3.0 < bca["ci95"][1]


def test_bootstrap_ci_paired():
    rng = np.random.default_rng(4)
    x = rng.normal(size=60)
    y = x + 0.1 * rng.normal(size=60)
    corr = lambda a, b: scipy.stats.pearsonr(a, b).statistic  # noqa: E731
    r = bootstrap.bootstrap_ci((x, y), corr, n_resamples=300)
    assert r["ci95"][0] > 0.9 and r["n"] == 60
    with pytest.raises(ValueError, match="equal lengths"):
        bootstrap.bootstrap_ci((x, y[:5]), corr)


def test_bootstrap_ci_drops_undefined_resamples():
    x = np.r_[np.zeros(3), 1.0]

    def stat(a):  # undefined whenever the resample misses the single 1.0
        return 1.0 if a.max() > 0 else math.nan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateBootstrapWarning)
        r = bootstrap.bootstrap_ci(x, stat, n_resamples=1000)
    # P(a resample of 4 misses the 1.0) = (3/4)**4 = 0.316
    assert abs(r["n_dropped"] / 1000 - 0.75 ** 4) < 0.06
    assert r["ci95"] == [1.0, 1.0] and r["method"] == "percentile"


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "studentized"}, "method"), ({"confidence": 1.5}, "confidence"), ({"n_resamples": 0}, "n_resamples"),
])
def test_bootstrap_ci_bad_arguments_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bootstrap.bootstrap_ci(np.arange(5.0), np.mean, **kwargs)


def test_bootstrap_ci_bad_data_is_named():
    with pytest.raises(ValueError, match="1-D"):
        bootstrap.bootstrap_ci(np.zeros((3, 3)), np.mean)
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap.bootstrap_ci(np.array([1.0]), np.mean)
