"""Counterfactual probes: does a world model follow actions other than the logged ones?

From a recorded context frame (an episode recorded with simulator states, `eval --save-frames`),
each context is branched into action sequences of one horizon H (`make_branches`):

- `logged`: the episode's own next H actions;
- `noise_<std>`: the logged actions plus Gaussian noise of std 0.05, 0.15 and 0.4 on the six
  motion dimensions (normalised action units, clipped to [-1, 1]; the gripper kept);
- `zero`: no motion, the gripper held at its last command (-1, open, at the episode's start);
- `gripper_toggle`: the logged motion with the gripper command negated;
- `sweep_<axis><sign>`: one translation axis alone at +-0.5 (`SWEEP`), the gripper held;
- `other_episode`: another recorded episode's actions from the same step (when one is long
  enough).

The ground truth of every branch is exact: the simulator replays it from the recorded state of
the context frame, rendering every step (`SimOracle`, the same machinery that scores a world
model's ceiling). Then (`probe_counterfactuals`):

- fidelity: each branch's prediction against its own ground truth (PSNR, SSIM, LPIPS per frame,
  averaged per clip; FVD per branch kind where N and H allow, with N printed);
- sensitivity, per context: the distances between its predicted branches against the
  distances between its ground-truth branches, over all branch pairs: Spearman's rank
  correlation and the spread ratio (mean predicted distance / mean true distance). A model whose
  branches all predict the same frames has sensitivity 0 (no spread, nothing to rank); the
  simulator itself scores 1 and 1. Distances are the RMSE over all frames of two clips, in
  [0, 1] pixel units. Means over contexts carry a 95% bootstrap interval.

Seeds: the noise of context c of episode e is drawn from `default_rng([seed, e, c])`.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from worldvla_bench.errors import BenchError
from worldvla_bench.worldmodel.data import WMEpisode
from worldvla_bench.worldmodel.evaluate import Clip, get_scoring_convention, score_clips
from worldvla_bench.worldmodel.models import PredictionContext, SimOracle, WorldModel

#: std of the Gaussian noise added to the logged motion (normalised action units)
NOISE_SCALES = (0.05, 0.15, 0.4)
#: magnitude of a single-axis translation sweep (normalised action units)
SWEEP = 0.5
#: the gripper command before an episode's first action (LIBERO's wait steps keep it open)
OPEN_GRIPPER = -1.0
BRANCH_KINDS = ("logged", *(f"noise_{s}" for s in NOISE_SCALES), "zero", "gripper_toggle",
                *(f"sweep_{axis}{sign}" for axis in "xyz" for sign in "+-"), "other_episode")


@dataclass
class Branch:
    """One action sequence (H, 7) from a context, and what became of it."""

    kind: str
    actions: np.ndarray
    truth: np.ndarray | None = None  # (H, h, w, 3) uint8, the simulator's frames
    predicted: np.ndarray | None = None  # (H, h, w, 3) uint8, the world model's


@dataclass
class Context:
    """A context frame of one episode (frame `start`) and its branches."""

    episode: WMEpisode
    index: int  # of the episode in the probe's list
    start: int
    branches: list[Branch] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.episode.name}@{self.start}"

    def prediction_context(self) -> PredictionContext:
        return self.episode.prediction_context(self.start)


def held_gripper(episode: WMEpisode, start: int) -> float:
    """The gripper command in force at frame `start`: the last executed action's."""
    return float(episode.actions[start - 1, 6]) if start > 0 else OPEN_GRIPPER


def make_branches(episodes: Sequence[WMEpisode], index: int, start: int, horizon: int,
                  seed: int = 0, context_number: int = 0) -> list[Branch]:
    """The branches of context frame `start` of `episodes[index]` (see the module docstring)."""
    episode = episodes[index]
    logged = np.asarray(episode.actions[start : start + horizon], dtype=np.float64)
    if len(logged) < horizon:
        raise BenchError(f"episode {episode.name}: no {horizon} actions after frame {start}")
    rng = np.random.default_rng([seed, index, context_number])
    grip = held_gripper(episode, start)
    branches = [Branch("logged", logged.copy())]
    for scale in NOISE_SCALES:
        noisy = logged.copy()
        noisy[:, :6] = np.clip(noisy[:, :6] + rng.normal(0.0, scale, (horizon, 6)), -1.0, 1.0)
        branches.append(Branch(f"noise_{scale}", noisy))
    still = np.zeros((horizon, 7))
    still[:, 6] = grip
    branches.append(Branch("zero", still))
    toggled = logged.copy()
    toggled[:, 6] = -toggled[:, 6]
    branches.append(Branch("gripper_toggle", toggled))
    for axis_index, axis in enumerate("xyz"):
        for sign, value in (("+", SWEEP), ("-", -SWEEP)):
            sweep = still.copy()
            sweep[:, axis_index] = value
            branches.append(Branch(f"sweep_{axis}{sign}", sweep))
    for offset in range(1, len(episodes)):
        other = episodes[(index + offset) % len(episodes)]
        if len(other.actions) >= start + horizon:
            branches.append(Branch("other_episode",
                                   np.asarray(other.actions[start : start + horizon], float)))
            break
    return branches


def context_starts(episode: WMEpisode, horizon: int, per_episode: int) -> list[int]:
    """`per_episode` context frames spread evenly over the frames with H actions after them."""
    last = len(episode.actions) - horizon
    if last < 0:
        return []
    if per_episode <= 1:
        return [0]
    return sorted({int(round(x)) for x in np.linspace(0, last, per_episode)})


def pairwise_distances(clips: Sequence[np.ndarray]) -> np.ndarray:
    """RMSE between every pair of clips (i < j), in [0, 1] pixel units; (n*(n-1)/2,)."""
    flat = [np.asarray(c, dtype=np.float64).ravel() / 255.0 for c in clips]
    return np.array([np.sqrt(np.mean((a - b) ** 2))
                     for a, b in itertools.combinations(flat, 2)])


def sensitivity(predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> dict[str, float]:
    """Spearman between predicted and true pairwise branch distances, and the spread ratio.

    No predicted spread (all branches alike) scores 0 on both; no true spread (every branch
    leads to the same frames) leaves both undefined (NaN)."""
    from scipy.stats import spearmanr

    d_pred, d_true = pairwise_distances(predicted), pairwise_distances(truth)
    if len(d_true) == 0 or np.ptp(d_true) == 0:
        return {"spearman": float("nan"), "spread_ratio": float("nan"), "pairs": len(d_true)}
    spread = float(d_pred.mean() / d_true.mean())
    if np.ptp(d_pred) == 0:
        return {"spearman": 0.0, "spread_ratio": spread, "pairs": len(d_true)}
    return {"spearman": float(spearmanr(d_pred, d_true).statistic), "spread_ratio": spread,
            "pairs": len(d_true)}


def mean_with_interval(values: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
    """Mean of the finite values and its 95% percentile-bootstrap interval (NaN if none)."""
    from scipy.stats import bootstrap

    finite = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if len(finite) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(finite.mean())
    if len(finite) < 2 or np.ptp(finite) == 0:
        return mean, mean, mean
    result = bootstrap((finite,), np.mean, confidence_level=0.95, n_resamples=2000,
                       method="percentile", random_state=np.random.default_rng(seed))
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)


def build_contexts(episodes: Sequence[WMEpisode], horizon: int, per_episode: int = 2,
                   seed: int = 0) -> list[Context]:
    """Context frames and their branches for every episode long enough for `horizon`."""
    contexts = []
    for index, episode in enumerate(episodes):
        if episode.states is None or "suite" not in episode.meta:
            raise BenchError(f"episode {episode.name} has no simulator states: counterfactual "
                             "ground truth replays them (record with `eval --save-frames`)")
        for number, start in enumerate(context_starts(episode, horizon, per_episode)):
            context = Context(episode, index, start)
            context.branches = make_branches(episodes, index, start, horizon, seed, number)
            contexts.append(context)
    if not contexts:
        raise BenchError(f"no episode has {horizon} actions after a frame: use a shorter horizon")
    return contexts


def simulate_truth(contexts: Sequence[Context], progress: bool = True) -> None:
    """Fill every branch's ground truth by replaying it in LIBERO from the recorded state."""
    oracle = SimOracle()
    try:
        _predict_all(oracle, contexts, "truth", "simulating", progress)
    finally:
        oracle.close()


def predict_branches(model: WorldModel, contexts: Sequence[Context], progress: bool = True) -> None:
    """Fill every branch's prediction by the world model, from the context frame."""
    _predict_all(model, contexts, "predicted", "imagining", progress)


def _predict_all(model: WorldModel, contexts: Sequence[Context], attribute: str, desc: str,
                 progress: bool) -> None:
    total = sum(len(c.branches) for c in contexts)
    with tqdm(total=total, desc=desc, unit="branch", disable=not progress) as bar:
        for context in contexts:
            frames = context.episode.frames[context.start : context.start + 1]
            for branch in context.branches:
                out = np.asarray(model.predict(frames, branch.actions, context.episode.instruction,
                                               context.prediction_context()))
                expected = (len(branch.actions), *frames.shape[1:])
                if out.shape != expected or out.dtype != np.uint8:
                    raise BenchError(f"world model returned {out.dtype} {out.shape} for "
                                     f"{context.name}/{branch.kind}; expected uint8 {expected}")
                setattr(branch, attribute, out)
                bar.update()


def probe_counterfactuals(model: WorldModel, episodes: Sequence[WMEpisode], horizon: int,
                          per_episode: int = 2, convention: str = "standard", seed: int = 0,
                          fvd: bool = True, progress: bool = True,
                          contexts: list[Context] | None = None) -> dict[str, Any]:
    """Fidelity per branch kind and action sensitivity; see the module docstring.

    `contexts` (from `build_contexts` with `simulate_truth` done) replaces building and
    simulating them from `episodes`, to probe several models against one ground truth.
    Returns `fidelity` (one row per branch kind: clips, PSNR, SSIM, LPIPS, FVD and its N),
    `sensitivity` (one row: contexts, Spearman and spread ratio with 95% intervals),
    `per_context` (the two per context) and `per_branch` (scores per clip)."""
    from worldvla_bench.metrics.i3d import MIN_FRAMES

    scoring = get_scoring_convention(convention)
    if contexts is None:
        contexts = build_contexts(episodes, horizon, per_episode, seed)
        simulate_truth(contexts, progress)
    horizon = len(contexts[0].branches[0].actions)
    predict_branches(model, contexts, progress)

    clips = [Clip(f"{c.name}/{b.kind}", horizon, b.predicted, b.truth)
             for c in contexts for b in c.branches]
    per_branch = score_clips(clips, scoring)
    per_branch.insert(1, "branch", [b.kind for c in contexts for b in c.branches])
    rows = []
    for kind in [k for k in BRANCH_KINDS if k in set(per_branch["branch"])]:
        part = per_branch[per_branch["branch"] == kind]
        row: dict[str, Any] = {"branch": kind, "clips": len(part),
                               **{m: float(part[m].mean()) for m in ("psnr", "ssim", "lpips")},
                               "fvd": float("nan"), "fvd_n": len(part)}
        if fvd and len(part) >= 2 and horizon >= MIN_FRAMES:
            from worldvla_bench.worldmodel.evaluate import fvd_of_clips

            chosen = [clip for clip, k in zip(clips, per_branch["branch"], strict=True)
                      if k == kind]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row["fvd"] = fvd_of_clips(chosen, scoring)["fvd"]
        rows.append(row)
    fidelity = pd.DataFrame(rows)

    per_context = pd.DataFrame([
        {"context": c.name, "branches": len(c.branches),
         **sensitivity([b.predicted for b in c.branches], [b.truth for b in c.branches])}
        for c in contexts])
    spearman = mean_with_interval(per_context["spearman"], seed)
    spread = mean_with_interval(per_context["spread_ratio"], seed)
    summary = pd.DataFrame([{
        "contexts": int(np.isfinite(per_context["spearman"]).sum()),
        "spearman": spearman[0], "spearman_lo": spearman[1], "spearman_hi": spearman[2],
        "spread_ratio": spread[0], "spread_lo": spread[1], "spread_hi": spread[2]}])
    return {"fidelity": fidelity, "sensitivity": summary, "per_context": per_context,
            "per_branch": per_branch, "contexts": contexts, "convention": scoring}


def _fmt(value: float, digits: int) -> str:
    # round first: a rounding residue such as -1e-9 would print as "-0.0"
    return "" if value != value else f"{round(value, digits) + 0.0:.{digits}f}"


def format_counterfactual_summary(results: dict[str, dict[str, Any]], title: str) -> str:
    """One row per world model (`probe_counterfactuals` results against one ground truth):
    sensitivity with its intervals and fidelity over all branches."""
    rows = []
    for name, result in results.items():
        s = result["sensitivity"].iloc[0]
        per_branch = result["per_branch"]
        rows.append({
            "world model": name, "contexts": int(s["contexts"]),
            "Spearman": f"{_fmt(s['spearman'], 3)} [{_fmt(s['spearman_lo'], 3)}, "
                        f"{_fmt(s['spearman_hi'], 3)}]",
            "spread ratio": f"{_fmt(s['spread_ratio'], 3)} [{_fmt(s['spread_lo'], 3)}, "
                            f"{_fmt(s['spread_hi'], 3)}]",
            "PSNR": _fmt(float(per_branch["psnr"].mean()), 2),
            "SSIM": _fmt(float(per_branch["ssim"].mean()), 3),
            "LPIPS": _fmt(float(per_branch["lpips"].mean()), 3),
            "clips": len(per_branch)})
    return "\n".join([
        f"# {title}", "", pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), "",
        "Sensitivity: Spearman between each context's predicted and true branch distances, and "
        "the spread ratio (predicted / true), means over contexts with 95% bootstrap intervals; "
        "the simulator scores 1 and 1, a model that ignores actions 0 and 0. PSNR / SSIM / "
        "LPIPS: every branch's prediction against the simulator's replay of it, mean over "
        "clips (per branch kind below).", ""])


def format_counterfactual(result: dict[str, Any], title: str, level: int = 1) -> str:
    """The markdown report: fidelity per branch kind, then sensitivity with intervals; `level`
    is the heading level of `title`."""
    head, sub = "#" * level, "#" * (level + 1)
    fidelity = result["fidelity"].copy()
    for column, digits in (("psnr", 2), ("ssim", 3), ("lpips", 3), ("fvd", 1)):
        fidelity[column] = fidelity[column].map(lambda v, d=digits: _fmt(v, d))
    s = result["sensitivity"].iloc[0]
    lines = [f"{head} {title}", "", f"{sub} Fidelity per branch (prediction vs the simulator's "
             "replay)", "",
             fidelity.to_markdown(index=False, disable_numparse=True), "",
             "fvd_n = clips per set (FVD is unstable below a few hundred clips).", "",
             f"{sub} Action sensitivity", "",
             f"Over {int(s['contexts'])} contexts: Spearman between predicted and true branch "
             f"distances {_fmt(s['spearman'], 3)} [{_fmt(s['spearman_lo'], 3)}, "
             f"{_fmt(s['spearman_hi'], 3)}], spread ratio {_fmt(s['spread_ratio'], 3)} "
             f"[{_fmt(s['spread_lo'], 3)}, {_fmt(s['spread_hi'], 3)}] (95% bootstrap). "
             "The simulator scores 1 and 1; a model that ignores actions 0 and 0.", ""]
    return "\n".join(lines)
