"""What a run measures, and how it is run: two frozen objects passed down the engine unchanged.

`Protocol` holds everything that defines a run's numbers: the suite, the policy and its
arguments, the run seed (episode seeds derive from it), the scene seeding (`envs/seeding.py`),
the camera size, the step limit and the render settings. Two runs with equal protocols measure
the same thing; a run directory refuses to be resumed under another protocol (the manifest
compares them), and `compare` names every field that differs. `RunOptions` holds everything
else: where results go, which episodes, how many workers and where, videos, progress. None of
them moves a number (the reset mode included: resetting in place and rebuilding give the same
states and pixels, tests/test_env.py).

The CLI, the Makefile, the benchmarks and the ablation build these two objects and nothing else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from worldvla_bench.envs.seeding import DEFAULT_SEEDING, check_seeding
from worldvla_bench.errors import BenchError, UnknownChoiceError
from worldvla_bench.tasks import SuiteSpec

#: where workers run: local processes on this machine, or Ray actors (see executors.py)
BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Protocol:
    """What a run measures. `image_size` (px, square) and `max_steps` (policy steps after the
    wait steps) default to the suite's (`None`); `resolved(suite)` fills them in. `fast_render`
    turns MSAA and reflections off (faster; pixels differ slightly: opt-in, never a default).
    `seeding` places the fixtures (`worldvla_bench.envs.seeding.SEEDINGS`: 'openvla', the
    default, as WorldVLA's published numbers; 'openpi'; 'hashed'); policies get the episode's
    hashed seed under every seeding."""

    suite: str
    policy: str = "expert"
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 7
    seeding: str = DEFAULT_SEEDING
    image_size: int | None = None
    max_steps: int | None = None
    fast_render: bool = False

    def __post_init__(self) -> None:
        check_seeding(self.seeding)
        if self.image_size is not None and int(self.image_size) <= 0:
            raise BenchError(f"image size must be positive, got {self.image_size}")
        if self.max_steps is not None and int(self.max_steps) <= 0:
            raise BenchError(f"max steps must be positive, got {self.max_steps}")

    def resolved(self, suite: SuiteSpec) -> Protocol:
        """This protocol with the suite's defaults written out (what the manifest records)."""
        return replace(self, suite=suite.name,
                       image_size=int(self.image_size or suite.image_size),
                       max_steps=int(self.max_steps or suite.max_steps))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The manifest keys that define what a run measures: the fields of `Protocol`.
PROTOCOL_KEYS = tuple(f.name for f in fields(Protocol))


@dataclass(frozen=True)
class RunOptions:
    """How a run is carried out; nothing here changes its numbers.

    `tasks` ('0,3', '0-4'; None: all), `trials` (per task; None: the suite's) and `first_trial`
    (trials first_trial .. first_trial + trials - 1, i.e. init states by index) select episodes;
    `workers` None means one per core (Ray: one per cluster CPU); `hard_reset` rebuilds the
    simulator before every episode, as LIBERO's scripts do, instead of resetting it in place;
    `save_frames` stores every camera frame and simulator state (the world-model track);
    `frame_cameras` (names of the suite's cameras, a tuple or 'a,b'; None: all) limits the frames
    stored to those cameras, and a camera neither stored nor read by the policy is not rendered.
    """

    run_dir: Path = Path("results/run")
    tasks: str | None = None
    trials: int | None = None
    first_trial: int = 0
    workers: int | None = None
    backend: str = "local"
    #: Ray cluster to join: None (start or reuse one in this process), 'auto', or 'HOST:PORT'
    ray_address: str | None = None
    video: bool = False
    video_every: int = 1
    save_frames: bool = False
    frame_cameras: tuple[str, ...] | None = None
    save_episodes: bool = True
    hard_reset: bool = False
    retry_errors: bool = False
    progress: bool = True
    #: seconds an episode may take (env build and reset included) before its worker is stopped
    #: and the episode recorded as an `EpisodeTimeout` error; None: no limit (local backend only)
    episode_timeout: float | None = None
    #: seconds a single policy call (`reset` or `act`, a remote one's network and retries
    #: included) may take before the run warns about it, once; None: never
    slow_call_s: float | None = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir))
        if self.frame_cameras is not None:
            names = (self.frame_cameras.split(",") if isinstance(self.frame_cameras, str)
                     else self.frame_cameras)
            cameras = tuple(dict.fromkeys(str(n).strip() for n in names if str(n).strip()))
            if not cameras:
                raise BenchError("frame cameras: name at least one camera (leave them out for "
                                 "all)")
            if not self.save_frames:
                raise BenchError("frame cameras choose the frames save_frames stores: they need "
                                 "save_frames (--save-frames)")
            object.__setattr__(self, "frame_cameras", cameras)
        if self.backend not in BACKENDS:
            raise UnknownChoiceError("backend", self.backend, list(BACKENDS))
        if self.ray_address is not None and self.backend != "ray":
            raise BenchError("a Ray address needs the ray backend (--backend ray)")
        if self.workers is not None and (isinstance(self.workers, bool) or int(self.workers) < 1):
            raise BenchError(f"workers must be >= 1, got {self.workers} (leave it out for one "
                             f"per core)")
        if self.episode_timeout is not None and not float(self.episode_timeout) > 0:
            raise BenchError(f"episode timeout must be > 0 seconds, got {self.episode_timeout}")
        if self.episode_timeout is not None and self.backend != "local":
            raise BenchError("--episode-timeout needs the local backend")
        if int(self.video_every) < 1:
            raise BenchError(f"video_every must be >= 1, got {self.video_every}")
        if self.slow_call_s is not None and not float(self.slow_call_s) > 0:
            raise BenchError(f"slow_call_s must be > 0 seconds, got {self.slow_call_s}")

    def stored_cameras(self, suite: SuiteSpec) -> tuple[str, ...]:
        """The cameras whose frames `save_frames` stores, in the suite's order (none without
        save_frames); `UnknownChoiceError` (one line naming the valid ones) for a name the suite
        does not have."""
        if not self.save_frames:
            return ()
        if self.frame_cameras is None:
            return tuple(suite.cameras)
        unknown = [c for c in self.frame_cameras if c not in suite.cameras]
        if unknown:
            raise UnknownChoiceError(f"camera for suite {suite.name}",
                                     unknown[0] if len(unknown) == 1 else unknown,
                                     list(suite.cameras))
        return tuple(c for c in suite.cameras if c in self.frame_cameras)
