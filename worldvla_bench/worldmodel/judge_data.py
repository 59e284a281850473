"""Labelled frames for the success judge: every agentview frame of recorded episodes, labelled by
the simulator's success check at that step.

Sources:
- run directories recorded with `worldvla-bench eval --save-frames` (read with
  `worldmodel.data.read_run`). `LiberoEnv` ends an episode at the first step whose success check
  passes, so frame t of an episode is a success exactly when t is the last frame of a successful
  episode (`episode_labels`; `tests/test_judge.py` restores every state of a real episode and
  checks this rule against `check_success`).
- hold frames (`hold_frames`): from the final state of a successful episode, the simulator goes on
  for a few steps with the gripper open and the arm still (by default), each frame labelled by
  the success check. One episode gives one positive frame; this gives many more, near the goal.
  With `hold_still` < the hold steps, the hand lifts straight up (`HOLD_LIFT`) after
  `hold_still` steps, to show successes with the hand away from the object too (in a success's
  last frame the hand covers it); measured on libero_goal, it did not help
  (docs/world_models_as_simulators.md). Cached beside the run
  (`RunDir.cache_path`: `<run>/judge_hold/<episode>_hold<N>_still<S>`), as `report.md` is.

Frames are uint8 (H, W, 3), upright, as the env returns them. A task is named `suite/task_id`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from worldvla_bench.envs.seeding import scene_of
from worldvla_bench.errors import BenchError
from worldvla_bench.run_dir import RunDir, load_episode_arrays, save_episode_arrays
from worldvla_bench.worldmodel.data import WMEpisode, read_run

HOLD_DIR = "judge_hold"
HOLD_LIFT = 0.3  # then this z action (OSC_POSE: 0.3 x 0.05 m = 1.5 cm per step up), gripper open


def task_key(suite: str, task_id: int) -> str:
    """The name of a task in the judge's data and heads: 'suite/task_id'."""
    return f"{suite}/{int(task_id)}"


@dataclass
class LabelledFrames:
    """Frames with per-frame success labels and where each came from (all arrays of length N).

    `episode`: a unique id of the recorded episode ('<run>/<episode stem>'), shared by its hold
    frames, so a split by episode keeps them together; `source`: the run's name (the policy);
    `step`: frame index in its episode (hold frames continue after the last one); `final`: the
    last recorded frame of its episode (what a judge of whole episodes reads); `hold`: a hold frame.
    """

    frames: np.ndarray
    labels: np.ndarray
    episode: np.ndarray
    task: np.ndarray
    source: np.ndarray
    step: np.ndarray
    final: np.ndarray
    hold: np.ndarray

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise BenchError(f"frames must be uint8 (N, H, W, 3), got {self.frames.dtype} "
                             f"{self.frames.shape}")
        n = len(self.frames)
        for f in fields(self):
            if len(getattr(self, f.name)) != n:
                raise BenchError(f"LabelledFrames.{f.name} has {len(getattr(self, f.name))} "
                                 f"entries for {n} frames")

    def __len__(self) -> int:
        return len(self.frames)

    def subset(self, mask: np.ndarray) -> LabelledFrames:
        """The frames where `mask` (bool (N,) or an index array) selects."""
        return LabelledFrames(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})

    def save(self, path: Path | str) -> None:
        """As a compressed numpy archive (strings as fixed-width unicode)."""
        save_episode_arrays(Path(path), **{f.name: np.asarray(getattr(self, f.name))
                                           for f in fields(self)})

    @classmethod
    def load(cls, path: Path | str) -> LabelledFrames:
        arrays = load_episode_arrays(Path(path))
        missing = [f.name for f in fields(cls) if f.name not in arrays]
        if missing:
            raise BenchError(f"{path} is not a labelled-frames file (missing {missing})")
        return cls(**{f.name: arrays[f.name] for f in fields(cls)})

    @classmethod
    def concatenate(cls, parts: Sequence[LabelledFrames]) -> LabelledFrames:
        if not parts:
            raise BenchError("no labelled frames to concatenate")
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                      for f in fields(cls)})


def episode_labels(n_frames: int, success: bool) -> np.ndarray:
    """Per-frame success of a recorded episode: only its last frame, and only if it succeeded
    (the env ends an episode on its first success; the frames before it failed the check)."""
    labels = np.zeros(n_frames, dtype=bool)
    if success and n_frames:
        labels[-1] = True
    return labels


def _episode_frames(run_name: str, episode: WMEpisode, success: bool, every: int,
                    hold: tuple[np.ndarray, np.ndarray] | None) -> LabelledFrames:
    n = len(episode.frames)
    labels = episode_labels(n, success)
    keep = np.zeros(n, dtype=bool)
    keep[::every] = True
    keep |= labels
    keep[-1] = True  # the final frame always (what an episode judge reads)
    index = np.flatnonzero(keep)
    frames, steps = episode.frames[index], index
    hold_labels = np.zeros(0, dtype=bool)
    if hold is not None:
        hold_frames_, hold_labels = hold
        frames = np.concatenate([frames, hold_frames_])
        steps = np.concatenate([steps, n - 1 + np.arange(1, len(hold_frames_) + 1)])
    total = len(frames)
    is_hold = np.arange(total) >= len(index)
    return LabelledFrames(
        frames=frames,
        labels=np.concatenate([labels[index], hold_labels]),
        episode=np.full(total, f"{run_name}/{episode.name}"),
        task=np.full(total, task_key(episode.meta["suite"], episode.meta["task_id"])),
        source=np.full(total, run_name),
        step=steps.astype(np.int64),
        final=np.concatenate([index == n - 1, np.zeros(len(hold_labels), dtype=bool)]),
        hold=is_hold,
    )


def _success_by_stem(run_dir: Path) -> dict[str, bool]:
    return {Path(r["episode_file"]).stem: bool(r["success"])
            for r in RunDir(run_dir).finished_with_arrays()}


def read_labelled_runs(run_dirs: Iterable[Path | str], tasks: set[str | int] | None = None,
                       every: int = 1, hold_steps: int = 0, hold_still: int | None = None,
                       view: str = "agentview", progress: bool = True) -> LabelledFrames:
    """Labelled frames of runs recorded with `--save-frames`.

    tasks: keep only these tasks, as keys ('suite/task_id') or ids of any suite (None: all);
    every: keep every n-th frame of an episode (its positive and final frames always);
    hold_steps: add that many hold frames after each successful episode (`hold_frames`, cached
    in the run directory), the first `hold_still` of them with the arm still (None: all).
    """
    if every < 1 or hold_steps < 0:
        raise BenchError(f"every must be >= 1 and hold_steps >= 0, got {every}, {hold_steps}")
    parts: list[LabelledFrames] = []
    holder = _Holder() if hold_steps else None
    try:
        for run_dir in map(Path, run_dirs):
            success = _success_by_stem(run_dir)
            episodes = [e for e in read_run(run_dir, view=view) if tasks is None
                        or task_key(e.meta["suite"], e.meta["task_id"]) in tasks
                        or int(e.meta["task_id"]) in tasks]
            for episode in tqdm(episodes, desc=f"frames of {run_dir.name}", unit="episode",
                                disable=not progress):
                ok = success[episode.name]
                hold = None
                if holder is not None and ok:
                    still = hold_steps if hold_still is None else min(hold_still, hold_steps)
                    hold = holder.cached(run_dir, episode, hold_steps, still)
                parts.append(_episode_frames(run_dir.name, episode, ok, every, hold))
    finally:
        if holder is not None:
            holder.close()
    if not parts:
        raise BenchError(f"no episodes of tasks {sorted(tasks or [])} in the runs given")
    return LabelledFrames.concatenate(parts)


def hold_frames(env, episode: WMEpisode, steps: int,
                still_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Restore the episode's final state and take `steps` steps: `still_steps` (None: all) with
    the suite's wait action (arm still, gripper open), then lifting the hand (`HOLD_LIFT`):
    the agentview frames (steps, H, W, 3) and the success check of each (steps,) bool. `env` is
    a `LiberoEnv` of the episode's task (agentview, no wait steps)."""
    if episode.states is None:
        raise BenchError(f"episode {episode.name} has no simulator states (record with "
                         f"`eval --save-frames`)")
    env.reset(options={"init_state": int(episode.meta["trial"]),
                       "scene": scene_of(episode.meta)})  # the fixtures where they stood
    control = None if episode.control_states is None else episode.control_states[-1]
    env.restore_sim_state(episode.states[-1], control)
    still = np.asarray(env.suite.wait_action, dtype=np.float64)
    lift = still.copy()
    lift[2] = HOLD_LIFT
    still_steps = steps if still_steps is None else still_steps
    frames, labels = [], []
    for step in range(steps):
        obs, _, _, _, info = env.step(still if step < still_steps else lift)
        frames.append(obs["agentview_image"])
        labels.append(bool(info["success"]))
    return np.stack(frames), np.asarray(labels, dtype=bool)


class _Holder:
    """One `LiberoEnv` per (suite, task, image size), reused across episodes, for hold frames."""

    def __init__(self) -> None:
        self._env = None
        self._key: tuple | None = None

    def cached(self, run_dir: Path, episode: WMEpisode, steps: int, still: int):
        path = RunDir(run_dir).cache_path(HOLD_DIR, f"{episode.name}_hold{steps}_still{still}")
        if path.exists():
            arrays = load_episode_arrays(path)
            return arrays["frames"], arrays["labels"]
        size = int(episode.frames.shape[1])
        key = (episode.meta["suite"], int(episode.meta["task_id"]), size)
        if self._key != key:
            self.close()
            from worldvla_bench.envs.libero_env import LiberoEnv

            self._env = LiberoEnv(key[0], key[1], image_size=size, cameras=("agentview",),
                                  wait_steps=0, max_steps=10**9)
            self._key = key
        frames, labels = hold_frames(self._env, episode, steps, still)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_episode_arrays(path, frames=frames, labels=labels)
        return frames, labels

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
            self._key = None


def policy_of_run(run_dir: Path | str) -> str:
    """'policy k=v ...' of a run, from its manifest (provenance for the judge's checkpoint)."""
    config = RunDir(run_dir).config()
    kwargs = " ".join(f"{k}={v}" for k, v in sorted(config.get("policy_kwargs", {}).items()))
    return f"{config.get('policy', '?')} {kwargs}".strip()
