"""Agreement between two evaluations of a panel of policies: simulated and imagined success.

Rates are fractions in [0, 1], one per policy. Three figures, as SIMPLER and WorldEval report them:

- Pearson's r and Spearman's rho between imagined and simulated rates over the panel;
- MMRV, the mean maximum rank violation (SIMPLER; `mean_maximum_rank_violation` in
  simpler_env/utils/metrics.py of simpler-env/SimplerEnv): for each policy i, the largest
  |real_i - real_j| over the policies j that the imagined rates order otherwise than the real
  ones (`(imagined_i > imagined_j) != (real_i > real_j)`), averaged over i. 0 is a perfect
  ranking; it is in rate units (0.1 = a 10-point violation on average).

Intervals: a 95% percentile bootstrap over episodes, resampling each policy's episodes (its pairs
of simulated and imagined outcomes) with replacement, as the rates themselves would vary with
other trials. With few policies the intervals are wide (7 policies and a true r of 0.93 can
measure anywhere in about [0.5, 0.96]); say so rather than hide it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr

from worldvla_bench.errors import BenchError


def mmrv(imagined: Sequence[float], real: Sequence[float]) -> float:
    """Mean maximum rank violation of `imagined` rates against `real` ones (see module doc)."""
    imagined, real = np.asarray(imagined, float), np.asarray(real, float)
    if imagined.shape != real.shape or imagined.ndim != 1:
        raise BenchError(f"need two rate vectors of one length, got {imagined.shape}, {real.shape}")
    violates = (imagined[:, None] > imagined[None, :]) != (real[:, None] > real[None, :])
    gaps = np.abs(real[:, None] - real[None, :])
    return float(np.mean(np.max(np.where(violates, gaps, 0.0), axis=1)))


def correlations(imagined: Sequence[float], real: Sequence[float]) -> dict[str, float]:
    """Pearson and Spearman (NaN where either side has no spread) and MMRV."""
    imagined, real = np.asarray(imagined, float), np.asarray(real, float)
    spread = np.ptp(imagined) > 0 and np.ptp(real) > 0
    return {
        "pearson": float(pearsonr(imagined, real).statistic) if spread else float("nan"),
        "spearman": float(spearmanr(imagined, real).statistic) if spread else float("nan"),
        "mmrv": mmrv(imagined, real),
    }


def ranking_agreement(outcomes: Sequence[tuple[np.ndarray, np.ndarray]], n_boot: int = 2000,
                      seed: int = 0) -> dict[str, float]:
    """Agreement over a panel from per-policy episode outcomes.

    `outcomes[p]` = (simulated, imagined): two boolean arrays over policy p's episodes, paired
    by episode. Returns the point figures of `correlations` and their 95% bootstrap intervals
    (`<name>_lo`, `<name>_hi`; NaN-free resamples only)."""
    if len(outcomes) < 2:
        raise BenchError("ranking needs at least two policies")
    pairs = [(np.asarray(s, float), np.asarray(i, float)) for s, i in outcomes]
    for sim, imag in pairs:
        if sim.shape != imag.shape or not len(sim):
            raise BenchError("each policy needs paired simulated and imagined outcomes")
    real = [s.mean() for s, _ in pairs]
    imagined = [i.mean() for _, i in pairs]
    result = correlations(imagined, real)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {key: [] for key in result}
    for _ in range(n_boot):
        real_b, imag_b = [], []
        for sim, imag in pairs:
            pick = rng.integers(0, len(sim), len(sim))
            real_b.append(sim[pick].mean())
            imag_b.append(imag[pick].mean())
        for key, value in correlations(imag_b, real_b).items():
            if np.isfinite(value):
                draws[key].append(value)
    for key, values in draws.items():
        low, high = (np.percentile(values, [2.5, 97.5]) if values
                     else (float("nan"), float("nan")))
        result[f"{key}_lo"], result[f"{key}_hi"] = float(low), float(high)
    return result
