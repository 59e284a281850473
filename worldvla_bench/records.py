"""An episode's record (`EpisodeRecord`), and the run directory's functions re-exported.

Where records are stored and how they are read back is `worldvla_bench.run_dir` (`RunDir`);
the names below stay importable from here for their many callers.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from worldvla_bench.run_dir import (  # noqa: F401  (re-exported)
    EPISODES_FILE,
    MANIFEST_FILE,
    append_episode,
    episode_key,
    episode_stem,
    load_episode_arrays,
    prepare_run_dir,
    read_episodes,
    read_json,
    rewrite_episodes,
    save_episode_arrays,
    write_json,
)

if TYPE_CHECKING:
    from worldvla_bench.policy import EpisodeContext


@dataclass
class EpisodeRecord:
    """The outcome of one episode. Times in seconds; `steps` counts policy steps (no wait steps).

    `seed` is the policy's (`EpisodeContext.seed`); `seeding`, `scene_seed` and `scene_resets`
    say how the scene was seeded (`worldvla_bench.envs.seeding.SceneSeed`; records without
    them were made under `hashed`, with `seed`). `retries`: how often the episode was started
    again because its worker process died, and `worker_exits` how each of those workers ended.
    `served_model`: what a policy server served the episode (`RemotePolicy.served_model`).
    `slowest_call_s`: the longest policy call (`reset` or `act`) of the episode that returned.
    """

    suite: str
    task_id: int
    task_name: str
    instruction: str
    trial: int
    init_state: int
    seed: int
    policy: str
    success: bool
    steps: int
    max_steps: int
    wall_time_s: float
    policy_time_s: float
    env_time_s: float
    reset_time_s: float
    policy_calls: int
    actions_at_bound_frac: float
    error: str | None = None
    env_build_s: float = 0.0
    video: str | None = None
    episode_file: str | None = None
    worker_pid: int | None = None
    finished_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    seeding: str | None = None
    scene_seed: int | None = None
    scene_resets: int | None = None
    retries: int = 0
    worker_exits: list[str] = field(default_factory=list)
    served_model: dict[str, Any] | None = None
    slowest_call_s: float | None = None

    @classmethod
    def build(cls, context: EpisodeContext, policy: str, *, steps: int = 0,
              actions: np.ndarray | None = None, success: bool = False,
              error: str | None = None, **fields: Any) -> EpisodeRecord:
        """The record of `context`'s episode played by `policy`: the one place records are
        built (a simulated, an imagined and a never-run episode alike). The context gives the
        episode's fields (`init_state` is its trial); `success` counts only without an `error`;
        `actions_at_bound_frac` comes from the executed `actions` (N, 7) (0.0 without any);
        times (s) and `policy_calls` are 0 unless `fields` give them, as any other field."""
        values: dict[str, Any] = {"wall_time_s": 0.0, "policy_time_s": 0.0, "env_time_s": 0.0,
                                  "reset_time_s": 0.0, "policy_calls": 0, **fields}
        return cls(
            suite=context.suite, task_id=context.task_id, task_name=context.task_name,
            instruction=context.instruction, trial=context.trial, init_state=context.trial,
            seed=context.seed, max_steps=context.max_steps, policy=policy,
            success=success and error is None, steps=steps,
            actions_at_bound_frac=round(at_bound_fraction(actions), 4), error=error, **values)

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.suite, self.task_id, self.trial)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def at_bound_fraction(actions: np.ndarray | None) -> float:
    """The share of the arm's six action components (of (N, 7) actions) at the bound |a| >= 1."""
    if actions is None or not len(actions):
        return 0.0
    return float(np.mean(np.abs(np.asarray(actions)[:, :6]) >= 1.0))


def slugify(text: str, max_len: int = 60) -> str:
    """Lower-case words joined by '_' for file names."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:max_len]
