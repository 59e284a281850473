"""The policy interface, the registry that finds policies by name, and action-chunk checks.

A policy is reset with the episode's context (suite, task, instruction, trial, seed), then maps an
observation (see `worldvla_bench.envs.libero_env`) to an action chunk of shape (K, 7), which the
engine executes open loop before it asks again. One instance serves one worker process.
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from worldvla_bench.errors import BenchError, PolicyOutputError, UnknownChoiceError

ACTION_DIM = 7

BUILTIN_POLICIES: dict[str, str] = {
    "expert": "policies.expert:ExpertPolicy",
    "noop": "policies.noop:NoopPolicy",
    "random": "policies.random:RandomPolicy",
    "remote": "policies.remote:RemotePolicy",
    "replay": "policies.replay:ReplayPolicy",
    "worldvla": "policies.worldvla:WorldVLAPolicy",
    "worldvla_hf": "policies.worldvla_hf:WorldVLAHFPolicy",
}


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


class Policy(abc.ABC):
    """Base class: override `act`, and `reset` when the policy keeps per-episode state."""

    #: Name of the observation profile the policy expects (how images/state are prepared).
    observation_profile: str = "libero"
    #: Cameras the policy reads (None = all the env renders; () = none, e.g. blind policies).
    #: Only these are rendered, and only on steps whose observation the policy reads.
    cameras: tuple[str, ...] | None = None
    #: Scripted policies set this to receive `obs['privileged']` (see `LiberoEnv.privileged_state`).
    requires_privileged_state: bool = False

    def reset(self, context: EpisodeContext) -> None:  # noqa: B027 - optional hook
        """Start a new episode."""

    @abc.abstractmethod
    def act(self, observation: dict[str, Any]) -> np.ndarray:
        """Return an action chunk, float array of shape (K, 7), K >= 1."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (models, connections)."""


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
    """Names of the built-in policies."""
    return sorted(BUILTIN_POLICIES)


def resolve_policy_class(name: str) -> type[Policy]:
    """A built-in policy by name, or a user's policy as 'package.module:ClassName'."""
    target = BUILTIN_POLICIES.get(name, name)
    if ":" not in target:
        raise UnknownChoiceError("policy", name, policy_names() + ["or module:Class"])
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BenchError(f"cannot import policy module {module_name!r}: {error}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise BenchError(f"module {module_name!r} has no class {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Policy)):
        raise BenchError(f"{target} is not a subclass of worldvla_bench.policy.Policy")
    return cls


def make_policy(name: str, **kwargs: Any) -> Policy:
    """Instantiate a policy by name with keyword arguments; bad arguments give a clear error."""
    cls = resolve_policy_class(name)
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise BenchError(f"bad arguments for policy {name!r}: {error}") from None


def parse_policy_args(items: list[str] | None) -> dict[str, Any]:
    """Parse ['k=v', ...] into a dict; values are read as YAML scalars (numbers, bools, lists)."""
    import yaml

    parsed: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"bad policy argument {item!r}: use key=value")
        parsed[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return parsed
