"""The `wm-eval` probes, run end to end: build the world models, score them, write the tables.

- `run_fidelity_probe`: frames predicted on the logged actions against the recorded ones
  (`evaluate.evaluate_world_model`); `summary.md`, `summary.csv`, `per_clip.csv`, videos.
- `run_counterfactual_probe`: branches of other actions, each against the simulator's replay
  (`counterfactual`); `counterfactual.md`, `counterfactual_*.csv`.
- `run_optimism_probe`: does an imagined failed episode end as a failure, by the success judge
  (`optimism`); `optimism.md`, `optimism.csv`, `optimism_per_episode.csv`.

Each takes the world models as (name, constructor arguments), the first the probed one and the
rest baselines scored in the same table, and returns the markdown and the files written. A new
probe is one more function here and one more `--probe` choice in `commands/wm_eval.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from worldvla_bench.atomic import write_atomic
from worldvla_bench.errors import BenchError
from worldvla_bench.worldmodel.models import make_world_model

#: a world model to build: its name (or module:Class) and its constructor arguments
ModelSpec = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class ProbeOutput:
    """A probe's markdown and a line naming the files it wrote."""

    text: str
    written: str


def run_fidelity_probe(model: ModelSpec, episodes: list, horizons: list[int], out: Path, *,
                       data: Sequence[str], view: str, scoring_convention: str = "standard",
                       save_video: bool = False, progress: bool = True) -> ProbeOutput:
    """Score one world model's frames on the logged actions at each horizon (frames)."""
    from worldvla_bench.worldmodel.evaluate import evaluate_world_model, write_side_by_side

    name, kwargs = model
    world_model = make_world_model(name, **kwargs)
    try:
        result = evaluate_world_model(world_model, episodes, horizons,
                                      convention=scoring_convention,
                                      progress=progress)
    finally:
        world_model.close()
    out.mkdir(parents=True, exist_ok=True)
    result["per_clip"].to_csv(out / "per_clip.csv", index=False)
    summary = result["summary"]
    summary.to_csv(out / "summary.csv", index=False)
    if save_video:
        for clip in result["clips"]:
            write_side_by_side(out / "videos" / f"{clip.episode}_h{clip.horizon}.mp4", clip)
    text = _format_fidelity(summary, result["convention"], name, data, view, scoring_convention)
    write_atomic(out / "summary.md", text.encode("utf-8"))  # last: it marks the probe done
    return ProbeOutput(text, f"{out}/summary.md, summary.csv, per_clip.csv")


def _format_fidelity(summary: pd.DataFrame, scoring: Any, model: str, data: Sequence[str],
                     view: str, scoring_name: str) -> str:
    shown = summary.copy()
    for column, digits in (("fvd", 1), ("fvd_gt_split", 1), ("psnr", 2),
                           ("ssim", 2 if scoring.percent else 3),
                           ("lpips", 2 if scoring.percent else 3)):
        if column in shown:
            # round first: a rounding residue such as -1e-9 would print as "-0.0"
            shown[column] = shown[column].map(
                lambda v, d=digits: "" if v is None or v != v else f"{round(v, d) + 0.0:.{d}f}")
    text = (f"# World model `{model}` on `{', '.join(data)}` ({view} view), "
            f"protocol `{scoring_name}`\n\n"
            f"{shown.to_markdown(index=False, disable_numparse=True)}\n\n"
            f"fvd_n = clips per set; fvd_gt_split = FVD between two halves of the ground truth "
            f"(the small-sample floor).\n")
    if scoring.reference:  # published figures only beside the convention they used
        text += f"{scoring.reference}.\n"
    if (summary.get("fvd_n", pd.Series(dtype=float)).fillna(0) < 256).any():
        text += ("warning: FVD from fewer than 256 clips per set is biased and unstable: "
                 "compare models only at equal N, against the ground-truth split.\n")
    return text


def run_counterfactual_probe(models: Sequence[ModelSpec], episodes: list, horizons: list[int],
                             out: Path, *, data: Sequence[str],
                             scoring_convention: str = "standard", contexts_per_episode: int = 2,
                             seed: int = 0, fvd: bool = True,
                             progress: bool = True) -> ProbeOutput:
    """Branches of other actions from `contexts_per_episode` context frames per episode, at one
    horizon, each world model against the simulator's replay (simulated once for all)."""
    from worldvla_bench.worldmodel.counterfactual import (
        build_contexts,
        format_counterfactual,
        format_counterfactual_summary,
        probe_counterfactuals,
        simulate_truth,
    )

    if len(horizons) != 1:
        raise BenchError(f"--probe counterfactual takes one horizon, got {horizons}")
    horizon = horizons[0]
    first = make_world_model(models[0][0], **models[0][1])  # a bad name fails before simulating
    results = {}
    try:
        contexts = build_contexts(episodes, horizon, contexts_per_episode, seed)
        simulate_truth(contexts, progress=progress)  # once, for every model
        for index, (name, kwargs) in enumerate(models):
            current = first if index == 0 else make_world_model(name, **kwargs)
            try:
                results[name] = probe_counterfactuals(
                    current, episodes, horizon, convention=scoring_convention, seed=seed, fvd=fvd,
                    progress=progress, contexts=contexts)
            finally:
                if current is not first:
                    current.close()
    finally:
        first.close()
    out.mkdir(parents=True, exist_ok=True)
    for key in ("fidelity", "sensitivity", "per_context", "per_branch"):
        pd.concat([r[key].assign(world_model=name) for name, r in results.items()],
                  ignore_index=True).to_csv(out / f"counterfactual_{key}.csv", index=False)
    title = (f"Counterfactual actions on `{', '.join(data)}`, horizon {horizon}, "
             f"protocol `{scoring_convention}`")
    text = "\n".join([format_counterfactual_summary(results, title)] + [
        format_counterfactual(result, f"World model `{name}`", level=2)
        for name, result in results.items()])
    write_atomic(out / "counterfactual.md", text.encode("utf-8"))
    return ProbeOutput(text, f"{out}/counterfactual.md, counterfactual_*.csv")


def run_optimism_probe(models: Sequence[ModelSpec], episodes: list, judge_path: str | Path,
                       out: Path, *, data: Sequence[str], start: int = 0, last_frames: int = 1,
                       progress: bool = True) -> ProbeOutput:
    """Each world model imagines the recorded episodes from frame `start` on their own actions;
    the judge reads the last `last_frames` imagined frames (success if any is)."""
    from worldvla_bench.worldmodel.judge import load_judge
    from worldvla_bench.worldmodel.optimism import format_optimism, imagine_outcomes, summarise

    judge = load_judge(judge_path)
    rows, per_episode = [], []
    for name, kwargs in models:
        model = make_world_model(name, **kwargs)
        try:
            outcomes = imagine_outcomes(model, episodes, judge, start=start,
                                        last_frames=last_frames, progress=progress, desc=name)
        finally:
            model.close()
        rows.append(summarise(outcomes, name))
        per_episode.append(outcomes.assign(world_model=name))
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    table.to_csv(out / "optimism.csv", index=False)
    pd.concat(per_episode, ignore_index=True).to_csv(out / "optimism_per_episode.csv",
                                                     index=False)
    text = format_optimism(table, judge.error_line(), (
        f"Optimism: world models imagining {len(episodes)} recorded episodes of "
        f"{', '.join(str(d) for d in data)} from frame {start} on their own actions; "
        f"the judge reads the last {last_frames} imagined frame(s)"))
    write_atomic(out / "optimism.md", text.encode("utf-8"))
    return ProbeOutput(text, f"{out}/optimism.md, optimism.csv, optimism_per_episode.csv")
