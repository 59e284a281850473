"""Scene seedings: what seeds LIBERO's random number generator before an episode's reset.

LIBERO draws from numpy's global RNG on every reset (`env.seed(s)` is `np.random.seed(s)`,
libero/libero/envs/bddl_base_domain.py): the open/close and on/off samplers, the robot's
initialisation noise (magnitude 0, still drawn) and the placement samplers, which also place the
fixtures (stove, cabinet, rack) by writing the model's body positions. Init states hold only the
simulator state, so the draws decide where the fixtures stand: a policy sees, and may touch, a
different scene under another seed (12% / 19% / 6% of agentview pixels on libero_spatial 0 /
libero_goal 3 / libero_10 9, seeds 0 vs 12345, /work/shared/DESIGN.md section 6).

The seedings (`--seeding`):

- `openvla` (the default; WorldVLA's published numbers): `env.seed(0)` once when the task's env
  is built, then trials in order, each a hard reset (OpenVLA experiments/robot/libero/
  libero_utils.py `get_libero_env`, run_libero_eval.py; WorldVLA worldvla/libero_util/
  libero_utils.py `get_libero_env`, eval_solver_libero_256.py). The scene of trial i depends on
  the draws of resets 0..i-1, and LIBERO registers its property samplers again on every model
  load, so reset k draws them k + 2 times (once for the constructor's load).
- `openpi`: the same loop with `env.seed(7)` (openpi examples/libero/main.py, `_get_libero_env`).
- `hashed`: before this option, our only behaviour: every episode seeds the env with its own
  hashed seed (`episode_seed`) and draws the samplers once (runs without a `seeding` field in
  their manifest or records were made so).

Policies are seeded apart from the scene: `EpisodeContext.seed` is `episode_seed(...)` under
every seeding, so that policies draw distinct numbers per episode although the scene seed is 0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worldvla_bench.errors import BenchError, UnknownChoiceError

#: the env seed of each reference seeding (None: per episode, hashed from the run seed)
SEEDINGS: dict[str, int | None] = {"openvla": 0, "openpi": 7, "hashed": None}
#: the seeding of WorldVLA's published numbers (OpenVLA's loop)
DEFAULT_SEEDING = "openvla"
#: what a run, record or manifest without a `seeding` field was made with
LEGACY_SEEDING = "hashed"


def episode_seed(run_seed: int, suite: str, task_id: int, trial: int) -> int:
    """The episode's seed: a pure function of (run seed, suite, task, trial), in [0, 2**31).

    Policies always get it (`EpisodeContext.seed`); under the `hashed` seeding it seeds the
    scene too.
    """
    digest = hashlib.sha256(f"{run_seed}/{suite}/{task_id}/{trial}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def check_seeding(name: str) -> str:
    """`name` if it is a known seeding, else a clear error listing them."""
    if name not in SEEDINGS:
        raise UnknownChoiceError("seeding", name, list(SEEDINGS))
    return name


@dataclass(frozen=True)
class SceneSeed:
    """How an episode's scene is seeded: `seeding` (a key of `SEEDINGS`), `seed` (what `env.seed`
    got) and `resets` (how many resets the reference loop ran after `env.seed` and before this
    episode's: the trial index under `openvla`/`openpi`, trials in order; 0 under `hashed`).

    Under a reference seeding the env reproduces the reference loop's reset `resets` exactly
    (its RNG state and the number of property samplers), in any process and whatever ran before.
    """

    seeding: str
    seed: int
    resets: int = 0

    def __post_init__(self) -> None:
        check_seeding(self.seeding)
        if int(self.resets) < 0:
            raise BenchError(f"scene resets must be >= 0, got {self.resets}")
        if self.seeding == LEGACY_SEEDING and self.resets != 0:
            raise BenchError("the hashed seeding reseeds every episode: resets must be 0")

    @property
    def reference(self) -> bool:
        """True when the scene is that of a reference loop (seeded once, trials in order)."""
        return self.seeding != LEGACY_SEEDING

    def to_record(self) -> dict[str, Any]:
        """The fields an episode record (and `SimOracle`) keeps to rebuild this scene."""
        return {"seeding": self.seeding, "scene_seed": int(self.seed),
                "scene_resets": int(self.resets)}


def scene_seed(seeding: str, run_seed: int, suite: str, task_id: int, trial: int) -> SceneSeed:
    """The scene of trial `trial` of a task under `seeding` (run seed: only `hashed` uses it)."""
    fixed = SEEDINGS[check_seeding(seeding)]
    if fixed is None:
        return SceneSeed(seeding, episode_seed(run_seed, suite, task_id, trial), 0)
    return SceneSeed(seeding, fixed, int(trial))


def scene_of(record: Mapping[str, Any]) -> SceneSeed:
    """The scene an episode record (or world-model episode meta) was recorded in; records made
    before seedings existed carry only `seed` and were `hashed`."""
    if "seeding" not in record or record.get("seeding") is None:
        return SceneSeed(LEGACY_SEEDING, int(record.get("seed", 0)), 0)
    return SceneSeed(str(record["seeding"]), int(record["scene_seed"]),
                     int(record.get("scene_resets", 0)))
