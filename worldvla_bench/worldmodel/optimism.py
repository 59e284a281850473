"""Optimism: does a world model imagine a failed episode as a failure?

For each recorded episode (a run recorded with `eval --save-frames`: frames, actions, simulator
states, and the simulator's verdict), the world model starts from one real frame (`start`, an
early one) and rolls out the episode's own remaining actions on its own predictions. A success
judge (a frame classifier trained on real frames, `worldvla_bench.worldmodel.judge`) reads the
last imagined frame(s) and calls the imagined episode a success or a failure. Then:

- optimism: the rate of imagined success on episodes that truly failed (lower is better);
- recall: the rate of imagined success on episodes that truly succeeded (higher is better);

each with its 95% Wilson interval, over episodes. The same judge on the episodes' real last
frames gives the judge's floor (what a perfect world model would score, up to the judge's own
errors): `sim-oracle`, which replays the actions in LIBERO from the recorded state, reproduces
those frames exactly and scores it; `copy-last` (the first frame forever) shows what imagining
nothing scores. The judge's held-out error on real frames is printed beside every table.

Reference point: "World Models Dream of Success" (arXiv 2610.09134) found released world models
imagining 80% of 484 verified LIBERO failures as successes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from typing import Protocol as Interface  # typing's; `Protocol` names a run's protocol

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from worldvla_bench.errors import BenchError
from worldvla_bench.report import percent_with_interval
from worldvla_bench.worldmodel.data import WMEpisode
from worldvla_bench.worldmodel.models import WorldModel


class FrameJudge(Interface):
    """What the probe needs of a success judge."""

    def success_probability(self, frames: np.ndarray, suite: str, task_id: int) -> np.ndarray:
        """P(success) of each frame (N, H, W, 3) uint8 upright, for the given task: (N,)."""

    def error_line(self) -> str:
        """One line: the judge's own error on held-out real frames."""


def _verdict_probability(judge: FrameJudge, frames: np.ndarray, meta: dict[str, Any],
                         last_frames: int) -> float:
    """The judge's P(success) of an episode: the highest over its last `last_frames` frames."""
    tail = np.asarray(frames[-last_frames:])
    probs = judge.success_probability(tail, meta["suite"], int(meta["task_id"]))
    return float(np.max(probs))


def _checked(episodes: Sequence[WMEpisode], start: int) -> None:
    for episode in episodes:
        missing = [k for k in ("suite", "task_id", "success") if k not in episode.meta]
        if missing:
            raise BenchError(f"episode {episode.name} has no {', '.join(missing)}: the optimism "
                             "probe needs run directories recorded with `eval --save-frames`")
        if len(episode.actions) <= start:
            raise BenchError(f"episode {episode.name} has {len(episode.actions)} actions; "
                             f"nothing to imagine after frame {start}")


def imagine_outcomes(model: WorldModel, episodes: Sequence[WMEpisode], judge: FrameJudge,
                     start: int = 0, last_frames: int = 1, threshold: float = 0.5,
                     progress: bool = True, desc: str = "imagining", group: int = 32
                     ) -> pd.DataFrame:
    """One row per episode: its true outcome, the judge on its real last frames, and the judge
    on the world model's imagined last frames (rolled out from frame `start` on the episode's
    own actions). Probabilities in [0, 1]; verdicts at `threshold`. Episodes go to the world
    model `group` at a time (`WorldModel.predict_many`: models that batch, batch them)."""
    if start < 0 or last_frames < 1 or not 0.0 < threshold < 1.0:
        raise BenchError(f"need start >= 0, last_frames >= 1 and 0 < threshold < 1; got "
                         f"{start}, {last_frames}, {threshold}")
    _checked(episodes, start)
    rows = []
    with tqdm(total=len(episodes), desc=desc, unit="ep", disable=not progress) as bar:
        for first in range(0, len(episodes), group):
            part = episodes[first:first + group]
            items = [(e.frames[start:start + 1], np.asarray(e.actions[start:], np.float64),
                      e.instruction, e.prediction_context(start)) for e in part]
            for episode, item, imagined in zip(part, items, model.predict_many(items),
                                               strict=True):
                imagined = np.asarray(imagined)
                expected = (len(item[1]), *episode.frames.shape[1:])
                if imagined.shape != expected or imagined.dtype != np.uint8:
                    raise BenchError(f"world model returned {imagined.dtype} {imagined.shape} "
                                     f"for {episode.name}; expected uint8 {expected}")
                p_real = _verdict_probability(judge, episode.frames, episode.meta, last_frames)
                p_imagined = _verdict_probability(judge, imagined, episode.meta, last_frames)
                rows.append({
                    "episode": episode.name, "suite": episode.meta["suite"],
                    "task_id": int(episode.meta["task_id"]),
                    "true_success": bool(episode.meta["success"]),
                    "frames_imagined": len(item[1]),
                    "p_real": p_real, "judged_real_success": p_real >= threshold,
                    "p_imagined": p_imagined, "imagined_success": p_imagined >= threshold,
                })
                bar.update()
    return pd.DataFrame(rows)


def optimism_and_recall(true_success: np.ndarray, imagined_success: np.ndarray,
                        prefix: str = "") -> dict[str, float]:
    """Imagined success on true failures (`optimism`) and on true successes (`recall`), each
    in percent with its 95% Wilson interval (`_lo`, `_hi`; NaN where there are none)."""
    truth = np.asarray(true_success, dtype=bool)
    imagined = np.asarray(imagined_success, dtype=bool)
    row: dict[str, float] = {}
    for name, outcome in (("optimism", False), ("recall", True)):
        chosen = truth == outcome
        rate, low, high = percent_with_interval(int(imagined[chosen].sum()), int(chosen.sum()))
        row.update({f"{prefix}{name}": rate, f"{prefix}{name}_lo": low,
                    f"{prefix}{name}_hi": high})
    return row


def summarise(outcomes: pd.DataFrame, model: str) -> dict[str, Any]:
    """One table row: optimism (imagined success on true failures) and recall (on true
    successes) of the imagined frames, and the same two rates of the judge on the real frames."""
    truth = outcomes["true_success"].to_numpy(bool)
    row: dict[str, Any] = {"world_model": model}
    for prefix, column in (("", "imagined_success"), ("judge_real_", "judged_real_success")):
        row.update(optimism_and_recall(truth, outcomes[column].to_numpy(bool), prefix))
    row["failures"] = int((~truth).sum())
    row["successes"] = int(truth.sum())
    return row


def format_optimism(table: pd.DataFrame, judge_line: str, title: str) -> str:
    """The markdown report of `summarise` rows (percent, 95% Wilson intervals)."""

    def cell(row: pd.Series, key: str) -> str:
        value = row[key]
        if value != value:
            return "n/a"
        return f"{value:.1f} [{row[key + '_lo']:.1f}, {row[key + '_hi']:.1f}]"

    shown = pd.DataFrame([{
        "world model": row["world_model"],
        "true failures": int(row["failures"]),
        "imagined success on failures (optimism) %": cell(row, "optimism"),
        "true successes": int(row["successes"]),
        "imagined success on successes (recall) %": cell(row, "recall"),
        "judge on real frames: failures / successes called success %":
            f"{cell(row, 'judge_real_optimism')} / {cell(row, 'judge_real_recall')}",
    } for _, row in table.iterrows()])
    return "\n".join([
        f"# {title}", "", shown.to_markdown(index=False, disable_numparse=True), "",
        "Rates in percent with 95% Wilson intervals over episodes. Optimism: lower is better; "
        "recall: higher is better. The last column is the judge on the episodes' real last "
        "frames, the floor any world model is judged against (sim-oracle reproduces those "
        "frames, so its row equals it).", "",
        f"Judge: {judge_line}", ""])
