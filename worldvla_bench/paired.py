"""Paired comparison of two arms (e.g. two ablation cells) over the same episodes, when each arm
was trained more than once: episodes pair by a key that includes the training seed.

- `pair_episodes`: the inner join of the two arms on the key (default suite, task, trial and
  training seed; never by row order), one row per pair with `success_a`, `success_b`.
- `mcnemar`: exact McNemar p on the discordant pairs (`compare.exact_mcnemar`), pooled and per
  stratum (e.g. per training seed).
- `bootstrap_difference`: a percentile interval for the difference of success rates (B - A, a
  fraction) by a two-way bootstrap: the tasks and the training seeds are resampled independently
  with replacement (numpy, seeded), and each replicate's difference is the mean over every pair
  of the resampled (task, seed) cells. It accounts for tasks and training runs varying, not only
  for episodes; with two seeds, resampling seeds is coarse (the per-seed McNemar p shows whether
  the seeds agree).
- `pairs_needed`: the paired episodes an exact McNemar test would need to detect the measured
  effect (Connor's formula, see there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm

from worldvla_bench.compare import exact_mcnemar
from worldvla_bench.errors import BenchError

#: suite, task and init state identify an episode; `train_seed` the training run of the arm
PAIR_KEY = ("suite", "task_id", "trial", "train_seed")
TASK = ("suite", "task_id")
SEED = ("train_seed",)


def pair_episodes(a: pd.DataFrame, b: pd.DataFrame,
                  key: Sequence[str] = PAIR_KEY) -> pd.DataFrame:
    """The episodes of both arms with the same `key`, one row per pair: the key columns,
    `success_a` and `success_b` (bool). A key repeated within an arm is an error; episodes
    without a partner are left out (count them with `len(a) - len(pairs)`)."""
    key = list(key)
    for name, arm in (("A", a), ("B", b)):
        missing = [k for k in [*key, "success"] if k not in arm]
        if missing:
            raise BenchError(f"arm {name} has no column {missing[0]!r} to pair episodes by")
        repeated = arm.duplicated(key)
        if repeated.any():
            first = arm[repeated].iloc[0]
            raise BenchError(f"arm {name}: episode {tuple(first[key])} appears twice")
    pairs = a[[*key, "success"]].merge(b[[*key, "success"]], on=key, suffixes=("_a", "_b"))
    pairs["success_a"] = pairs["success_a"].astype(bool)
    pairs["success_b"] = pairs["success_b"].astype(bool)
    return pairs.sort_values(key).reset_index(drop=True)


def discordant(pairs: pd.DataFrame) -> tuple[int, int]:
    """(only A succeeded, only B succeeded) over the pairs."""
    only_a = int((pairs["success_a"] & ~pairs["success_b"]).sum())
    only_b = int((~pairs["success_a"] & pairs["success_b"]).sum())
    return only_a, only_b


def mcnemar(pairs: pd.DataFrame) -> float:
    """Two-sided exact McNemar p of the pairs (1.0 without discordant pairs)."""
    return exact_mcnemar(*discordant(pairs))


def mcnemar_by(pairs: pd.DataFrame, by: str = "train_seed") -> dict[object, float]:
    """Exact McNemar p per value of `by` (e.g. per training seed), in sorted order."""
    return {value: mcnemar(group) for value, group in pairs.groupby(by, sort=True)}


def bootstrap_difference(pairs: pd.DataFrame, rows: Sequence[str] = TASK,
                         cols: Sequence[str] = SEED, n_resamples: int = 10_000,
                         confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the success difference B - A (a fraction) by a two-way bootstrap:
    the levels of `rows` (tasks) and of `cols` (training seeds) are resampled independently
    with replacement, `n_resamples` times with numpy's generator seeded by `seed`; a replicate's
    difference is sum(B - A) / pairs over every pair in the product of the drawn levels (a level
    drawn twice counts twice). Resampling whole clusters carries the episodes' own noise in the
    clusters' means; a single (task, seed) cluster has no spread between clusters, so then the
    pairs themselves are resampled (the ordinary paired bootstrap). NaN for no pairs."""
    if not len(pairs):
        return (float("nan"), float("nan"))
    row_codes, row_levels = pd.MultiIndex.from_frame(pairs[list(rows)]).factorize()
    col_codes, col_levels = pd.MultiIndex.from_frame(pairs[list(cols)]).factorize()
    if len(row_levels) == 1 and len(col_levels) == 1:
        row_codes, row_levels = np.arange(len(pairs)), np.arange(len(pairs))
    diff = pairs["success_b"].astype(float).to_numpy() - pairs["success_a"].astype(float).to_numpy()
    sums = np.zeros((len(row_levels), len(col_levels)))
    counts = np.zeros_like(sums)
    np.add.at(sums, (row_codes, col_codes), diff)
    np.add.at(counts, (row_codes, col_codes), 1.0)
    rng = np.random.default_rng(seed)
    n_rows, n_cols = sums.shape
    # how often each level is drawn in each replicate
    row_draws = rng.multinomial(n_rows, np.full(n_rows, 1.0 / n_rows), size=n_resamples)
    col_draws = rng.multinomial(n_cols, np.full(n_cols, 1.0 / n_cols), size=n_resamples)
    numerator = np.einsum("br,rc,bc->b", row_draws, sums, col_draws)
    denominator = np.einsum("br,rc,bc->b", row_draws, counts, col_draws)
    with np.errstate(invalid="ignore", divide="ignore"):
        replicates = numerator / denominator  # 0/0 where only empty (task, seed) cells drawn
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(replicates, [tail, 1.0 - tail])
    return float(low), float(high)


def pairs_needed(only_a: int, only_b: int, pairs: int, alpha: float = 0.05,
                 power: float = 0.8) -> float:
    """Paired episodes for a two-sided McNemar test at level `alpha` to detect, with `power`,
    the effect measured: discordant fraction psi = (only_a + only_b) / pairs and difference
    delta = (only_b - only_a) / pairs. Connor's approximation (R. J. Connor, "Sample size for
    testing differences in proportions for the paired-sample design", Biometrics 43(1):207-211,
    1987):  n = (z_{1-alpha/2} sqrt(psi) + z_{power} sqrt(psi - delta^2))^2 / delta^2, rounded
    up. It treats pairs as independent (no allowance for tasks or training seeds varying) and
    is approximate for small n. Infinite when no difference was measured; NaN for no pairs."""
    if pairs <= 0:
        return float("nan")
    psi = (only_a + only_b) / pairs
    delta = (only_b - only_a) / pairs
    if delta == 0:
        return float("inf")
    z_alpha, z_power = norm.ppf(1.0 - alpha / 2.0), norm.ppf(power)
    n = (z_alpha * math.sqrt(psi) + z_power * math.sqrt(max(psi - delta**2, 0.0))) ** 2 / delta**2
    return float(math.ceil(n - 1e-9))
