"""The policy interface, the registry that finds policies by name, and action-chunk checks.

A policy is reset with the episode's context (suite, task, instruction, trial, seed), then maps an
observation (see `worldvla_bench.envs.libero_env`) to an action chunk of shape (K, 7), which the
engine executes open loop before it asks again. One instance serves one worker process.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from worldvla_bench.errors import BenchError, PolicyOutputError
from worldvla_bench.registry import Registry, instantiate

ACTION_DIM = 7


@dataclass(frozen=True)
class EpisodeContext:
    """What a policy is told at the start of an episode."""

    suite: str
    task_id: int
    task_name: str
    instruction: str
    trial: int
    seed: int
    max_steps: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EndEpisode(Exception):  # noqa: N818 - a signal, not an error
    """Raised by `Policy.act` (or put in `act_batch`'s list in place of a chunk) to end the
    episode as a FAILURE, not an error: the policy will not go on, e.g. its output is one its
    published evaluation stops at.

    `actions` (K, 7), maybe empty, are executed first (success is checked after each step as
    usual); then the episode ends, unless it succeeded meanwhile. The record keeps `reason` in
    `extra["ended_by_policy"]` and the report counts such episodes. Remote policies carry it
    over the wire (`worldvla_bench.serving`).
    """

    def __init__(self, reason: str, actions: Any = None) -> None:
        super().__init__(reason)
        self.reason = str(reason)
        self.actions = np.zeros((0, ACTION_DIM)) if actions is None else np.asarray(actions)


class Policy(abc.ABC):
    """Base class: override `act`, and `reset` when the policy keeps per-episode state.

    A policy may also define a classmethod `check_arguments(**kwargs)` that raises ValueError
    for constructor arguments out of range: the registry calls it (`instantiate_check`), so a
    run refuses them in one line before any episode, without building the policy."""

    #: Name of the observation profile the policy expects: the engine applies it (renders its
    #: history frames, crops and resizes images, maps the gripper; see `observation_pipeline`).
    observation_profile: str = "libero"
    #: Square image size (px) the model reads, where the profile leaves it open (None: env's).
    image_size: int | None = None
    #: Cameras the policy reads (None = all the env renders; () = none, e.g. blind policies).
    #: Only these are rendered, and only on steps whose observation the policy reads.
    cameras: tuple[str, ...] | None = None
    #: Scripted policies set this to receive `obs['privileged']` (see `LiberoEnv.privileged_state`).
    requires_privileged_state: bool = False

    def reset(self, context: EpisodeContext) -> None:  # noqa: B027 - optional hook
        """Start a new episode."""

    @abc.abstractmethod
    def act(self, observation: dict[str, Any]) -> np.ndarray:
        """Return an action chunk, float array of shape (K, 7), K >= 1 (or raise
        `EndEpisode` to end the episode as a failure)."""

    def intended_actions(self) -> np.ndarray | None:
        """The (K, 7) actions the policy meant for the chunk `act` last returned, when it
        executed others on purpose (an expert with injected noise or a delayed gripper); None
        (the default): the chunk is what it meant. The engine records them beside the executed
        actions (`intended_actions` in the episode arrays and in the demo files `record`
        writes), so that a learner can be trained on what the expert meant while the frames show
        where its noisy actions led (DART: Laskey et al., "DART: Noise Injection for Robust
        Imitation Learning", CoRL 2017)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (models, connections)."""


#: Policies by name. Built-ins live in the repository's `policies/` folder, installed as
#: `worldvla_bench.policies`; installed packages add theirs through the entry-point group
#: `worldvla_bench.policies` (WorldVLA's integration does, see pyproject.toml).
POLICIES: Registry[type[Policy]] = Registry("policy", base=Policy, group="worldvla_bench.policies")
for _name, _cls in (("expert", "ExpertPolicy"), ("noop", "NoopPolicy"), ("random", "RandomPolicy"),
                    ("remote", "RemotePolicy"), ("replay", "ReplayPolicy")):
    POLICIES.register(_name, f"worldvla_bench.policies.{_name}:{_cls}")
del _name, _cls


def validate_chunk(chunk: Any) -> np.ndarray:
    """Check and normalise a policy output to a float64 (K, 7) array of finite numbers.

    A 1-d array of 7 numbers is taken as K=1.
    """
    try:
        array = np.asarray(chunk, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise PolicyOutputError(f"policy returned a non-numeric action ({error})") from None
    if array.ndim == 1 and array.shape[0] == ACTION_DIM:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != ACTION_DIM or array.shape[0] < 1:
        raise PolicyOutputError(
            f"policy returned an action of shape {tuple(array.shape)}; expected (K, {ACTION_DIM})"
        )
    if not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.isfinite(array)))
        raise PolicyOutputError(f"policy returned {bad} non-finite values (NaN or inf)")
    return array


def policy_names() -> list[str]:
    """Names of the registered policies (built-ins and those of installed packages)."""
    return POLICIES.names()


def resolve_policy_class(name: str) -> type[Policy]:
    """A registered policy by name, or a user's policy as 'package.module:ClassName'."""
    return POLICIES.load(name)


def make_policy(name: str, **kwargs: Any) -> Policy:
    """Instantiate a policy by name with keyword arguments; bad arguments give a clear error."""
    return instantiate(resolve_policy_class(name), kwargs, f"policy {name!r}")


def parse_key_values(items: list[str] | None) -> dict[str, Any]:
    """Parse ['k=v', ...] into a dict; values are read as YAML scalars (numbers, bools, lists).

    Reads `--policy-arg`, `--model-arg` and `serve-policy --policy-arg` alike."""
    import yaml

    parsed: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"bad argument {item!r}: use key=value")
        parsed[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return parsed
