"""Ranking agreement over a policy panel: MMRV as SIMPLER defines it, correlations, intervals."""

from __future__ import annotations

import numpy as np
import pytest

from worldvla_bench.errors import BenchError
from worldvla_bench.worldmodel.ranking import correlations, mmrv, ranking_agreement


def simpler_mmrv(sim, real):
    """SIMPLER's loop, transcribed from simpler_env/utils/metrics.py
    (mean_maximum_rank_violation), as the reference for our vectorised version."""
    out = []
    for i in range(len(sim)):
        worst = 0.0
        for j in range(len(sim)):
            if (sim[i] > sim[j]) != (real[i] > real[j]):
                worst = max(worst, abs(real[i] - real[j]))
        out.append(worst)
    return float(np.mean(out))


def test_mmrv_matches_simplers_loop_on_random_panels():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 9))
        real = rng.integers(0, 11, n) / 10  # ties included
        imagined = rng.integers(0, 11, n) / 10
        assert mmrv(imagined, real) == pytest.approx(simpler_mmrv(imagined, real), abs=1e-12)


def test_mmrv_known_values():
    assert mmrv([0.1, 0.5, 0.9], [0.2, 0.4, 0.8]) == 0.0  # same order
    # reversed order: each policy's worst violation is its gap to the farthest one
    assert mmrv([0.9, 0.5, 0.1], [0.2, 0.4, 0.8]) == pytest.approx((0.6 + 0.4 + 0.6) / 3)


def test_perfect_imagination_agrees_with_narrow_intervals():
    rng = np.random.default_rng(1)
    outcomes = []
    for rate in (0.1, 0.3, 0.5, 0.7, 0.9):
        sim = rng.random(40) < rate
        outcomes.append((sim, sim.copy()))
    result = ranking_agreement(outcomes, n_boot=300)
    assert result["pearson"] == pytest.approx(1.0) and result["spearman"] == pytest.approx(1.0)
    assert result["mmrv"] == 0.0 and result["mmrv_hi"] == 0.0
    assert result["pearson_lo"] == pytest.approx(1.0)


def test_imagination_that_ignores_the_policy_scores_no_correlation():
    rng = np.random.default_rng(2)
    outcomes = [(rng.random(30) < rate, np.ones(30, bool)) for rate in (0.1, 0.5, 0.9)]
    result = correlations([1.0, 1.0, 1.0], [o[0].mean() for o in outcomes])
    assert np.isnan(result["pearson"]) and result["mmrv"] > 0
    agreement = ranking_agreement(outcomes, n_boot=50)
    assert agreement["mmrv"] == pytest.approx(result["mmrv"])


def test_bad_panels_are_refused():
    with pytest.raises(BenchError):
        ranking_agreement([(np.ones(3, bool), np.ones(3, bool))])
    with pytest.raises(BenchError):
        ranking_agreement([(np.ones(3, bool), np.ones(2, bool)), (np.ones(3), np.ones(3))])
