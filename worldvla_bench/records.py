"""An episode's record (`EpisodeRecord`), and the run directory's functions re-exported.

Where records are stored and how they are read back is `worldvla_bench.run_dir` (`RunDir`);
the names below stay importable from here for their many callers.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

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

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.suite, self.task_id, self.trial)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def slugify(text: str, max_len: int = 60) -> str:
    """Lower-case words joined by '_' for file names."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:max_len]
